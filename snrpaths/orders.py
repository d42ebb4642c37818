"""Reveal orders as small frozen values: which unrevealed positions a reveal picks first.

Each order owns its score, ``[B, L]`` priorities (higher first) from the step's logits and uniform draws ``u``;
``ORDERS`` maps the names a user types to the values, and is the one place the runner, the path language and the
likelihood curves learn what an order is. ``uses_evidence`` marks orders ranked by the denoiser: their route
depends on ``z`` itself, so it needs the model's logits and defines no path integral.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from .reprs import TypedRepr


@attrs.frozen(repr=False)
class Order(TypedRepr):
    """A reveal order; ``repr`` prints what a user types."""

    name: ClassVar[str]
    uses_evidence: ClassVar[bool] = False

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@attrs.frozen(repr=False)
class RandomOrder(Order):
    """Uniformly random: the draws ``u`` themselves."""

    name = "random"

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        return u


@attrs.frozen(repr=False)
class LeftToRight(Order):
    """``-i``: the leftmost unrevealed position first."""

    name = "left-to-right"

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        B, L = u.shape
        return -torch.arange(L, device=u.device, dtype=torch.float64).expand(B, L)


@attrs.frozen(repr=False)
class Explicit(Order):
    """A fixed permutation: ``-rank`` with ``rank[positions[k]] = k`` (positions outside it last)."""

    name = "explicit"
    positions: tuple[int, ...]

    def score(self, logits: torch.Tensor | None, u: torch.Tensor) -> torch.Tensor:
        B, L = u.shape
        rank = torch.full((L,), float("inf"), dtype=torch.float64, device=u.device)
        rank[list(self.positions)] = torch.arange(len(self.positions), dtype=torch.float64, device=u.device)
        return -rank.expand(B, L)

    def typed(self) -> tuple[int, ...]:
        return self.positions


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
