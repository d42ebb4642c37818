"""Token-level generation order: how much information each position holds after each step, one row per sampler."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import SNRPathError
from .. import validate
from ._common import as_trace, check_runnable, compactify, describe, gamma_tick_labels, labelled, new_figure, wrap

_FIELDS = ("gamma",)
#: The longest run whose columns are labelled with the positions each step revealed.
MAX_COUNTED = 64
_CLEAN = 1.05  # clean cells are pushed above the colour range so that they get their own colour


def _colormap() -> ListedColormap:
    """White ([MASK]) through blues for finite SNR, with a separate near-black for clean tokens.

    A ramp ends at a finite gamma_max (u = 40/41 for the default), which a plain colour scale would paint almost
    like a clean token; the paper's point is exactly the difference between soft evidence and a committed token.
    """
    from matplotlib import colormaps

    return ListedColormap(colormaps["Blues"](np.linspace(0.0, 0.78, 256)), name="snr").with_extremes(over="#0b1a33")


def order_image(gamma: Any) -> np.ndarray:
    """``[L, S + 1]`` image of one run: ``u = gamma / (1 + gamma)`` where finite, ``1.05`` where clean."""
    u = compactify(gamma).T
    return np.where(u >= 1.0, _CLEAN, u)


def generation_order(
    traces: Any,
    *,
    row: int = 0,
    denoiser: Any = None,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Positions x steps heatmaps of compactified SNR ``u = gamma / (1 + gamma)``, one row per sampler.

    Column ``k`` is the state after ``k`` steps (0 = the start), row ``i`` is position ``i``. White is ``[MASK]``
    (gamma = 0), blues are finite SNR (soft evidence), near-black is a clean token (gamma = inf), so: AR fills a
    staircase left to right, masked diffusion fills positions in random order and jumps straight to black,
    a continuous ramp shades every position together (a staggered one, ``ramp(T, lag=l)``, in a wave from the
    left), and the DSL hybrid shades first, then commits. A thin
    line marks where a composed path moves to its next stage (or block); the title gives the steps and the
    denoiser calls. Numbers above the columns count the positions each step revealed (up to
    ``MAX_COUNTED`` steps), which adaptive reveals (``threshold=``, ``entropy_bound=``) and stop tokens vary.

    Args:
        traces: a Path, a path string, a :class:`~snrpaths.Result` / :class:`~snrpaths.Trace`, a sequence of
            these, or a ``{label: item}`` mapping (labels name the rows).
        row: which run of each batch to draw.
        denoiser, seed: what bare paths are sampled with, at its sequence length (see
            :func:`~snrpaths.plot.gamma_plane`); needed only for bare paths.
    """
    row = validate.integer("row", row, 0)
    panels, items = [], labelled(traces, "generation_order")
    check_runnable(items, denoiser)
    for index, (label, item) in enumerate(items):
        name = describe(label, item, index)
        trace = as_trace(item, _FIELDS, f"generation_order ({name})", denoiser=denoiser, runs=row + 1,
                         seed=seed)
        if row >= trace.gamma.shape[1]:
            raise SNRPathError(f"generation_order ({name}): row {row} is out of range for a trace of "
                               f"{trace.gamma.shape[1]} runs (valid: 0..{trace.gamma.shape[1] - 1})")
        panels.append((name, trace))
    return _figure(panels, row, title)


def _figure(panels: list, row: int, title: str | None) -> Figure:
    longest = max(trace.gamma.shape[0] for _, trace in panels)
    heights = [max(0.8, 0.075 * trace.gamma.shape[-1]) + 0.4 for _, trace in panels]
    fig = new_figure(7.2, sum(heights) + 1.5)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": heights}).ravel()
    cmap, norm = _colormap(), Normalize(0.0, 1.0)
    for ax, (name, trace) in zip(axes, panels):
        mesh = _panel(ax, trace, row, longest, cmap, norm)
        ax.set_title(wrap(f"{name.replace(chr(10), ': ')}   ({trace.gamma.shape[0] - 1} steps{_calls(trace)}"
                          f"{_revealed(trace, row)})", 7.0, 8.5), fontsize=8.5, loc="left")
    axes[-1].set_xlabel("steps taken (column k = the state after k steps; orange line: the next stage begins)\n"
                        "numbers on top: how many positions the step revealed", fontsize=8.5)
    ticks, labels = gamma_tick_labels(sep=" ")
    bar = fig.colorbar(mesh, ax=axes, location="bottom", extend="max", extendfrac=0.05, shrink=0.6, aspect=40,
                       pad=0.01)
    bar.set_ticks(ticks, labels=labels[:-1] + ["∞ clean ▸"], fontsize=7.5)
    bar.set_label("SNR $\\gamma$ of a position (colour scale $\\gamma/(1+\\gamma)$; "
                  "clean tokens in the darkest colour)",
                  fontsize=8)
    fig.suptitle(title or f"Token-level generation order: information per position (run {row} of each sampler)",
                 fontsize=10)
    return fig


def _panel(ax, trace: Any, row: int, longest: int, cmap, norm):
    image = order_image(trace.gamma[:, row, :])
    length, states = image.shape
    mesh = ax.pcolormesh(np.arange(states + 1) - 0.5, np.arange(length + 1) - 0.5, image, cmap=cmap, norm=norm,
                         edgecolors="#d9d9d9", linewidth=0.25)
    for k in _stage_changes(trace):
        ax.axvline(k + 0.5, color="#e07b00", linewidth=1.2)
    ax.set_xlim(-0.5, longest - 0.5)
    ax.set_ylim(length - 0.5, -0.5)  # position 0 on top, as text reads
    ax.set_ylabel("position", fontsize=8.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7.5, length=2.5)
    counts = revealed_per_step(trace.gamma[:, row, :])
    if len(counts) <= MAX_COUNTED:
        steps = [k + 1 for k, c in enumerate(counts) if c]
        top = ax.secondary_xaxis("top")
        top.set_xticks(steps, labels=[str(counts[k - 1]) for k in steps])
        top.tick_params(labelsize=6.5, length=0, pad=1)
    return mesh


def revealed_per_step(gamma: Any) -> list[int]:
    """``[S + 1, L]`` SNRs of one run -> ``S`` counts: how many positions step ``k`` made clean (those it remasked
    are not subtracted)."""
    clean = np.isinf(np.asarray(gamma, dtype=np.float64))
    return (clean[1:] & ~clean[:-1]).sum(1).astype(int).tolist()


def _stage_changes(trace: Any) -> list[int]:
    """States ``k`` after which the next step comes from a different stage of a composed path (a named sampler's
    steps read ``"hybrid(8, 8): ramp(8)"``, a block's ``"blocks(2, mdm(4)) block 1 of 2 (...): mdm(4)"``)."""
    stages = getattr(trace, "stages", None) or ()
    return [k for k in range(1, len(stages)) if stages[k] != stages[k - 1]]


def _revealed(trace: Any, row: int) -> str:
    """``", 1-4 revealed per step"`` when the steps that revealed something revealed different numbers."""
    counts = [c for c in revealed_per_step(trace.gamma[:, row, :]) if c]
    return f", {min(counts)}-{max(counts)} revealed per step" if counts and min(counts) != max(counts) else ""


def _calls(trace: Any) -> str:
    called = getattr(trace, "called", None)
    return "" if called is None else f", {int(called.sum())} denoiser calls"
