"""The posterior field of an exact toy over a two-dimensional evidence space.

Two toys have a 2-D evidence space: two positions with anchors on a line (``L = 2``, ``d = 1``, the paper's two-bit
toy, coordinates ``(z_0, z_1)``) and one position with anchors in the plane (``L = 1``, ``d = 2``, coordinates the
two components of ``z``). Both are drawn by one function, because in both the posterior is
``p(s | z) ∝ P(s) exp(sum_i z_i · x_{s_i})`` over a handful of sequences ``s``.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import validate
from ..channel import increment, posterior_mean
from ..denoiser import EnumerableJoint
from ..errors import SNRPathError, SNRTypeError
from ..state import SNRState
from ._common import CONTINUOUS, new_figure

_PALETTE = ("#d1352b", "#1f6fb4", "#2a9d4b", "#8e44ad", "#e08a00", "#17becf", "#7f7f7f", "#bcbd22")


@attrs.frozen
class _Geometry:
    """How a toy's evidence maps to the plane, and the defaults that tell its story."""

    axis_labels: tuple[str, str]
    start: tuple[float, float]  # where the trajectories begin
    gammas: tuple[float, float]  # the SNR range they run over
    extent: float  # the plot shows [-extent, extent]^2
    title: str
    per_token_lines: bool  # draw z_i = 0, where one position's own evidence is neutral


def _geometry(toy: Any) -> _Geometry:
    if not isinstance(toy, EnumerableJoint):
        raise SNRTypeError("posterior_field needs an exact toy (snrpaths.backends.toy.ExactToy): it colours evidence "
                           f"space by the joint posterior over sequences (got {type(toy).__name__})")
    shape = (toy.seq_len, toy.table.dim)
    if shape == (2, 1):
        return _Geometry(("evidence $z_0$ of position 0", "evidence $z_1$ of position 1"), (-0.6, 1.5), (1.0, 3.0),
                         5.0, "Two positions, anchors on a line:\nthe joint posterior decides, not each token alone",
                         True)
    if shape == (1, 2):
        return _Geometry(("evidence $z$, first component", "evidence $z$, second component"), (0.0, 0.0),
                         (0.0, 4.0), 7.0, "One token, anchors in the plane:\ndirection = identity, "
                                          "radius = concentration", False)
    raise SNRPathError(f"posterior_field draws a 2-D evidence space: a toy with L = 2 positions and d = 1 (like "
                       f"ExactToy.two_bit()) or L = 1 and d = 2 (a token table in the plane); got L = {shape[0]}, "
                       f"d = {shape[1]}")


def _states(points: np.ndarray, toy: Any) -> SNRState:
    """Unrevealed states whose evidence is ``points`` ``[N, 2]``, read as ``[N, L, d]``.

    The SNR recorded in the state is a placeholder (1): with unit-norm anchors the posterior depends on z only.
    """
    z = torch.as_tensor(points, dtype=torch.float64).reshape(len(points), toy.seq_len, toy.table.dim)
    n, length = z.shape[:2]
    return SNRState(gamma=torch.ones(n, length, dtype=torch.float64), z=z,
                    tokens=torch.full((n, length), -1, dtype=torch.int64),
                    fixed=torch.zeros(n, length, dtype=torch.bool),
                    confidence=torch.zeros(n, length, dtype=torch.float64))


def _drift(points: np.ndarray, toy: Any) -> np.ndarray:
    """``xhat(z) = sum_v p(s_i = v | z) x_v`` for every position, as ``[N, 2]``: the drift of localization."""
    probs = toy.logits(_states(points, toy)).exp()
    return posterior_mean(probs, toy.table).reshape(len(points), 2).numpy()


def _localize(toy: Any, start: tuple[float, float], gammas: tuple[float, float], runs: int, steps: int,
              generator: torch.Generator | None) -> np.ndarray:
    """``[steps + 1, runs, 2]`` stochastic-localization paths ``z += dgamma xhat(z) + sqrt(dgamma) eps`` from
    ``start`` (the continuous ramp's mean-form update) as gamma runs over ``gammas``; without a ``generator``
    the noise term is dropped, leaving the drift alone."""
    z = np.array([start] * runs, dtype=float)
    dgamma = (gammas[1] - gammas[0]) / steps
    out = [z]
    for _ in range(steps):
        drift = _drift(z, toy)
        if generator is None:
            z = z + dgamma * drift
        else:
            shape = (runs, toy.seq_len, toy.table.dim)
            z = increment(torch.as_tensor(z).reshape(shape), torch.full(shape[:2], dgamma, dtype=torch.float64),
                          torch.as_tensor(drift).reshape(shape), generator).reshape(runs, 2).numpy()
        out.append(z)
    return np.stack(out)


def posterior_field(
    toy: Any,
    *,
    start: tuple[float, float] | None = None,
    gammas: tuple[float, float] | None = None,
    runs: int = 6,
    steps: int = 40,
    extent: float | None = None,
    resolution: int = 241,
    seed: int = 0,
    ax: Any = None,
) -> Figure:
    """The posterior over sequences across a 2-D evidence space, and localization paths through it.

    Background: the most likely sequence ``argmax_s p(s | z)`` by hue, paler where it is less sure (white at
    ``max_s p(s | z) = 1 / K`` among the ``K`` possible sequences); black lines are decision boundaries, dotted
    lines where ``max_s p(s | z) = 0.9``. Grey arrows: the posterior mean ``xhat(z)``, the drift of
    stochastic localization. Lines: ``runs`` paths of ``z += dgamma xhat(z) + sqrt(dgamma) eps`` from ``start``
    as gamma runs over ``gammas``, coloured by the region where they end.

    For the two-bit toy (uniform on (0, 0) and (1, 1), anchors -1 and +1) the boundary is ``z_0 + z_1 = 0``, and the
    default start ``(-0.6, 1.5)`` is a locally inconsistent draft: position 0 alone favours token 0, but the pair is
    on the (1, 1) side, so the drift pulls it back to the valid solution. For one token with anchors in the plane,
    boundaries are rays (direction picks the identity) and the colour deepens outwards (radius, i.e. SNR, sets how
    concentrated the posterior is); paths start at ``z = 0``, the ``[MASK]`` state.

    Args:
        toy: an ``ExactToy`` with ``L = 2, d = 1`` or ``L = 1, d = 2``.
        start, gammas, extent: override the toy's defaults (see above; ``extent`` bounds both axes).
        ax: draw into these axes instead of a new figure.
    """
    geo = _geometry(toy)
    runs, steps, resolution = (validate.integer(n, v) for n, v in (("runs", runs), ("steps", steps),
                                                                       ("resolution", resolution)))
    seed = validate.seed("seed", seed)
    start = geo.start if start is None else _pair("start", start)
    gammas = geo.gammas if gammas is None else _pair("gammas", gammas)
    if not 0 <= gammas[0] < gammas[1] < math.inf:
        raise SNRPathError(f"posterior_field: 'gammas' must be finite with 0 <= gamma_start < gamma_end (got {gammas})")
    extent = geo.extent if extent is None else _pair("extent", (extent, extent))[0]
    if extent <= 0:
        raise SNRPathError(f"posterior_field: 'extent' must be positive (got {extent!r})")
    if ax is None:
        # The legend sits under the axes, two entries a row, about 0.17 inch each.
        entries = toy.probs.flatten().gt(0).sum().item() + 8
        fig = new_figure(5.4, 5.3 + 0.17 * math.ceil(entries / 2))
        ax = fig.subplots()
    possible = torch.isfinite(toy.log_joint.flatten()).nonzero().flatten()
    regions = _background(ax, toy, possible, extent, resolution)
    _arrows(ax, toy, extent)
    if geo.per_token_lines:
        _per_token_lines(ax, start)
    paths = _localize(toy, start, gammas, runs, steps, torch.Generator().manual_seed(seed))
    ends = _region_of(paths[-1], toy, possible)
    _draw_paths(ax, paths, ends, regions)
    drift_only = _localize(toy, start, gammas, 1, steps, None)[:, 0]
    moves = np.linalg.norm(drift_only[-1] - drift_only[0]) > 0.05 * extent  # from a symmetric point it stays put
    if moves:
        _draw_drift(ax, drift_only)
    _anchors(ax, toy)
    _finish(ax, geo, extent, toy, possible, regions, ends, gammas, moves)
    return ax.figure


def _per_token_lines(ax, start: tuple[float, float]) -> None:
    """The axes ``z_i = 0``, where one position's own evidence is neutral, and a note on a draft whose two
    positions' evidence disagree in sign (each alone would pick a different token)."""
    for line in (ax.axhline, ax.axvline):
        line(0, color="black", linewidth=0.7, linestyle=(0, (5, 3)), zorder=2)
    if start[0] * start[1] < 0:
        ax.annotate("locally inconsistent draft:\nthe two signs disagree", start, xytext=(0.03, 0.97),
                    textcoords="axes fraction", va="top", fontsize=7.5, zorder=8,
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="#999999", linewidth=0.6),
                    arrowprops=dict(arrowstyle="-|>", color="black", linewidth=0.8, shrinkB=6))


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SNRTypeError(f"posterior_field: {name!r} must be a pair of numbers (got {value!r})") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise SNRPathError(f"posterior_field: {name!r} must be finite (got {value!r})")
    return a, b


def _grid(extent: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-extent, extent, n)
    xx, yy = np.meshgrid(axis, axis)
    return xx, yy


def _background(ax, toy: Any, possible: torch.Tensor, extent: float, n: int) -> list[str]:
    xx, yy = _grid(extent, n)
    logp = toy.joint_log_posterior(_states(np.stack([xx.ravel(), yy.ravel()], 1), toy))[:, possible].numpy()
    colours = [_PALETTE[k % len(_PALETTE)] for k in range(len(possible))]
    top, pmax = logp.argmax(1), np.exp(logp.max(1))
    k = len(possible)
    sure = np.clip((pmax - 1 / k) / (1 - 1 / k), 0, 1) if k > 1 else np.ones_like(pmax)
    sure = np.round(sure * 24) / 24  # 24 shades read as smooth and compress far better than a gradient
    base = np.array([to_rgb(c) for c in colours])[top]
    image = 1 - sure[:, None] * 0.85 * (1 - base)  # 0.85: the surest region stays light enough for the arrows
    ax.imshow(image.reshape(n, n, 3), origin="lower", extent=(-extent, extent, -extent, extent), zorder=0,
              interpolation="nearest")
    for a in range(k):  # region a ends where some other sequence overtakes it
        rest = np.delete(logp, a, axis=1).max(1) if k > 1 else np.full(len(logp), -np.inf)
        margin = (logp[:, a] - rest).reshape(n, n)
        if np.nanmin(margin) < 0 < np.nanmax(margin):
            ax.contour(xx, yy, margin, levels=[0.0], colors="black", linewidths=1.3, zorder=2)
    if k > 1:
        ax.contour(xx, yy, pmax.reshape(n, n), levels=[0.9], colors="#555555", linewidths=0.8,
                   linestyles="dotted", zorder=2)
    return colours


def _arrows(ax, toy: Any, extent: float, n: int = 13) -> None:
    xx, yy = _grid(extent * (n - 1) / n, n)
    drift = _drift(np.stack([xx.ravel(), yy.ravel()], 1), toy)
    # Full length (|xhat| = 1, a sure posterior) spans 80% of the arrow grid's spacing.
    scale = 1 / (0.8 * 2 * extent / n)
    ax.quiver(xx.ravel(), yy.ravel(), drift[:, 0], drift[:, 1], color="#6b6b6b", angles="xy", scale_units="xy",
              scale=scale, width=0.004, zorder=3)


def _region_of(points: np.ndarray, toy: Any, possible: torch.Tensor) -> np.ndarray:
    return toy.joint_log_posterior(_states(points, toy))[:, possible].argmax(1).numpy()


def _draw_paths(ax, paths: np.ndarray, ends: np.ndarray, colours: list[str]) -> None:
    for run in range(paths.shape[1]):
        ax.plot(paths[:, run, 0], paths[:, run, 1], color=CONTINUOUS, linewidth=0.9, alpha=0.45, zorder=4,
                gid="localization")
        ax.scatter(*paths[-1, run], s=34, color=colours[ends[run]], edgecolor="black", linewidths=0.8, zorder=6)
    ax.scatter(*paths[0, 0], s=70, facecolor="white", edgecolor="black", linewidths=1.4, zorder=7)


def _draw_drift(ax, path: np.ndarray) -> None:
    ax.plot(path[:, 0], path[:, 1], color="black", linewidth=2.4, zorder=5, solid_capstyle="round", gid="drift")
    ax.annotate("", path[-1], path[-min(3, len(path))], zorder=5,
                arrowprops=dict(arrowstyle="-|>", color="black", linewidth=2.0, mutation_scale=14))


def _anchors(ax, toy: Any) -> None:
    if toy.table.dim != 2:
        return
    a = toy.table.anchors.numpy()
    ax.plot(*np.c_[np.cos(np.linspace(0, 2 * np.pi, 200)), np.sin(np.linspace(0, 2 * np.pi, 200))].T,
            color="black", linewidth=0.7, linestyle="--", zorder=5)
    ax.scatter(a[:, 0], a[:, 1], marker="D", s=26, color="black", zorder=6)


def _sequence_name(toy: Any, index: int) -> str:
    tokens = toy.states[index].tolist()
    return f"token {tokens[0]}" if len(tokens) == 1 else f"({', '.join(map(str, tokens))})"


def _tally(toy: Any, possible: torch.Tensor, ends: np.ndarray) -> str:
    """``"5 at (1, 1), 1 at (0, 0)"``: how many runs end in each region, most first."""
    counts = np.bincount(ends, minlength=len(possible))
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{counts[k]} at {_sequence_name(toy, int(possible[k]))}" for k in order if counts[k])


def _finish(ax, geo: _Geometry, extent: float, toy: Any, possible: torch.Tensor, colours: list[str],
            ends: np.ndarray, gammas: tuple[float, float], drift_moves: bool) -> None:
    _frame(ax, geo, extent)
    handles = _legend_handles(geo, toy, possible, colours, ends, gammas, drift_moves)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, fontsize=7,
              frameon=False, columnspacing=1.0, handlelength=1.6)


def _frame(ax, geo: _Geometry, extent: float) -> None:
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_anchor("N")  # spare height goes below, where the legend is
    ax.set_xlabel(geo.axis_labels[0], fontsize=9)
    ax.set_ylabel(geo.axis_labels[1], fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(geo.title, fontsize=9.5)


def _legend_handles(geo: _Geometry, toy: Any, possible: torch.Tensor, colours: list[str], ends: np.ndarray,
                    gammas: tuple[float, float], drift_moves: bool) -> list:
    handles = [Patch(facecolor=c, edgecolor="none", label=f"most likely {_sequence_name(toy, int(possible[k]))}")
               for k, c in enumerate(colours)]
    handles += [Line2D([], [], color="black", linewidth=1.3, label="decision boundary"),
                Line2D([], [], color="#555555", linewidth=0.8, linestyle="dotted", label="$\\max_s\\, p(s|z) = 0.9$")]
    if geo.per_token_lines:
        handles.append(Line2D([], [], color="black", linewidth=0.7, linestyle=(0, (5, 3)),
                              label="$z_i = 0$: a token's own evidence is neutral"))
    handles.append(Line2D([], [], color="#6b6b6b", marker=r"$\rightarrow$", markersize=10, linestyle="",
                          label="drift $\\hat{x}(z)$, the posterior mean"))
    if drift_moves:
        handles.append(Line2D([], [], color="black", linewidth=2.4,
                              label=f"drift alone, $\\gamma$: {gammas[0]:g} $\\to$ {gammas[1]:g}"))
    handles += [Line2D([], [], color=CONTINUOUS, linewidth=0.9, alpha=0.6,
                       label=f"with noise, $\\gamma$: {gammas[0]:g} $\\to$ {gammas[1]:g} ({len(ends)} runs)"),
                Line2D([], [], linestyle="", marker="o", markerfacecolor="#bbbbbb", markeredgecolor="black",
                       markersize=5, label=f"ends: {_tally(toy, possible, ends)}"),
                Line2D([], [], linestyle="", marker="o", markerfacecolor="white", markeredgecolor="black",
                       markersize=7, label="start")]
    if toy.table.dim == 2:
        handles.append(Line2D([], [], linestyle="", marker="D", color="black", markersize=5,
                              label="anchors $x_v$ on the unit circle"))
    return handles
