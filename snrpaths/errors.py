"""One error family for every user mistake snrpaths can detect.

Every check runs before any work is done, and every message names the bad value and what would be valid,
in the form ``'remask' must be one of ('cap', 'rescale') (got 'confdence')``.
"""

from __future__ import annotations

from typing import Any, Iterable


class SNRPathError(ValueError):
    """Base class of every error snrpaths raises for bad input (a ``ValueError``)."""


class SNRTypeError(SNRPathError, TypeError):
    """A value of the wrong type (also a ``TypeError``)."""


class ShapeError(SNRPathError):
    """A tensor of the wrong shape, dtype or size."""


class DenoiserError(SNRPathError):
    """A denoiser that failed while sampling (its own exception is chained as ``__cause__``) or returned logits
    that cannot be sampled from (NaN, +inf, or no finite option); the message names the step."""


class CapabilityError(SNRTypeError):
    """A denoiser asked for something it declares it cannot do (a finite-SNR state for an endpoint-only model); raised
    before any call, naming the stage or estimator that needs it and what works instead."""


class LimitError(SNRPathError):
    """A request larger than a limit of :mod:`snrpaths.limits`; the message names the limit and how to raise it."""


def one_of(name: str, value: Any, valid: Iterable[Any]) -> SNRPathError:
    """The error for ``value`` not among ``valid``."""
    return SNRPathError(f"{name!r} must be one of {tuple(valid)!r} (got {value!r})")


def shown_positions(positions: Iterable[int], limit: int = 8) -> str:
    """A list of positions for a message: whole when short, else its first ``limit`` with an ellipsis, the count and
    the true range (``[0, 1, 2, ..., 9] (128 positions in 0..127)``), so a long list never floods a terminal."""
    values = list(positions)
    if len(values) <= limit:
        return str(values)
    return f"[{', '.join(map(str, values[:limit]))}, ...] ({len(values)} positions in {min(values)}..{max(values)})"


def check_shape(name: str, tensor: Any, expected: tuple[int | None, ...]) -> None:
    """Raise ``ShapeError`` unless ``tensor`` is a torch tensor of shape ``expected`` (``None`` = any size)."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise SNRTypeError(f"{name!r} must be a torch.Tensor (got {type(tensor).__name__})")
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ShapeError(f"{name!r} must have shape {want} (got {list(shape)})")
