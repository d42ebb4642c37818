"""Estimators on endpoint states (every position masked or clean): ROAR, its random-step form, the MDLM ELBO.

Shapes: ``B`` sequences of ``L`` tokens, ``V`` the vocabulary. ``log p(s_i | s_A)`` is the denoiser's log-probability
of the true token at position ``i`` when the positions in ``A`` are clean and the rest at SNR 0.
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

from ..denoiser import Denoiser
from ..errors import SNRPathError
from .. import limits, validate
from . import _common
from ._common import NLLEstimate


def roar(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    n_orders: int | None = None,
    seed: int = 0,
    *,
    orders: Sequence[Sequence[int]] | None = None,
    batch_size: int = 4096,
    progress: bool | None = None,
) -> NLLEstimate:
    """Random-order autoregressive NLL: ``-log P(s) = -sum_j log p(s_{sigma_j} | s_{sigma_<j})`` for each order sigma.

    Each order gives one sample (``L`` denoiser calls, one batch); ``nll`` is their mean over ``n_orders`` uniformly
    random orders (default 16), or over the explicit ``orders``. When the conditionals come from one joint every
    order gives ``-log P(s)`` exactly and the standard error is 0; for a learned model the spread between orders is
    its inconsistency, and the mean is the any-order AR likelihood.

    Args:
        tokens: ``[B, L]`` or ``[L]`` token ids with ``L = denoiser.seq_len``.
        n_orders: how many random orders per sequence (drawn from ``seed``); give this or ``orders``, not both.
        orders: explicit orders, each a permutation of ``range(L)``, used for every sequence.
    Returns:
        an :class:`NLLEstimate` whose ``samples[b, o]`` is order ``o``'s value; ``n_calls = n_orders * L``.

    Work is bounded before it starts (:mod:`snrpaths.limits`): ``min(batch_size, B n L) x L x V`` logits per call
    and ``B x n_orders x L x L`` positions in all (also the size of the order masks built up front).
    """
    _common.check_denoiser(denoiser)
    tokens = _common.check_tokens(denoiser, tokens)
    _common.check_count("batch_size", batch_size)
    _common.check_progress(progress)
    g = _common.generator(seed)
    b, length = tokens.shape
    if orders is not None and n_orders is not None:
        raise SNRPathError("give 'n_orders' (random orders) or 'orders' (explicit ones), not both")
    if orders is None:
        n = _common.check_count("n_orders", 16 if n_orders is None else n_orders)
        _common.check_size("roar", denoiser, b, n * length, batch_size, "lower n_orders or the number of sequences")
        perms = torch.stack([torch.randperm(length, generator=g) for _ in range(b * n)]).reshape(b, n, length)
    else:
        perms = _explicit_orders(orders, length)[None].expand(b, -1, -1)
        n = perms.shape[1]
        _common.check_size("roar", denoiser, b, n * length, batch_size, "give fewer orders or sequences")
    # rank[b, o, i]: when position i is revealed in order o. Row j of an order shows the positions of rank < j and
    # scores the one of rank j.
    rank = torch.empty_like(perms).scatter_(-1, perms, torch.arange(length).expand_as(perms).contiguous())
    step = torch.arange(length)[:, None]  # [L (rows of one order), 1]
    clean = rank[:, :, None, :] < step  # [B, n, L, L]
    weight = (rank[:, :, None, :] == step).to(torch.float64)
    rows = _common.endpoint_nll(denoiser, tokens, clean.reshape(b, n * length, length),
                                weight.reshape(b, n * length, length), batch_size, progress, "roar")
    return NLLEstimate.from_samples("roar", rows.reshape(b, n, length).sum(-1), length, n * length)


def _explicit_orders(orders: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    checked = [validate.permutation("orders", o) for o in orders]
    if not checked:
        raise SNRPathError("'orders' must hold at least one order")
    bad = [o for o in checked if len(o) != length]
    if bad:
        raise SNRPathError(f"every order must be a permutation of range({length}) (got {bad[0]!r})")
    return torch.tensor(checked, dtype=torch.int64)


def all_orders(seq_len: int) -> list[tuple[int, ...]]:
    """Every one of the ``L!`` orders (for small ``L``: ``L! x L`` entries are bounded by
    ``snrpaths.limits.MAX_WORK``, ``L <= 10`` at the default)."""
    seq_len = validate.integer("seq_len", seq_len)
    limits.check_work(f"all_orders({seq_len})", math.factorial(seq_len), seq_len, f"{seq_len}! orders",
                      "score a sample of random orders instead (roar(..., n_orders=n))")
    return list(itertools.permutations(range(seq_len)))


def roar_steps(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    n_steps: int = 64,
    seed: int = 0,
    *,
    batch_size: int = 4096,
    progress: bool | None = None,
) -> NLLEstimate:
    """The random-step ROAR estimator: ``-(1/L) log P(s) = -E_{k, A, i} log p(s_i | s_A)``.

    Each draw takes ``k`` in ``{0..L-1}``, a uniform subset ``A`` of ``k`` positions and scores every ``i`` not in
    ``A`` at once (one denoiser call):

        Y = L / (L - k) * sum_{i not in A} -log p(s_i | s_A),   E[Y] = -log P(s) for conditionals of one joint.

    ``k`` is stratified (systematic sampling: ``k_j = floor(L (u + j) / n)``, one uniform ``u`` per sequence), so
    every draw is still marginally uniform; the reported standard error treats the draws as independent and is
    therefore conservative.

    Returns:
        an :class:`NLLEstimate` with ``samples[b, j] = Y_j`` and ``n_calls = n_steps``. Work is bounded as for
        :func:`roar`, with ``B x n_steps`` rows.
    """
    _common.check_denoiser(denoiser)
    tokens = _common.check_tokens(denoiser, tokens)
    n = _common.check_count("n_steps", n_steps)
    _common.check_count("batch_size", batch_size)
    _common.check_progress(progress)
    g = _common.generator(seed)
    b, length = tokens.shape
    _common.check_size("roar_steps", denoiser, b, n, batch_size, "lower n_steps or the number of sequences")
    u = torch.rand(b, 1, generator=g, dtype=torch.float64)
    k = ((u + torch.arange(n)) * length / n).floor().to(torch.int64).clamp_max(length - 1)  # [B, n]
    perms = torch.stack([torch.randperm(length, generator=g) for _ in range(b * n)]).reshape(b, n, length)
    rank = torch.empty_like(perms).scatter_(-1, perms, torch.arange(length).expand_as(perms).contiguous())
    clean = rank < k[..., None]  # A = the first k positions of a random permutation
    weight = (~clean).to(torch.float64) * (length / (length - k))[..., None]
    rows = _common.endpoint_nll(denoiser, tokens, clean, weight, batch_size, progress, "roar_steps")
    return NLLEstimate.from_samples("roar_steps", rows, length, n)


def mdm_elbo(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    n_samples: int = 64,
    seed: int = 0,
    *,
    eps: float = 1e-3,
    batch_size: int = 4096,
    progress: bool | None = None,
) -> NLLEstimate:
    """MDLM's continuous-time masked-diffusion bound with the log-linear schedule, as MDLM computes it.

        -log P(s) <= E_{t ~ U[eps, 1]} [ (1/t) * sum_{i masked in z_t} -log p(s_i | z_t) ],

    each position masked independently with probability ``(1 - eps) t`` (MDLM's ``LogLinearNoise``: sigma(t) =
    -log(1 - (1 - eps) t), and its weight ``dsigma / expm1(sigma)`` is exactly ``1/t``). ``t`` is stratified over the
    ``n_samples`` draws of each sequence (MDLM's antithetic sampling ``t_j = eps + (1 - eps)(u + j)/n``); the reported
    standard error treats draws as independent and is conservative. With ``eps = 1e-3`` (MDLM's ``sampling_eps``)
    numbers are comparable with MDLM's published bits per token. For the exact conditionals of a joint the bound is
    tight: its mean is ``-log P(s)`` up to the ``O(eps)`` left out near ``t = 0``.

    Returns:
        an :class:`NLLEstimate`, one sample per ``t``; ``n_calls = n_samples``. Work is bounded as for
        :func:`roar`, with ``B x n_samples`` rows.
    """
    _common.check_denoiser(denoiser)
    tokens = _common.check_tokens(denoiser, tokens)
    n = _common.check_count("n_samples", n_samples)
    _common.check_count("batch_size", batch_size)
    _common.check_progress(progress)
    validate.number("eps", eps, 0, 1, high_open=True, phrase="a number in [0, 1)")
    g = _common.generator(seed)
    b, length = tokens.shape
    _common.check_size("mdm_elbo", denoiser, b, n, batch_size, "lower n_samples or the number of sequences")
    u = torch.rand(b, 1, generator=g, dtype=torch.float64)
    t = eps + (1 - eps) * ((u + torch.arange(n)) / n)  # [B, n], stratified in (eps, 1]
    masked = torch.rand(b, n, length, generator=g, dtype=torch.float64) < ((1 - eps) * t)[..., None]
    weight = masked.to(torch.float64) / t[..., None]
    rows = _common.endpoint_nll(denoiser, tokens, ~masked, weight, batch_size, progress, "mdm_elbo")
    return NLLEstimate.from_samples(f"mdm_elbo(eps={eps!r})", rows, length, n)
