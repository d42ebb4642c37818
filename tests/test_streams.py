"""Per-row random streams: Philox4x32-10 against its published known answers, the numpy (CPU) and torch (other
devices) rounds against each other and against a Python-integer reference, row invariance by construction, and the
laws of the uniforms and normals.

Statistical budget (for a correct generator and a seed drawn at random; the seeds here are fixed, so the outcome
is fixed too): six checks at failure probability 1e-6 / 6 each, 1e-6 in all.
* Kolmogorov-Smirnov distances use the Dvoretzky-Kiefer-Wolfowitz-Massart bound
  ``P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2)``, which holds at every ``n``.
* Chi-square statistics of ``k`` cells with expected count ``>= 512`` are read as chi-square with ``k - 1`` degrees of
  freedom (the usual asymptotic law, very accurate at these counts), with the Chernoff tail bound
  ``P(X >= x) <= (x / m)^(m / 2) exp((m - x) / 2)`` for ``m`` degrees of freedom.
Each check is also shown to fail on a deliberately broken input.
"""

import math

import pytest
import torch

from snrpaths import SNRPathError, SNRTypeError
from snrpaths.streams import (Streams, _M, _MASK32, _philox_rounds, _round_keys, _units53, normal, philox4x32,
                               seed_key, uniform)

# Random123's known-answer vectors for philox4x32-10 (kat_vectors): counter, key, output.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
DELTA = 1e-6 / 6  # per check


def philox_python(block: list[int], keys: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    """The reference: one block's rounds in Python integers (exact at any size)."""
    c0, c1, c2, c3 = block
    for k0, k1 in keys:
        p0, p1 = _M[0] * c0, _M[1] * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & _MASK32
    return c0, c1, c2, c3


def torch_rounds(counter: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """The rounds other devices run, here on the CPU."""
    return _philox_rounds(counter, torch.tensor(_round_keys(key, 10), dtype=torch.int64).reshape(10, 2, 1))


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_matches_the_published_known_answers(counter, key, expected):
    assert philox_python(list(counter), _round_keys(key, 10)) == expected
    for n in (1, 1000):
        counters = torch.tensor(counter, dtype=torch.int64)[:, None].repeat(1, n)
        for words in (philox4x32(counters, key), torch_rounds(counters, key)):
            assert bool((words == torch.tensor(expected)[:, None]).all())


def test_numpy_torch_and_python_philox_agree_on_random_and_extreme_words():
    g = torch.Generator().manual_seed(0)
    counter = torch.randint(0, 2**32, (4, 300), generator=g, dtype=torch.int64)
    counter[:, :4] = torch.tensor([[0, 2**32 - 1, 0, 2**32 - 1]] * 4)
    for key in [(0, 0), (2**32 - 1, 2**32 - 1), (123456789, 987654321)]:
        words = philox4x32(counter, key)
        reference = [philox_python(c, _round_keys(key, 10)) for c in counter.T.tolist()]
        assert words.T.tolist() == [list(w) for w in reference]
        assert torch.equal(torch_rounds(counter, key), words)
        assert int(words.min()) >= 0 and int(words.max()) < 2**32


def draws(streams):
    """One of each kind of draw, in a fixed order."""
    return (streams.uniform((streams.batch, 7)), streams.normal((streams.batch, 3, 5)),
            streams.uniform_at(torch.tensor([0, 1, 1]), torch.tensor([6, 0, 3])) if streams.batch > 1 else None,
            streams.normal((streams.batch, 9), torch.float32))


@pytest.mark.parametrize("batch", [2, 3, 100])
def test_a_row_draws_the_same_numbers_whatever_the_other_rows(batch):
    big = Streams(5, torch.arange(batch) + 40)
    pair = Streams(5, torch.tensor([40, 41]))
    u, z, at, z32 = draws(big)
    u2, z2, at2, z32_2 = draws(pair)
    assert torch.equal(u[:2], u2) and torch.equal(z[:2], z2) and torch.equal(at, at2) and torch.equal(z32[:2], z32_2)
    assert z32.dtype == torch.float32
    assert not torch.equal(at, u[[0, 1, 1], [6, 0, 3]]), "a later draw: other numbers"
    skipped = Streams(5, torch.arange(batch) + 40)
    skipped.skip()
    assert torch.equal(skipped.normal((batch, 3, 5)), z)
    fresh = Streams(5, torch.arange(batch) + 40)
    assert torch.equal(fresh.uniform_at(torch.tensor([1, 0]), torch.tensor([2, 5])), u[[1, 0], [2, 5]])


def test_draws_computed_ahead_and_the_device_layout_give_the_numbers_of_a_fresh_draw():
    """On the CPU a small draw computes the next 15 ahead (numpy); other devices compute each draw in torch. Both
    must give, for every draw index, the numbers a draw computed on its own gives: checked draw by draw, with the
    torch layout run here on the CPU's words."""
    ahead = Streams(3, torch.arange(4) + 7)
    for draw in range(20):  # past one pass of 16, a full draw after a partial one, uniform_at inside and outside
        alone = Streams(3, torch.arange(4) + 7)
        alone.skip(draw)
        if draw % 3 == 2:
            rows, elements = torch.tensor([0, 3, 3]), torch.tensor([0, 5, 10])
            got = ahead.uniform_at(rows, elements, bound=11 if draw % 2 else None)  # a bound past the ahead's
            # width (10 after a draw of 9) computes the draw instead; within it (12), reads it
            assert torch.equal(got, alone.uniform((4, 11))[rows, elements])
            device = _units53(Streams(3, torch.arange(4) + 7)._device_words(draw, 6)).reshape(4, -1)
            assert torch.equal(got, device[rows, elements])
        else:
            got = ahead.uniform((4, 11 if draw % 2 else 9))
            assert torch.equal(got, alone.uniform(tuple(got.shape)))
            device = _units53(Streams(3, torch.arange(4) + 7)._device_words(draw, 6)).reshape(4, -1)
            assert torch.equal(got, device[:, :got.shape[1]])


def test_element_e_does_not_depend_on_the_draw_shape():
    a, b = Streams(9, torch.arange(4)), Streams(9, torch.arange(4))
    assert torch.equal(a.uniform((4, 3)), b.uniform((4, 2, 3))[:, 0, :])
    assert torch.equal(a.normal((4, 5)), b.normal((4, 6))[:, :5])
    assert torch.equal(a.normal((4, 5), torch.float32), b.normal((4, 2, 4), torch.float32).flatten(1)[:, :5])


def test_uniforms_are_53_bit_multiples_in_0_1_and_normals_finite():
    s = Streams(0, torch.arange(64))
    u = s.uniform((64, 1000))
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal(u * 2**53, (u * 2**53).floor())
    assert bool(torch.isfinite(s.normal((64, 1000))).all())


def test_seeds():
    assert seed_key(0) == (0, 0) and seed_key(2**32 + 5) == (5, 1) and seed_key(2**64 - 1) == (2**32 - 1,) * 2
    assert not torch.equal(Streams(0, [0]).uniform((1, 4)), Streams(1, [0]).uniform((1, 4)))
    assert not torch.equal(Streams(0, [0]).uniform((1, 4)), Streams(0, [1]).uniform((1, 4)))
    # the one seed rule (snrpaths.validate.seed): an integer in [0, 2**64 - 1]
    for bad, error in [(1.9, SNRTypeError), (True, SNRTypeError), ("0", SNRTypeError), (2**64, SNRPathError),
                       (-1, SNRPathError)]:
        with pytest.raises(error, match="'seed' must be an integer"):
            Streams(bad, [0])
    with pytest.raises(SNRTypeError, match="'rows' must be"):
        Streams(0, torch.tensor([-1]))
    with pytest.raises(SNRPathError, match="must start with the streams' batch 2"):
        Streams(0, [0, 1]).uniform((3, 4))


def test_generators_still_work_where_streams_are_taken():
    g = torch.Generator().manual_seed(3)
    u = uniform(g, (2, 3))
    assert torch.equal(u, torch.rand(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    z = normal(torch.Generator().manual_seed(3), (2, 3), dtype=torch.float32)
    assert torch.equal(z, torch.randn(2, 3, generator=torch.Generator().manual_seed(3)))


# -- laws ----------------------------------------------------------------------------------------------------------

N = 2**18


def ks_epsilon(n: int, delta: float = DELTA) -> float:
    """DKW-Massart: ``P(D_n > eps) <= 2 exp(-2 n eps^2) = delta``."""
    return math.sqrt(math.log(2 / delta) / (2 * n))


def ks_distance(sorted_cdf_values: torch.Tensor) -> float:
    """``sup |F_n - F|`` from the true CDF at the sorted sample."""
    n = sorted_cdf_values.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - sorted_cdf_values, sorted_cdf_values - (i - 1) / n).max())


def chi2_threshold(dof: int, delta: float = DELTA) -> float:
    """The smallest ``x > dof`` whose Chernoff bound ``(x/m)^(m/2) exp((m-x)/2)`` is below ``delta``."""
    def log_bound(x):
        return dof / 2 * math.log(x / dof) + (dof - x) / 2

    lo, hi = float(dof), 100.0 * dof
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if log_bound(mid) > math.log(delta) else (lo, mid)
    return hi


def chi2_pairs(a: torch.Tensor, b: torch.Tensor, bins: int = 16) -> float:
    """Chi-square of the ``bins x bins`` table of two uniform samples against independence and uniformity."""
    cells = (a * bins).long() * bins + (b * bins).long()
    counts = torch.bincount(cells, minlength=bins * bins).double()
    expected = a.numel() / bins**2
    return float(((counts - expected) ** 2 / expected).sum())


def uniforms():
    return Streams(2024, torch.arange(512)).uniform((512, N // 512))


def test_uniforms_follow_the_uniform_law():
    u = uniforms().flatten()
    assert ks_distance(u.sort().values) <= ks_epsilon(N)
    assert ks_distance((u ** 1.05).sort().values) > ks_epsilon(N), "the check catches a slightly bent law"


def test_uniform_neighbours_are_independent():
    """The two halves of one Philox block (elements 2j, 2j+1), and the same element of adjacent rows (counters that
    differ in one bit of the row word): 16 x 16 tables, expected count 512 per cell."""
    u = uniforms()
    limit = chi2_threshold(16 * 16 - 1, DELTA)
    halves = chi2_pairs(u[:, 0::2].flatten(), u[:, 1::2].flatten())
    rows = chi2_pairs(u[0::2].flatten(), u[1::2].flatten())
    assert halves <= limit and rows <= limit, (halves, rows, limit)
    # about 255 +- 23 for independent pairs: copying 2% of one sample into the other goes over
    mixed = torch.where(u[1::2] < 0.02, u[0::2], u[1::2])
    assert chi2_pairs(u[0::2].flatten(), mixed.flatten()) > limit


def test_normals_follow_the_standard_normal_law():
    """Each lane of Box-Muller (cosine: even elements, sine: odd) separately: two KS checks."""
    z = Streams(7, torch.arange(512)).normal((512, 2 * N // 512))
    phi = torch.special.ndtr
    for lane in (z[:, 0::2].flatten(), z[:, 1::2].flatten()):
        assert ks_distance(phi(lane.sort().values)) <= ks_epsilon(N)
    assert ks_distance(phi(1.05 * z[:, 0::2].flatten().sort().values)) > ks_epsilon(N), "sd 1.05 is caught"


def test_float32_normals_follow_the_standard_normal_law():
    """Four normals per Philox block from 32-bit uniforms: one KS check over all of them, in float64 for the CDF."""
    z = Streams(8, torch.arange(512)).normal((512, N // 512), torch.float32).double().flatten()
    assert ks_distance(torch.special.ndtr(z.sort().values)) <= ks_epsilon(N)
