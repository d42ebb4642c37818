"""Ramp forms and solvers as small frozen values: what a ramp step moves the evidence toward, and how it steps.

A ramp step is the stochastic-localization update ``z += dgamma * target + noise * sqrt(dgamma) * eps``; the form
says what ``target`` ``[B, L, d]`` is, from the step's logits ``[B, L, V]`` and the ramp's guarded posterior ``q``
(``softmax(logits / temperature)`` cut to ``top_k``, then to the nucleus ``top_p``): its mean ``sum_v q(v) x_v``
(``"mean"``) or the anchor ``x_v`` of a token drawn per position from ``q`` (``"sample"``). Each form says how many
draws of the runner's row streams its target takes (``draws``), so that a step with no position to move skips exactly
as many and every row's stream stays in step. The solver says whether each step is followed by Heun's corrector
(``corrects``). ``RAMP_FORMS`` and ``RAMP_SOLVERS`` map the names a user types (``ramp(16, form='sample',
solver='heun')``) to the values and are the one place a name is looked up.
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

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype, *,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        """``[B, L, d]`` in ``dtype`` from ``[B, L, V]`` logits and the guards of ``q``
        (:func:`snrpaths.draw.probabilities`); ``streams`` are the run's row streams."""
        raise NotImplementedError


@attrs.frozen(repr=False)
class MeanForm(RampForm):
    """``sum_v q(v) x_v``, computed in ``dtype`` (the evidence's): no draw."""

    name = "mean"
    draws = 0

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype, *,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        return posterior_mean(probabilities(logits, temperature, top_p, top_k, dtype=dtype), table)


@attrs.frozen(repr=False)
class SampleForm(RampForm):
    """``x_v`` with ``v`` drawn per position from ``q`` in float64 (one draw)."""

    name = "sample"
    draws = 1

    def target(self, logits: torch.Tensor, table: TokenTable, streams: Streams, dtype: torch.dtype, *,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
        return table.embed(categorical(probabilities(logits, temperature, top_p, top_k), streams)).to(dtype)


#: Ramp forms by name.
RAMP_FORMS: dict[str, RampForm] = {f.name: f for f in (MeanForm(), SampleForm())}


@attrs.frozen(repr=False)
class RampSolver(TypedRepr):
    """How a ramp integrates a step; ``repr`` prints its name. ``corrects``: each step (the predictor, an
    Euler-Maruyama step) is followed by Heun's corrector, one more call (:meth:`snrpaths.Path.ramp`)."""

    name: ClassVar[str]
    corrects: ClassVar[bool] = False


@attrs.frozen(repr=False)
class Euler(RampSolver):
    """One Euler-Maruyama step per ramp step, one call."""

    name = "euler"


@attrs.frozen(repr=False)
class Heun(RampSolver):
    """A predictor and its corrector per ramp step, two calls."""

    name = "heun"
    corrects = True


#: Ramp solvers by name.
RAMP_SOLVERS: dict[str, RampSolver] = {s.name: s for s in (Euler(), Heun())}
