"""Lowering a path to a Program: a flat list of steps, each at most one batched denoiser call plus the state
updates that consume it. Pure: no tensors, no randomness; cached on ``(path, seq_len)``.

Validation happens here, naming the stage at fault: positions a path can leave unrevealed, overlapping parallel
position sets, explicit orders or selections that do not fit the sequence, more blocks than the stage has
positions, reveal counts larger than what is left,
more reveal steps than the positions left can fill, a reveal clock whose last step does not end with every
position clean (a user's clock or remask policy; the built-in ones always do), and programs longer than
``snrpaths.limits.MAX_STEPS``.
"""

from __future__ import annotations

import functools
import math
from typing import Union

import attrs

from .denoiser import reads_finite_snr, require_block_caching, require_finite_snr
from .errors import SNRPathError, SNRTypeError, shown_positions
from . import limits, validate
from .orders import RANDOM, Order, RevealRule
from .path import (Alias, Blocks, On, Parallel, Path, Ramp, Remask, Renoise, Reveal, Switch, Then, provide,
                   resolve_positions)

Positions = tuple[int, ...]

# Ops are built by the compiler only, once per (path, seq_len): their checks cost nothing at run time and catch a
# lowering bug (or a hand-built Program) before a tensor is touched.
_UNIT = validate.field(validate.number, low=0.0, high=1.0)
_FLAG = validate.field(validate.boolean)


def _an_order(name: str, value: object) -> Order:
    if not isinstance(value, Order):
        raise SNRTypeError(f"{name!r} must be an Order value, e.g. snrpaths.orders.ORDERS['random'] (got {value!r})")
    return value


def _a_rule(name: str, value: object) -> RevealRule | None:
    if value is not None and not isinstance(value, RevealRule):
        raise SNRTypeError(f"{name!r} must be a RevealRule value or None (got {value!r})")
    return value


@attrs.frozen
class RevealOp:
    """Reveal unrevealed free positions of ``positions`` from this step's logits.

    With ``count``: the ``count`` best positions by ``order``. Without: the clock step ``alpha_t -> alpha_s``;
    ``order="random"`` (not ``exact``) reveals each with probability ``(alpha_s - (1 - sigma_bar) alpha_t) / (1 - alpha_t)`` (MDLM /
    ReMDM), a ranked order reveals the best until ``round(alpha_s * n_free)`` are clean. Clean positions are first
    remasked with probability ``sigma`` (spread by ``softmax(-confidence)`` when ``sigma_by_confidence``).

    With an ``adaptive`` rule, the positions it selects are revealed too, the count or clock filling up to its
    number from the rest by ``order``; a row with something left that neither names reveals the rule's best one.
    """

    positions: Positions  # resolved and checked once per stage (resolve_positions), not once per step
    order: Order = attrs.field(converter=validate.field(_an_order))
    count: int | None = attrs.field(converter=validate.field(validate.integer, allow_none=True))
    alpha_t: float = attrs.field(converter=_UNIT)
    alpha_s: float = attrs.field(converter=_UNIT)
    sigma: float = attrs.field(converter=_UNIT)
    sigma_by_confidence: bool = attrs.field(converter=_FLAG)
    temperature: float = attrs.field(converter=validate.field(validate.temperature))
    top_p: float = attrs.field(converter=validate.field(validate.top_p))
    exact: bool = attrs.field(default=False, converter=_FLAG)
    adaptive: RevealRule | None = attrs.field(default=None, converter=validate.field(_a_rule))

    @property
    def uses_evidence(self) -> bool:
        """Whether choosing the positions reads the step's logits (a ranked order or an adaptive rule)."""
        return self.order.uses_evidence or self.adaptive is not None

    @property
    def flips_coins(self) -> bool:
        """Whether the step reveals each unrevealed position by its own coin flip (MDLM): a clock step whose order
        flips coins there (:attr:`snrpaths.orders.Order.flips_coins`), unless ``exact`` asks for the scheduled
        count."""
        return self.count is None and self.order.flips_coins and not self.exact

    @property
    def reopens(self) -> bool:
        """Whether the step can send a clean position back to [MASK] (its clock's remask policy)."""
        return self.sigma > 0

    writes_evidence = False  # a reveal sets tokens, never finite-SNR evidence


def _a_ramp(name: str, value: object) -> Ramp:
    if not isinstance(value, Ramp):
        raise SNRTypeError(f"{name!r} must be a Ramp value, e.g. Path.ramp(16) (got {value!r})")
    return value


@attrs.frozen
class RampOp:
    """Step ``step`` (1..``ramp.steps``) of ``ramp``: raise each unrevealed free position of ``positions`` to
    ``max(gamma_i, ramp.level(v_i))`` by one stochastic-localization step, ``v_i`` its own clock at ``u =
    step / ramp.steps``, started where the position stood when the ramp began (:meth:`snrpaths.Path.ramp`; the
    runner counts the free positions of each row). With a solver that corrects (``solver='heun'``) this is the
    predictor, and a :class:`RampCorrectOp` of the same step follows in the next program step."""

    positions: Positions
    ramp: Ramp = attrs.field(converter=validate.field(_a_ramp))
    step: int = attrs.field(converter=validate.field(validate.integer))
    reopens = False  # a ramp raises SNRs only
    writes_evidence = True

    def __attrs_post_init__(self) -> None:
        validate.integer("step", self.step, high=self.ramp.steps)


@attrs.frozen
class RampCorrectOp:
    """Heun's corrector of step ``step`` of ``ramp``, on the state its :class:`RampOp` predicted: with that step's
    ``dgamma`` and drift target ``m(z_k)`` and this call's ``m(z~)``, ``z_{k+1} = z~ + dgamma (m(z~) - m(z_k)) / 2``
    (the same ``eps`` as the predictor's; :meth:`snrpaths.Path.ramp`). SNRs do not move."""

    positions: Positions
    ramp: Ramp = attrs.field(converter=validate.field(_a_ramp))
    step: int = attrs.field(converter=validate.field(validate.integer))
    reopens = False
    writes_evidence = True

    def __attrs_post_init__(self) -> None:
        validate.integer("step", self.step, high=self.ramp.steps)
        if not self.ramp.solver.corrects:
            raise SNRPathError(f"a corrector belongs to a ramp with solver='heun' (got {self.ramp!r})")


@attrs.frozen
class RenoiseOp:
    """Lower each unrevealed free position of ``positions`` whose SNR is finite and above ``gamma`` to ``gamma`` by
    the exact forward channel ``z' = (gamma / gamma_i) z + sqrt(gamma (gamma_i - gamma) / gamma_i) eps``
    (:func:`snrpaths.channel.renoise`; no call, one draw of ``eps``). Positions at or below ``gamma`` (``[MASK]``
    included), clean and prompt positions are untouched. Tokens are never read: given the data sequence, the state
    after it is ``gamma_i' = min(gamma_i, gamma)``, ``z_i' = gamma_i' x_{s_i} + sqrt(gamma_i') eps_i'``."""

    positions: Positions
    gamma: float = attrs.field(converter=validate.field(validate.number, low=0.0, high=math.inf, low_open=True,
                                                        high_open=True))
    reopens = False  # finite SNRs go down; a clean position stays clean
    writes_evidence = True


@attrs.frozen
class RemaskOp:
    """Send the clean free positions among ``positions`` to gamma = 0 (no call)."""

    positions: Positions
    reopens = True
    writes_evidence = False


@attrs.frozen
class MaskOp:
    """Send the unrevealed free positions among ``positions`` back to gamma = 0 (no call)."""

    positions: Positions
    reopens = False  # a clean position stays clean
    writes_evidence = False


Op = Union[RevealOp, RampOp, RampCorrectOp, RenoiseOp, RemaskOp, MaskOp]


@attrs.frozen
class CacheScope:
    """The key/value cache a step's call works under, in block ``block`` of a ``blocks(..., cache=...)`` stage
    (:meth:`snrpaths.Path.blocks`): a row's first call in the block, or its first after ``refresh`` calls since the
    last refresh, is a full call that stores the cache; its other calls compute ``active`` only."""

    block: int  # numbers the program's cached blocks in order: a row whose cache belongs to another block refreshes
    active: Positions  # the positions each cached call computes (sorted); the rest are read from the cache
    refresh: int | None  # calls of a row between refreshes inside the block (None: only when the block starts)


@attrs.frozen
class Step:
    """One step: a denoiser call on the current state when ``call``, then ``ops`` on disjoint positions; ``cache``
    the key/value cache the call may use (None: a call on the whole state)."""

    call: bool
    ops: tuple[Op, ...]
    stage: str  # the expression this step came from, for error messages and traces
    cache: CacheScope | None = None


@attrs.frozen(repr=False)
class Program:
    """A compiled path: ``steps`` to run on sequences of ``seq_len``; ``nfe`` denoiser calls at most.

    The runner checks that a run ends with every position clean; only a ``partial`` program (:meth:`prefix`, to
    look at an intermediate state) may end with unrevealed positions, whose tokens are ``-1``.
    """

    path: Path
    seq_len: int
    steps: tuple[Step, ...]
    partial: bool = attrs.field(default=False, converter=_FLAG)

    @property
    def nfe(self) -> int:
        return sum(step.call for step in self.steps)

    def prefix(self, k: int) -> "Program":
        """The first ``k`` steps, a partial program: its run stops there and may leave positions unrevealed."""
        k = validate.integer("k", k, 0, high=len(self.steps))
        return attrs.evolve(self, steps=self.steps[:k], partial=True)

    def finite_snr_call(self) -> int | None:
        """The first step whose denoiser call can see a position at finite SNR, or None for an endpoint program.

        A ramp step raises its positions to a finite SNR (its own call reads the state before the rise); they stay
        finite, whatever ``switch('keep')`` says, until a ``switch('mask')`` drops them or a reveal that ends at
        ``alpha = 1`` with no remasking (a clock's last step, ``switch('commit')``) makes them clean. So the first
        ramp step of a path is an endpoint call, and ``ramp(1) >> switch('mask') >> mdm(T)`` is an endpoint program.
        """
        finite: set[int] = set()
        for k, step in enumerate(self.steps):
            if finite and step.call:
                return k
            for op in step.ops:
                if isinstance(op, RampOp):
                    finite |= set(op.positions)
                elif isinstance(op, MaskOp) or (isinstance(op, RevealOp) and op.count is None and op.alpha_s == 1
                                                and op.sigma == 0):
                    finite -= set(op.positions)
        return None

    def require(self, denoiser: object) -> None:
        """Raise :class:`snrpaths.errors.CapabilityError`, before any call, when ``denoiser`` lacks a capability this
        program needs: reading finite-SNR states (:meth:`require_reads`) or caching blocks (:meth:`require_cache`)."""
        self.require_reads(denoiser)
        self.require_cache(denoiser)

    def require_reads(self, denoiser: object) -> None:
        """Raise :class:`snrpaths.errors.CapabilityError`, before any call, when this program would give an
        endpoint-only ``denoiser`` (``reads_finite_snr = False``) a finite-SNR state, naming the step and stage."""
        if reads_finite_snr(denoiser):
            return
        k = self.finite_snr_call()
        if k is not None:
            require_finite_snr(denoiser, f"step {k} of {self.path!r}, in stage `{self.steps[k].stage}`,")

    def require_cache(self, denoiser: object) -> None:
        """Raise :class:`snrpaths.errors.CapabilityError`, before any call, when this program caches keys and values
        (``blocks(..., cache=...)``) and ``denoiser`` cannot (:class:`snrpaths.denoiser.BlockCaching`)."""
        step = next((s for s in self.steps if s.cache is not None), None)
        if step is not None:
            require_block_caching(denoiser, f"stage `{step.stage}` of {self.path!r}")

    def __repr__(self) -> str:
        part = ", partial=True" if self.partial else ""
        return f"Program({self.path!r}, seq_len={self.seq_len}, steps={len(self.steps)}, nfe={self.nfe}{part})"


def compile_path(path: Path, seq_len: int) -> Program:
    """Lower ``path`` for sequences of ``seq_len`` positions (cached)."""
    if not isinstance(path, Path):
        raise SNRPathError(f"compile needs a Path (got {type(path).__name__}); build one with Path.* or parse_path")
    seq_len = validate.integer("seq_len", seq_len)
    limits.check_steps(f"{path!r} for seq_len={seq_len}", seq_len, "positions")
    return _compile_cached(path, seq_len)


provide("compile", compile_path)  # Path.compile


@functools.lru_cache(maxsize=256)
def _compile_cached(path: Path, seq_len: int) -> Program:
    lowering = _Lowering(seq_len)
    steps = lowering.lower(path, tuple(range(seq_len)))
    lowering.check_all_revealed(path)
    return Program(path=path, seq_len=seq_len, steps=tuple(steps))


class _Lowering:
    """Walks the path tree once, tracking which positions may still be unrevealed (prompts may only reduce that)."""

    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self.open = [True] * seq_len  # may position i still be unrevealed after the stages lowered so far?
        self.opened_by: dict[int, str] = {}  # the last stage that left position i possibly unrevealed
        self.planned = 0  # steps lowered so far (parallel branches add too, though they share steps: an upper bound)
        self.cached_blocks = 0  # blocks of cached blocks(...) stages lowered so far: each one's CacheScope.block

    def _plan(self, label: str, steps: int) -> None:
        """Count a stage's steps before building them, so a path of 10**9 steps fails before it fills memory."""
        self.planned += steps
        limits.check_steps(label, self.planned)

    def lower(self, path: Path, positions: Positions) -> list[Step]:
        if isinstance(path, Alias):
            name, inner = repr(path), repr(path.body)
            return [attrs.evolve(s, stage=name if s.stage == inner else f"{name}: {s.stage}")
                    for s in self.lower(path.body, positions)]
        if isinstance(path, Then):
            return [step for part in path.parts for step in self.lower(part, positions)]
        if isinstance(path, On):
            return self.lower(path.path, self._subset(path, positions))
        if isinstance(path, Blocks):
            return self._blocks(path, positions)
        if isinstance(path, Parallel):
            return self._parallel(path, positions)
        if isinstance(path, Reveal):
            return self._reveal(path, positions)
        if isinstance(path, Ramp):
            return self._ramp(path, positions)
        if isinstance(path, Switch):
            return self._switch(path, positions)
        if isinstance(path, Remask):
            return self._remask(path, positions)
        if isinstance(path, Renoise):
            return self._renoise(path, positions)
        raise SNRPathError(f"cannot compile a {type(path).__name__}: {path!r}")

    # -- stages --

    def _reveal(self, path: Reveal, positions: Positions) -> list[Step]:
        label = repr(path)
        op = functools.partial(RevealOp, positions, path.order.fit(positions, label), temperature=path.temperature, top_p=path.top_p,
                               exact=path.exact, adaptive=path.adaptive)
        if path.count is not None:
            left = sum(self.open[p] for p in positions)
            if path.count > left:
                raise SNRPathError(f"{label}: reveals {path.count} positions per step but at most {left} are left")
            steps = path.steps or math.ceil(left / path.count)
            if (steps - 1) * path.count >= left:  # the last step would find nothing left to reveal
                raise SNRPathError(f"{label}: {steps} steps of {path.count} plan {steps * path.count} reveals but at "
                                   f"most {left} positions are left; {math.ceil(left / path.count)} steps reveal "
                                   "them all")
            if steps * path.count >= left:
                self._close(positions)
            self._plan(label, steps)
            call = op(count=path.count, alpha_t=0.0, alpha_s=1.0, sigma=0.0, sigma_by_confidence=False)
            return [Step(True, (call,), label) for _ in range(steps)]
        self._plan(label, path.steps)
        clocks = [_clock(path, k) for k in range(path.steps)]
        # A clock reveals every position only if its last step ends at alpha = 1 and remasks nothing: a position
        # remasked there has no later step to reveal it. The built-in clocks and policies always end so (sigma_max
        # is 0 at alpha_s = 1); a user's AlphaSchedule or RemaskPolicy that does not leaves the positions open, and
        # the coverage check refuses the path unless a later stage reveals them.
        last = clocks[-1]
        if last["alpha_s"] == 1 and last["sigma"] == 0:
            self._close(positions)
        else:
            self._reopen(positions, f"{label}, whose last step ends at alpha={last['alpha_s']!r} with remasking "
                                    f"probability {last['sigma']!r} (a clock must end at alpha = 1 with sigma = 0)")
        return [Step(True, (op(count=None, **clock),), label) for clock in clocks]

    def _ramp(self, path: Ramp, positions: Positions) -> list[Step]:
        """One call per step; with Heun, each step's predictor and its corrector (two steps, two calls)."""
        label = repr(path)
        heun = path.solver.corrects
        self._plan(label, path.steps * (1 + heun))
        steps = []
        for k in range(1, path.steps + 1):
            steps.append(Step(True, (RampOp(positions, path, k),), label))
            if heun:
                steps.append(Step(True, (RampCorrectOp(positions, path, k),), label))
        return steps

    def _renoise(self, path: Renoise, positions: Positions) -> list[Step]:
        self._plan(repr(path), 1)
        return [Step(False, (RenoiseOp(positions, path.gamma),), repr(path))]

    def _switch(self, path: Switch, positions: Positions) -> list[Step]:
        """What the mode does (:class:`snrpaths.path.SwitchMode`): drop the finite evidence, or commit it in one
        call; ``keep`` does neither and lowers to no step."""
        label, steps = repr(path), []
        if path.mode.drops:
            self._plan(label, 1)
            steps.append(Step(False, (MaskOp(positions),), label))
        if path.mode.commits:
            self._plan(label, 1)
            self._close(positions)
            steps.append(Step(True, (RevealOp(positions, RANDOM, None, 0.0, 1.0, 0.0, False, 1.0, 1.0),), label))
        return steps

    def _remask(self, path: Remask, positions: Positions) -> list[Step]:
        label = repr(path)
        if path.policy is not None:
            raise SNRPathError(f"{label}: a remask policy runs on a reveal's clock; write {label} & reveal(T, "
                               "schedule='linear'), or give explicit positions=...")
        chosen = resolve_positions(path.positions, self.seq_len, label)
        outside = sorted(set(chosen) - set(positions))
        if outside:
            raise SNRPathError(f"{label}: positions {shown_positions(outside)} lie outside the positions this stage runs on")
        self._reopen(chosen, label)
        self._plan(label, 1)
        return [Step(False, (RemaskOp(chosen),), label)]

    # -- combinators --

    def _subset(self, path: On, positions: Positions) -> Positions:
        chosen = resolve_positions(path.positions, self.seq_len, repr(path))
        outside = sorted(set(chosen) - set(positions))
        if outside:
            raise SNRPathError(f"{path!r}: positions {shown_positions(outside)} lie outside the enclosing stage's positions")
        return chosen

    def _blocks(self, path: Blocks, positions: Positions) -> list[Step]:
        """``inner`` on consecutive spans, the first ``len % n`` one position longer, each span's steps labelled
        with its block (so traces and plots can tell the blocks apart) and, with a cache, given the block's
        :class:`CacheScope` (a cached blocks stage nested inside keeps its own)."""
        label = repr(path)
        if path.n > len(positions):
            raise SNRPathError(f"{label}: {path.n} blocks of a stage with {len(positions)} positions; each block needs "
                               f"at least one (n in 1..{len(positions)})")
        size, extra = divmod(len(positions), path.n)
        steps, start = [], 0
        for k in range(path.n):
            span = positions[start:start + size + (k < extra)]
            start += len(span)
            where = f"{label} block {k + 1} of {path.n} (positions {span[0]}..{span[-1]})"
            scope = self._cache_scope(path, span)
            steps += [attrs.evolve(s, stage=f"{where}: {s.stage}", cache=s.cache or scope)
                      for s in self.lower(path.inner, span)]
        return steps

    def _cache_scope(self, path: Blocks, span: Positions) -> CacheScope | None:
        if path.cache is None:
            return None
        self.cached_blocks += 1
        return CacheScope(self.cached_blocks - 1, path.cache.active(span, self.seq_len), path.refresh)

    def _parallel(self, path: Parallel, positions: Positions) -> list[Step]:
        owner: dict[int, Path] = {}
        branches = []
        for part in path.parts:
            mine = self._subset(part, positions) if isinstance(part, On) else positions
            clash = next((p for p in mine if p in owner), None)
            if clash is not None:
                raise SNRPathError(f"parallel branches {owner[clash]!r} and {part!r} overlap at position {clash}; "
                                   "give each branch disjoint positions with on(...)")
            owner.update({p: part for p in mine})
            branches.append(self.lower(part, positions))
        return [_zip([b[k] for b in branches if k < len(b)]) for k in range(max(map(len, branches)))]

    # -- coverage --

    def _close(self, positions: Positions) -> None:
        for p in positions:
            self.open[p] = False

    def _reopen(self, positions: Positions, by: str) -> None:
        for p in positions:
            self.open[p] = True
            self.opened_by[p] = by

    def check_all_revealed(self, path: Path) -> None:
        left = [i for i, o in enumerate(self.open) if o]
        if left:
            by = {self.opened_by.get(i, "the start (nothing reveals them)") for i in left}
            raise SNRPathError(f"{path!r} can leave positions {shown_positions(left)} unrevealed (left open by "
                               f"{', '.join(sorted(by))}); end with a stage that reveals them, e.g. >> mdm(T)")


def _zip(steps: list[Step]) -> Step:
    """Steps of parallel branches run as one: one shared call, each branch's ops on its own positions. A cached
    block shares no call: the other branch's positions would change under keys and values it keeps."""
    cached = next((s for s in steps if s.cache is not None), None)
    if cached is not None and len(steps) > 1:
        other = next(s for s in steps if s is not cached)
        raise SNRPathError(f"`{cached.stage}` caches keys and values outside its block, so it cannot share calls with "
                           f"the parallel branch `{other.stage}`; run the branches one after the other with >>, or "
                           "drop cache=")
    return Step(any(s.call for s in steps), tuple(op for s in steps for op in s.ops), " | ".join(s.stage for s in steps),
                steps[0].cache)


def _clock(path: Reveal, k: int) -> dict:
    """The clock of step ``k`` of ``path``: ``t = 1 - k/T -> s = 1 - (k+1)/T``, the alphas the remask policy steers
    it to (the clock itself without one), and the policy's remasking probability (0 without one: MDLM)."""
    T, policy = path.steps, path.remask
    t, s = (T - k) / T, (T - k - 1) / T
    if policy is None:
        return dict(alpha_t=path.schedule.alpha(t), alpha_s=path.schedule.alpha(s), sigma=0.0,
                    sigma_by_confidence=False)
    a_t, a_s = policy.alpha(path.schedule, t), policy.alpha(path.schedule, s)
    return dict(alpha_t=a_t, alpha_s=a_s, sigma=policy.sigma(t, s, a_t, a_s), sigma_by_confidence=policy.by_confidence)
