"""Paths in the (gamma_i, gamma_j) plane: the paper's picture of a sampler as a route through per-token SNR space."""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from .. import validate
from ._common import (CONTINUOUS, REMASK, RENOISE, REVEAL, as_trace, check_positions, check_runnable, compactify,
                      describe, gamma_tick_labels, labelled, new_figure, wrap)

_FIELDS = ("gamma",)
_PAD = 0.08  # room beyond the [0, 1] square so that moves along its edges stay visible


@attrs.frozen(eq=False)
class PlaneSegments:
    """The moves of every run between consecutive states, in compactified coordinates.

    Each array is ``[n, 2, 2]``: ``n`` moves, from ``(u_i, u_j)`` to ``(u_i, u_j)``.

    Attributes:
        continuous: both coordinates stay finite (a ramp step): drawn as a line with a dot per step.
        reveal: some coordinate jumps to inf (u = 1) and none falls: a reveal.
        remask: some coordinate falls to 0 from above: a remask (or a switch back to [MASK]).
        start: ``[B, 2]`` first state of each run; ``end``: ``[B, 2]`` last state.
        drop: some coordinate falls to a finite SNR above 0 and none jumps to an edge: a ``renoise``.
        ramp_end: ``[n, 2]`` the starts of jumps that take a coordinate from a finite SNR (``0 < u < 1``) to an edge:
            where a ramp stopped, at its finite ``gamma_max``, drawn apart from clean (gamma = inf, u = 1).
    """

    continuous: np.ndarray
    reveal: np.ndarray
    remask: np.ndarray
    start: np.ndarray
    end: np.ndarray
    drop: np.ndarray
    ramp_end: np.ndarray


def plane_segments(gamma_i: Any, gamma_j: Any) -> PlaneSegments:
    """Classify the moves of ``[S + 1, B]`` SNR trajectories of two positions (see :class:`PlaneSegments`)."""
    x, y = compactify(gamma_i), compactify(gamma_j)
    pts = np.stack([x, y], axis=-1)  # [S + 1, B, 2]
    a, b = pts[:-1].reshape(-1, 2), pts[1:].reshape(-1, 2)
    moved = (a != b).any(-1)
    to_clean = ((b == 1) & (a < 1)).any(-1)
    to_mask = ((b == 0) & (a > 0)).any(-1)
    drop = moved & ~to_clean & ~to_mask & (b < a).any(-1)
    seg = np.stack([a, b], axis=1)
    finite_to_edge = ((a > 0) & (a < 1) & ((b == 0) | (b == 1))).any(-1)
    return PlaneSegments(continuous=seg[moved & ~to_clean & ~to_mask & ~drop], reveal=seg[to_clean & ~to_mask],
                         remask=seg[to_mask], start=pts[0], end=pts[-1], drop=seg[drop], ramp_end=a[finite_to_edge])


def gamma_plane(
    paths: Any,
    positions: tuple[int, int] = (0, 1),
    *,
    denoiser: Any = None,
    runs: int = 8,
    seed: int = 0,
    cols: int | None = None,
    title: str | None = None,
) -> Figure:
    """Trajectories of ``(gamma_i, gamma_j)`` for one or several paths, one panel per path.

    Both axes are compactified, ``u = gamma / (1 + gamma)``, so ``[MASK]`` (gamma = 0) and clean tokens
    (gamma = inf) are the edges of the unit square: a run from an all-``[MASK]`` start begins at the lower-left
    corner and every run ends at the upper-right one. ``runs`` independent runs (the rows of one batch) are
    overlaid with transparency. Continuous moves (finite SNR rising, a ramp) are blue lines with one dot per step,
    and a white diamond where a finite SNR jumps to an edge: the ramp's finite ``gamma_max`` (at the default 40 it
    sits at u = 40/41, next to the clean corner but not on it); jumps to gamma = inf (reveals) are dark arrows,
    jumps back to 0 (remasks) red ones and drops to a lower finite SNR (``renoise``) dashed purple ones. A jump of
    both positions at once bends away from the diagonal inside the box its ends span (:func:`jump_curve`): it never
    passes below its start (an SNR that fell) nor leaves the square. So AR runs
    along the edges, masked diffusion jumps between corners, the joint ramp climbs the diagonal (a staggered
    ramp, ``ramp(T, lag=1)``, climbs along one axis, then the other; smaller lags bend the diagonal towards
    that corner), the hybrid climbs it, then jumps, and ``ramp(8) >> renoise(4.0) >> ramp(8)`` climbs, drops back
    along it and climbs again.

    Args:
        paths: a Path, a path string, a :class:`~snrpaths.Result` / :class:`~snrpaths.Trace` of a run, a sequence
            of these, or a ``{label: item}`` mapping (labels become panel titles).
        positions: the two positions ``(i, j)`` on the x and y axes.
        denoiser: what bare paths are sampled with (``trace=True``), at its sequence length; needed only for bare
            paths. An exact toy (``ExactToy.markov(2, L, seed=0)``, the CLI's and the gallery's choice) draws the
            path itself: its SNR route depends on the model only through confidence orders and ReMDM's confidence
            policy, where the Bayes-optimal answer is the one to show.
        runs: runs per bare path; ``seed`` seeds them.
        cols: panels per row (default: a near-square grid, 2 x 2 for four panels, 4 per row for twelve).
    Returns:
        the Figure (never shown; save it with :func:`snrpaths.plot.save` or ``fig.savefig``).
    """
    runs = validate.integer("runs", runs)
    pair = check_positions(positions, None, "gamma_plane", count=2)
    panels, items = [], labelled(paths, "gamma_plane")
    check_runnable(items, denoiser)
    for index, (label, item) in enumerate(items):
        trace = as_trace(item, _FIELDS, "gamma_plane", denoiser=denoiser, runs=runs, seed=seed)
        i, j = check_positions(pair, trace.gamma.shape[-1], f"gamma_plane ({describe(label, item, index)})", count=2)
        panels.append((describe(label, item, index), plane_segments(trace.gamma[:, :, i], trace.gamma[:, :, j])))
    return _figure(panels, pair, cols, title)


def _figure(panels: list, pair: tuple[int, int], cols: int | None, title: str | None) -> Figure:
    n = len(panels)
    # Near-square grids read best: 4 panels as 2 x 2, 9 as 3 x 3, 12 as 3 rows of 4.
    cols = (n if n <= 3 else math.ceil(math.sqrt(n))) if cols is None else validate.integer("cols", cols)
    rows = math.ceil(n / cols)
    width = max(2.75 * cols + 0.3, 4.6)  # one panel still needs room for the legend and the title
    names = [wrap(name, width / cols - 0.2, 8.5) for name, _ in panels]
    batches = sorted({len(seg.start) for _, seg in panels})
    runs = f"{batches[0]} run{'s' * (batches[0] > 1)}" if len(batches) == 1 else "several runs"
    heading = wrap(title or f"Paths in the $(\\gamma_{{{pair[0]}}}, \\gamma_{{{pair[1]}}})$ plane of per-token SNR, "
                   f"{runs} per panel\naxes $\\gamma/(1+\\gamma)$: [MASK] ($\\gamma=0$) and clean ($\\gamma=\\infty$) "
                   "are the edges", width, 9.5)
    lines = [max(names[r * cols:(r + 1) * cols], key=lambda t: t.count("\n")).count("\n") + 1 for r in range(rows)]
    handles = _legend_handles({kind for _, seg in panels for kind in _KINDS if len(getattr(seg, kind))})
    # one row while it fits under the panels (up to cols + 2 entries), else rows of three
    legend_cols = len(handles) if len(handles) <= cols + 2 else 3
    legend_rows = math.ceil(len(handles) / legend_cols)
    # a second legend row needs far more than its text height: constrained layout gives up (overlapping the axis
    # labels) below about 0.6 in more (measured with the overlap check of tests/test_plot.py)
    fig = new_figure(width, sum(2.45 + 0.16 * k for k in lines) + 0.55 + 0.6 * (legend_rows - 1)
                     + 0.17 * (heading.count("\n") + 1))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, name, (_, segments) in zip(axes, names, panels):
        _draw(ax, segments)
        ax.set_title(name, fontsize=8.5)
    for ax in axes[n:]:
        ax.set_visible(False)
    _axes_in_gamma(axes[:n], pair, cols)
    fig.legend(handles=handles, loc="outside lower center", ncols=legend_cols, fontsize=8, frameon=False,
               columnspacing=1.2, handlelength=1.8)
    fig.suptitle(heading, fontsize=9.5)
    return fig


#: What a panel draws, by the PlaneSegments field each comes from: (colour, line style, legend label).
_KINDS = {
    "continuous": (CONTINUOUS, "-", "continuous move, one dot per step"),
    "ramp_end": (CONTINUOUS, "", "ramp's end: finite $\\gamma_{\\max}$, not clean"),
    "reveal": (REVEAL, "-", "jump: reveal ($\\gamma\\to\\infty$)"),
    "remask": (REMASK, "-", "jump: remask ($\\gamma\\to 0$)"),
    "drop": (RENOISE, "--", "drop: renoise ($\\gamma\\to\\gamma'$)"),
}


def _draw(ax, seg: PlaneSegments) -> None:
    alpha = 0.75 if len(seg.start) == 1 else 0.35
    ax.add_patch(_square())
    if len(seg.continuous):
        ax.add_collection(LineCollection(seg.continuous, colors=CONTINUOUS, linewidths=1.6, alpha=alpha,
                                         zorder=3, gid="continuous"))
        dots = seg.continuous[:, 1]
        ax.scatter(dots[:, 0], dots[:, 1], s=9, color=CONTINUOUS, alpha=alpha, zorder=3, linewidths=0,
                   gid="continuous")
    if len(seg.ramp_end):
        ax.scatter(*seg.ramp_end.T, s=26, marker="D", facecolor="white", edgecolor=CONTINUOUS, linewidths=1.2,
                   zorder=6, gid="ramp_end")
    jumps = 0.9  # a jump that few runs take still reads in its legend colour, not as a grey curve
    for kind in ("reveal", "remask", "drop"):
        moves = getattr(seg, kind)
        if len(moves):
            colour, style, _ = _KINDS[kind]
            curves = [jump_curve(a, b) for a, b in moves]
            ax.add_collection(LineCollection(curves, colors=colour, linewidths=1.3, alpha=jumps, linestyles=style,
                                             zorder=4, gid=kind))
            for curve in curves:
                ax.add_patch(_head(curve, colour, jumps, kind))
    ax.scatter(*seg.start.T, s=55, facecolor="white", edgecolor="black", linewidths=1.2, zorder=5, gid="start")
    ax.scatter(*seg.end.T, s=110, marker="*", color="black", zorder=5, linewidths=0, gid="end")


def jump_curve(a: np.ndarray, b: np.ndarray, points: int = 24) -> np.ndarray:
    """``[points, 2]`` the drawn route of a jump from ``a`` to ``b`` (compactified ``(u_i, u_j)``).

    The quadratic Bezier curve ``(1 - t)^2 a + 2 t (1 - t) c + t^2 b`` with its control point ``c = (b_i, a_j)`` at
    the corner of the box the two ends span: it is monotone in each coordinate (its control points are), so a
    reveal never passes below its start, and it stays inside that box, so inside the square. A jump of one
    coordinate is straight; one of both bends away from the diagonal a joint ramp climbs, so the two never merge.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    c = np.array([b[0], a[1]])
    t = np.linspace(0.0, 1.0, points)[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t ** 2 * b


def _head(curve: np.ndarray, colour: str, alpha: float, kind: str) -> FancyArrowPatch:
    """The arrowhead at the end of a jump's curve, along its last piece."""
    return FancyArrowPatch(tuple(curve[-2]), tuple(curve[-1]), arrowstyle="-|>", mutation_scale=9, linewidth=1.3,
                           color=colour, alpha=alpha, shrinkA=0, shrinkB=1.5, zorder=4, gid=kind)


def _square() -> Rectangle:
    return Rectangle((0, 0), 1, 1, fill=False, edgecolor="#b8b8b8", linewidth=0.8, linestyle=(0, (3, 2)), zorder=1)


def _axes_in_gamma(axes, pair: tuple[int, int], cols: int) -> None:
    ticks, xlabels = gamma_tick_labels()
    _, ylabels = gamma_tick_labels(sep=" ")
    for k, ax in enumerate(axes):
        ax.set_xlim(-_PAD, 1 + _PAD)
        ax.set_ylim(-_PAD, 1 + _PAD)
        ax.set_aspect("equal")
        ax.set_xticks(ticks, xlabels, fontsize=7.5)
        ax.set_yticks(ticks, ylabels, fontsize=7.5)
        ax.tick_params(length=2.5)
        ax.grid(True, color="#eeeeee", linewidth=0.6, zorder=0)
        ax.set_xlabel(f"SNR $\\gamma_{{{pair[0]}}}$ of position {pair[0]}", fontsize=8.5)
        ax.set_ylabel(f"SNR $\\gamma_{{{pair[1]}}}$ of position {pair[1]}", fontsize=8.5)
        last_row = k + cols >= len(axes)
        ax.tick_params(labelbottom=last_row, labelleft=k % cols == 0)
        if not last_row:
            ax.set_xlabel("")
        if k % cols:
            ax.set_ylabel("")


def _legend_handles(drawn: set[str]) -> list:
    """One entry for every kind of move some panel draws (and only those), then the start and the end."""
    handles = []
    for kind, (colour, style, label) in _KINDS.items():
        if kind not in drawn:
            continue
        if kind == "ramp_end":
            handles.append(Line2D([], [], linestyle="", marker="D", markerfacecolor="white", markeredgecolor=colour,
                                  markersize=5, label=label, gid=kind))
        else:
            handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=1.6 if kind == "continuous" else 1.3,
                                  marker="o" if kind == "continuous" else ">", markersize=3 if kind == "continuous"
                                  else 5, label=label, gid=kind))
    handles += [Line2D([], [], linestyle="", marker="o", markerfacecolor="white", markeredgecolor="black",
                       markersize=6, label="start", gid="start"),
                Line2D([], [], linestyle="", marker="*", color="black", markersize=9, label="end", gid="end")]
    return handles
