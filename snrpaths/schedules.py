"""Pure scalar schedules as small frozen values: masked-diffusion clocks, ReMDM remasking policies, SNR ramps.

Masked diffusion runs on ``t = linspace(1, 0, T + 1)``; ``alpha_t`` is the fraction of (free) positions clean.
Each value owns its rule and its name (what a user types, and what ``repr`` prints); the registries
``ALPHA_SCHEDULES``, ``REMASK_POLICIES`` and ``RAMP_SCHEDULES`` map names to values, and are the only place a name
is looked up, so an unknown name fails there instead of falling through to some other rule.
Everything here is plain arithmetic on Python floats: the compiler evaluates clocks and policies once, the runner
never does. The one exception is a ramp's ``gamma(u)``, which the runner evaluates at every position's own clock
(a staggered ramp's clocks depend on how many positions a row has free): its formulas are written so that the same
code runs on a float and, elementwise, on a float64 tensor, still without importing torch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs

from . import validate
from .errors import SNRPathError
from .reprs import TypedRepr

# -- masked-diffusion clocks -------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class AlphaSchedule(TypedRepr):
    """A clean fraction ``alpha(t)`` for ``t`` in [0, 1], ``alpha(1) = 0``, ``alpha(0) = 1``."""

    name: ClassVar[str]

    def alpha(self, t: float) -> float:
        raise NotImplementedError


@attrs.frozen(repr=False)
class LinearClock(AlphaSchedule):
    """``alpha(t) = 1 - t``: MDLM's log-linear noise."""

    name = "linear"

    def alpha(self, t: float) -> float:
        return 1.0 - t


@attrs.frozen(repr=False)
class CosineClock(AlphaSchedule):
    """``alpha(t) = 1 - sin(pi t / 2)``: MaskGIT's, few reveals early, many late."""

    name = "cosine"

    def alpha(self, t: float) -> float:
        return 1.0 - math.sin(math.pi * t / 2)


#: Masked-diffusion clocks by name.
ALPHA_SCHEDULES: dict[str, AlphaSchedule] = {s.name: s for s in (LinearClock(), CosineClock())}


# -- ReMDM remasking policies (DESIGN.md section 5) --------------------------------------------------------------


def sigma_max(alpha_t: float, alpha_s: float) -> float:
    """``min(1, (1 - alpha_s) / alpha_t)``: the largest remasking probability that keeps the reverse step valid.

    0 on a step that ends at ``alpha_s = 1`` (the clock's last step), whatever ``alpha_t``: a position remasked
    there could never be revealed again. That includes the 0/0 of a one-step clock (``alpha_t = 0``), which
    would otherwise read as 1 and remask every clean position a previous stage revealed.
    """
    if alpha_s >= 1:
        return 0.0
    return 1.0 if alpha_t <= 0 else min(1.0, (1 - alpha_s) / alpha_t)


_ETA = validate.field(validate.number, low=0.0, high=1.0)
_OPEN_UNIT = validate.field(validate.number, low=0.0, high=1.0, low_open=True, high_open=True)


@attrs.frozen
class RemaskPolicy:
    """How likely a clean position is to go back to [MASK] on one step ``t -> s`` of a reveal's clock.

    ``alpha(clock, t)`` is the clean fraction the policy steers the clock to (the clock itself unless the policy
    reshapes it); ``sigma(t, s, alpha_t, alpha_s)`` the remasking probability; ``by_confidence`` spreads that
    probability over positions by ``softmax(-confidence)`` at run time instead of using it uniformly.
    """

    name: ClassVar[str]
    by_confidence: ClassVar[bool] = False

    def alpha(self, clock: AlphaSchedule, t: float) -> float:
        return clock.alpha(t)

    def sigma(self, t: float, s: float, alpha_t: float, alpha_s: float) -> float:
        raise NotImplementedError

    def arguments(self) -> list[tuple[str, Any, Any]]:
        """``(name, value, default)`` of every parameter, for ``repr``."""
        return [(f.name, getattr(self, f.name), f.default) for f in attrs.fields(type(self))]


@attrs.frozen
class Cap(RemaskPolicy):
    """``sigma = min(eta, sigma_max)`` (ReMDM-cap; OWT default ``eta = 0.008``)."""

    name = "cap"
    eta: float = attrs.field(default=0.008, converter=_ETA)

    def sigma(self, t: float, s: float, alpha_t: float, alpha_s: float) -> float:
        return min(self.eta, sigma_max(alpha_t, alpha_s))


@attrs.frozen
class Rescale(RemaskPolicy):
    """``sigma = eta * sigma_max`` (ReMDM-rescale; OWT default ``eta = 0.015``)."""

    name = "rescale"
    eta: float = attrs.field(default=0.015, converter=_ETA)

    def sigma(self, t: float, s: float, alpha_t: float, alpha_s: float) -> float:
        return self.eta * sigma_max(alpha_t, alpha_s)


@attrs.frozen
class Confidence(RemaskPolicy):
    """``sigma_l = sigma_max softmax(-psi)_l`` over clean positions, ``psi_l`` the probability a token had when it was
    revealed (ReMDM-conf): no ``eta``, the least confident tokens go back first."""

    name = "confidence"
    by_confidence = True

    def sigma(self, t: float, s: float, alpha_t: float, alpha_s: float) -> float:
        return sigma_max(alpha_t, alpha_s)


@attrs.frozen
class Loop(RemaskPolicy):
    """ReMDM-loop: the clock squeezed into ``[t_on, 1]`` to reach ``alpha_on`` at ``t_on``, held at ``alpha_on`` on
    ``[t_off, t_on]`` with ``sigma = eta`` (reveals and remasks balance), then linear from ``alpha_on`` to 1 on
    ``[0, t_off]`` with ``sigma = 0``."""

    name = "loop"
    eta: float = attrs.field(default=0.02, converter=_ETA)
    t_on: float = attrs.field(default=0.55, converter=_OPEN_UNIT)
    t_off: float = attrs.field(default=0.05, converter=_OPEN_UNIT)
    alpha_on: float = attrs.field(default=0.9, converter=_OPEN_UNIT)

    def __attrs_post_init__(self) -> None:
        if not self.t_off < self.t_on:
            raise SNRPathError(f"the loop needs t_off < t_on (got t_on={self.t_on!r}, t_off={self.t_off!r})")

    def alpha(self, clock: AlphaSchedule, t: float) -> float:
        if t >= self.t_on:
            return self.alpha_on * clock.alpha((t - self.t_on) / (1 - self.t_on))
        if t >= self.t_off:
            return self.alpha_on
        return 1.0 - (1 - self.alpha_on) * t / self.t_off  # exactly 1 at t = 0, however alpha_on rounds

    def sigma(self, t: float, s: float, alpha_t: float, alpha_s: float) -> float:
        # The step [s, t] loops when it lies inside [t_off, t_on]. The comparisons forgive round-off of the step
        # times relative to their size only: an absolute slack (1e-12 once) took s = 0 for s >= t_off whenever t_off
        # was that small, and remasked on the clock's last step.
        looping = _at_least(s, self.t_off) and _at_least(self.t_on, t)
        return self.eta if looping else 0.0


def _at_least(a: float, b: float) -> bool:
    """``a >= b`` up to relative round-off."""
    return a >= b or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


#: ReMDM remasking policies by name (each a class: its parameters have the public OWT defaults).
REMASK_POLICIES: dict[str, type[RemaskPolicy]] = {p.name: p for p in (Cap, Rescale, Confidence, Loop)}


# -- SNR ramps ---------------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class RampSchedule(TypedRepr):
    """An SNR ``gamma(u)`` for progress ``u`` in [0, 1] (``gamma(0) = 0``, ``gamma(1) = gamma_max``), nondecreasing,
    and its inverse ``clock(gamma)``.

    ``u`` is a float or a float64 tensor of any shape (the runner passes ``[B, L]``, one clock per position, see
    :meth:`snrpaths.Path.ramp`); the result has its type and shape. So a schedule is arithmetic only (``(u > 0) *
    x`` for a branch), with no ``math`` call on ``u`` (:func:`_clamp` and :func:`_log` take either).
    """

    name: ClassVar[str]

    def gamma(self, u: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        raise NotImplementedError

    def clock(self, gamma: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        """The smallest ``u`` in [0, 1] with ``gamma(u) >= gamma`` up to rounding: 0 at ``gamma = 0``, exactly,
        and 1 at or above ``gamma_max`` (inf included). Where a ramp starts a position that already holds SNR."""
        raise NotImplementedError


def _clamp(x: Any, low: float, high: float) -> Any:
    """``x`` clipped to ``[low, high]``, a float or elementwise a tensor."""
    return x.clamp(low, high) if hasattr(x, "clamp") else min(max(x, low), high)


def _log(x: Any) -> Any:
    """The natural log of a positive float or, elementwise, a tensor."""
    return x.log() if hasattr(x, "log") else math.log(x)


@attrs.frozen(repr=False)
class LogitRamp(RampSchedule):
    """``kappa (r / (1 - r))^2`` with ``r = u r_max`` and ``r_max`` chosen so that ``gamma(1) = gamma_max``: log-SNR
    is linear in the logit of progress. ``kappa = 8 / Delta_min^2`` is where anchors become separable (4 for
    orthonormal anchors); this schedule reached the sampling floor on toy joints."""

    name = "logit"

    def gamma(self, u: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        odds_max = math.sqrt(gamma_max / kappa)
        r = (u > 0) * u * odds_max / (1 + odds_max)
        return kappa * (r / (1 - r)) ** 2

    def clock(self, gamma: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        # r / (1 - r) = sqrt(gamma / kappa), and u = r / r_max
        odds_max = math.sqrt(gamma_max / kappa)
        odds = (_clamp(gamma, 0.0, gamma_max) / kappa) ** 0.5
        return _clamp(odds / (1 + odds) * (1 + odds_max) / odds_max, 0.0, 1.0)


@attrs.frozen(repr=False)
class LogLinearRamp(RampSchedule):
    """``gamma_min^(1-u) gamma_max^u`` for ``u > 0`` (log-SNR evenly spaced)."""

    name = "loglinear"

    def gamma(self, u: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        return (u > 0) * gamma_min ** (1 - u) * gamma_max**u

    def clock(self, gamma: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        if gamma_max == gamma_min:  # a step to gamma_max at u = 0+
            return (gamma >= gamma_max) * 1.0
        # log gamma = log gamma_min + u log(gamma_max / gamma_min); below gamma_min (0 included) the clock is 0
        return _log(_clamp(gamma, gamma_min, gamma_max) / gamma_min) / math.log(gamma_max / gamma_min)


@attrs.frozen(repr=False)
class LinearRamp(RampSchedule):
    """``u gamma_max`` (spends most steps at high SNR where nothing happens; for comparison only)."""

    name = "linear"

    def gamma(self, u: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        return (u > 0) * u * gamma_max

    def clock(self, gamma: Any, gamma_max: float, kappa: float, gamma_min: float) -> Any:
        return _clamp(gamma, 0.0, gamma_max) / gamma_max


#: SNR ramps by name.
RAMP_SCHEDULES: dict[str, RampSchedule] = {s.name: s for s in (LogitRamp(), LogLinearRamp(), LinearRamp())}
