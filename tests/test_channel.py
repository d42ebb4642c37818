"""The localization channel. Statistical checks use 5-sigma budgets on sample means (false alarm < 1e-6)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from snrpaths import SNRPathError, ShapeError, TokenTable, corrupt, localize, posterior_logits, posterior_mean
from snrpaths.testing import strategies as sst


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@given(table=sst.token_tables(), data=st.data())
def test_endpoints_give_exact_zeros_and_no_nan(table, data):
    gamma = data.draw(sst.snr_configs(2, 4))
    tokens = torch.randint(0, table.vocab_size, (2, 4), generator=gen(data.draw(sst.seeds())))
    z = corrupt(tokens, gamma, table, gen())
    assert bool(torch.isfinite(z).all())
    assert bool((z[(gamma == 0) | torch.isinf(gamma)] == 0).all())


def assert_channel_law(z, gamma, x, n):
    """z = gamma x + sqrt(gamma) eps: the sample mean is within 5 sd (sqrt(gamma / n)) of gamma x, and the
    per-coordinate variance within 5 sd (gamma sqrt(2 / n)) of gamma."""
    sd_mean = math.sqrt(gamma / n)
    assert float((z.mean(0) - gamma * x).abs().max()) < 5 * sd_mean
    assert float((z.var(0) - gamma).abs().max()) < 5 * gamma * math.sqrt(2 / n)


def test_corrupt_has_the_channel_law():
    table, n, gamma = TokenTable.random(3, 4, seed=1), 40_000, 2.5
    z = corrupt(torch.ones(n, 1, dtype=torch.int64), torch.full((n, 1), gamma, dtype=torch.float64), table, gen())
    assert_channel_law(z[:, 0], gamma, table.anchors[1], n)
    with pytest.raises(AssertionError):  # the same check sees a wrong token
        assert_channel_law(z[:, 0], gamma, table.anchors[2], n)


def test_sample_form_localization_composes_like_the_channel():
    """Corrupt at 1.0 then localize to 3.0 with target x_s: the law of a direct corruption at 3.0."""
    table, n = TokenTable.random(3, 4, seed=1), 40_000
    tokens = torch.full((n, 1), 2, dtype=torch.int64)
    g1, g2 = torch.full((n, 1), 1.0, dtype=torch.float64), torch.full((n, 1), 3.0, dtype=torch.float64)
    z = localize(corrupt(tokens, g1, table, gen(0)), g1, g2, table.embed(tokens), gen(1))
    assert_channel_law(z[:, 0], 3.0, table.anchors[2], n)


def test_localize_leaves_clean_and_unchanged_positions_exactly():
    z = torch.randn(1, 3, 2, dtype=torch.float64, generator=gen())
    gamma = torch.tensor([[0.5, math.inf, 2.0]], dtype=torch.float64)
    z[0, 1] = 0
    out = localize(z, gamma, torch.tensor([[0.5, math.inf, 3.0]], dtype=torch.float64), torch.ones_like(z), gen())
    assert torch.equal(out[0, :2], z[0, :2]) and not torch.equal(out[0, 2], z[0, 2])


def test_localize_refuses_impossible_moves():
    z = torch.zeros(1, 2, 2, dtype=torch.float64)
    g = torch.tensor([[1.0, math.inf]], dtype=torch.float64)
    with pytest.raises(SNRPathError, match="reveal"):
        localize(z, g, torch.tensor([[math.inf, math.inf]], dtype=torch.float64), z, gen())
    with pytest.raises(SNRPathError, match="remask"):
        localize(z, g, torch.tensor([[1.0, 2.0]], dtype=torch.float64), z, gen())
    with pytest.raises(SNRPathError, match="decrease"):
        localize(z, g, torch.tensor([[0.5, math.inf]], dtype=torch.float64), z, gen())
    with pytest.raises(ShapeError):
        localize(z, g, g, z[..., :1], gen())


def test_posterior_logits_and_mean():
    table = TokenTable.orthonormal(3)
    z = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    logits = posterior_logits(z, table, log_prior=torch.log(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)))
    assert torch.allclose(logits, torch.tensor([[math.log(0.5), 1 + math.log(0.25), math.log(0.25)]], dtype=torch.float64))
    assert torch.equal(posterior_mean(torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), table), z)
    with pytest.raises(ShapeError, match="anchor dimension 3"):
        posterior_logits(torch.zeros(1, 2), table)


def test_bad_gamma_is_named():
    table, tokens = TokenTable.random(3, 2), torch.zeros(1, 2, dtype=torch.int64)
    with pytest.raises(SNRPathError, match="NaN"):
        corrupt(tokens, torch.tensor([[math.nan, 1.0]]), table, gen())
    with pytest.raises(SNRPathError, match="negative SNR -1"):
        corrupt(tokens, torch.tensor([[-1.0, 1.0]]), table, gen())
    with pytest.raises(ShapeError, match=r"\[1, 2\]"):
        corrupt(tokens, torch.ones(2, 2), table, gen())
    with pytest.raises(SNRPathError, match="valid ids"):
        corrupt(tokens + 5, torch.ones(1, 2), table, gen())
