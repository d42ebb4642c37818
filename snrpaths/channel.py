"""The localization channel: corruption, posterior logits, and the stochastic-localization increment.

Shapes: ``B`` batch, ``L`` positions, ``d`` anchor dimension, ``V`` vocabulary.
``gamma`` is a ``[B, L]`` tensor of per-position SNRs in ``[0, inf]``. ``gamma = 0`` is ``[MASK]`` (``z = 0``
exactly); ``gamma = inf`` is a clean token, whose evidence would be infinite: it is stored as ``z = 0`` and the
token itself is carried separately (see :class:`snrpaths.SNRState`), so no ``inf * 0`` ever reaches a tensor.
"""

from __future__ import annotations

import torch

from .errors import SNRPathError, ShapeError, check_shape
from .geometry import TokenTable
from .streams import Streams, normal


def check_gamma(name: str, gamma: torch.Tensor) -> None:
    """Raise unless ``gamma`` is a floating tensor with every entry in ``[0, inf]`` (no NaN, no negatives)."""
    if not isinstance(gamma, torch.Tensor) or not gamma.is_floating_point():
        raise ShapeError(f"{name!r} must be a floating-point torch.Tensor of SNRs (got {gamma!r:.60})")
    if bool(torch.isnan(gamma).any()):
        raise SNRPathError(f"{name!r} contains NaN; SNRs must lie in [0, inf]")
    if gamma.numel() and float(gamma.min()) < 0:
        raise SNRPathError(f"{name!r} contains negative SNR {float(gamma.min()):.4g}; SNRs must lie in [0, inf]")


def corrupt(tokens: torch.Tensor, gamma: torch.Tensor, table: TokenTable,
            generator: torch.Generator | Streams) -> torch.Tensor:
    """Evidence ``z = gamma x_s + sqrt(gamma) eps``, ``eps ~ N(0, I_d)``.

    Args:
        tokens: ``[B, L]`` token ids (entries where ``gamma = inf`` are not read into z).
        gamma: ``[B, L]`` SNRs in ``[0, inf]``.
        generator: the source of ``eps``: a ``torch.Generator``, or per-row :class:`~snrpaths.streams.Streams`.
    Returns:
        ``[B, L, d]`` evidence in the anchors' dtype; exactly 0 where ``gamma`` is 0 or inf.
    """
    check_shape("tokens", tokens, (None, None))
    check_shape("gamma", gamma, tuple(tokens.shape))
    check_gamma("gamma", gamma)
    table.check_tokens("tokens", tokens)
    finite = torch.where(torch.isfinite(gamma), gamma, torch.zeros_like(gamma)).to(table.anchors.dtype)
    return increment(torch.zeros(*tokens.shape, table.dim, dtype=table.anchors.dtype, device=tokens.device),
                     finite, table.embed(tokens), generator)


def posterior_logits(z: torch.Tensor, table: TokenTable, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token posterior logits ``log p(v | z_i) = z_i · x_v + log P(v) + const``.

    Args:
        z: ``[..., d]`` evidence.
        log_prior: ``[V]`` or ``[..., V]`` log prior (default uniform).
    Returns:
        ``[..., V]`` unnormalised logits; no gamma appears, which is exact only for unit-norm anchors.
    """
    if z.shape[-1] != table.dim:
        raise ShapeError(f"'z' must end in the anchor dimension {table.dim} (got shape {list(z.shape)})")
    logits = z @ table.anchors.to(z.dtype).T
    return logits if log_prior is None else logits + log_prior


def posterior_mean(probs: torch.Tensor, table: TokenTable) -> torch.Tensor:
    """``xhat = sum_v p(v) x_v``: ``[..., V]`` probabilities to a ``[..., d]`` point inside the anchors' hull."""
    return probs @ table.anchors.to(probs.dtype)


def increment(z: torch.Tensor, dgamma: torch.Tensor, target: torch.Tensor,
              generator: torch.Generator | Streams, noise: float = 1.0) -> torch.Tensor:
    """One stochastic-localization step ``z + dgamma * target + noise * sqrt(dgamma) * eps`` (no validation).

    ``z``, ``target``: ``[B, L, d]``; ``dgamma``: ``[B, L]`` finite and ``>= 0`` (0 leaves z exactly unchanged).
    ``eps`` comes from ``generator``, a ``torch.Generator`` or per-row :class:`~snrpaths.streams.Streams`; it is
    drawn whatever ``noise`` is (``noise = 0``, a deterministic step, still advances the generator by one draw),
    so runs that differ only in ``noise`` share every later random number.
    """
    eps = normal(generator, z.shape, dtype=z.dtype, device=z.device)
    dgamma = dgamma.to(z.dtype).unsqueeze(-1)
    return z + dgamma * target + noise * dgamma.sqrt() * eps


def renoise(z: torch.Tensor, gamma: torch.Tensor, gamma_next: torch.Tensor,
            generator: torch.Generator | Streams) -> torch.Tensor:
    """Lower evidence from SNR ``gamma`` to ``gamma_next < gamma`` by the exact forward channel (no validation):

        z' = (gamma' / gamma) z + sqrt(gamma' (gamma - gamma') / gamma) eps,    eps ~ N(0, I_d).

    Given the token ``s``, ``z ~ N(gamma x_s, gamma I)`` goes to ``z' ~ N(gamma' x_s, gamma' I)`` (mean
    ``(gamma'/gamma) gamma x_s``, variance ``gamma'^2 / gamma + gamma' - gamma'^2 / gamma``); and ``z'`` given ``z`` is
    the law of the localization process at ``gamma'`` given its value at ``gamma`` (a Brownian bridge from 0), so
    ``(s, z')`` has exactly the joint law of the channel at ``gamma'`` whenever ``(s, z)`` had it at ``gamma``. No
    denoiser is involved. Entries where ``gamma_next >= gamma``, or ``gamma`` is 0 or inf, are returned exactly
    unchanged.

    Shapes: ``z``: ``[B, L, d]``; ``gamma``, ``gamma_next``: ``[B, L]``. One draw of ``eps`` (``z``'s shape) from
    ``generator``, whatever is lowered.
    """
    lower = (gamma_next < gamma) & (gamma > 0) & torch.isfinite(gamma)
    g = torch.where(lower, gamma, 1.0)
    g_next = torch.where(lower, gamma_next, 1.0)
    scale = (g_next / g).to(z.dtype).unsqueeze(-1)
    sd = (g_next * (g - g_next) / g).sqrt().to(z.dtype).unsqueeze(-1)
    eps = normal(generator, z.shape, dtype=z.dtype, device=z.device)
    return torch.where(lower.unsqueeze(-1), scale * z + sd * eps, z)


def localize(
    z: torch.Tensor,
    gamma: torch.Tensor,
    gamma_next: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator | Streams,
) -> torch.Tensor:
    """Move evidence from SNR ``gamma`` to ``gamma_next >= gamma`` (both finite, or both inf).

    ``z' = z + (gamma' - gamma) * target + sqrt(gamma' - gamma) * eps`` with ``target`` either

    * the posterior mean ``xhat(z)`` (the "mean" form, an Euler step of the localization SDE), or
    * the anchor ``x_s`` of a token ``s`` drawn from the posterior (the "sample" form; exact in law when ``s``
      comes from the exact joint posterior, because ``z`` is then a Gaussian process with known increments).

    Positions already clean (``gamma = inf``) keep ``z = 0``. Sending a finite position to ``inf`` is a reveal,
    not a localization step: it is refused here (the token must be chosen, see the runner's reveal).

    Shapes: ``z``, ``target``: ``[B, L, d]``; ``gamma``, ``gamma_next``: ``[B, L]``.
    """
    check_shape("gamma_next", gamma_next, tuple(gamma.shape))
    check_shape("z", z, (*gamma.shape, None))
    check_shape("target", target, tuple(z.shape))
    check_gamma("gamma", gamma)
    check_gamma("gamma_next", gamma_next)
    finite, finite_next = torch.isfinite(gamma), torch.isfinite(gamma_next)
    if bool((finite & ~finite_next).any()):
        raise SNRPathError("localize cannot send a finite SNR to inf; reveal the position with a drawn token instead")
    if bool((~finite & finite_next).any()):
        raise SNRPathError("localize cannot lower a clean position (gamma = inf) to a finite SNR; remask it instead")
    dgamma = torch.where(finite, gamma_next - gamma, torch.zeros_like(gamma))
    if bool((dgamma < 0).any()):
        raise SNRPathError(f"gamma_next must be >= gamma everywhere (largest decrease {float(-dgamma.min()):.4g})")
    return increment(z, dgamma, target, generator)
