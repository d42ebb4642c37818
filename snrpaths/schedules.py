"""Pure scalar schedules: masked-diffusion clocks, ReMDM remasking probabilities, and SNR ramps.

Masked diffusion runs on ``t = linspace(1, 0, T + 1)``; ``alpha_t`` is the fraction of (free) positions clean.
Everything here is plain Python floats: the compiler evaluates schedules once, the runner never does.
"""

from __future__ import annotations

import math

#: Masked-diffusion clocks: ``alpha(t)``, the clean fraction at time ``t`` in [0, 1] (alpha(1) = 0, alpha(0) = 1).
ALPHA_SCHEDULES = ("linear", "cosine")
#: ReMDM remasking strategies (DESIGN.md section 5).
REMASK_POLICIES = ("cap", "rescale", "confidence", "loop")
#: Default eta per strategy, the public ReMDM OWT settings.
DEFAULT_ETA = {"cap": 0.008, "rescale": 0.015, "loop": 0.02}
#: SNR ramps: ``gamma(u)`` for progress ``u`` in [0, 1].
RAMP_SCHEDULES = ("logit", "loglinear", "linear")


def alpha(schedule: str, t: float) -> float:
    """Clean fraction at time ``t``: ``linear``: ``1 - t`` (MDLM's log-linear noise);
    ``cosine``: ``1 - sin(pi t / 2)`` (MaskGIT: few reveals early, many late)."""
    if schedule == "linear":
        return 1.0 - t
    return 1.0 - math.sin(math.pi * t / 2)


def loop_alpha(schedule: str, t: float, t_on: float, t_off: float, alpha_on: float) -> float:
    """ReMDM-loop clock: the base clock squeezed into ``[t_on, 1]`` to reach ``alpha_on`` at ``t_on``, held at
    ``alpha_on`` on ``[t_off, t_on]``, then linear from ``alpha_on`` to 1 on ``[0, t_off]``."""
    if t >= t_on:
        return alpha_on * alpha(schedule, (t - t_on) / (1 - t_on))
    if t >= t_off:
        return alpha_on
    return alpha_on + (1 - alpha_on) * (t_off - t) / t_off


def sigma_max(alpha_t: float, alpha_s: float) -> float:
    """``min(1, (1 - alpha_s) / alpha_t)``: the largest remasking probability that keeps the reverse step valid."""
    return 1.0 if alpha_t <= 0 else min(1.0, (1 - alpha_s) / alpha_t)


def sigma(policy: str | None, eta: float, alpha_t: float, alpha_s: float, looping: bool) -> float:
    """Remasking probability of a clean position for one step ``t -> s``.

    ``None``: 0 (MDLM). ``cap``: ``min(eta, (1 - alpha_s) / alpha_t)``. ``rescale``: ``eta * sigma_max``.
    ``confidence``: ``sigma_max``, to be spread over positions by ``softmax(-confidence)`` at run time.
    ``loop``: ``eta`` inside the loop phase, 0 outside.
    """
    if policy is None:
        return 0.0
    if policy == "cap":
        return min(eta, sigma_max(alpha_t, alpha_s))
    if policy == "rescale":
        return eta * sigma_max(alpha_t, alpha_s)
    if policy == "confidence":
        return sigma_max(alpha_t, alpha_s)
    return eta if looping else 0.0


def ramp_gamma(schedule: str, u: float, gamma_max: float, kappa: float, gamma_min: float) -> float:
    """SNR at progress ``u`` in [0, 1] (``gamma(0) = 0``, ``gamma(1) = gamma_max``).

    ``logit``: ``kappa (r / (1 - r))^2`` with ``r = u r_max`` and ``r_max`` chosen so that ``gamma(1) = gamma_max``;
        log-SNR is linear in the logit of progress. ``kappa = 8 / Delta_min^2`` is where anchors become
        separable (4 for orthonormal anchors); this schedule reached the sampling floor on toy joints.
    ``loglinear``: ``gamma_min^(1-u) gamma_max^u`` for ``u > 0`` (log-SNR evenly spaced).
    ``linear``: ``u gamma_max`` (spends most steps at high SNR where nothing happens; for comparison only).
    """
    if u <= 0:
        return 0.0
    if schedule == "linear":
        return u * gamma_max
    if schedule == "loglinear":
        return gamma_min ** (1 - u) * gamma_max**u
    odds_max = math.sqrt(gamma_max / kappa)
    r = u * odds_max / (1 + odds_max)
    return kappa * (r / (1 - r)) ** 2
