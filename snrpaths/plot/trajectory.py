"""A denoiser's error along a path: the KL to the exact posterior at every call, its stages shaded."""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from ..diagnostics import Trajectory
from ..errors import SNRPathError, SNRTypeError
from ._common import new_figure

_SHADES = ("#f1f1f1", "#dfe9f5")


def trajectory(trajectories: Trajectory | Mapping[str, Trajectory], *, logy: bool = False,
               title: str | None = None) -> Figure:
    """KL (bits per free position, ± 1 s.e. across rows) against the call number, and beneath it the mean SNR of
    the positions each call scored (:func:`snrpaths.diagnostics.trajectory`).

    Args:
        trajectories: one :class:`~snrpaths.diagnostics.Trajectory`, whose stages are shaded and labelled, or a
            ``{label: Trajectory}`` mapping drawn as overlaid curves (paths compared at their own calls).
        logy: a log KL axis (zeros, an exact denoiser's, are then left out).
    """
    items = _items(trajectories)
    fig = new_figure(7.4, 4.8)
    kl_ax, gamma_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    if len(items) == 1:
        _shade_stages(kl_ax, gamma_ax, items[0][1])
    for k, (label, traj) in enumerate(items):
        calls = np.array([r.call for r in traj.rows])
        kl = np.array([r.kl.mean for r in traj.rows])
        se = np.nan_to_num(np.array([r.kl.se for r in traj.rows]))
        shown = kl > 0 if logy else np.isfinite(kl)
        kl_ax.errorbar(calls[shown], kl[shown], yerr=se[shown], marker="o", markersize=3.5, linewidth=1.3,
                       capsize=2, color=f"C{k}", label=label)
        gamma_ax.plot(calls, [r.gamma for r in traj.rows], marker=".", linewidth=1.0, color=f"C{k}")
    if logy:
        kl_ax.set_yscale("log")
    kl_ax.set_ylabel("KL to the exact posterior\n(bits per free position)", fontsize=8.5)
    if len(items) > 1:
        kl_ax.legend(fontsize=8, frameon=False)
    gamma_ax.set_yscale("symlog", linthresh=1.0)
    gamma_ax.set_ylim(bottom=0.0)  # no negative SNRs; a masked-diffusion call sits at 0
    gamma_ax.set_ylabel(r"mean $\gamma$", fontsize=8.5)
    gamma_ax.set_xlabel("denoiser call", fontsize=8.5)
    for ax in (kl_ax, gamma_ax):
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="y", color="#e6e6e6", linewidth=0.6)
    first = items[0][1]
    kl_ax.set_title(title or (f"Error along {first.path} ({first.batch} rows)" if len(items) == 1
                              else "Error along each path"), fontsize=10)
    return fig


def _items(trajectories: Any) -> list[tuple[str | None, Trajectory]]:
    if isinstance(trajectories, Trajectory):
        return [(None, trajectories)]
    if not isinstance(trajectories, Mapping):
        raise SNRTypeError(f"trajectory: expected a Trajectory from snrpaths.diagnostics.trajectory(...) or a "
                           f"{{label: Trajectory}} mapping (got {type(trajectories).__name__})")
    if not trajectories:
        raise SNRPathError("trajectory: the mapping is empty; give at least one Trajectory")
    for label, traj in trajectories.items():
        if not isinstance(traj, Trajectory):
            raise SNRTypeError(f"trajectory: {label!r} is a {type(traj).__name__}, not a Trajectory")
    return [(str(label), traj) for label, traj in trajectories.items()]


def _shade_stages(kl_ax, gamma_ax, traj: Trajectory) -> None:
    """Alternating bands over the calls of each stage (consecutive calls with one stage string), each labelled at
    the top of the KL panel (upright in a band too narrow for the text)."""
    total = max(1, len(traj.rows))
    for k, (stage, group) in enumerate(itertools.groupby(traj.rows, key=lambda r: r.stage)):
        calls = [r.call for r in group]
        lo, hi = calls[0] - 0.5, calls[-1] + 0.5
        for ax in (kl_ax, gamma_ax):
            ax.axvspan(lo, hi, color=_SHADES[k % 2], zorder=0, linewidth=0)
        narrow = (hi - lo) / total < 0.012 * len(stage)
        kl_ax.text((lo + hi) / 2, 0.97, stage, transform=kl_ax.get_xaxis_transform(), ha="center", va="top",
                   fontsize=7, rotation=90 if narrow else 0, color="#555555")
