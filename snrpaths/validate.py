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


def integer(name: str, value: Any, low: int = 1, *, high: int | None = None, allow_none: bool = False,
            phrase: str | None = None) -> int | None:
    """``value`` as an ``int`` in ``[low, high]`` (``high=None``: no upper bound; ``None`` passes when
    ``allow_none``); ``phrase`` overrides what the message calls a valid value (default: "a positive integer" for
    ``low = 1``). A float, even ``2.0``, is a wrong type: integers are never rounded."""
    if value is None and allow_none:
        return None
    value = scalar(value)
    default = _integer_phrase(low) if high is None else f"an integer in [{low}, {high}]"
    what = phrase or default + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SNRTypeError(f"{name!r} must be {what} (got {value!r})")
    if value < low or (high is not None and value > high):
        raise SNRPathError(f"{name!r} must be {what} (got {value!r})")
    return int(value)


#: The largest seed a ``torch.Generator`` takes without folding it onto another (negative seeds alias large ones).
MAX_SEED = 2**64 - 1


def seed(name: str, value: Any) -> int:
    """``value`` as a seed for ``torch.Generator.manual_seed``: an integer in ``[0, MAX_SEED]`` (not a bool, not a
    float such as ``1.9``, which would otherwise run silently as seed 1)."""
    return integer(name, value, 0, high=MAX_SEED, phrase="an integer in [0, 2**64 - 1]")


#: The largest SNR a path may name: ``2**64``, the square root of float32's largest number (float32 is the narrowest
#: dtype a denoiser's token table computes in), so that an SNR, the evidence ``gamma x + sqrt(gamma) eps`` it makes,
#: and a product of two such numbers all stay finite there; anchors separate long before (``gamma ~ 8 / Delta^2``).
MAX_GAMMA = 2.0**64


def snr(name: str, value: Any) -> float:
    """A finite positive SNR a path names: a number in ``(0, MAX_GAMMA]``. Beyond it the runner's arithmetic would
    overflow to ``gamma = inf``, a clean position without a token."""
    return number(name, value, 0.0, MAX_GAMMA, low_open=True,
                  phrase="a number in (0, 2**64], the largest SNR the runner represents in float32 with room for "
                         "products")


def temperature(name: str, value: Any) -> float:
    """A sampling temperature: a number in ``[0, inf)``; ``0`` means argmax (see :func:`snrpaths.draw.probabilities`,
    which applies every accepted value exactly in float64, the smallest subnormal included)."""
    return number(name, value, 0.0, math.inf, high_open=True)


def top_p(name: str, value: Any) -> float:
    """A nucleus threshold: a number in ``(0, 1]`` (``1`` keeps every token; any positive value keeps at least the
    most likely one)."""
    return number(name, value, 0.0, 1.0, low_open=True)


def token_ids(name: str, value: Any, vocab_size: int | None = None, *, ndims: tuple[int, ...] | None = None,
              free: int | None = None) -> Any:
    """``value`` widened to int64 when it is a torch tensor of token ids: an integer dtype (not bool, any width,
    unsigned included), ``ndims`` dimensions (any when ``None``) and, given ``vocab_size``, every entry in
    ``[0, vocab_size)`` or equal to ``free`` (a prompt's ``-1``); the error names the first bad id and its index.

    A non-tensor or a non-integer dtype is a wrong type (:class:`SNRTypeError`); a wrong number of dimensions a
    :class:`ShapeError`; an id outside the vocabulary a :class:`SNRPathError` (never read from the end, as a
    negative index would be).
    """
    import torch

    from .errors import ShapeError

    if not isinstance(value, torch.Tensor):
        raise SNRTypeError(f"{name!r} must be a torch.Tensor of token ids (got {type(value).__name__})")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise SNRTypeError(f"{name!r} must hold integer token ids (got dtype {value.dtype})")
    if ndims is not None and value.ndim not in ndims:
        shapes = " or ".join(("[L]", "[B, L]", "[B, R, L]")[n - 1] if 1 <= n <= 3 else f"{n}-D" for n in ndims)
        raise ShapeError(f"{name!r} must have shape {shapes} (got {list(value.shape)})")
    unsigned = value.dtype == torch.uint64
    value = value.to(torch.int64)  # widened first: in uint8, the free marker -1 would compare equal to 255
    if unsigned and bool((value < 0).any()):  # ids from 2**63 on, which int64 reads as negative (2**64 - 1 as -1)
        first = (value < 0).nonzero()[0].tolist()
        raise SNRPathError(f"{name!r} holds the token id {int(value[tuple(first)]) + 2**64} at index {first}; no "
                           "vocabulary has 2**63 ids")
    if vocab_size is not None and value.numel():
        ids_at = value != free if free is not None else torch.ones_like(value, dtype=torch.bool)
        bad = ids_at & ((value < 0) | (value >= vocab_size))
        if bool(bad.any()):
            ids, first = value[ids_at], bad.nonzero()[0].tolist()
            also = "" if free is None else f", or {free} for a free position"
            raise SNRPathError(f"{name!r} holds token ids in [{int(ids.min())}, {int(ids.max())}]; valid ids are in "
                               f"[0, {vocab_size - 1}]{also} (first bad: {int(value[tuple(first)])} at index {first})")
    return value


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


def boolean(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """``value`` when it is ``True`` or ``False`` (numpy booleans included; ``None`` passes when ``allow_none``)."""
    if value is None and allow_none:
        return None
    value = scalar(value)
    if not isinstance(value, bool):
        raise SNRTypeError(f"{name!r} must be True{', False or None' if allow_none else ' or False'} (got {value!r})")
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


def permutation(name: str, value: Any, *, allow_none: bool = False) -> tuple[int, ...] | None:
    """``value`` as a tuple holding each of ``0..n-1`` once (:func:`int_tuple` first): a repeated or missing
    position is a wrong value (``None`` passes when ``allow_none``)."""
    if value is None and allow_none:
        return None
    out = int_tuple(name, value)
    if sorted(out) != list(range(len(out))):
        raise SNRPathError(f"{name!r} must be a permutation of 0..{len(out) - 1}, each position once (got {value!r})")
    return out


def field(check: Callable[..., Any], **options: Any) -> attrs.Converter:
    """An attrs converter that runs ``check(field_name, value, **options)``: a field validated where it is
    declared, so that calling the class directly validates as much as its named constructor does."""
    return attrs.Converter(lambda value, _self, f: check(f.name.lstrip("_"), value, **options),
                           takes_self=True, takes_field=True)
