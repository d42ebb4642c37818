"""Is the denoiser's confidence honest, and does remasking correct mistakes?

* ``reliability``: held-out sequences are corrupted, the denoiser predicts the hidden tokens, and predictions are
  binned by confidence: a calibrated denoiser is right as often as it is confident. Summary: the expected
  calibration error ``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|``.
* ``self_correction``: in a ReMDM trace, each time a clean token is remasked, which token takes its place when the
  position is revealed again: the same one, or another, and is the other more likely under the data?
* ``calibration``: both as one figure.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import validate
from ..denoiser import Denoiser, require, require_finite_snr
from ..errors import ShapeError, SNRPathError
from ..state import SNRState
from ._common import as_trace, check_runnable, describe, labelled, new_figure


@attrs.frozen(eq=False)
class Reliability:
    """Top-1 predictions binned by confidence.

    Attributes:
        edges: ``[bins + 1]`` bin edges on ``[0, 1]``.
        confidence: ``[bins]`` mean confidence ``max_v p(v | z)`` in each bin (NaN where empty).
        accuracy: ``[bins]`` share of predictions equal to the held-out token (NaN where empty).
        count: ``[bins]`` predictions per bin; ``n`` their total.
        ece: ``sum_b (count_b / n) |accuracy_b - confidence_b|``.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    n: int
    ece: float


@attrs.frozen
class SelfCorrection:
    """What remasking did in a trace: ``events`` clean tokens sent back to ``[MASK]``, of which ``unchanged`` came
    back as the same token, ``changed`` as another, ``pending`` never came back (the trace ended first). With a
    reference ``log_prob``, the changed ones split into ``better`` / ``worse`` / ``tied``: the final sequence is more
    / less / equally likely under the reference with the new token than with the old one."""

    events: int
    unchanged: int
    changed: int
    pending: int
    better: int | None = None
    worse: int | None = None
    tied: int | None = None


# -- numbers ---------------------------------------------------------------------------------------------------


def reliability(
    denoiser: Any,
    data: torch.Tensor,
    *,
    gamma: float | None = None,
    bins: int = 10,
    seed: int = 0,
    batch: int = 256,
) -> Reliability:
    """Reliability of ``denoiser`` on held-out ``data`` (``[N, L]`` token ids).

    States: with ``gamma=None``, endpoint states as in DSL's ROAR training branch: per sequence ``k ~ U{1..L}``
    random positions masked (gamma = 0), the rest clean, and the masked positions are scored. With a ``gamma``,
    every position is corrupted to ``z = gamma x + sqrt(gamma) eps`` and all are scored. A prediction is the most
    likely token; it is right when it equals the held-out token.
    """
    require("denoiser", denoiser, Denoiser)
    data = _check_data(data, denoiser)
    bins, batch = validate.integer("bins", bins), validate.integer("batch", batch)
    gamma = validate.number("gamma", gamma, 0.0, low_open=True, high_open=True, allow_none=True,
                            phrase="a positive finite SNR or None for endpoint states")
    if gamma is not None:
        require_finite_snr(denoiser, f"reliability at gamma={gamma!r}")
    g = torch.Generator().manual_seed(validate.seed("seed", seed))
    conf, right = [], []
    for rows in torch.split(data, batch):
        snr = _endpoint_snr(rows.shape, g) if gamma is None else torch.full(rows.shape, float(gamma),
                                                                             dtype=torch.float64)
        state = SNRState.from_tokens(rows, snr.to(denoiser.table.anchors.dtype), denoiser.table, g)
        with torch.no_grad():
            probs = torch.softmax(denoiser.logits(state).to(torch.float64), dim=-1)
        scored = ~state.clean
        top, pred = probs.max(-1)
        conf.append(top[scored])
        right.append((pred == rows)[scored])
    return _binned(torch.cat(conf).numpy(), torch.cat(right).numpy(), bins)


def _check_data(data: Any, denoiser: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or data.is_floating_point() or data.ndim != 2:
        raise ShapeError(f"reliability: 'data' must be an integer tensor [N, L] of held-out token ids "
                         f"(got {data!r:.60})")
    if data.shape[1] != denoiser.seq_len or data.shape[0] < 1:
        raise ShapeError(f"reliability: 'data' has shape {list(data.shape)}; the denoiser needs [N >= 1, "
                         f"{denoiser.seq_len}]")
    denoiser.table.check_tokens("data", data)
    return data.to(torch.int64)


def _endpoint_snr(shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    """``[N, L]``: ``k ~ U{1..L}`` positions per row at gamma = 0 (the lowest-ranked of a random score), the
    rest at inf."""
    n, length = shape
    k = torch.randint(1, length + 1, (n, 1), generator=g)
    rank = torch.rand(n, length, generator=g).argsort(1).argsort(1)
    return torch.where(rank < k, 0.0, math.inf).to(torch.float64)


def _binned(conf: np.ndarray, right: np.ndarray, bins: int) -> Reliability:
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        accuracy = np.bincount(which, weights=right.astype(float), minlength=bins) / count
    n = int(count.sum())
    ece = float(np.nansum(count / max(n, 1) * np.abs(accuracy - mean_conf)))
    return Reliability(edges=edges, confidence=mean_conf, accuracy=accuracy, count=count, n=n, ece=ece)


def self_correction(trace: Any, log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None) -> SelfCorrection:
    """Count remask events in ``trace`` (a clean token at step k that is not clean at step k + 1) and what
    replaced each one at the position's next reveal. ``log_prob`` maps ``[n, L]`` sequences to ``[n]`` log
    probabilities under a reference (the true joint of a toy: ``ExactToy.log_prob``); each changed token is
    judged by ``log_prob(final with the new token) - log_prob(final with the old token)``."""
    trace = as_trace(trace, ("tokens",), "self_correction")
    tokens = trace.tokens
    if tokens.ndim != 3 or tokens.is_floating_point():
        raise ShapeError(f"self_correction: trace.tokens must be an integer tensor [S + 1, B, L] "
                         f"(got {list(tokens.shape)})")
    clean = tokens >= 0
    step, row, pos = (clean[:-1] & ~clean[1:]).nonzero(as_tuple=True)
    old = tokens[step, row, pos]
    back = _next_clean(clean)[step + 1, row, pos]  # S + 1 where the position never comes back
    pending = back > tokens.shape[0] - 1
    new = torch.where(pending, -1, tokens[back.clamp_max(tokens.shape[0] - 1), row, pos])
    done = ~pending
    counts = dict(events=len(old), unchanged=int((new[done] == old[done]).sum()),
                  changed=int((new[done] != old[done]).sum()), pending=int(pending.sum()))
    if log_prob is None:
        return SelfCorrection(**counts)
    moved = done & (new != old)
    delta = _log_prob_change(tokens[-1], row[moved], pos[moved], old[moved], new[moved], log_prob)
    return SelfCorrection(**counts, better=int((delta > 0).sum()), worse=int((delta < 0).sum()),
                          tied=int((delta == 0).sum() + delta.isnan().sum()))


def _next_clean(clean: torch.Tensor) -> torch.Tensor:
    """``[S + 1, B, L]``: the first state ``>= k`` at which each position is clean (``S + 1`` if none)."""
    out = torch.empty(clean.shape, dtype=torch.int64)
    nxt = torch.full(clean.shape[1:], clean.shape[0], dtype=torch.int64)
    for k in range(clean.shape[0] - 1, -1, -1):
        nxt = torch.where(clean[k], k, nxt)
        out[k] = nxt
    return out


def _log_prob_change(final: torch.Tensor, row, pos, old, new, log_prob) -> torch.Tensor:
    """``log_prob(final[row] with new at pos) - log_prob(final[row] with old at pos)`` per event (NaN when both
    sequences are impossible)."""
    if len(row) == 0:
        return torch.zeros(0, dtype=torch.float64)
    if bool((final[row] < 0).any()):
        raise SNRPathError("self_correction: the trace's last state has unrevealed positions; judging a change "
                           "with log_prob needs complete sequences")
    with_old, with_new = final[row].clone(), final[row].clone()
    with_old[torch.arange(len(row)), pos] = old
    with_new[torch.arange(len(row)), pos] = new
    scores = torch.as_tensor(log_prob(torch.cat([with_new, with_old])), dtype=torch.float64).flatten()
    if scores.shape[0] != 2 * len(row):
        raise ShapeError(f"self_correction: log_prob returned {scores.shape[0]} values for {2 * len(row)} sequences")
    return scores[: len(row)] - scores[len(row):]


# -- the figure ------------------------------------------------------------------------------------------------

_SHARES = (("unchanged", "came back as the same token", "#9a9a9a"),
           ("better", "changed: final sequence more likely", "#2a9d4b"),
           ("worse", "changed: final sequence less likely", "#d1352b"),
           ("tied", "changed: equally likely", "#c9b27c"),
           ("changed", "came back as another token", "#e08a00"),
           ("pending", "not revealed again before the end", "#ffffff"))


def calibration(
    denoisers: Any,
    data: torch.Tensor,
    traces: Any = None,
    *,
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    gamma: float | None = None,
    bins: int = 10,
    seed: int = 0,
) -> Figure:
    """A reliability diagram of one or several denoisers on held-out ``data`` and, given ReMDM ``traces``, the
    self-correction view beside it.

    Left: accuracy against mean confidence per confidence bin (:func:`reliability`), the diagonal being perfect
    calibration, each denoiser's ECE in the legend; beneath, the share of predictions in each bin. Right: for each
    trace, the remask events split by what came back (:func:`self_correction`; with ``log_prob``, whether a
    changed token made the final sequence more or less likely under the reference).

    Args:
        denoisers: a Denoiser or a ``{label: Denoiser}`` mapping.
        data: ``[N, L]`` held-out token ids.
        traces: a Result / Trace of a remasking sampler (or a Path, sampled on the first denoiser), a sequence, or
            a ``{label: item}`` mapping.
        gamma, bins, seed: see :func:`reliability`.
    """
    models = [(label or type(den).__name__, den) for label, den in labelled(denoisers, "calibration")]
    if gamma is not None:  # every model and every bare path is checked before the first call
        for name, den in models:
            require_finite_snr(den, f"calibration ({name}) at gamma={gamma!r}")
    if traces is not None:
        check_runnable(labelled(traces, "calibration traces"), models[0][1])
    stats = [(name, reliability(den, data, gamma=gamma, bins=bins, seed=seed)) for name, den in models]
    layout = [["rel", "self"], ["hist", "self"]] if traces is not None else [["rel"], ["hist"]]
    fig = new_figure(10.4 if traces is not None else 5.4, 5.6)
    axes = fig.subplot_mosaic(layout, height_ratios=[3, 1], width_ratios=[1, 1] if traces is not None else [1])
    _reliability_panel(axes["rel"], axes["hist"], stats, gamma)
    if traces is not None:
        items = labelled(traces, "calibration traces")
        views = [(describe(label, item, k), self_correction(
            as_trace(item, ("tokens",), "calibration", denoiser=models[0][1], runs=64, seed=seed), log_prob)) for k, (label, item) in enumerate(items)]
        _self_correction_panel(axes["self"], views)
    return fig


def _reliability_panel(ax, hist, stats: list, gamma: float | None) -> None:
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.9, label="perfect calibration")
    for k, (name, rel) in enumerate(stats):
        seen = rel.count > 0
        colour = f"C{k}"
        ax.plot(rel.confidence[seen], rel.accuracy[seen], marker="o", markersize=4, color=colour,
                label=f"{name}\nECE = {rel.ece:.3f}")
        hist.stairs(100 * rel.count / max(rel.n, 1), rel.edges, color=colour, linewidth=1.3)
    where = ("masked positions of random endpoint states" if gamma is None
             else f"every position at $\\gamma$ = {gamma:g}")
    counts = sorted({rel.n for _, rel in stats})
    n = f"{counts[0]} predictions" + (" each" if len(stats) > 1 else "") if len(counts) == 1 else "predictions"
    ax.set_title(f"Reliability on held-out data: {n}\n({where})", fontsize=9.5)
    ax.set_ylabel("accuracy: top token = held-out token", fontsize=8.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.tick_params(labelbottom=False, labelsize=8)
    ax.legend(fontsize=7.5, loc="upper left", frameon=False)
    ax.grid(True, color="#eeeeee", linewidth=0.6)
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence: probability of the top token, $\\max_v\\, p(v\\,|\\,z)$", fontsize=8.5)
    hist.set_ylabel("predictions (%)", fontsize=8.5)
    hist.tick_params(labelsize=8)


def _self_correction_panel(ax, views: list) -> None:
    used = [key for key, _, _ in _SHARES if any(getattr(view, key) for _, view in views)]
    if any(view.better is not None for _, view in views):
        used = [key for key in used if key != "changed"]  # split into better / worse / tied
    for y, (name, view) in enumerate(views):
        left = 0.0
        for key, _, colour in _SHARES:
            if key not in used:
                continue
            share = 100 * getattr(view, key) / view.events if view.events else 0.0
            ax.barh(y, share, left=left, color=colour, edgecolor="#555555", linewidth=0.5, height=0.6)
            left += share
        ax.text(101, y, f"{view.events} remasks" if view.events else "no remask", va="center", fontsize=7.5)
    ax.set_yticks(range(len(views)), [name for name, _ in views], fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 118)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.tick_params(labelsize=8)
    ax.set_xlabel("share of remask events (%)", fontsize=8.5)
    ax.set_title("Self-correction: what comes back after a remask", fontsize=9.5)
    handles = [Patch(facecolor=colour, edgecolor="#555555", linewidth=0.5, label=label)
               for key, label, colour in _SHARES if key in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, fontsize=7.5,
              frameon=False)
