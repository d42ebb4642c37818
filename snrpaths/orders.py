"""Reveal orders and adaptive reveal rules as small frozen values: which unrevealed positions a reveal picks first,
and how many it takes beyond its count or clock.

Each order owns its score, ``[B, L]`` priorities (higher first) from the step's logits and uniform draws ``u``;
``ORDERS`` maps the names a user types to the values, and is the one place the runner, the path language and the
likelihood curves learn what an order is. ``uses_evidence`` marks orders ranked by the denoiser: their route
depends on ``z`` itself, so it needs the model's logits and defines no path integral.

An adaptive rule (:class:`RevealRule`) reads the step's logits and names positions to reveal on top of what the
reveal's count or clock asks for, so the number revealed per step follows the denoiser's certainty:
``REVEAL_RULES`` maps the keyword a user types (``reveal(T, order='confidence', threshold=0.9)``) to the rule.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from . import validate
from .errors import SNRPathError
from .reprs import TypedRepr


@attrs.frozen(repr=False)
class Order(TypedRepr):
    """A reveal order; ``repr`` prints what a user types.

    ``flips_coins``: on a masked-diffusion clock the order reveals each unrevealed position by its own coin flip with
    MDLM's probability, instead of the best ``n`` by ``score`` (what a uniformly random order means there).
    ``fixed``: its ranking reads neither the logits nor the draws ``u``, so it is known before the run.
    """

    name: ClassVar[str]
    uses_evidence: ClassVar[bool] = False
    flips_coins: ClassVar[bool] = False
    fixed: ClassVar[bool] = False

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, positions: tuple[int, ...], where: str) -> "Order":
        """This order on a stage over ``positions`` (sequence positions, increasing): a named order ranks whatever
        positions it meets, so it is itself; an explicit one is mapped onto them (``where`` names the stage)."""
        return self


@attrs.frozen(repr=False)
class RandomOrder(Order):
    """Uniformly random: the draws ``u`` themselves."""

    name = "random"
    flips_coins = True

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        return u


@attrs.frozen(repr=False)
class LeftToRight(Order):
    """``-i``: the leftmost unrevealed position first."""

    name = "left-to-right"
    fixed = True

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        B, L = u.shape
        return -torch.arange(L, device=u.device, dtype=torch.float64).expand(B, L)


def _distinct(name: str, value: object) -> tuple[int, ...]:
    out = validate.int_tuple(name, value)
    if len(set(out)) != len(out):
        raise SNRPathError(f"{name!r} must not repeat a position (got {value!r})")
    return out


@attrs.frozen(repr=False)
class Ranked(Order):
    """Sequence positions in the order they are revealed: ``score = -rank`` with ``rank[positions[k]] = k``, the
    positions outside it last. What an :class:`Explicit` order becomes on the stage it runs on (:meth:`Order.fit`)."""

    name = "ranked"
    fixed = True
    positions: tuple[int, ...] = attrs.field(converter=validate.field(_distinct))

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        B, L = u.shape
        rank = torch.full((L,), float("inf"), dtype=torch.float64, device=u.device)
        rank[list(self.positions)] = torch.arange(len(self.positions), dtype=torch.float64, device=u.device)
        return -rank.expand(B, L)

    def typed(self) -> tuple[int, ...]:
        return self.positions


@attrs.frozen(repr=False)
class Explicit(Ranked):
    """A fixed permutation of the stage's ``n`` positions, written as the tuple a user types: ``(2, 0, 1)`` reveals
    the stage's third position first. Refused unless it is a permutation of ``0..n-1``; the compiler checks that the
    stage has ``n`` positions (:meth:`fit`)."""

    name = "explicit"
    positions: tuple[int, ...] = attrs.field(converter=validate.field(validate.permutation))

    def fit(self, positions: tuple[int, ...], where: str) -> Order:
        if len(self.positions) != len(positions):
            raise SNRPathError(f"{where}: the explicit order has {len(self.positions)} entries but the stage covers "
                               f"{len(positions)} positions")
        return Ranked(tuple(positions[k] for k in self.positions))


@attrs.frozen(repr=False)
class ConfidenceOrder(Order):
    """``max_v p(v)``: the most confident position first."""

    name = "confidence"
    uses_evidence = True

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.to(torch.float32), dim=-1).amax(-1).to(torch.float64)


@attrs.frozen(repr=False)
class Margin(Order):
    """``p(top 1) - p(top 2)``: the largest margin first."""

    name = "margin"
    uses_evidence = True

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.to(torch.float32), dim=-1)
        top2 = probs.topk(min(2, probs.shape[-1]), dim=-1).values
        return (top2[..., 0] - (top2[..., 1] if top2.shape[-1] > 1 else 0)).to(torch.float64)


@attrs.frozen(repr=False)
class Entropy(Order):
    """``-H(p)``: the lowest entropy first."""

    name = "entropy"
    uses_evidence = True

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        return -entropy(logits).to(torch.float64)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H = -sum_v p(v) log p(v)`` per position, in float32 (``0 log 0 = 0``)."""
    logp = torch.log_softmax(logits.to(torch.float32), dim=-1)
    return -(logp.exp() * logp.nan_to_num(0.0, neginf=0.0)).sum(-1)


#: The named orders (an explicit permutation is written as a tuple of positions instead).
ORDERS: dict[str, Order] = {o.name: o for o in (LeftToRight(), RandomOrder(), ConfidenceOrder(), Margin(), Entropy())}
RANDOM = ORDERS["random"]


# -- adaptive reveals ----------------------------------------------------------------------------------------------


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """``c_i = max_v p(s_i = v | z)`` per position, ``[B, L, V] -> [B, L]`` float64, computed in the logits' own
    precision (float32 at least), so an exact float64 denoiser's probability 1 means certain."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.softmax(logits.to(dtype), dim=-1).amax(-1).to(torch.float64)


@attrs.frozen
class RevealRule:
    """An adaptive reveal: the positions a reveal takes on top of its count or clock, read off the step's logits.

    ``select(logits, eligible)`` is ``[B, L]`` bool, a subset of ``eligible``. A rule that is ``at_least_one``
    reveals, on a step where neither it nor the floor (the reveal's count or clock) names a position, the one its
    ``score(logits)`` ``[B, L]`` ranks first (higher first). Each rule has one parameter, named by the keyword a user
    types, so ``repr`` prints ``keyword=value``.
    """

    keyword: ClassVar[str]
    at_least_one: ClassVar[bool] = False

    @property
    def value(self) -> float:
        return getattr(self, self.keyword)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def select(self, logits: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@attrs.frozen
class Threshold(RevealRule):
    """Every eligible position whose confidence ``c_i = max_v p(s_i = v | z)`` is at least ``threshold``
    (Fast-dLLM's parallel decoding): ``eligible & (c >= tau)``, ``[B, L]``. ``tau = 0`` takes every position;
    ``tau = 1`` only positions the denoiser is certain of (probability 1 in its logits' precision), so on a denoiser
    that is never certain the reveal is its count or clock alone. Fast-dLLM's "at least one per step" is the floor
    ``count=1``: ``reveal(order='confidence', count=1, threshold=0.9)``."""

    keyword = "threshold"
    threshold: float = attrs.field(converter=validate.field(validate.number, low=0.0, high=1.0))

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return confidence(logits)

    def select(self, logits: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
        return eligible & (confidence(logits) >= self.threshold)


@attrs.frozen
class EntropyBound(RevealRule):
    """The eligible positions in increasing order of entropy ``H_i = -sum_v p log p``, as many as keep the step's
    summed entropy within ``entropy_bound`` (the entropy-bounded sampler of Ben-Hamu et al., 2025): with
    ``H_(1) <= H_(2) <= ...`` a row's eligible entropies sorted, the first ``k`` with
    ``H_(1) + ... + H_(k) <= eps``, ``[B, L]`` bool; at least one per step (the lowest entropy), whatever the
    floor. ``eps = 0`` takes only positions of zero entropy."""

    keyword = "entropy_bound"
    at_least_one = True
    entropy_bound: float = attrs.field(
        converter=validate.field(validate.number, low=0.0, high=math.inf, high_open=True))

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return -entropy(logits).to(torch.float64)

    def select(self, logits: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
        h = torch.where(eligible, entropy(logits).to(torch.float64), math.inf)
        ordered, where = h.sort(dim=1, stable=True)
        within = ordered.cumsum(1) <= self.entropy_bound  # ineligible positions sort last, at an infinite sum
        return eligible & torch.zeros_like(eligible).scatter(1, where, within)


#: Adaptive reveal rules by the keyword a user types.
REVEAL_RULES: dict[str, type[RevealRule]] = {r.keyword: r for r in (Threshold, EntropyBound)}
