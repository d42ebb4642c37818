"""The checks every user-facing value goes through, in one place (paths, plots, estimators, the command line).

One rule for the error raised: a value of the wrong *type* raises :class:`SNRTypeError`; a value of the right
type that is not valid (out of range, NaN, not among the choices) raises :class:`SNRPathError`. Both name the
argument as the user typed it and say what would be valid, ``'steps' must be a positive integer (got 0)``.

Numbers accept Python, numpy and single-element torch scalars and return plain Python values, so paths stay
hashable and their ``repr`` stays what a user would type. Every check runs where a value is declared (a
constructor, an attrs field, a function's entry), never in a sampling loop.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable, Mapping

import attrs

from .errors import SNRPathError, SNRTypeError, one_of


def scalar(value: Any) -> Any:
    """``value`` as a Python scalar when it is a numpy scalar, a 0-d array or a one-element 0-d tensor; else as is."""
    if hasattr(value, "ndim") and hasattr(value, "item") and getattr(value, "ndim") == 0:
        return value.item()
    return value


def _integer_phrase(low: int) -> str:
    return {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")


def integer(name: str, value: Any, low: int = 1, *, allow_none: bool = False, phrase: str | None = None) -> int | None:
    """``value`` as an ``int >= low`` (``None`` passes when ``allow_none``); ``phrase`` overrides what the message
    calls a valid value (default: "a positive integer" for ``low = 1``)."""
    if value is None and allow_none:
        return None
    value = scalar(value)
    what = phrase or _integer_phrase(low) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SNRTypeError(f"{name!r} must be {what} (got {value!r})")
    if value < low:
        raise SNRPathError(f"{name!r} must be {what} (got {value!r})")
    return int(value)


def number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False, allow_none: bool = False, phrase: str | None = None) -> float | None:
    """``value`` as a float in the interval from ``low`` to ``high`` (open or closed at either end); NaN and
    integers too large for a float are out of every interval. ``phrase`` overrides what the message calls a valid
    value (default: "a number in" the interval)."""
    if value is None and allow_none:
        return None
    value = scalar(value)
    span = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SNRTypeError(f"{name!r} must be {phrase or 'a number in ' + span} (got {value!r})")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    try:
        as_float = float(value)
    except OverflowError:  # an integer beyond the float range
        as_float = math.nan
    if too_low or too_high or math.isnan(as_float):
        raise SNRPathError(f"{name!r} must {'be ' + phrase if phrase else 'lie in ' + span} (got {value!r})")
    return as_float


def boolean(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False`` (numpy booleans included)."""
    value = scalar(value)
    if not isinstance(value, bool):
        raise SNRTypeError(f"{name!r} must be True or False (got {value!r})")
    return value


def choice(name: str, value: Any, valid: Iterable[str] | Mapping[str, Any]) -> str:
    """``value`` when it is one of the strings ``valid`` (a mapping's keys); compared only as a string, so an array
    or a tensor is a wrong type, never an ambiguous truth value."""
    valid = tuple(valid)
    if not isinstance(value, str):
        raise SNRTypeError(f"{name!r} must be one of {valid!r} (got {value!r})")
    if value not in valid:
        raise one_of(name, value, valid)
    return value


def int_tuple(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty tuple of non-negative integers from any iterable of integer scalars (a list, an array, a
    tensor); a string, a mapping or a set (no order) is a wrong type."""
    if hasattr(value, "tolist"):  # numpy arrays and torch tensors
        value = value.tolist()
    if isinstance(value, (str, bytes, Mapping, set, frozenset)) or not isinstance(value, Iterable):
        raise SNRTypeError(f"{name!r} must be a sequence of position indices (got {value!r})")
    out = tuple(scalar(v) for v in value)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in out):
        raise SNRTypeError(f"{name!r} must be a sequence of position indices (got {value!r})")
    if not out or any(v < 0 for v in out):
        raise SNRPathError(f"{name!r} must be a non-empty sequence of non-negative integers (got {value!r})")
    return tuple(int(v) for v in out)


def field(check: Callable[..., Any], **options: Any) -> attrs.Converter:
    """An attrs converter that runs ``check(field_name, value, **options)``: a field validated where it is
    declared, so that calling the class directly validates as much as its named constructor does."""
    return attrs.Converter(lambda value, _self, f: check(f.name.lstrip("_"), value, **options),
                           takes_self=True, takes_field=True)
