"""Categorical draws, always in float64.

Gumbel-max in low precision is known to bias masked-diffusion samples (it truncates rare tokens), so every draw
here converts logits to float64 probabilities and inverts the CDF with one uniform per draw.
"""

from __future__ import annotations

import torch

from .streams import Streams, uniform


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``, renormalised. ``[..., V]``."""
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    # A token is kept when the mass strictly before it is below top_p, so the top token always survives.
    keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def probabilities(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """``softmax(logits / temperature)`` in float64, nucleus-truncated to ``top_p``. ``[..., V]``."""
    probs = torch.softmax(logits.to(torch.float64) / temperature, dim=-1)
    return nucleus(probs, top_p)


def categorical(probs: torch.Tensor, source: torch.Generator | Streams, n: int | None = None) -> torch.Tensor:
    """Draws from each row of ``probs`` (``[..., V]``, nonnegative, rows summing to 1).

    ``source`` is a ``torch.Generator`` or per-row :class:`~snrpaths.streams.Streams` (then ``probs`` is
    ``[B, ..., V]`` with ``B`` its rows, and row ``b`` reads only its own stream).
    Returns ``[...]`` int64 indices (one draw per row), or ``[..., n]`` when ``n`` draws per row are asked for.
    """
    u = uniform(source, probs.shape[:-1] + (n or 1,), device=probs.device)
    idx = inverse_cdf(probs, u)
    return idx if n is not None else idx.squeeze(-1)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The categories of ``probs`` (``[..., V]``) at float64 uniforms ``u`` (``[..., k]``): ``[..., k]`` int64."""
    cdf = probs.to(torch.float64).cumsum(-1).contiguous()
    # Scale u by the row total so rounding in the cumulative sum can never push a draw past the last token.
    return torch.searchsorted(cdf, u * cdf[..., -1:], right=True).clamp_max(probs.shape[-1] - 1)
