"""A denoiser between an exact posterior and a model: model quality as a dial (DESIGN.md 4d).

Per position, with ``p_e = p_exact(s_i | z)``, ``p_m = p_model(s_i | z)`` and weight ``w`` in ``[0, 1]``:

    geometric:  log p_w(v) = (1 - w) log p_e(v) + w log p_m(v) - log sum_u p_e(u)^(1 - w) p_m(u)^w
    mixture:    log p_w(v) = logsumexp(log(1 - w) + log p_e(v), log w + log p_m(v))

both in float64 from the normalised log-probabilities. The geometric path keeps only what both allow (a token the
exact posterior rules out stays ruled out for ``w < 1``); the mixture keeps the model's leaks, ``w p_m(v)``, wherever
the truth has none. ``w = 0`` is the exact denoiser and ``w = 1`` the model, bit for bit (only that one is called).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from snrpaths import validate
from snrpaths.denoiser import Denoiser, reads_finite_snr, require
from snrpaths.diagnostics import on_device, require_same_channel
from snrpaths.state import SNRState



def _geometric(e: torch.Tensor, m: torch.Tensor, w: float) -> torch.Tensor:
    # both coefficients positive: -inf stays -inf, never 0 * inf
    return ((1 - w) * e + w * m).log_softmax(-1)


def _mixture(e: torch.Tensor, m: torch.Tensor, w: float) -> torch.Tensor:
    return torch.logaddexp(math.log1p(-w) + e, math.log(w) + m)


#: The interpolations by name: normalised log-probabilities ``e`` (exact) and ``m`` (model), ``[B, L, V]`` float64,
#: and a weight strictly between 0 and 1 -> ``log p_w`` (module docstring).
MODES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {"geometric": _geometric,
                                                                                 "mixture": _mixture}


class Interpolated:
    """``exact`` and ``model`` combined per position at ``weight`` (module docstring): a :class:`snrpaths.Denoiser`.

    Args:
        exact: the denoiser at ``weight = 0``, usually an exact one (``ExactHMM``, ``ExactToy``).
        model: the denoiser at ``weight = 1``, e.g. a trained ``DSLDenoiser``; the same vocabulary, length and
            anchors as ``exact`` (one state ``z`` must mean the same evidence to both).
        weight: ``w`` in ``[0, 1]``.
        mode: ``"geometric"`` (``p ∝ p_exact^(1-w) p_model^w``) or ``"mixture"`` (``(1-w) p_exact + w p_model``).

    It reads finite-SNR states when the model does. Its logits are the exact posterior only at ``weight = 0``: there
    ``exact_posterior`` is ``exact``'s flag and every other public attribute of ``exact`` (``log_prob``,
    ``sample_posterior``, ``joint_log_posterior``, ``marginals``, ...) is forwarded; at ``weight > 0`` the flag is
    ``False`` and those raise, naming the weight (ask ``.exact`` for the truth).
    """

    def __init__(self, exact, model, weight: float, mode: str = "geometric"):
        require("exact", exact, Denoiser)
        require("model", model, Denoiser)
        self.weight = validate.number("weight", weight, 0.0, 1.0)
        self.mode = validate.choice("mode", mode, MODES)
        require_same_channel("model", model, "exact denoiser", exact, "an interpolation reads one state with both")
        self.exact, self.model = exact, model
        self.vocab_size, self.seq_len, self.table = model.vocab_size, model.seq_len, model.table
        self.reads_finite_snr = reads_finite_snr(model)

    @property
    def exact_posterior(self) -> bool:
        return self.weight == 0 and getattr(self.exact, "exact_posterior", False) is True

    def __repr__(self) -> str:
        return f"Interpolated({self.exact!r}, {self.model!r}, weight={self.weight!r}, mode={self.mode!r})"

    def __getattr__(self, name: str):
        # only reached for names the class lacks: the exact denoiser's own methods, which hold at weight 0 only
        if name.startswith("_") or "exact" not in self.__dict__:
            raise AttributeError(name)
        if self.weight != 0:
            raise AttributeError(f"{self!r} has no {name!r}: at weight {self.weight:g} its logits are no exact "
                                 f"posterior; ask its exact denoiser (.exact.{name}) or use weight 0")
        return getattr(self.exact, name)

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` log-probabilities (float64 unless ``weight`` is 0 or 1, where the one denoiser's own logits
        are returned as they are)."""
        if self.weight == 0:
            return self.exact.logits(state)
        if self.weight == 1:
            return self.model.logits(state)
        model = self.model.logits(state)
        exact = self.exact.logits(on_device(state, self.exact.table.anchors.device))
        e = exact.to(model.device, torch.float64).log_softmax(-1)
        m = model.to(torch.float64).log_softmax(-1)
        return MODES[self.mode](e, m, self.weight)
