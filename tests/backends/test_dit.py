"""The DiT denoiser against MDLM: synthetic checkpoints in MDLM's exact key layout, random weights, tiny sizes, and
an independent float64 re-implementation of MDLM's forward.

The reference follows MDLM's ``models/dit.py`` (``DIT.forward`` with ``sigma = 0``) step by step, reading the raw
state dict: explicit layer norm and GELU formulas, flash-attn's half-split rotary form, attention by einsum. It shares
no code with ``snrpaths.backends``.
"""

import json
import math
from collections import OrderedDict

import pytest
import safetensors.torch
import torch

from snrpaths import Denoiser, SNRState, SNRTypeError, ShapeError, SNRPathError
from snrpaths.backends import Converter, ConverterConfig, DiT, DiTConfig, DSLDenoiser, load

F64 = torch.float64
SIZES = dict(vocab_size=11, seq_len=8, hidden=32, cond_dim=16, n_blocks=2, n_heads=4)
FREQ_DIM = 256


def mdlm_parameter_shapes(vocab_size, hidden, cond_dim, n_blocks, **_):
    """MDLM backbone parameters in ``backbone.parameters()`` order (the EMA's order), without the backbone. prefix."""
    shapes = OrderedDict()
    shapes["vocab_embed.embedding"] = (vocab_size + 1, hidden)
    shapes["sigma_map.mlp.0.weight"] = (cond_dim, FREQ_DIM)
    shapes["sigma_map.mlp.0.bias"] = (cond_dim,)
    shapes["sigma_map.mlp.2.weight"] = (cond_dim, cond_dim)
    shapes["sigma_map.mlp.2.bias"] = (cond_dim,)
    for n in range(n_blocks):
        shapes[f"blocks.{n}.norm1.weight"] = (hidden,)
        shapes[f"blocks.{n}.attn_qkv.weight"] = (3 * hidden, hidden)
        shapes[f"blocks.{n}.attn_out.weight"] = (hidden, hidden)
        shapes[f"blocks.{n}.norm2.weight"] = (hidden,)
        shapes[f"blocks.{n}.mlp.0.weight"] = (4 * hidden, hidden)
        shapes[f"blocks.{n}.mlp.0.bias"] = (4 * hidden,)
        shapes[f"blocks.{n}.mlp.2.weight"] = (hidden, 4 * hidden)
        shapes[f"blocks.{n}.mlp.2.bias"] = (hidden,)
        shapes[f"blocks.{n}.adaLN_modulation.weight"] = (6 * hidden, cond_dim)
        shapes[f"blocks.{n}.adaLN_modulation.bias"] = (6 * hidden,)
    shapes["output_layer.norm_final.weight"] = (hidden,)
    shapes["output_layer.linear.weight"] = (vocab_size + 1, hidden)
    shapes["output_layer.linear.bias"] = (vocab_size + 1,)
    shapes["output_layer.adaLN_modulation.weight"] = (2 * hidden, cond_dim)
    shapes["output_layer.adaLN_modulation.bias"] = (2 * hidden,)
    return shapes


def random_mdlm_state_dict(seed=0, **sizes):
    """``backbone.*`` float32 tensors in MDLM's layout, random (nonzero adaLN and head, unlike MDLM's init)."""
    sizes = {**SIZES, **sizes}
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for name, shape in mdlm_parameter_shapes(**sizes).items():
        fan_in = shape[1] if len(shape) == 2 else 1
        scale = 1.0 if name == "vocab_embed.embedding" else 0.5 / math.sqrt(fan_in)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm_final.weight"):
            sd["backbone." + name] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd["backbone." + name] = scale * torch.randn(shape, generator=g)
        if name == "sigma_map.mlp.2.bias":  # the rotary buffer sits between sigma_map and blocks in MDLM's dict
            head_dim = sizes["hidden"] // sizes["n_heads"]
            sd["backbone.rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)
    return sd


def write_hf_folder(folder, sd, **sizes):
    """An MDLM Hugging Face snapshot: config.json (model_type mdlm) + model.safetensors."""
    sizes = {**SIZES, **sizes}
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["MDLM"], "model_type": "mdlm", "vocab_size": sizes["vocab_size"] + 1,
        "model_length": sizes["seq_len"], "hidden_dim": sizes["hidden"], "cond_dim": sizes["cond_dim"],
        "n_blocks": sizes["n_blocks"], "n_heads": sizes["n_heads"], "dropout": 0.1, "time_conditioning": False,
        "var_min": True, "return_dict": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, folder / "model.safetensors")
    return folder


def mdlm_reference_logits(sd, ids, n_heads):
    """MDLM's ``DIT.forward(ids, sigma=0)`` in float64, mask logit dropped: ``(B, L, V)``."""
    p = {k.removeprefix("backbone."): v.to(F64) for k, v in sd.items()}

    def linear(x, prefix, bias=True):
        y = x @ p[prefix + ".weight"].T
        return y + p[prefix + ".bias"] if bias else y

    def layer_norm(x, weight):
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * weight

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def silu(x):
        return x * torch.sigmoid(x)

    B, L = ids.shape
    H = p["vocab_embed.embedding"].shape[1]
    hd = H // n_heads
    x = p["vocab_embed.embedding"][ids]  # (B, L, H)

    half = FREQ_DIM // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=F64) / half)
    args = torch.zeros(1, 1, dtype=F64) * freqs  # sigma = 0
    c = silu(linear(silu(linear(torch.cat([torch.cos(args), torch.sin(args)], -1), "sigma_map.mlp.0")),
                    "sigma_map.mlp.2"))  # (1, cond)

    angles = torch.arange(L, dtype=F64)[:, None] * p["rotary_emb.inv_freq"][None, :]  # (L, hd / 2)
    cos, sin = torch.cos(angles)[None, :, None, :], torch.sin(angles)[None, :, None, :]

    def rotary(t):  # (B, L, nh, hd): flash-attn's apply_rotary_emb, non-interleaved
        t1, t2 = t[..., : hd // 2], t[..., hd // 2 :]
        return torch.cat([t1 * cos - t2 * sin, t1 * sin + t2 * cos], -1)

    n_blocks = len({k.split(".")[1] for k in p if k.startswith("blocks.")})
    for n in range(n_blocks):
        b = f"blocks.{n}"
        mod = linear(c, b + ".adaLN_modulation")[:, None, :]  # (1, 1, 6H)
        shift1, scale1, gate1, shift2, scale2, gate2 = [mod[..., i * H : (i + 1) * H] for i in range(6)]
        h = layer_norm(x, p[b + ".norm1.weight"]) * (1 + scale1) + shift1
        qkv = linear(h, b + ".attn_qkv", bias=False).reshape(B, L, 3, n_heads, hd)
        q, k, v = rotary(qkv[:, :, 0]), rotary(qkv[:, :, 1]), qkv[:, :, 2]
        att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd), dim=-1)
        y = torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, L, H)
        x = x + gate1 * linear(y, b + ".attn_out", bias=False)
        h = layer_norm(x, p[b + ".norm2.weight"]) * (1 + scale2) + shift2
        x = x + gate2 * linear(gelu_tanh(linear(h, b + ".mlp.0")), b + ".mlp.2")

    mod = linear(c, "output_layer.adaLN_modulation")[:, None, :]
    shift, scale = mod[..., :H], mod[..., H:]
    logits = linear(layer_norm(x, p["output_layer.norm_final.weight"]) * (1 + scale) + shift, "output_layer.linear")
    return logits[..., :-1]  # MDLM's substitution parameterisation never predicts [MASK]


# -- tests ---------------------------------------------------------------------------------------------------------

V, L = SIZES["vocab_size"], SIZES["seq_len"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def endpoint_state(table, batch=4, seed=0):
    """Rows of clean tokens and [MASK]s in a random pattern (all-masked and all-clean rows included)."""
    g = gen(seed)
    tokens = torch.randint(0, V, (batch, L), generator=g)
    clean = torch.rand(batch, L, generator=g) < 0.5
    clean[0], clean[1] = False, True
    gamma = torch.where(clean, math.inf, 0.0).to(table.anchors.dtype)
    return SNRState.from_tokens(tokens, gamma, table, g), torch.where(clean, tokens, V)


def lightning_ckpt(path, raw, shadow):
    """A Lightning checkpoint as MDLM writes it: state_dict, loop and optimizer state, and the EMA's shadow list."""
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "2.2.1", "state_dict": raw,
            "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}}, "optimizer_states": [{}],
            "ema": {"decay": 0.9999, "num_updates": 1200, "shadow_params": shadow}}
    torch.save(ckpt, path)
    return path


_TINY = {}


def load_tiny(device=None, head="evidence"):
    """The synthetic MDLM checkpoint with the default converter (d = 48), float32, cached per process."""
    if "sd" not in _TINY:
        _TINY["sd"] = random_mdlm_state_dict(seed=4)
    backbone = DiT(DiTConfig(**SIZES, dropout=0.1))
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in _TINY["sd"].items()})
    den = DSLDenoiser(backbone, Converter(V, ConverterConfig(head=head)))
    return den.to(device).eval()


def test_protocol_and_layout():
    den = DSLDenoiser.build(DiTConfig(vocab_size=V, seq_len=L, hidden=32, cond_dim=16, n_blocks=2, n_heads=4))
    assert isinstance(den, Denoiser) and den.vocab_size == V and den.seq_len == L
    # Parameter names and order are MDLM's (the EMA shadow list relies on the order).
    names = [n.removeprefix("backbone.") for n, _ in den.backbone.named_parameters(prefix="backbone")]
    assert names == list(mdlm_parameter_shapes(**SIZES))
    # MDLM's initialisation: adaLN and the head start at zero, so a fresh model predicts uniform logits.
    assert all(not b.adaLN_modulation.weight.detach().any() for b in den.backbone.blocks)
    state, _ = endpoint_state(den.table)
    assert torch.equal(den.logits(state), torch.zeros(4, L, V))


def test_hf_folder_matches_mdlm_on_endpoint_states(tmp_path):
    sd = random_mdlm_state_dict(seed=1)
    den = load(write_hf_folder(tmp_path / "mdlm-owt", sd), dtype=torch.float64)
    assert den.seq_len == L and den.vocab_size == V and not den.training
    state, ids = endpoint_state(den.table)
    ours = den.logits(state)
    ref = mdlm_reference_logits(sd, ids, SIZES["n_heads"])
    assert ours.shape == (4, L, V) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    # Not vacuous: the logits vary (by position, token and [MASK]) far beyond the tolerance.
    assert float(ref.std()) > 0.1 and (ref[0] - ref[1]).abs().max() > 0.1


def test_lightning_ckpt_with_ema_matches_mdlm(tmp_path):
    raw = random_mdlm_state_dict(seed=2)
    ema_sd = random_mdlm_state_dict(seed=3)
    shadow = [ema_sd["backbone." + k] for k in mdlm_parameter_shapes(**SIZES)]  # parameters only, in order
    path = lightning_ckpt(tmp_path / "last.ckpt", raw, shadow)
    ema_model = load(path, seq_len=L, dtype=torch.float64)
    raw_model = load(path, seq_len=L, ema=False, dtype=torch.float64)
    state, ids = endpoint_state(ema_model.table, seed=5)
    ref_ema = mdlm_reference_logits({**raw, **{k: ema_sd[k] for k in ema_sd if "inv_freq" not in k}}, ids, 4)
    ref_raw = mdlm_reference_logits(raw, ids, 4)
    torch.testing.assert_close(ema_model.logits(state), ref_ema, rtol=0, atol=1e-6)
    torch.testing.assert_close(raw_model.logits(state), ref_raw, rtol=0, atol=1e-6)
    assert (ref_ema - ref_raw).abs().max() > 1e-2


@pytest.mark.parametrize("head", ["plain", "evidence"])
def test_finite_snr_gives_finite_logits(head):
    den = load_tiny(head=head)
    g = gen(7)
    tokens = torch.randint(0, V, (6, L), generator=g)
    gammas = torch.logspace(-6, 6, 13)
    gamma = gammas[torch.randint(0, 13, (6, L), generator=g)]
    gamma[0] = gammas[0]
    gamma[1] = gammas[-1]
    gamma[2, :3] = math.inf
    gamma[2, 3:5] = 0.0
    state = SNRState.from_tokens(tokens, gamma, den.table, g)
    out = den.logits(state)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    # gamma = 1e6 localises: the converter's input is the clean token's row, so the backbone's logits are the
    # endpoint ones; the evidence head adds z . x ~ 1e6 to them, which puts all the mass on the true token.
    clean = SNRState.from_tokens(tokens[1:2], torch.full((1, L), math.inf), den.table, g)
    if head == "plain":
        torch.testing.assert_close(out[1:2], den.logits(clean), rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(out[1].argmax(-1), tokens[1])
        assert bool((out[1].log_softmax(-1).gather(-1, tokens[1, :, None]) > -1e-6).all())


def test_forward_is_the_training_entry_point():
    den = load_tiny()
    state, _ = endpoint_state(den.table)
    g = gen(3)
    tokens = torch.randint(0, V, (4, L), generator=g)
    gamma = torch.rand(4, L, generator=g) * 5
    gamma[:, 0] = math.inf
    gamma[:, 1] = 0.0
    noisy = SNRState.from_tokens(tokens, gamma, den.table, g)
    # Tokens are read only where gamma = inf, so a trainer may pass the full target sequence.
    torch.testing.assert_close(den(noisy.z, noisy.gamma, tokens), den.logits(noisy), rtol=0, atol=0)
    den.train()
    loss = torch.nn.functional.cross_entropy(den(noisy.z, noisy.gamma, tokens).flatten(0, 1), tokens.flatten())
    loss.backward()
    for p in (den.converter.log_beta, den.converter.bias, den.converter.anchor_weight, den.backbone.vocab_embed.embedding):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0)
    # Dropout acts in training mode through forward, never through the protocol's logits.
    assert not torch.equal(den(noisy.z, noisy.gamma, tokens), den(noisy.z, noisy.gamma, tokens))
    assert torch.equal(den.logits(noisy), den.logits(noisy))


def test_bad_inputs_raise_before_any_work():
    den = load_tiny()
    state, _ = endpoint_state(den.table)
    z, gamma, tokens = state.z, state.gamma, state.tokens
    with pytest.raises(SNRTypeError, match="SNRState"):
        den.logits((z, gamma, tokens))
    short = SNRState.masked(2, L - 1, den.table)
    with pytest.raises(ShapeError, match=f"L = {L - 1}.*seq_len = {L}"):
        den.logits(short)
    with pytest.raises(ShapeError, match=r"'z' must have shape \[4, 8, 48\]"):
        den(torch.zeros(4, L, 5), gamma, tokens)
    with pytest.raises(ShapeError, match=r"'tokens' must have shape \[4, 8\]"):
        den(z, gamma, tokens[:, :3])
    with pytest.raises(ShapeError, match=r"'gamma' must have shape \[B, L\]"):
        den(z, gamma[0], tokens)
    with pytest.raises(ShapeError, match="integer ids"):
        den(z, gamma, tokens.float())
    with pytest.raises(ShapeError, match="floating point"):
        den(z.long(), gamma, tokens)
    with pytest.raises(SNRPathError, match=r"outside \[0, inf\]"):
        den(z, torch.full_like(gamma, -1.0), tokens)
    with pytest.raises(SNRPathError, match=r"ids outside \[0, 10\].*e\.g\. 11"):
        den(z, torch.full_like(gamma, math.inf), torch.full_like(tokens, V))
    with pytest.raises(SNRPathError, match="'n_heads' must divide 'hidden'"):
        DiTConfig(vocab_size=V, hidden=30, n_heads=4)
    with pytest.raises(SNRPathError, match="head size"):
        DiTConfig(vocab_size=V, hidden=12, n_heads=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_within_bf16_tolerance():
    cpu = load_tiny()
    gpu = load_tiny(device="cuda")
    g = gen(11)
    tokens = torch.randint(0, V, (4, L), generator=g)
    gamma = torch.logspace(-2, 3, L).expand(4, L).clone()
    gamma[0], gamma[1] = 0.0, math.inf
    state = SNRState.from_tokens(tokens, gamma, cpu.table, g)
    want = cpu.logits(state)
    on_gpu = SNRState(*(getattr(state, f).cuda() for f in ("gamma", "z", "tokens", "fixed", "confidence")))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = gpu.logits(on_gpu).float().cpu()
    torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * float(want.abs().max()))
    torch.testing.assert_close(gpu.logits(on_gpu).cpu(), want, rtol=1e-3, atol=1e-3)  # float32 on both
