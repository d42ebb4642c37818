"""Monotone per-token SNR curves: the paths ``C`` that :func:`snrpaths.nll.path_integral` integrates along.

A curve is a frozen value that, for a sequence length ``L``, yields *knots*: a ``[K+1, L]`` float64 tensor of
per-position SNRs with row 0 all zero (every position ``[MASK]``), row ``K`` all ``inf`` (every position clean) and
every column nondecreasing. Between consecutive knots each position moves linearly in the coordinate

    w = gamma / (gamma + kappa),   gamma = kappa * w / (1 - w),   kappa = 8 / Delta_min^2,

so a position can hold still, move alone (the sequential path), or move together with others (the joint ramp).
For the exact Bayes denoiser the path integral does not depend on the curve; for a learned one it may, and then
the curve between two knots is the one just described.

:func:`path_integral(..., gamma_max=G) <snrpaths.nll.path_integral>` integrates along the curve through the knots
capped at ``G`` (:func:`truncate`), which ends with every position at ``G`` instead of clean.

The knot table is also the bridge to the path language (see :func:`as_curve`): every curve answers one question,
``knots(seq_len, generator) -> [K+1, L]``, asked afresh for every Monte Carlo trajectory, so a curve with random
reveals (:class:`RandomOrder`) is as easy to describe as a fixed one.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch

from .. import validate
from ..errors import ShapeError, SNRPathError, SNRTypeError, one_of
from ..geometry import TokenTable

INF = math.inf


@attrs.frozen
class Joint:
    """Every position raises its SNR together, from 0 to inf: the continuous-diffusion ramp. One piece."""

    def knots(self, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[2, L]``: all zero, then all inf."""
        return torch.tensor([[0.0] * seq_len, [INF] * seq_len], dtype=torch.float64)


def _sequential_knots(order: torch.Tensor) -> torch.Tensor:
    """``[L+1, L]`` knots revealing ``order[0]``, then ``order[1]``, ...: row j has ``order[:j]`` at inf, the rest 0."""
    seq_len = order.numel()
    rank = torch.empty_like(order)
    rank[order] = torch.arange(seq_len)
    steps = torch.arange(seq_len + 1)[:, None]
    return torch.where(rank[None, :] < steps, INF, 0.0).to(torch.float64)


@attrs.frozen
class Sequential:
    """One position at a time goes from 0 to inf, in ``order`` (default left to right): the AR path. ``L`` pieces."""

    order: tuple[int, ...] | None = attrs.field(default=None, converter=validate.field(validate.permutation,
                                                                                       allow_none=True))

    def knots(self, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[L+1, L]`` knots; raises unless ``order`` is a permutation of ``range(seq_len)``."""
        if self.order is not None and len(self.order) != seq_len:
            raise SNRPathError(
                f"Sequential order {self.order!r} has {len(self.order)} positions; the denoiser's seq_len is {seq_len}"
            )
        order = torch.arange(seq_len) if self.order is None else torch.tensor(self.order)
        return _sequential_knots(order)


@attrs.frozen
class RandomOrder:
    """Sequential in a uniformly random order, drawn afresh for every Monte Carlo trajectory (the ROAR path)."""

    def knots(self, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[L+1, L]`` knots of a sequential path in an order drawn with ``generator``."""
        return _sequential_knots(torch.randperm(seq_len, generator=generator))


def _as_knot_rows(value: object) -> tuple[tuple[float, ...], ...]:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    try:
        rows = tuple(tuple(float(g) for g in row) for row in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise SNRTypeError(f"'gammas' must be a [K+1, L] table of SNRs (got {str(value)[:80]})") from None
    return rows


def check_knots(k: torch.Tensor, seq_len: int | None = None) -> None:
    """Raise unless ``k`` is a ``[K+1, L]`` knot table (``K >= 1``) of a monotone path from all-0 to all-inf SNR."""
    if k.ndim != 2 or k.shape[0] < 2 or k.shape[1] < 1:
        raise ShapeError(f"knots must form a [K+1, L] table with K >= 1 and L >= 1 (got shape {list(k.shape)})")
    if seq_len is not None and k.shape[1] != seq_len:
        raise SNRPathError(f"the path has L = {k.shape[1]} positions; the denoiser's seq_len is {seq_len}")
    if bool(torch.isnan(k).any()) or bool((k < 0).any()):
        raise SNRPathError("knot SNRs must lie in [0, inf] (found NaN or a negative value)")
    if bool((k[0] != 0).any()):
        raise SNRPathError(f"the path must start with every position at SNR 0; knot 0 is {k[0].tolist()}")
    if not bool(torch.isinf(k[-1]).all()):
        raise SNRPathError(f"the path must end with every position clean (SNR inf); the last knot is {k[-1].tolist()}")
    drop = k[1:] < k[:-1]
    if bool(drop.any()):
        step, pos = (int(i) for i in drop.nonzero()[0])
        raise SNRPathError(
            f"the path must be monotone: position {pos} goes from SNR {float(k[step, pos])!r} at knot {step} "
            f"down to {float(k[step + 1, pos])!r} at knot {step + 1}"
        )


def _validate_gammas(instance: object, attribute: attrs.Attribute, rows: tuple[tuple[float, ...], ...]) -> None:
    if len({len(r) for r in rows}) > 1:
        lengths = sorted({len(r) for r in rows})
        raise ShapeError(f"'gammas' rows must all have the same length L (got lengths {lengths})")
    check_knots(torch.tensor(rows, dtype=torch.float64).reshape(len(rows), -1))


@attrs.frozen
class Piecewise:
    """An arbitrary monotone per-token schedule given by its knots.

    Attributes:
        gammas: ``[K+1][L]`` knot SNRs (0 and inf allowed); row 0 all 0, row K all inf, columns nondecreasing.
    """

    gammas: tuple[tuple[float, ...], ...] = attrs.field(converter=_as_knot_rows, validator=_validate_gammas)

    @classmethod
    def from_gammas(cls, gammas: torch.Tensor | np.ndarray | list) -> Piecewise:
        """The curve through the per-step SNRs ``gammas`` (``[K+1, L]``), e.g. a compiled sampler path's steps."""
        return cls(gammas)

    @classmethod
    def random(cls, seq_len: int, n_knots: int = 3, seed: int = 0) -> Piecewise:
        """A random monotone schedule: ``n_knots`` interior knots per position, sorted, each an exact 0 or inf with
        probability 1/4 (a reveal) and otherwise log-uniform in ``[1e-2, 1e2]``."""
        seq_len, n_knots = validate.integer("seq_len", seq_len), validate.integer("n_knots", n_knots, 0)
        g = torch.Generator().manual_seed(validate.seed("seed", seed))
        u = torch.rand(n_knots, seq_len, generator=g, dtype=torch.float64).sort(dim=0).values
        levels = 10.0 ** (-2 + 4 * (u - 0.125) / 0.75)
        levels = torch.where(u < 0.125, 0.0, torch.where(u > 0.875, INF, levels))
        return cls(torch.cat([torch.zeros(1, seq_len, dtype=torch.float64), levels,
                              torch.full((1, seq_len), INF, dtype=torch.float64)]))

    @property
    def seq_len(self) -> int:
        return len(self.gammas[0])

    def knots(self, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The ``[K+1, L]`` knot table; raises unless it has ``seq_len`` columns."""
        k = torch.tensor(self.gammas, dtype=torch.float64)
        check_knots(k, seq_len)
        return k


class _Uniform:
    """A denoiser with flat logits: it lets a sampler path's route run without a model (the route of a path whose
    choices ignore the logits is the same under every denoiser)."""

    vocab_size, table = 2, TokenTable.orthonormal(2)

    def __init__(self, seq_len: int):
        self.seq_len = seq_len

    def logits(self, state) -> torch.Tensor:
        return torch.zeros(state.batch, self.seq_len, self.vocab_size, dtype=torch.float64)


@attrs.frozen
class SamplerCurve:
    """The per-token SNR route of a sampler path (``ar()``, ``roar()``, ``mdm(T)``, ``ramp(T) >> switch('commit')``,
    ``hybrid(...)``), drawn afresh per trajectory: knots are the path's SNRs after each step that moved something.

    Only routes that are monotone and chosen independently of the evidence define a path integral: remasking
    and ``renoise`` go back down, and reveals ranked by the denoiser's confidence (or sized by an adaptive rule, ``threshold=``,
    ``entropy_bound=``) depend on ``z``; both are refused.
    """

    path: object  # a snrpaths.Path

    def knots(self, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        from ..runner import sample

        program = self.path.compile(seq_len)
        _check_route_is_fixed(program)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
        gamma = sample(program, _Uniform(seq_len), batch=1, seed=seed, trace=True).trace.gamma[:, 0].to(torch.float64)
        moved = torch.cat([torch.tensor([True]), (gamma[1:] != gamma[:-1]).any(-1)])
        return gamma[moved]


def _check_route_is_fixed(program) -> None:
    from ..compile import MaskOp, RemaskOp, RenoiseOp, RevealOp

    for step in program.steps:
        for op in step.ops:
            remasks = isinstance(op, (RemaskOp, MaskOp)) or (isinstance(op, RevealOp) and op.sigma > 0)
            if remasks or isinstance(op, RenoiseOp):
                raise SNRPathError(f"{step.stage}: a path that {'remasks' if remasks else 'renoises'} lowers SNRs, so "
                                   "it is not a monotone curve and has no path integral")
            if isinstance(op, RevealOp) and op.uses_evidence:
                raise SNRPathError(f"{step.stage}: reveals ranked by the denoiser (or sized by an adaptive rule) depend on the evidence itself; "
                                   "the path integral needs a route chosen independently of z")


Curve = Joint | Sequential | RandomOrder | Piecewise | SamplerCurve
#: The strings ``path=`` accepts, and the curve each names.
NAMED_CURVES = {"joint": Joint(), "sequential": Sequential(), "random-order": RandomOrder()}


def as_curve(path: object) -> Curve:
    """The curve a ``path=`` argument names: a curve value, or one of the strings in ``NAMED_CURVES``.

    A sampler path (``snrpaths.Path``) becomes a :class:`SamplerCurve`: its route, drawn per trajectory.
    """
    from ..path import Path

    if isinstance(path, (Joint, Sequential, RandomOrder, Piecewise, SamplerCurve)):
        return path
    if isinstance(path, Path):
        return SamplerCurve(path)
    if isinstance(path, str) and path in NAMED_CURVES:
        return NAMED_CURVES[path]
    if isinstance(path, str):
        raise one_of("path", path, NAMED_CURVES)
    raise SNRTypeError(
        f"'path' must be one of {tuple(NAMED_CURVES)}, a curve (Joint, Sequential, RandomOrder, Piecewise) or a Path "
        f"(got {type(path).__name__})"
    )


def truncate(knots: torch.Tensor, gamma_max: float) -> torch.Tensor:
    """``[K+1, L]`` knots capped at ``gamma_max``: ``min(knots, gamma_max)``, ending with every position at
    ``gamma_max`` (``gamma_max = inf`` returns ``knots`` unchanged).

    The truncated curve is the one through the capped knots, each position still moving linearly in ``w`` between
    them. On the joint ramp and the sequential paths it is exactly the original curve stopped at ``gamma_max``; on
    a piece where a position crosses ``gamma_max`` while others move on, it reaches ``gamma_max`` at the piece's end
    rather than midway (a different curve with the same ends, which only a learned denoiser can tell apart). A
    sampler route's reveal (``0 -> inf``) becomes a rise ``0 -> gamma_max``. Pieces along which nothing moves any
    more cost no nodes.
    """
    return knots.clamp_max(gamma_max)


def kappa(table: TokenTable) -> float:
    """``kappa = 8 / Delta_min^2``: the SNR scale where the hardest pair of anchors starts to separate.

    Raises when two anchors coincide: their tokens cannot be told apart at any SNR, so ``-log P(s)`` is not the
    integral of anything observable.
    """
    delta = table.min_distance()
    if delta == 0:
        raise SNRPathError("two anchors of the token table coincide (Delta_min = 0); the path integral needs "
                           "distinct anchors")
    return 1.0 if math.isinf(delta) else 8.0 / delta**2


def radau(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left Gauss-Radau rule on ``[0, 1]``: ``n`` nodes (the first is 0, all are ``< 1``) and weights summing to 1.

    Exact for polynomials of degree ``2n - 2``. Node 0 being the piece's start is what lets the Ito control use a
    left point on the first interval; no node sits at the piece's end, where SNRs may be infinite.
    """
    if n == 1:
        return torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    from numpy.polynomial import legendre

    # Interior nodes are the roots of P_{n-1} + P_n on [-1, 1] (one of which is -1); weights from P_{n-1}.
    coef = np.zeros(n + 1)
    coef[n - 1 :] = 1
    x = np.sort(np.real(legendre.legroots(coef)))
    x[0] = -1.0
    p = legendre.legval(x, np.eye(n)[n - 1])
    w = (1 - x) / (n**2 * p**2)
    w[0] = 2.0 / n**2
    return torch.from_numpy((x + 1) / 2), torch.from_numpy(w / 2)
