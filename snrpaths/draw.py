"""Categorical draws, always in float64.

Gumbel-max in low precision is known to bias masked-diffusion samples (it truncates rare tokens), so every draw
here converts logits to float64 probabilities and inverts the CDF with one uniform per draw.
"""

from __future__ import annotations

import torch

from .streams import Streams, uniform


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``, renormalised. ``[..., V]``.

    A token is kept when the mass strictly before it (an exclusive cumulative sum, so no cancellation) is below
    ``top_p``: the most likely token always survives, so any ``top_p > 0``, however small, is exact (it keeps that
    token alone). Ties are ordered by index (a stable sort), the same on every device.
    """
    if top_p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    before = torch.cat([torch.zeros_like(sorted_p[..., :1]), sorted_p.cumsum(-1)[..., :-1]], dim=-1)
    keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < top_p)
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def keep_top_k(probs: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` most likely tokens, renormalised (``None``, or ``k >= V``, keeps every token). ``[..., V]``.

    Ties at the boundary are ordered by index (a stable sort), so exactly ``min(k, V)`` tokens survive, the same on
    every device.
    """
    if k is None or k >= probs.shape[-1]:
        return probs
    order = probs.argsort(dim=-1, descending=True, stable=True)[..., :k]
    kept = torch.zeros_like(probs).scatter(-1, order, probs.gather(-1, order))
    return kept / kept.sum(-1, keepdim=True)


def probabilities(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None, *,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``softmax(logits / temperature)`` in ``dtype`` (float64 for draws), truncated to the ``top_k`` most likely
    tokens (:func:`keep_top_k`), then nucleus-truncated to ``top_p`` (:func:`nucleus`). ``[..., V]``.

    Exact for every temperature the validator accepts (:func:`snrpaths.validate.temperature`): the logits are
    shifted by their maximum before dividing, so the largest is exactly 0 and the others are <= 0; a tiny
    temperature sends them to -inf (probability 0) instead of overflowing to inf - inf = NaN. ``temperature = 0``
    is the limit: argmax, with the mass split evenly between tied maxima. At the defaults this is exactly
    ``torch.softmax(logits.to(dtype), -1)``.
    """
    x = logits.to(dtype)
    if temperature == 0:
        top = (x == x.amax(-1, keepdim=True)).to(dtype)
        probs = top / top.sum(-1, keepdim=True)
    elif temperature == 1:
        probs = torch.softmax(x, dim=-1)
    else:
        probs = torch.softmax((x - x.amax(-1, keepdim=True)) / temperature, dim=-1)
    return nucleus(keep_top_k(probs, top_k), top_p)


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
