"""How values print.

* Values a user writes as a literal inside a path (``'confidence'``, ``(2, 0, 1)``): their ``repr`` is that literal,
  so printing a path and parsing it back gives an equal path (:class:`TypedRepr`).
* Results print as short rounded summaries with their intervals (:func:`format_estimate`), and tables of them as
  Markdown whose columns stay aligned whatever a cell holds, a long path expression included (:func:`markdown_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: ``z`` of a two-sided 95% normal interval: ``half_width = Z95 x standard error``.
Z95 = 1.959963984540054


class TypedRepr:
    """Mixin: ``repr(value) == repr(value.typed())``, the literal a user types for the value (default: its ``name``).
    An attrs class that uses it must say ``repr=False``, or attrs writes its own ``repr`` over this one."""

    __slots__ = ()

    def typed(self) -> Any:
        """What a user types for this value: its ``name`` unless the value is written another way."""
        return self.name

    def __repr__(self) -> str:
        return repr(self.typed())


def format_estimate(mean: float, half_width: float | None, digits: int = 2) -> str:
    """``mean ± half_width``, the half-width rounded to ``digits`` significant digits and the mean to the same
    decimal place: ``format_estimate(3.214312, 0.05764) == "3.214 ± 0.058"``. With no half-width (None or NaN: one
    sample) the mean alone, to 4 significant digits; a half-width of 0 (or of round-off, below ``1e-9 |mean|``) gives
    ``± 0``. Pass ``Z95 x se`` for a 95% interval."""
    mean = float(mean)
    if not math.isfinite(mean) or half_width is None or math.isnan(half_width):
        return f"{mean:.4g}"
    if math.isinf(half_width):
        return f"{mean:.4g} ± inf"
    if abs(half_width) <= 1e-9 * abs(mean):  # round-off of an exact value (the spread of equal numbers)
        return f"{mean:.4g} ± 0"
    place = digits - 1 - math.floor(math.log10(abs(half_width)))  # decimals kept (negative: tens, hundreds, ...)
    shown = max(0, place)
    return f"{round(mean, place):.{shown}f} ± {round(abs(half_width), place):.{shown}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str) -> str:
    """A Markdown table whose columns are padded to their widest cell, so it reads aligned as plain text too.

    ``align``: one letter per column, ``l`` (text: names, paths) or ``r`` (numbers)."""
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"'align' needs one of 'l' or 'r' per column of {list(header)} (got {align!r})")
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(3, *(len(row[k]) for row in cells)) for k in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if a == "r" else "-" * (w + 2) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])
