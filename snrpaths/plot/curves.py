"""Quality against the number of denoiser calls, one curve per sampler: the benchmarks' summary figure."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from ..errors import SNRPathError, SNRTypeError
from ._common import new_figure

_MARKERS = "osD^v<>px*"


def _points(name: str, rows: Any) -> np.ndarray:
    """``[n, 3]`` rows ``(nfe, value, err)`` sorted by NFE, from ``(nfe, value)`` or ``(nfe, value, err)`` rows."""
    try:
        table = [tuple(float(v) for v in row) for row in rows]
    except (TypeError, ValueError):
        raise SNRTypeError(f"nfe_curves: {name!r} needs rows (nfe, value) or (nfe, value, err) of numbers "
                           f"(got {rows!r:.80})") from None
    if not table or any(len(row) not in (2, 3) for row in table):
        raise SNRPathError(f"nfe_curves: {name!r} needs at least one row, each (nfe, value) or (nfe, value, err)")
    out = np.array([row + (math.nan,) * (3 - len(row)) for row in table])
    if not (np.isfinite(out[:, :2]).all() and (out[:, 0] > 0).all()):
        raise SNRPathError(f"nfe_curves: {name!r} has a non-finite value or an NFE <= 0: {table}")
    return out[np.argsort(out[:, 0], kind="stable")]


def nfe_curves(
    results: Mapping[str, Any],
    *,
    metric: str = "total variation to P",
    lower_is_better: bool = True,
    floor: float | None = None,
    floor_label: str = "sampling floor",
    logx: bool = True,
    logy: bool = True,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Quality against NFE (denoiser calls actually made), one line with markers per sampler.

    Args:
        results: ``{sampler label: [(nfe, value) or (nfe, value, err), ...]}``; ``err`` is drawn as an error bar
            (e.g. a standard error or a tolerance).
        metric: what ``value`` is, for the y label; ``lower_is_better`` says which way is good.
        floor: a horizontal reference (e.g. the TV an exact sampler reaches with this many samples).
        logx, logy: log axes (NFE budgets are usually powers of two; errors shrink geometrically).
        ax: draw into these axes instead of a new figure.
    """
    if not isinstance(results, Mapping) or not results:
        raise SNRTypeError("nfe_curves: 'results' must be a non-empty mapping {sampler: [(nfe, value), ...]} "
                           f"(got {type(results).__name__})")
    curves = {str(name): _points(str(name), rows) for name, rows in results.items()}
    if logy and any((pts[:, 1] <= 0).any() for pts in curves.values()):
        raise SNRPathError("nfe_curves: a log y axis needs positive values; pass logy=False to draw zeros or "
                           "negative values")
    if ax is None:
        ax = new_figure(6.4, 4.2).subplots()
    for k, (name, pts) in enumerate(curves.items()):
        err = None if np.isnan(pts[:, 2]).all() else np.nan_to_num(pts[:, 2])
        ax.errorbar(pts[:, 0], pts[:, 1], yerr=err, marker=_MARKERS[k % len(_MARKERS)], markersize=4.5,
                    linewidth=1.4, capsize=2.5, color=f"C{k}", label=name)
    if floor is not None:
        ax.axhline(floor, color="black", linestyle=":", linewidth=1.0, label=floor_label)
    _axes(ax, curves, metric, lower_is_better, logx, logy)
    ax.set_title(title or f"{metric[0].upper()}{metric[1:]} against denoiser calls", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="best")
    return ax.figure


def _axes(ax, curves: dict, metric: str, lower_is_better: bool, logx: bool, logy: bool) -> None:
    if logx:
        ax.set_xscale("log", base=2)
        budgets = sorted({float(n) for pts in curves.values() for n in pts[:, 0]})
        if len(budgets) <= 12:  # label the budgets that were run rather than arbitrary powers
            ax.xaxis.set_major_locator(FixedLocator(budgets))
            ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("denoiser calls (NFE)", fontsize=9)
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="#e6e6e6", linewidth=0.6)
