"""The DSL converter: initialisation, exact endpoints, the softmax mixture at finite SNR, anchors kept at unit norm,
and the certified sparse mixture (within ``sparse_tol * max_v ||E_v||`` of the dense one, gradients included)."""

import math

import attrs
import pytest
import torch
from snrpaths.backends import Converter, ConverterConfig, DiTConfig, DSLDenoiser, load
from snrpaths.backends import converter as converter_module

from snrpaths import SNRPathError, SNRState, SNRTypeError, TokenTable

F64 = torch.float64
V, D, H = 7, 5, 6


def gen(seed):
    return torch.Generator().manual_seed(seed)


def scrambled(seed=0):
    """A float64 converter with parameters far from their initial values, and an input table E."""
    conv = Converter(V, ConverterConfig(anchor_dim=D), seed=seed).to(F64)
    g = gen(seed + 1)
    with torch.no_grad():
        conv.log_beta.fill_(math.log(3.7))
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
    assert conv.beta.item() == pytest.approx(1 / math.sqrt(16), rel=1e-6)
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
    h = conv(z, gamma, tokens, E).h
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
        h = conv(state.z, state.gamma, state.tokens, E).h[0]
        assert bool(torch.isfinite(h).all())
        torch.testing.assert_close(h, want, rtol=0, atol=1e-3)


def test_chunked_mixture_equals_one_pass(monkeypatch):
    conv, E = scrambled(seed=4)
    z, gamma, tokens = mixed_inputs(seed=5)
    whole = conv(z, gamma, tokens, E).h
    monkeypatch.setattr(converter_module, "CHUNK_ENTRIES", 2 * (V + 1))  # two positions per chunk
    torch.testing.assert_close(conv(z, gamma, tokens, E).h, whole, rtol=0, atol=1e-14)


def test_bf16_autocast_keeps_the_logits_in_float32():
    conv, E = Converter(V, ConverterConfig(anchor_dim=D)), torch.randn(V + 1, H, generator=gen(6))
    table = TokenTable(conv.anchors.detach())
    tokens = torch.arange(V)[None]
    state = SNRState.from_tokens(tokens, torch.full((1, V), 1e5), table, gen(7))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(state.z, state.gamma, state.tokens, E).h[0]
    # Logits of order 1e4 in bf16 would be off by tens of nats; in float32 the right token wins outright.
    torch.testing.assert_close(h.float(), E[:V], rtol=1e-2, atol=1e-2)


def test_learned_anchors_stay_unit_norm_and_frozen_ones_stay_put():
    conv, E = Converter(V, ConverterConfig(anchor_dim=D)), torch.randn(V + 1, H, generator=gen(8))
    z, gamma, tokens = (t.float() if t.is_floating_point() else t for t in mixed_inputs(seed=9))
    before = conv.anchors.detach().clone()
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    conv(z, gamma, tokens, E).h.square().sum().backward()
    opt.step()
    assert (conv.anchors - before).abs().max() > 1e-3
    torch.testing.assert_close(conv.anchors.norm(dim=1), torch.ones(V))

    frozen = Converter(V, ConverterConfig(anchor_dim=D, learn_anchors=False))
    assert "anchor_weight" in frozen.state_dict()
    assert all(p is not frozen.anchor_weight for p in frozen.parameters())
    before = frozen.anchors.clone()
    frozen(z, gamma, tokens, E).h.square().sum().backward()
    assert torch.equal(frozen.anchors, before) and frozen.log_beta.grad is not None


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
    with pytest.raises(SNRPathError, match=r"'mask_prob' must lie in \(0.0, 1.0\) \(got 1.0\)"):
        ConverterConfig(mask_prob=1.0)
    with pytest.raises(SNRPathError, match="'anchor_dim' must be a positive integer"):
        ConverterConfig(anchor_dim=0)
    # wrong types are SNRTypeError, as in the core (snrpaths.validate); a wrong head name is a wrong value
    for bad in (dict(anchor_dim=2.0), dict(learn_anchors=1), dict(mask_prob="0.5"), dict(sparse_k=True), dict(head=1)):
        with pytest.raises(SNRTypeError):
            ConverterConfig(**bad)
    with pytest.raises(SNRPathError, match=r"'head' must be one of \('evidence', 'plain'\)"):
        ConverterConfig(head="evidense")


# -- the certified sparse mixture ------------------------------------------------------------------------------------

SV, SD, SH = 60, 6, 5  # big enough that a top-k is a real truncation


def sparse_pair(k=4, tol=1e-6, seed=0, beta=None, mask_bias=None):
    """A float64 sparse converter, its dense twin (same parameters, sparse_k = 0) and an input table E."""
    conv = Converter(SV, ConverterConfig(anchor_dim=SD, sparse_k=k, sparse_tol=tol), seed=seed).to(F64)
    g = gen(seed + 11)
    with torch.no_grad():
        if beta is not None:
            conv.log_beta.fill_(math.log(beta))
        conv.bias[:SV].copy_(torch.randn(SV, generator=g, dtype=F64))
        if mask_bias is not None:
            conv.bias[SV] = mask_bias
    dense = Converter(SV, ConverterConfig(anchor_dim=SD, sparse_k=0), seed=seed).to(F64)
    dense.load_state_dict(conv.state_dict())
    return conv, dense, torch.randn(SV + 1, SH, generator=g, dtype=F64) * 2


def evidence(conv, gamma, seed):
    """``(N, d)`` evidence ``gamma x_s + sqrt(gamma) eps`` for random tokens, one SNR per row."""
    g = gen(seed)
    s = torch.randint(0, conv.vocab_size, (gamma.numel(),), generator=g)
    eps = torch.randn(gamma.numel(), conv.config.anchor_dim, generator=g, dtype=F64)
    return gamma[:, None] * conv.anchors.detach()[s] + gamma.sqrt()[:, None] * eps


GAMMAS = torch.logspace(-6, 6, 25, dtype=F64)  # 1e-6 .. 1e6, four rows each


@pytest.mark.parametrize(("k", "seed", "beta"), [(4, 0, None), (4, 1, 1.0), (1, 2, 1.0), (16, 3, 0.5)])
def test_sparse_mixture_is_within_the_certified_bound_from_gamma_1e_6_to_1e6(k, seed, beta):
    conv, dense, E = sparse_pair(k=k, seed=seed, beta=beta, mask_bias=-2.0 if beta else None)
    tol, e_max = conv.config.sparse_tol, E.norm(dim=1).max()
    # One batch (B = 1): endpoints at both ends, then four positions at each SNR, low to high.
    gamma = torch.cat([torch.tensor([0.0, math.inf], dtype=F64), GAMMAS.repeat_interleave(4)])[None]
    z = torch.cat([torch.randn(2, SD, generator=gen(seed), dtype=F64), evidence(conv, gamma[0, 2:], seed)])[None]
    tokens = torch.randint(0, SV, gamma.shape, generator=gen(seed))
    h, want = conv(z, gamma, tokens, E).h[0], dense(z, gamma, tokens, E).h[0]
    cert = conv.certify(z[0, 2:])
    # Both branches ran in this one batch: diffuse posteriors fall back, sharp ones are gathered.
    low, high = GAMMAS.repeat_interleave(4) <= 1e-3, GAMMAS.repeat_interleave(4) >= 1e4
    assert cert.dense[low].all() and not cert.dense[high].any()
    err = (h[2:] - want[2:]).norm(dim=1)
    assert bool((err <= tol * e_max + 1e-12).all()), f"worst {(err / e_max).max():.2e} of max ||E_v||"
    # Per position: within r_i max ||E_v|| where gathered; the dense product itself where it fell back.
    assert bool((err[~cert.dense] <= cert.residual[~cert.dense] * e_max + 1e-12).all())
    torch.testing.assert_close(h[2:][cert.dense], want[2:][cert.dense], rtol=0, atol=1e-13)
    # Endpoint rows stay bitwise exact, whatever the sparse settings.
    assert torch.equal(h[0], E[SV]) and torch.equal(h[1], E[tokens[0, 1]])


@pytest.mark.parametrize("grad", [False, True])
def test_every_kind_of_chunk_matches_the_dense_mixture(monkeypatch, grad):
    """Chunks of four rows that all fall back, all pass, mostly fall back (one dense product, gathered rows written
    over it) and mostly pass (the failing rows copied out): every branch of the mixture, with and without autograd."""
    conv, dense, E = sparse_pair(k=4, beta=1.0, mask_bias=-2.0)
    lo, hi = 1e-6, 1e6
    pattern = [lo] * 4 + [hi] * 4 + [lo, lo, lo, hi] + [lo, hi, hi, hi] + [hi, lo]  # the last chunk is short
    gamma = torch.tensor(pattern, dtype=F64)
    z = evidence(conv, gamma, seed=5)
    monkeypatch.setattr(converter_module, "CHUNK_ENTRIES", 4 * (SV + 1))
    assert conv.certify(z).dense.tolist() == [g == lo for g in pattern]
    with torch.set_grad_enabled(grad):
        h = conv.mix(z, E)
    assert h.requires_grad == grad
    torch.testing.assert_close(h, dense.mix(z, E), rtol=0, atol=1e-6 * float(E.norm(dim=1).max()))
    with torch.no_grad():
        assert torch.equal(conv.mix(z, E), h.detach())  # the in-place (no autograd) path computes the same numbers


def test_the_certificate_is_what_keeps_the_error_small():
    """With sparse_tol = 1 nothing falls back: the error is still within r_i max ||E_v|| (the bound holds for any
    set of slots) but far beyond what sparse_tol = 1e-6 guarantees, so the certificate is doing the work."""
    gamma = torch.logspace(-2, 1, 40, dtype=F64)
    loose, dense, E = sparse_pair(k=2, tol=1.0, beta=1.0, mask_bias=-2.0)
    z, e_max = evidence(loose, gamma, seed=7), E.norm(dim=1).max()
    cert = loose.certify(z)
    assert not cert.dense.any()
    err = (loose.mix(z, E) - dense.mix(z, E)).norm(dim=1)
    assert bool((err <= cert.residual * e_max + 1e-12).all())
    assert err.max() > 1e3 * 1e-6 * e_max
    tight = Converter(SV, ConverterConfig(anchor_dim=SD, sparse_k=2), seed=0).to(F64)
    tight.load_state_dict(loose.state_dict())
    assert ((tight.mix(z, E) - dense.mix(z, E)).norm(dim=1) <= 1e-6 * e_max + 1e-12).all()


def test_gradients_flow_through_the_sparse_gather():
    """Positions between two orthogonal anchors: two slots carry the mass, the rest ~e^-20, so every position is
    gathered; beta, b, the anchors and E all get gradients, equal to the dense twin's up to the dropped mass."""
    V12 = 12
    grads = {}
    for k in (2, 0):
        conv = Converter(V12, ConverterConfig(anchor_dim=V12, sparse_k=k)).to(F64)
        with torch.no_grad():
            conv.anchor_weight.copy_(torch.eye(V12, dtype=F64))
            conv.log_beta.zero_()
            conv.bias.zero_()
        E = torch.randn(V12 + 1, 4, generator=gen(12), dtype=F64).requires_grad_()
        a, b = torch.arange(6), torch.arange(6, 12)
        w = torch.linspace(0.45, 0.55, 6, dtype=F64)[:, None]
        z = 40 * (w * conv.anchors.detach()[a] + (1 - w) * conv.anchors.detach()[b])  # (6, 12)
        if k:
            cert = conv.certify(z)
            assert not cert.dense.any() and cert.residual.max() < 1e-7
        h = conv.mix(z, E)
        (h * torch.randn(h.shape, generator=gen(13), dtype=F64)).sum().backward()
        grads[k] = [conv.log_beta.grad, conv.bias.grad, conv.anchor_weight.grad, E.grad]
    for sparse, dense in zip(grads[2], grads[0], strict=True):
        assert sparse is not None and bool(torch.isfinite(sparse).all()) and sparse.abs().max() > 1e-3
        torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-6)


def test_bf16_autocast_with_the_sparse_gather():
    conv, dense, E = sparse_pair(k=4, beta=1.0, mask_bias=-2.0)
    z = evidence(conv, torch.tensor([1e-6, 1e6, 1e-6, 1e6], dtype=F64), seed=9).float()
    conv, dense, E = conv.float(), dense.float(), E.float()
    assert conv.certify(z).dense.tolist() == [True, False, True, False]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv.mix(z, E)
    assert h.dtype == torch.float32
    torch.testing.assert_close(h, dense.mix(z, E), rtol=2e-2, atol=2e-2)


def test_the_dropped_mass_is_accurate_in_float32():
    """r_i is summed over the dropped weights, so even r_i ~ 1e-12 comes out right in float32 (1 - sum_k would
    only resolve ~1e-7): the certificate is as sharp as the float64 one."""
    conv, _, _ = sparse_pair(k=4, beta=1.0, mask_bias=-2.0)
    z = evidence(conv, torch.logspace(0, 2.5, 60, dtype=F64), seed=10)
    r64 = conv.certify(z).residual
    conv = conv.float()
    shown = (r64 > 1e-30) & (r64 < 1e-6)
    assert shown.sum() >= 5
    for grad in (True, False):  # the autograd path and the in-place one
        with torch.set_grad_enabled(grad):
            r32 = conv.certify(z.float()).residual.double()
        torch.testing.assert_close(r32[shown], r64[shown], rtol=1e-3, atol=0)


def test_sparse_settings_default_for_configs_without_them():
    """Checkpoint configs written before the sparse fields load with the defaults; on the shipped DSL checkpoint
    (V = 82, so the default sparse_k = 128 is the dense product) a k = 8 twin, really sparse, stays within tolerance."""
    assert ConverterConfig(anchor_dim=48, learn_anchors=True, mask_prob=0.99) == ConverterConfig()
    assert (ConverterConfig().sparse_k, ConverterConfig().sparse_tol) == (128, 1e-6)
    den = load("tiny-shakespeare-dsl")
    assert attrs.evolve(den.converter.config, head="evidence") == ConverterConfig()
    sparse = Converter(den.vocab_size, attrs.evolve(den.converter.config, sparse_k=8))
    sparse.load_state_dict(den.converter.state_dict())
    E = den.backbone.vocab_embed.embedding.detach()
    gamma = torch.logspace(-1, 3, den.seq_len)[None]
    state = SNRState.from_tokens(torch.randint(0, den.vocab_size, (1, den.seq_len), generator=gen(3)), gamma,
                                 den.table, gen(4))
    with torch.no_grad():
        want = den.converter(state.z, state.gamma, state.tokens, E).h
        h = sparse(state.z, state.gamma, state.tokens, E).h
        cert = sparse.certify(state.z[0])
    assert cert.dense.any() and not cert.dense.all()
    assert ((h - want).norm(dim=-1) <= 1e-6 * E.norm(dim=1).max() + 1e-6).all()


def test_bad_sparse_settings_raise():
    with pytest.raises(SNRPathError, match=r"'sparse_k' must be a non-negative integer, 0 for always dense \(got -1\)"):
        ConverterConfig(sparse_k=-1)
    with pytest.raises(SNRPathError, match=r"'sparse_tol' must lie in \[0.0, 1.0\] \(got 2\)"):
        ConverterConfig(sparse_tol=2)
    with pytest.raises(SNRPathError, match=r"'sparse_k' must be in \[1, V \+ 1 = 8\] to certify \(got 0\)"):
        Converter(V, ConverterConfig(anchor_dim=D, sparse_k=0)).certify(torch.zeros(1, D))
