import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from snrpaths.draw import categorical, keep_top_k, nucleus, probabilities
from snrpaths.streams import Streams


@given(weights=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6).filter(lambda w: sum(w) > 0.1),
       seed=st.integers(0, 1000))
def test_categorical_matches_its_probabilities(weights, seed):
    """TV budget as in the toy tests: Jensen bound on E[TV] plus McDiarmid at delta = 1e-6."""
    p = torch.tensor(weights, dtype=torch.float64)
    p = p / p.sum()
    n = 20_000
    draws = categorical(p, torch.Generator().manual_seed(seed), n)
    freq = torch.bincount(draws, minlength=len(p)).to(torch.float64) / n
    tol = 0.5 * float((p * (1 - p) / n).sqrt().sum()) + math.sqrt(math.log(1e6) / (2 * n))
    assert 0.5 * float((freq - p).abs().sum()) <= tol
    assert bool((freq[p == 0] == 0).all())


def test_categorical_is_batched_and_seeded():
    p = torch.softmax(torch.randn(4, 5, 7, generator=torch.Generator().manual_seed(0)), -1)
    a = categorical(p, torch.Generator().manual_seed(3))
    assert a.shape == (4, 5) and torch.equal(a, categorical(p, torch.Generator().manual_seed(3)))


def test_categorical_from_streams_draws_each_row_from_its_own_stream():
    """One row per draw (the runner's use): the same law (TV budget as above), and row i's draw is the same in a
    batch of 1 as in a batch of n."""
    p = torch.tensor([0.5, 0.0, 0.2, 0.3], dtype=torch.float64)
    n = 20_000
    draws = categorical(p.expand(n, 4), Streams(3, torch.arange(n)))
    freq = torch.bincount(draws, minlength=4).to(torch.float64) / n
    tol = 0.5 * float((p * (1 - p) / n).sqrt().sum()) + math.sqrt(math.log(1e6) / (2 * n))
    assert 0.5 * float((freq - p).abs().sum()) <= tol and freq[1] == 0
    assert int(categorical(p.expand(1, 4), Streams(3, [1234]))[0]) == int(draws[1234])
    several = categorical(p.expand(2, 5, 4), Streams(3, [1234, 7]), 3)
    assert several.shape == (2, 5, 3) and torch.equal(several[0], categorical(p.expand(1, 5, 4), Streams(3, [1234]), 3)[0])


def test_nucleus_keeps_the_smallest_top_set():
    p = torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=torch.float64)
    assert torch.allclose(nucleus(p, 0.7), torch.tensor([0.0, 0.625, 0.375, 0.0], dtype=torch.float64))
    assert torch.allclose(nucleus(p, 0.4), torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(nucleus(p, 1.0), p)


def test_probabilities_are_float64_and_tempered():
    logits = torch.tensor([0.0, math.log(3.0)], dtype=torch.float32)
    assert probabilities(logits).dtype == torch.float64
    assert torch.allclose(probabilities(logits, temperature=0.5), torch.tensor([0.1, 0.9], dtype=torch.float64))


def test_tiny_temperatures_are_exact_and_zero_is_the_argmax():
    """``logits / 1e-320`` overflowed to inf - inf = NaN, and the draw fell on the last token."""
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 3.0, -math.inf], [-1e308, 1e308, 0.0]], dtype=torch.float64)
    argmax = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    for t in (0.0, 5e-324, 1e-320, 1e-300):
        assert torch.equal(probabilities(logits, temperature=t), argmax), t
    close = torch.tensor([0.0, 1e-320], dtype=torch.float64)  # a gap of 1e-320 at temperature 1e-320: e^1 odds
    assert torch.allclose(probabilities(close, temperature=1e-320), torch.softmax(torch.tensor([0.0, 1.0],
                                                                                                dtype=torch.float64), 0))
    assert torch.equal(probabilities(logits[0], temperature=1.0), torch.softmax(logits[0], 0))


def test_nucleus_at_the_smallest_threshold_keeps_the_top_token_alone():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], dtype=torch.float64)
    for top_p in (5e-324, 1e-300):
        assert torch.equal(nucleus(p, top_p), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    # exactly the mass before a token: it is not kept (the mass before it already reaches top_p)
    assert torch.equal(nucleus(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), 0.75),
                       torch.tensor([2 / 3, 1 / 3, 0.0], dtype=torch.float64))


def test_top_k_keeps_exactly_k_ties_by_index_and_applies_before_the_nucleus():
    p = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.1], dtype=torch.float64)
    assert torch.equal(keep_top_k(p, 2), torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(keep_top_k(p, 4), torch.tensor([0.1, 0.3, 0.3, 0.2, 0.0], dtype=torch.float64) / 0.9)  # tie: 0 first
    assert keep_top_k(p, 5) is p and keep_top_k(p, 512) is p and keep_top_k(p, None) is p
    assert torch.equal(keep_top_k(torch.full((2, 3), 1 / 3, dtype=torch.float64), 1)[:, 0], torch.ones(2, dtype=torch.float64))
    logits = p.log()
    # top-2 renormalises to (0.5, 0.5), whose nucleus at 0.4 keeps the first of the tie alone
    assert torch.equal(probabilities(logits, top_p=0.4, top_k=2), torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    assert probabilities(logits.float(), dtype=torch.float32).dtype == torch.float32
    assert torch.equal(probabilities(logits.float(), dtype=torch.float32), torch.softmax(logits.float(), -1))
