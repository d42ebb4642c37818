"""Training objectives: the MDLM baseline and DSL's mixed-SNR objective (DESIGN.md section 4).

Both are one per-position cross-entropy ``CE_bi = -log p_theta(s_bi | z_b)`` under per-token SNRs, weighted:

    loss = mean_b  sum_i w_bi CE_bi                                                     (a scalar)

Each objective is split in two so that every process of a data-parallel run draws the same randomness for the whole
global batch and keeps its own rows: ``draw(tokens, generator)`` makes a :class:`Corruption` (no model, rows
independent), ``corruption[rows]`` slices it, and :func:`loss` runs the model. The loss is a mean of per-row terms, so
the mean over equal shards equals the loss of the whole batch, which is what DDP's gradient averaging assumes.

The evidence ``z = gamma x_s + sqrt(gamma) eps`` is built inside :func:`loss` from the model's *current* anchors and
the stored noise ``eps``, so gradients reach the learned anchor directions through ``z`` as well as through the
converter's keys.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import validate
from .denoiser import Trainable


@attrs.frozen(eq=False)
class Corruption:
    """One batch's corrupted state and loss weights. ``B`` rows, ``L`` positions, ``d`` anchor dimension.

    Attributes:
        tokens: ``(B, L)`` the clean sequences (the targets; read by the model only where ``gamma = inf``).
        gamma: ``(B, L)`` SNRs in ``[0, inf]``.
        eps: ``(B, L, d)`` standard normal noise (used where ``0 < gamma < inf``).
        weight: ``(B, L)`` loss weight of each position's cross-entropy (0 = not counted).
    """

    tokens: torch.Tensor
    gamma: torch.Tensor
    eps: torch.Tensor
    weight: torch.Tensor

    def __getitem__(self, rows) -> "Corruption":
        return Corruption(self.tokens[rows], self.gamma[rows], self.eps[rows], self.weight[rows])

    def to(self, device) -> "Corruption":
        return Corruption(*(t.to(device) for t in (self.tokens, self.gamma, self.eps, self.weight)))


def loss(model, corruption: Corruption) -> torch.Tensor:
    """``mean_b sum_i w_bi CE_bi`` with ``CE_bi = -log p_theta(s_bi | z_b)`` (nats).

    ``model`` is a :class:`snrpaths.denoiser.Trainable` (or a DDP wrapper of one): ``model(z, gamma, tokens)``
    gives ``(B, L, V)`` logits and ``model.converter.anchors`` the ``(V, d)`` anchors.
    """
    return per_row(model, corruption).mean()


def per_row(model, corruption: Corruption) -> torch.Tensor:
    """``(B,)`` the per-row terms ``sum_i w_bi CE_bi``."""
    c = corruption
    anchors = _unwrap(model).converter.anchors  # (V, d), differentiable
    finite = torch.isfinite(c.gamma) & (c.gamma > 0)
    g = torch.where(finite, c.gamma, torch.zeros_like(c.gamma)).unsqueeze(-1)  # (B, L, 1), 0 at the endpoints
    z = g * anchors[c.tokens] + g.sqrt() * c.eps.to(anchors.dtype)  # (B, L, d), exactly 0 at the endpoints
    logits = model(z, c.gamma, c.tokens)  # (B, L, V)
    ce = F.cross_entropy(logits.flatten(0, 1).float(), c.tokens.flatten(), reduction="none").view_as(c.gamma)
    return (c.weight * ce).sum(1)


def _unwrap(model) -> Trainable:
    """The Trainable itself: DistributedDataParallel keeps it in ``.module``."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _noise(tokens: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*tokens.shape, dim, generator=generator, device=tokens.device)


@attrs.frozen
class MDLM:
    """MDLM's objective with the log-linear schedule ``alpha_t = 1 - t`` (fraction clean):

        t_b = eps + (1 - eps) ((u + b / B) mod 1),   u ~ U[0, 1)         antithetic: one uniform, B strata
        position i masked (gamma = 0) with probability t_b, else clean (gamma = inf)
        row term = (1 / L) sum_{i masked} CE_bi / t_b

    The weight ``1/t`` is ``-alpha'_t / (1 - alpha_t)``, so the loss is the continuous-time NELBO in nats per token,
    an upper bound on the per-token negative log-likelihood.

    Attributes:
        eps: smallest ``t`` (MDLM's sampling_eps), keeps the weight ``1/t`` finite.
    """

    eps: float = attrs.field(default=1e-3, converter=validate.field(validate.number, low=0.0, high=1.0, low_open=True,
                                                                     high_open=True))

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int) -> Corruption:
        """The corruption of ``(B, L)`` ``tokens``; ``eps`` is all zeros (no finite SNR)."""
        B, L = tokens.shape
        u = torch.rand((), generator=generator, device=tokens.device)
        t = self.eps + (1 - self.eps) * ((u + torch.arange(B, device=tokens.device) / B) % 1)  # (B,)
        masked = torch.rand(B, L, generator=generator, device=tokens.device) < t[:, None]
        gamma = torch.where(masked, 0.0, math.inf)
        weight = masked / (t[:, None] * L)
        return Corruption(tokens, gamma, torch.zeros(B, L, anchor_dim, device=tokens.device), weight)


@attrs.frozen
class DSL:
    """DSL's mixed-SNR objective: one cross-entropy on two supports (DESIGN.md section 4).

    ``round(roar_fraction * B)`` rows, chosen at random, are on the endpoint (ROAR) branch:

        k ~ U{0, ..., L-1};  k random positions clean (gamma = inf), the rest masked (gamma = 0)
        row term = mean over the L - k masked positions of CE

    (the row term is an unbiased estimate of the random-order autoregressive NLL per position). The other rows are on
    the continuous branch:

        log gamma ~ N(mu, sigma^2), gamma capped at gamma_max; one draw per row, or per position if per_token
        row term = mean over all L positions of CE

    Attributes: the public DSL code's defaults (a quarter of each batch on ROAR, mu = 1.4, sigma = 0.55, cap 40,
    one SNR per sequence).
    """

    roar_fraction: float = attrs.field(default=0.25, converter=validate.field(validate.number, low=0.0, high=1.0))
    mu: float = attrs.field(default=1.4, converter=validate.field(validate.number, low_open=True, high_open=True,
                                                                  phrase="a finite number"))
    sigma: float = attrs.field(default=0.55, converter=validate.field(validate.number, low=0.0, high_open=True,
                                                                      phrase="a finite number >= 0"))
    gamma_max: float = attrs.field(default=40.0, converter=validate.field(validate.number, low=0.0, low_open=True,
                                                                          high_open=True, phrase="a finite number > 0"))
    per_token: bool = attrs.field(default=False, converter=validate.field(validate.boolean))

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int) -> Corruption:
        B, L = tokens.shape
        device = tokens.device
        roar = torch.zeros(B, dtype=torch.bool, device=device)
        roar[torch.randperm(B, generator=generator, device=device)[: round(self.roar_fraction * B)]] = True
        gamma_roar, weight_roar = roar_state(B, L, generator, device)
        shape = (B, L) if self.per_token else (B, 1)
        normal = torch.randn(shape, generator=generator, device=device)
        gamma_cont = (self.mu + self.sigma * normal).exp().clamp(max=self.gamma_max).expand(B, L)
        gamma = torch.where(roar[:, None], gamma_roar, gamma_cont)
        weight = torch.where(roar[:, None], weight_roar, torch.full_like(weight_roar, 1 / L))
        return Corruption(tokens, gamma, _noise(tokens, anchor_dim, generator), weight)


def roar_state(B: int, L: int, generator: torch.Generator, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ROAR branch for ``B`` rows: ``gamma`` ``(B, L)`` with ``k_b ~ U{0..L-1}`` random positions at inf and the
    rest at 0, and ``weight`` ``(B, L)`` = ``1 / (L - k_b)`` on the masked positions (a mean over them)."""
    k = torch.randint(0, L, (B, 1), generator=generator, device=device)
    rank = torch.rand(B, L, generator=generator, device=device).argsort(1).argsort(1)  # a random permutation per row
    clean = rank < k
    gamma = torch.where(clean, math.inf, 0.0)
    return gamma, (~clean) / (L - k)


def roar_validation(tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int) -> Corruption:
    """The ROAR branch on every row: ``mean_b`` of its row terms is an unbiased estimate of the negative
    log-likelihood per position (nats), averaged over random orders and steps."""
    gamma, weight = roar_state(*tokens.shape, generator, tokens.device)
    return Corruption(tokens, gamma, torch.zeros(*tokens.shape, anchor_dim, device=tokens.device), weight)


OBJECTIVES = {"mdlm": MDLM, "dsl": DSL}
