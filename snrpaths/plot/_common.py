"""What every plot shares: the compactified SNR axis, turning paths into traces, figures, atomic saving."""

from __future__ import annotations

import math
import os
import pathlib
import re
import textwrap
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from ..errors import ShapeError, SNRPathError, SNRTypeError, shown_positions
from ..files import atomic_write
from ..parse import parse_path
from ..path import Path
from ..runner import Result, Trace, sample

#: SNRs marked on a compactified axis: ``u = gamma / (1 + gamma)`` puts them at 0, 1/2, 3/4, 9/10 and 1.
GAMMA_TICKS = (0.0, 1.0, 3.0, 9.0, math.inf)
#: Drawn styles, shared so that every figure speaks one visual language.
CONTINUOUS, REVEAL, REMASK, RENOISE = "#1f6fb4", "#3a3a3a", "#d1352b", "#7b3294"


def compactify(gamma: Any) -> np.ndarray:
    """``u = gamma / (1 + gamma)`` as float64, with ``gamma = inf`` mapped to exactly 1.

    The map sends ``[0, inf]`` onto ``[0, 1]``: ``[MASK]`` (gamma = 0) and clean (gamma = inf) become the edges
    of the plot, gamma = 1 (where evidence and noise have equal size) the middle.
    """
    g = gamma.detach().cpu().to(torch.float64).numpy() if isinstance(gamma, torch.Tensor) else np.asarray(gamma, float)
    u = np.ones_like(g)
    finite = np.isfinite(g)
    u[finite] = g[finite] / (1.0 + g[finite])
    return u


def gamma_tick_labels(edge_names: bool = True, sep: str = "\n") -> tuple[list[float], list[str]]:
    """Tick positions on a compactified axis and their labels in SNR units (``0``, ``1``, ``3``, ``9``, ``∞``)."""
    labels = ["0", "1", "3", "9", "∞"]
    if edge_names:
        labels[0], labels[-1] = f"0{sep}[MASK]", f"∞{sep}clean"
    return [float(u) for u in compactify(np.array(GAMMA_TICKS))], labels


def new_figure(width: float, height: float) -> Figure:
    """A Figure outside pyplot: no global state, nothing to close, savefig works with any backend (Agg)."""
    return Figure(figsize=(width, height), layout="constrained")


def wrap(text: str, width_inches: float, fontsize: float) -> str:
    """``text`` re-broken to fit ``width_inches`` at ``fontsize`` points (about half an em per character).

    A ``$...$`` math span is never broken (a break inside would be a mathtext error) and counts as the length it
    renders to (``$\\gamma_{0}$`` is two characters), not its source."""
    chars = max(12, int(width_inches * 72 / (0.55 * fontsize)))
    spans: list[str] = []

    def hide(match: re.Match) -> str:
        shown = re.sub(r"[{}_^$]", "", re.sub(r"\\[a-zA-Z]+", "x", match.group(0)))
        spans.append(match.group(0))
        return f"\ue000{len(spans) - 1}".ljust(len(shown), "\ue001")

    hidden = re.sub(r"\$[^$]*\$", hide, text)
    lines = (textwrap.fill(line, chars, break_on_hyphens=False) for line in hidden.split("\n"))
    return re.sub("\ue000(\\d+)\ue001*", lambda m: spans[int(m.group(1))], "\n".join(lines))


# -- inputs: paths, results and traces -----------------------------------------------------------------------


def labelled(items: Any, what: str) -> list[tuple[str | None, Any]]:
    """``(label or None, item)`` pairs from one item, a sequence of items, or a ``{label: item}`` mapping."""
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    elif isinstance(items, (Path, str, Trace, Result)) or not isinstance(items, Iterable):
        pairs = [(None, items)]
    else:
        pairs = [(None, item) for item in items]
    if not pairs:
        raise SNRPathError(f"{what} needs at least one path or trace (got an empty {type(items).__name__})")
    return pairs


def describe(label: str | None, item: Any, index: int) -> str:
    """The panel title of an item: its label, and the path expression beneath when that says more."""
    expr = repr(parse_path(item)) if isinstance(item, str) else repr(item) if isinstance(item, Path) else None
    if label is None:
        return expr or f"trace {index}"
    return label if expr is None or expr == label else f"{label}\n{expr}"


def check_runnable(items: Iterable[tuple[str | None, Any]], denoiser: Any) -> None:
    """Before any of them runs: every bare path among the ``(label, item)`` pairs can run on ``denoiser`` (an
    endpoint-only denoiser refuses a finite-SNR path, naming its stage: :meth:`snrpaths.Program.require`)."""
    if denoiser is None:
        return
    for _, item in items:
        path = parse_path(item) if isinstance(item, str) else item
        if isinstance(path, Path):
            path.compile(denoiser.seq_len).require(denoiser)


def as_trace(item: Any, fields: Sequence[str], where: str, *, denoiser: Any = None, runs: int = 1,
             seed: int = 0) -> Any:
    """A trace with ``fields`` from a Path / path string (sampled on ``denoiser`` at its length, ``runs`` rows), a
    :class:`~snrpaths.Result` or a trace."""
    if isinstance(item, str):
        item = parse_path(item)
    if isinstance(item, Path):
        if denoiser is None:
            raise SNRTypeError(f"{where}: a bare path needs a denoiser to run on: pass denoiser=... (for a picture of "
                               "the path itself, an exact toy: snrpaths.backends.toy.ExactToy.markov(2, L, seed=0)); "
                               f"without one it needs a recorded run, sample(path, denoiser, trace=True) (got {item!r})")
        return sample(item, denoiser, batch=runs, seed=seed, trace=True).trace
    if isinstance(item, Result):
        if item.trace is None:
            raise SNRPathError(f"{where}: the Result carries no trace; sample it with sample(..., trace=True)")
        item = item.trace
    check_trace(item, fields, where)
    return item


def check_trace(trace: Any, fields: Sequence[str], where: str) -> None:
    """Raise unless ``trace`` has every one of ``fields`` as a tensor of the shape :class:`~snrpaths.Trace` gives
    it (``gamma``, ``tokens``: ``[S + 1, B, L]``; ``confidence``, ``entropy``: ``[S, B, L]``; ``called``: ``[S]``)."""
    if isinstance(trace, (int, float, bool)) or trace is None:
        raise SNRTypeError(f"{where}: expected a Path, a path string, a Result or a Trace (got {trace!r})")
    missing = [f for f in fields if not isinstance(getattr(trace, f, None), torch.Tensor)]
    if missing:
        raise SNRPathError(f"{where}: the trace ({type(trace).__name__}) has no {', '.join(missing)} tensor "
                           f"(needed: {', '.join(fields)}); record one with sample(path, denoiser, trace=True)")
    gamma = trace.gamma if "gamma" in fields else None
    if gamma is not None:
        if gamma.ndim != 3 or gamma.shape[0] < 1 or not gamma.is_floating_point():
            raise ShapeError(f"{where}: trace.gamma must be a float tensor [S + 1, B, L] (got {list(gamma.shape)})")
        if bool(torch.isnan(gamma).any()) or bool((gamma < 0).any()):
            raise SNRPathError(f"{where}: trace.gamma holds NaN or negative SNRs; SNRs lie in [0, inf]")
    shapes = {"tokens": 0, "confidence": -1, "entropy": -1}
    for name, extra in shapes.items():
        if name in fields and gamma is not None:
            want = (gamma.shape[0] + extra, *gamma.shape[1:])
            if tuple(getattr(trace, name).shape) != want:
                raise ShapeError(f"{where}: trace.{name} has shape {list(getattr(trace, name).shape)}; "
                                 f"trace.gamma {list(gamma.shape)} needs {list(want)}")


def check_positions(positions: Any, seq_len: int | None, where: str, count: int | None = None) -> tuple[int, ...]:
    """Distinct position indices in ``[0, seq_len)`` (exactly ``count`` of them when given); ``seq_len=None``
    checks only that they are non-negative."""
    if isinstance(positions, (str, bytes)) or not isinstance(positions, Iterable):
        raise SNRTypeError(f"{where}: 'positions' must be a sequence of position indices (got {positions!r})")
    out = tuple(positions)
    if any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in out):
        raise SNRTypeError(f"{where}: 'positions' must hold integers (got {positions!r})")
    if count is not None and len(out) != count:
        raise SNRPathError(f"{where}: 'positions' must name exactly {count} positions (got {positions!r})")
    if len(set(out)) != len(out):
        raise SNRPathError(f"{where}: 'positions' must be distinct (got {positions!r})")
    if seq_len is None and any(p < 0 for p in out):
        raise SNRPathError(f"{where}: positions must be non-negative (got {positions!r})")
    bad = [int(p) for p in out if seq_len is not None and not 0 <= p < seq_len]
    if bad:
        raise SNRPathError(f"{where}: positions {shown_positions(bad)} are out of range for sequences of length {seq_len} "
                           f"(valid: 0..{seq_len - 1})")
    return tuple(int(p) for p in out)


# -- output ----------------------------------------------------------------------------------------------------


def save(fig: Figure, path: str | os.PathLike, *, dpi: float = 120) -> pathlib.Path:
    """Write ``fig`` to ``path`` atomically: render into a temporary file beside it, then rename.

    A reader never sees a half-written image, and a failed render leaves any earlier file untouched. The format
    follows the suffix (``.png``, ``.svg``, ``.pdf``, ...); missing parent folders are created.
    """
    path = pathlib.Path(path)
    fmt = path.suffix[1:].lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise SNRPathError(f"cannot write {str(path)!r}: the file name must end in one of "
                           f"{', '.join('.' + k for k in sorted(supported))}")

    def render(tmp: pathlib.Path) -> None:
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format=fmt, dpi=dpi)

    atomic_write(path, render)
    return path
