"""Ramp forms as small frozen values: what a ramp step moves the evidence toward.

A ramp step is the stochastic-localization update ``z += dgamma * target + sqrt(dgamma) * eps``; the form says what
``target`` ``[B, L, d]`` is, from the step's logits ``[B, L, V]``: the posterior mean ``xhat = sum_v p(v) x_v``
(``"mean"``) or the anchor ``x_v`` of a token drawn per position from the posterior (``"sample"``). ``RAMP_FORMS`` maps
the names a user types (``ramp(16, form='sample')``) to the values and is the one place a name is looked up. Each form
says how many draws of the runner's row streams its target takes (``draws``), so that a step with no position to
move skips exactly as many and every row's stream stays in step.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from .channel import posterior_mean
from .draw import categorical, probabilities
from .geometry import TokenTable
from .reprs import TypedRepr
from .streams import Streams


@attrs.frozen(repr=False)
class RampForm(TypedRepr):
    """The target of a ramp's update; ``repr`` prints its name."""

    name: ClassVar[str]
    #: Draws of the row streams one :meth:`target` makes (the update's noise ``eps`` is one more).
    draws: ClassVar[int]

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype) -> torch.Tensor:
        """``[B, L, d]`` in ``dtype`` from ``[B, L, V]`` logits; ``streams`` are the run's row streams."""
        raise NotImplementedError


@attrs.frozen(repr=False)
class MeanForm(RampForm):
    """``xhat = sum_v softmax(logits)_v x_v``, computed in ``dtype`` (the evidence's): no draw."""

    name = "mean"
    draws = 0

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype) -> torch.Tensor:
        return posterior_mean(torch.softmax(logits.to(dtype), dim=-1), table)


@attrs.frozen(repr=False)
class SampleForm(RampForm):
    """``x_v`` with ``v`` drawn per position from ``softmax(logits)`` in float64 (one draw)."""

    name = "sample"
    draws = 1

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype) -> torch.Tensor:
        return table.embed(categorical(probabilities(logits), streams)).to(dtype)


#: Ramp forms by name.
RAMP_FORMS: dict[str, RampForm] = {f.name: f for f in (MeanForm(), SampleForm())}
