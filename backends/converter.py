"""The DSL converter: per-position evidence ``z_i`` -> a soft input embedding for the backbone.

Keys ``K = [x_1 .. x_V ; 0]`` (V + 1 slots, the last is ``[MASK]`` with a zero key), and

    q(v | z_i) = softmax_v(beta <z_i, K_v> + b_v),      h_i = sum_v q(v | z_i) E_v      (DESIGN.md section 4)

with ``E`` the backbone's (V + 1)-row input embedding. ``beta`` starts at ``1 / sqrt(d)`` and ``b`` at 0 except
``b_mask = log(99 V)``, so that ``z = 0`` gives ``p([MASK]) = 0.99``.

Endpoints bypass the softmax entirely, so an MDLM checkpoint run on endpoint states is exactly MDLM: a position at
``gamma = 0`` gets exactly ``E_[MASK]`` and a clean position exactly ``E_token``; only positions with finite
``0 < gamma < inf`` pay for the ``(V + 1)``-way mixture.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn as nn
import torch.nn.functional as F

from snrpaths.errors import SNRPathError

#: Logit entries per chunk of the dense mixture (64 MB in float32): bounds memory at any batch size.
CHUNK_ENTRIES = 2**24


def _check_mask_prob(instance, attribute, value):
    if not (isinstance(value, (int, float)) and 0 < value < 1):
        raise SNRPathError(f"'mask_prob' must be a number in (0, 1) (got {value!r})")


def _check_dim(instance, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SNRPathError(f"'anchor_dim' must be a positive integer (got {value!r})")


@attrs.frozen
class ConverterConfig:
    """The converter's settings; the anchors are its parameters, so they are described here too."""

    anchor_dim: int = attrs.field(default=48, validator=_check_dim)  # d of the unit-norm anchors (public DSL code: 48)
    learn_anchors: bool = True  # learn anchor directions (norm fixed to 1); False keeps them frozen (a buffer)
    mask_prob: float = attrs.field(default=0.99, validator=_check_mask_prob)  # p([MASK] | z = 0) at initialisation


class Converter(nn.Module):
    """Soft input embeddings from evidence. Parameters: ``anchor_weight`` (V, d) raw anchor directions (the anchors
    are its rows scaled to unit norm), ``beta`` (scalar) and ``bias`` (V + 1,), the last entry for ``[MASK]``.

    Args:
        vocab_size: V real tokens.
        seed: seeds the initial anchors (uniform on the sphere), independent of torch's global RNG.
    """

    def __init__(self, vocab_size: int, config: ConverterConfig = ConverterConfig(), seed: int = 0):
        super().__init__()
        self.config = config
        d = config.anchor_dim
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(vocab_size, d, generator=g, device="cpu")
        w = w / w.norm(dim=1, keepdim=True)
        if config.learn_anchors:
            self.anchor_weight = nn.Parameter(w)
        else:
            self.register_buffer("anchor_weight", w)
        self.beta = nn.Parameter(torch.tensor(1 / math.sqrt(d)))
        bias = torch.zeros(vocab_size + 1)
        # At z = 0 every token has logit 0 and [MASK] has b_mask: p(mask) = e^b / (e^b + V) = mask_prob.
        bias[-1] = math.log(config.mask_prob / (1 - config.mask_prob) * vocab_size)
        self.bias = nn.Parameter(bias)

    @property
    def vocab_size(self) -> int:
        return self.anchor_weight.shape[0]

    @property
    def anchors(self) -> torch.Tensor:
        """``(V, d)`` unit-norm anchors ``x_v = w_v / ||w_v||`` (normalised in at least float32)."""
        w = self.anchor_weight
        up = w.to(torch.promote_types(w.dtype, torch.float32))
        return (up / up.norm(dim=1, keepdim=True)).to(w.dtype)

    def forward(self, z: torch.Tensor, gamma: torch.Tensor, tokens: torch.Tensor, embedding: torch.Tensor):
        """Soft embeddings ``h`` ``(B, L, H)`` (see the module docstring).

        Args:
            z: ``(B, L, d)`` evidence; read only where ``0 < gamma < inf``.
            gamma: ``(B, L)`` SNRs in ``[0, inf]``; 0 is ``[MASK]``, inf is clean.
            tokens: ``(B, L)`` ids, read only where ``gamma = inf`` (must be in ``[0, V)`` there).
            embedding: ``(V + 1, H)`` the backbone's input table ``E``, ``[MASK]`` last.

        One device-to-host transfer per call: it checks the values (SNRs, clean ids) and sizes the dense part.
        """
        B, L = gamma.shape
        V = self.vocab_size
        clean = torch.isinf(gamma)
        finite = (gamma > 0) & ~clean
        bad_gamma = (gamma < 0) | torch.isnan(gamma)
        bad_token = clean & ((tokens < 0) | (tokens >= V))
        n_bad_gamma, n_bad_token, n_finite = torch.stack([bad_gamma.sum(), bad_token.sum(), finite.sum()]).tolist()
        if n_bad_gamma:
            first = gamma[bad_gamma][0].item()
            raise SNRPathError(
                f"'gamma' has {n_bad_gamma} entries outside [0, inf] (e.g. {first}); SNRs must lie in [0, inf]"
            )
        if n_bad_token:
            first = tokens[bad_token][0].item()
            raise SNRPathError(
                f"'tokens' has {n_bad_token} clean (gamma = inf) positions with ids outside [0, {V - 1}] (e.g. {first})"
            )
        ids = torch.where(clean, tokens, V)  # (B, L): the token where clean, [MASK] elsewhere
        h = embedding[ids]  # (B, L, H): endpoint rows, exact by construction
        if n_finite == 0:
            return h
        idx = torch.nonzero_static(finite.flatten(), size=n_finite).squeeze(1)  # (n,), no second sync
        soft = self.mix(z.reshape(B * L, -1)[idx], embedding)  # (n, H)
        return h.reshape(B * L, -1).index_copy(0, idx, soft.to(h.dtype)).view(B, L, -1)

    def mix(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``sum_v softmax_v(beta <z, K_v> + b_v) E_v`` for ``(N, d)`` evidence -> ``(N, H)``, no endpoint handling.

        The logits and softmax run in at least float32 even under autocast: at gamma = 1e6 the logits reach ~1e5
        and bf16 would blur which token wins. The ``q @ E`` product follows autocast (it is the costly part).
        """
        keys = F.pad(self.anchors, (0, 0, 0, 1))  # (V + 1, d): the [MASK] key is the zero vector
        up = torch.promote_types(torch.promote_types(z.dtype, keys.dtype), torch.float32)
        rows = max(1, CHUNK_ENTRIES // keys.shape[0])
        out = []
        for start in range(0, z.shape[0], rows):
            with torch.autocast(z.device.type, enabled=False):
                logits = (self.beta.to(up) * z[start : start + rows].to(up)) @ keys.to(up).T + self.bias.to(up)
                q = torch.softmax(logits, dim=-1)  # (n, V + 1)
            out.append(q.to(embedding.dtype) @ embedding)  # (n, H)
        return torch.cat(out)
