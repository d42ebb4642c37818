"""The MDLM-layout diffusion transformer (DiT) backbone.

Parameter names mirror MDLM's ``models/dit.py`` (``vocab_embed.embedding``, ``sigma_map.mlp.{0,2}``,
``rotary_emb.inv_freq``, ``blocks.N.*``, ``output_layer.*``), so an MDLM state dict loads with its ``backbone.``
prefix stripped and nothing renamed. One block, with ``c`` the conditioning vector and
``mod(u) = u * (1 + scale) + shift``:

    x = x + gate_attn * attn_out(attention(rope(q), rope(k), v)),  q, k, v = attn_qkv(mod(norm1(x)))
    x = x + gate_mlp  * mlp(mod(norm2(x)))

and ``shift/scale/gate`` (for attention and MLP) come from ``adaLN_modulation(c)``. DSL feeds the timestep embedder
the constant ``t = 0`` (the paper's choice; it is also what MDLM does with ``time_conditioning: false``), so ``c`` is
one vector shared by every sequence.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn as nn
import torch.nn.functional as F

from snrpaths import validate
from snrpaths.errors import SNRPathError


_POSITIVE = validate.field(validate.integer)


def _check_heads(config: "DiTConfig") -> None:
    if config.hidden % config.n_heads:
        raise SNRPathError(f"'n_heads' must divide 'hidden' (got n_heads={config.n_heads}, hidden={config.hidden})")
    if (config.hidden // config.n_heads) % 2:
        raise SNRPathError(
            f"the head size hidden / n_heads must be even for rotary embeddings (got {config.hidden // config.n_heads})"
        )


@attrs.frozen
class DiTConfig:
    """Sizes of an MDLM-layout DiT. Defaults are MDLM's OpenWebText "small" model, except ``vocab_size``."""

    vocab_size: int = attrs.field(converter=_POSITIVE)  # V real tokens; the embedding adds a last row, [MASK]
    seq_len: int = attrs.field(default=1024, converter=_POSITIVE)  # L the model is built for (MDLM's model_length)
    hidden: int = attrs.field(default=768, converter=_POSITIVE)  # width of the residual stream (MDLM's hidden_dim)
    cond_dim: int = attrs.field(default=128, converter=_POSITIVE)  # width of the timestep conditioning vector c
    n_blocks: int = attrs.field(default=12, converter=_POSITIVE)  # number of transformer blocks
    n_heads: int = attrs.field(default=12, converter=_POSITIVE)  # attention heads; hidden / n_heads must be even
    mlp_ratio: int = attrs.field(default=4, converter=_POSITIVE)  # MLP width = mlp_ratio * hidden
    freq_dim: int = attrs.field(default=256, converter=_POSITIVE)  # sinusoidal timestep features fed to sigma_map
    # rotary base of a freshly built model (a loaded one keeps its stored inv_freq)
    rope_base: float = attrs.field(default=10000.0, converter=validate.field(
        validate.number, low=1.0, high=math.inf, low_open=True, high_open=True, phrase="a finite number > 1"))
    # residual dropout while training (MDLM's default); never applied by Denoiser.logits
    dropout: float = attrs.field(default=0.1, converter=validate.field(validate.number, low=0.0, high=1.0,
                                                                         high_open=True))

    def __attrs_post_init__(self) -> None:
        _check_heads(self)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads


class LayerNorm(nn.Module):
    """``LayerNorm(x) * weight`` with no bias, normalised in at least float32 (as MDLM, which disables autocast)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = torch.promote_types(x.dtype, torch.float32)
        return F.layer_norm(x.to(up), x.shape[-1:]).to(x.dtype) * self.weight


class Embedding(nn.Module):
    """The ``(V + 1, hidden)`` input table ``E``; MDLM's ``EmbeddingLayer`` (row ``V`` is ``[MASK]``)."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(rows, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))  # MDLM's initialisation

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]


class TimestepEmbedder(nn.Module):
    """``c = mlp([cos(t f), sin(t f)])``, ``f_j = 10000^(-j / (freq_dim/2))``: (N,) times -> (N, cond_dim)."""

    def __init__(self, cond_dim: int, freq_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs  # (N, half)
        features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.freq_dim % 2:
            features = F.pad(features, (0, 1))
        return self.mlp(features.to(self.mlp[0].weight.dtype))  # (N, cond_dim)


class Rotary(nn.Module):
    """Rotary position tables from the stored ``inv_freq`` (``base^(-2j / head_dim)``), rotate-half layout."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim))

    def _apply(self, fn, recurse=True):
        # model.to(torch.bfloat16) would round inv_freq to 8 bits and turn far positions' angles by radians: keep it in
        # at least float32 (the cos/sin tables are cast to the activations' dtype at use, as MDLM does).
        inv_freq = self.inv_freq
        super()._apply(fn, recurse)
        if not inv_freq.is_meta:
            self.inv_freq = inv_freq.to(self.inv_freq.device, torch.promote_types(self.inv_freq.dtype, inv_freq.dtype))
        return self

    def forward(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Recomputed each call (L x head_dim, negligible) rather than cached: no hidden state to go stale.
        t = torch.arange(seq_len, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq)  # (L, head_dim / 2)
        emb = torch.cat([freqs, freqs], dim=-1)  # (L, head_dim)
        return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x cos + rotate_half(x) sin`` on ``(B, nh, L, hd)`` with ``(L, hd)`` tables (flash-attn's non-interleaved)."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """One DDiT block: adaLN-modulated bidirectional attention with rotary q, k, then a GELU(tanh) MLP."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        h = config.hidden
        self.n_heads = config.n_heads
        self.norm1 = LayerNorm(h)
        self.attn_qkv = nn.Linear(h, 3 * h, bias=False)
        self.attn_out = nn.Linear(h, h, bias=False)
        self.norm2 = LayerNorm(h)
        self.mlp = nn.Sequential(
            nn.Linear(h, config.mlp_ratio * h), nn.GELU(approximate="tanh"), nn.Linear(config.mlp_ratio * h, h)
        )
        self.adaLN_modulation = nn.Linear(config.cond_dim, 6 * h)
        nn.init.zeros_(self.adaLN_modulation.weight)  # zero-init: every block starts as the identity
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, cos, sin, c, dropout: float, keys=None):
        """``(B, n, H)`` -> ``(B, n, H)``: the block on the hidden states of ``n`` positions with rotary tables ``cos``,
        ``sin`` ``(n, hd)`` of those positions. ``keys`` (cached block decoding, :meth:`DiT.refresh`): a function
        ``(k, v) -> (k, v)`` from the positions' own rotated keys and values ``(B, nh, n, hd)`` to the ones they
        attend over ``(B, nh, L, hd)``; without it they attend over each other."""
        B, L, H = x.shape
        # (1, 1, H) each: c is shared by the batch (constant timestep)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        qkv = self.attn_qkv(modulate(self.norm1(x), shift1, scale1))  # (B, L, 3H), laid out (three, heads, hd)
        q, k, v = qkv.view(B, L, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, nh, L, hd) each
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if keys is not None:
            k, v = keys(k, v)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, L, hd), scale 1/sqrt(hd), no mask
        y = y.transpose(1, 2).reshape(B, L, H)
        x = x + gate1 * F.dropout(self.attn_out(y), dropout, self.training)
        return x + gate2 * F.dropout(self.mlp(modulate(self.norm2(x), shift2, scale2)), dropout, self.training)


class FinalLayer(nn.Module):
    """``linear(mod(norm_final(x)))`` with its own adaLN (shift, scale); both linear maps zero-initialised."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.norm_final = LayerNorm(config.hidden)
        self.linear = nn.Linear(config.hidden, config.vocab_size + 1)
        self.adaLN_modulation = nn.Linear(config.cond_dim, 2 * config.hidden)
        for p in (*self.linear.parameters(), *self.adaLN_modulation.parameters()):
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)  # (1, 1, H) each
        x = modulate(self.norm_final(x), shift, scale)
        # The head keeps MDLM's [MASK] row (last) for checkpoint compatibility but never computes it: DSL, like
        # MDLM's substitution parameterisation, gives [MASK] probability 0, so logits cover the V real tokens only.
        V = self.linear.out_features - 1
        return F.linear(x, self.linear.weight[:V], self.linear.bias[:V])  # (B, L, V)


class DiT(nn.Module):
    """The MDLM DiT: ``(B, L, hidden)`` input embeddings -> ``(B, L, V)`` logits over the real tokens.

    ``backbone(backbone.vocab_embed(ids))`` is MDLM's forward on token ids (``ids = V`` for ``[MASK]``) with the
    mask logit dropped; the DSL converter feeds soft embeddings instead.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.vocab_embed = Embedding(config.vocab_size + 1, config.hidden)
        self.sigma_map = TimestepEmbedder(config.cond_dim, config.freq_dim)
        self.rotary_emb = Rotary(config.head_dim, config.rope_base)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_blocks))
        self.output_layer = FinalLayer(config)

    def forward(self, x: torch.Tensor, dropout: float | None = None) -> torch.Tensor:
        """Logits ``(B, L, V)`` from input embeddings ``x`` ``(B, L, hidden)``.

        ``dropout`` defaults to ``config.dropout`` in training mode and 0 in eval mode.
        """
        dropout = (self.config.dropout if self.training else 0.0) if dropout is None else dropout
        return self._run(x, *self.rotary_emb(x.shape[1]), dropout, [None] * len(self.blocks))

    def refresh(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The eval forward on input embeddings ``x`` ``(B, L, hidden)`` that also keeps what cached block decoding
        reads: ``(logits, cache)``, ``logits`` ``(B, L, V)`` bit for bit ``forward(x, dropout=0)``'s and ``cache``
        ``(B, n_blocks, 2, nh, L, hd)`` every block's rotated keys and values of every position."""
        kept = []

        def keep(k, v):
            kept.append(torch.stack((k, v), 1))  # (B, 2, nh, L, hd)
            return k, v

        logits = self._run(x, *self.rotary_emb(x.shape[1]), 0.0, [keep] * len(self.blocks))
        return logits, torch.stack(kept, 1)

    def cached(self, x: torch.Tensor, index: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """``(B, n, V)`` logits of the ``n`` positions ``index`` (sorted) from their input embeddings ``x``
        ``(B, n, hidden)``; in every block they attend over the ``cache`` of :meth:`refresh`, their own entries
        replaced by their fresh keys and values (Fast-dLLM's cache: the other positions' are not recomputed).
        With ``x`` the refresh's own rows this is the refresh's logits there, up to float rounding."""
        cos, sin = self.rotary_emb(cache.shape[-2])  # (L, hd) each

        def reader(layer: int):
            return lambda k, v: (cache[:, layer, 0].index_copy(2, index, k), cache[:, layer, 1].index_copy(2, index, v))

        return self._run(x, cos[index], sin[index], 0.0, [reader(i) for i in range(len(self.blocks))])

    def _run(self, x, cos, sin, dropout: float, keys: list) -> torch.Tensor:
        """The blocks and the head on ``x`` ``(B, n, hidden)``; block ``i`` attends through ``keys[i]``."""
        t = torch.zeros(1, device=x.device)  # the constant timestep: the evidence itself says how noisy it is
        c = F.silu(self.sigma_map(t))  # (1, cond_dim)
        for block, kv in zip(self.blocks, keys):
            x = block(x, cos, sin, c, dropout, kv)
        return self.output_layer(x, c)
