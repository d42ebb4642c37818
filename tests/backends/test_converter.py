"""The DSL converter: initialisation, exact endpoints, the softmax mixture at finite SNR, anchors kept at unit norm."""

import math

import pytest
import torch

from snrpaths import SNRPathError, SNRState, TokenTable
from snrpaths.backends import Converter, ConverterConfig, DiTConfig, DSLDenoiser
from snrpaths.backends import converter as converter_module

F64 = torch.float64
V, D, H = 7, 5, 6


def gen(seed):
    return torch.Generator().manual_seed(seed)


def scrambled(seed=0):
    """A float64 converter with parameters far from their initial values, and an input table E."""
    conv = Converter(V, ConverterConfig(anchor_dim=D), seed=seed).to(F64)
    g = gen(seed + 1)
    with torch.no_grad():
        conv.beta.fill_(3.7)
        conv.bias.copy_(4 * torch.randn(V + 1, generator=g, dtype=F64))
    return conv, torch.randn(V + 1, H, generator=g, dtype=F64)


def mixed_inputs(seed=0, B=3, L=9):
    """Evidence that is nonzero everywhere (even where it must be ignored), SNRs mixing 0, inf and finite values."""
    g = gen(seed)
    gamma = torch.rand(B, L, generator=g, dtype=F64) * 10
    pick = torch.randint(0, 3, (B, L), generator=g)
    gamma = torch.where(pick == 0, 0.0, torch.where(pick == 1, math.inf, gamma))
    z = torch.randn(B, L, D, generator=g, dtype=F64) * 3
    tokens = torch.randint(0, V, (B, L), generator=g)
    return z, gamma, tokens


def test_initialisation():
    conv = Converter(50, ConverterConfig(anchor_dim=16))
    assert conv.beta.item() == 1 / math.sqrt(16)
    assert not conv.bias[:50].detach().any()
    assert conv.bias[50].item() == pytest.approx(math.log(99 * 50), rel=1e-6)
    torch.testing.assert_close(conv.anchors.norm(dim=1), torch.ones(50))
    # z = 0 at a finite SNR: p([MASK]) = 0.99 and the rest is spread evenly over the tokens.
    conv = conv.to(F64)
    E = torch.randn(51, 4, generator=gen(0), dtype=F64)
    torch.testing.assert_close(conv.mix(torch.zeros(1, 16, dtype=F64), E)[0], 0.99 * E[50] + 0.01 * E[:50].mean(0))


def test_endpoints_are_exact_rows_and_finite_positions_the_softmax_mixture():
    conv, E = scrambled()
    z, gamma, tokens = mixed_inputs()
    h = conv(z, gamma, tokens, E)
    masked, clean = gamma == 0, torch.isinf(gamma)
    assert masked.any() and clean.any() and (~masked & ~clean).any()
    # Bitwise: no softmax leakage into endpoint positions, whatever z holds there.
    assert torch.equal(h[masked], E[V].expand(int(masked.sum()), H))
    assert torch.equal(h[clean], E[tokens[clean]])
    # Finite positions: softmax(beta <z, K_v> + b_v) over K = [anchors; 0], written out independently.
    keys = torch.cat([conv.anchors, torch.zeros(1, D, dtype=F64)])
    q = torch.softmax(conv.beta * torch.einsum("bld,vd->blv", z, keys) + conv.bias, dim=-1)
    want = torch.einsum("blv,vh->blh", q, E)
    finite = ~masked & ~clean
    torch.testing.assert_close(h[finite], want[finite], rtol=0, atol=1e-12)


def test_finite_snr_limits():
    conv, E = Converter(V, ConverterConfig(anchor_dim=D)).to(F64), torch.randn(V + 1, H, generator=gen(2), dtype=F64)
    table = TokenTable(conv.anchors.detach())
    tokens = torch.arange(V)[None]
    for gamma, want in [(1e6, E[:V]), (1e-6, (0.99 * E[V] + 0.01 * E[:V].mean(0)).expand(V, H))]:
        state = SNRState.from_tokens(tokens, torch.full((1, V), gamma, dtype=F64), table, gen(3))
        h = conv(state.z, state.gamma, state.tokens, E)[0]
        assert bool(torch.isfinite(h).all())
        torch.testing.assert_close(h, want, rtol=0, atol=1e-3)


def test_chunked_mixture_equals_one_pass(monkeypatch):
    conv, E = scrambled(seed=4)
    z, gamma, tokens = mixed_inputs(seed=5)
    whole = conv(z, gamma, tokens, E)
    monkeypatch.setattr(converter_module, "CHUNK_ENTRIES", 2 * (V + 1))  # two positions per chunk
    torch.testing.assert_close(conv(z, gamma, tokens, E), whole, rtol=0, atol=1e-14)


def test_bf16_autocast_keeps_the_logits_in_float32():
    conv, E = Converter(V, ConverterConfig(anchor_dim=D)), torch.randn(V + 1, H, generator=gen(6))
    table = TokenTable(conv.anchors.detach())
    tokens = torch.arange(V)[None]
    state = SNRState.from_tokens(tokens, torch.full((1, V), 1e5), table, gen(7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(state.z, state.gamma, state.tokens, E)[0]
    # Logits of order 1e4 in bf16 would be off by tens of nats; in float32 the right token wins outright.
    torch.testing.assert_close(h.float(), E[:V], rtol=1e-2, atol=1e-2)


def test_learned_anchors_stay_unit_norm_and_frozen_ones_stay_put():
    conv, E = Converter(V, ConverterConfig(anchor_dim=D)), torch.randn(V + 1, H, generator=gen(8))
    z, gamma, tokens = (t.float() if t.is_floating_point() else t for t in mixed_inputs(seed=9))
    before = conv.anchors.detach().clone()
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    conv(z, gamma, tokens, E).square().sum().backward()
    opt.step()
    assert (conv.anchors - before).abs().max() > 1e-3
    torch.testing.assert_close(conv.anchors.norm(dim=1), torch.ones(V))

    frozen = Converter(V, ConverterConfig(anchor_dim=D, learn_anchors=False))
    assert "anchor_weight" in frozen.state_dict()
    assert all(p is not frozen.anchor_weight for p in frozen.parameters())
    before = frozen.anchors.clone()
    frozen(z, gamma, tokens, E).square().sum().backward()
    assert torch.equal(frozen.anchors, before) and frozen.beta.grad is not None


def test_denoiser_table_follows_the_anchors():
    den = DSLDenoiser.build(DiTConfig(vocab_size=V, seq_len=4, hidden=16, cond_dim=8, n_blocks=1, n_heads=2),
                            ConverterConfig(anchor_dim=D))
    table = den.table
    assert den.table is table and torch.equal(table.anchors, den.converter.anchors)
    with torch.no_grad():
        den.converter.anchor_weight.mul_(-1)  # an in-place update, as an optimizer makes
    assert den.table is not table and torch.equal(den.table.anchors, -table.anchors)


def test_bad_values_and_settings_raise():
    conv, E = scrambled()
    z, gamma, tokens = mixed_inputs()
    with pytest.raises(SNRPathError, match=r"'gamma' has 1 entries outside \[0, inf\] \(e\.g\. nan\)"):
        conv(z, gamma.index_put((torch.tensor([0]), torch.tensor([0])), torch.tensor(math.nan, dtype=F64)), tokens, E)
    with pytest.raises(SNRPathError, match=r"ids outside \[0, 6\] \(e\.g\. -1\)"):
        conv(z, torch.full_like(gamma, math.inf), torch.full_like(tokens, -1), E)
    with pytest.raises(SNRPathError, match=r"'mask_prob' must be a number in \(0, 1\) \(got 1.0\)"):
        ConverterConfig(mask_prob=1.0)
    with pytest.raises(SNRPathError, match="'anchor_dim' must be a positive integer"):
        ConverterConfig(anchor_dim=0)
