"""Running a Program on a batch against a Denoiser: the only place paths touch tensors and randomness.

Every random choice comes from per-row counter-based streams keyed by ``seed`` (:class:`~snrpaths.streams.Streams`):
row ``i``'s numbers depend on ``(seed, i)`` and the program only, so the same seed gives the same samples, and row
``i`` is the same sample whatever the batch size or the shard it runs in (``row_offset``), as long as the denoiser
computes each row's logits from that row alone. A call goes to the rows that need logits at a step and changed since
their own last call; the other rows' logits are reused (MDLM's cache, row by row), and a step where no such row is
left makes no call (no NFE). So a row with nothing left to reveal costs neither a call nor a place in one (its count,
``Result.calls``, stops), and the run stops once every row is clean and no later step can remask: adaptive reveals
and stop tokens finish rows early, so ``program.nfe`` is an upper bound. Host synchronisation happens only where
the algorithm needs it: to count the rows a call needs, to decide whether the run is over, and to gather the
positions whose tokens are drawn. The steps of a cached block (``blocks(..., cache=...)``) call the denoiser through
each row's key/value cache (:class:`snrpaths.blockcache.RowCaches`).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Callable, Sequence

import attrs
import torch

from .blockcache import RowCaches
from .channel import increment, renoise
from .compile import MaskOp, Program, RampCorrectOp, RampOp, RemaskOp, RenoiseOp, RevealOp, Step, compile_path
from .denoiser import Denoiser, TextCodec, require
from .draw import inverse_cdf, probabilities
from .errors import DenoiserError, SNRPathError, SNRTypeError, ShapeError, shown_positions
from . import limits, validate
from .orders import entropy
from .parse import parse_path
from .path import Path, Ramp
from .progress import Meter
from .state import UNKNOWN, SNRState
from .streams import Streams


@attrs.frozen(eq=False)
class Trace:
    """What happened at each step. ``S`` steps, ``B`` rows, ``L`` positions.

    Attributes:
        gamma: ``[S + 1, B, L]`` SNR before the first step and after each step.
        tokens: ``[S + 1, B, L]`` clean tokens (-1 where not clean), same times.
        confidence: ``[S, B, L]`` the max probability of the logits each step used.
        entropy: ``[S, B, L]`` the entropy (nats) of those logits.
        called: ``[S]`` whether the step made a fresh denoiser call (False: cached or no call needed).
        stages: the expression each step came from.

    A run that stopped early (every row clean, nothing left that could remask) records its remaining steps as the
    final state, with no call and NaN confidence and entropy.
    """

    gamma: torch.Tensor
    tokens: torch.Tensor
    confidence: torch.Tensor
    entropy: torch.Tensor
    called: torch.Tensor
    stages: tuple[str, ...]


@attrs.frozen(eq=False, repr=False)
class Result:
    """``tokens`` ``[B, L]`` sampled; ``nfe`` denoiser calls made; ``state`` the final SNR state; ``trace``; ``text``
    the ``B`` decoded samples when the prompt was given as text (a :class:`~snrpaths.denoiser.TextCodec` denoiser).

    ``calls`` ``[B]`` int64: the calls each row needed, counted as if it ran alone (a call counts for a row when the
    row needed logits at that step and its state changed since its own last counted call). It equals the ``nfe`` of
    sampling that row with ``batch=1``, so it does not depend on the batch: ``max(calls) <= nfe <= sum(calls)``.
    A row with nothing left to reveal (finished early by an adaptive reveal or a stop token) counts no more calls,
    and ``nfe <= program.nfe``.
    """

    tokens: torch.Tensor
    nfe: int
    state: SNRState
    trace: Trace | None = None
    calls: torch.Tensor | None = None
    text: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        """``Result(4 samples x 128 tokens, 48 calls (per sample 40 to 48), text[0] 'ROMEO: ...')``, short."""
        b, length = self.tokens.shape
        lo, hi = (int(self.calls.min()), int(self.calls.max())) if self.calls is not None else (self.nfe, self.nfe)
        per = "" if lo == hi == self.nfe else f" (per sample {lo} to {hi})" if lo != hi else f" ({lo} per sample)"
        text = "" if not self.text else f", text[0] {self.text[0][:60] + '...' * (len(self.text[0]) > 60)!r}"
        trace = ", with a trace" if self.trace is not None else ""
        return f"Result({b} sample{'s' * (b != 1)} x {length} tokens, {self.nfe} calls{per}{text}{trace})"


def sample(
    path: Path | Program | str,
    denoiser: Denoiser,
    batch: int | None = None,
    seed: int = 0,
    prompt: torch.Tensor | str | Sequence[str] | None = None,
    trace: bool = False,
    progress: bool = False,
    row_offset: int = 0,
    stop_token: int | None = None,
) -> Result:
    """Run ``path`` (a Path, its expression such as ``"mdm(32)"``, or a Program; compiled for ``denoiser.seq_len``)
    on ``batch`` sequences.

    Every argument is checked before the first denoiser call. The result's tokens are all clean: a run that would
    end with an unrevealed position raises :class:`SNRPathError` naming the step instead (the compiler refuses every
    path it can tell would; the runner checks once, after the last step). An exception raised by the denoiser is
    re-raised as :class:`snrpaths.errors.DenoiserError` naming the step, the original chained.

    Args:
        batch: how many sequences (a positive integer); default 1, or the rows of a ``[B, L]`` prompt (given both,
            they must agree).
        seed: an integer in ``[0, 2**64 - 1]``, the key of the per-row streams every random choice comes from.
        prompt: ``[L]`` or ``[B, L]`` integer token ids, ``-1`` where free: the given positions are fixed and clean,
            and no step changes them (prompting and infilling). For a denoiser that carries its tokenizer
            (:class:`~snrpaths.denoiser.TextCodec`, e.g. a masked LM) also a text or a list of texts, one per row,
            turned into ids by ``denoiser.encode_prompts`` (one text is repeated over ``batch`` rows; for a masked
            LM: each text first in its row, a ``[MASK]`` marker for each infilled position, the rest of the row
            free); the result's ``text`` is then decoded.
        trace: record a :class:`Trace`.
        progress: show a bar of the denoiser calls, with the run's length after two (:class:`snrpaths.progress.Meter`).
            Interrupting (Ctrl-C) returns nothing; reruns with the same seed are identical.
        row_offset: the global index of the first row. Row ``b`` draws from the stream of row ``row_offset + b``,
            so ``sample(..., batch=4, row_offset=8)`` gives rows 8..11 of ``sample(..., batch=12)``: how to shard.
        stop_token: a token id in ``[0, vocab_size)``, or None. After every step, once a row holds it at a position
            the path revealed (prompt positions do not count), every later free position of that row takes it,
            clean, with no call: a row whose free positions left are all after a stop token is finished and costs
            no further calls. Decode with :func:`trim_at_stop` (with a text prompt, ``Result.text`` is already cut
            there, as ``snrpaths sample`` prints it). A row that never draws it is the same sample as without
            ``stop_token``.

    Work is bounded before it starts (:mod:`snrpaths.limits`): ``batch x seq_len x vocab_size`` logits per call
    (``MAX_LOGITS``) and ``steps x batch x seq_len`` positions over the run (``MAX_WORK``); a request above either
    raises :class:`snrpaths.errors.LimitError` saying how to raise the limit.
    """
    require("denoiser", denoiser, Denoiser)
    path = parse_path(path) if isinstance(path, str) else path  # an expression, as the command line takes it
    program = compile_path(path, denoiser.seq_len) if isinstance(path, Path) else path
    if not isinstance(program, Program):
        raise SNRTypeError(f"'path' must be a Path, a path expression or a Program (got {type(path).__name__})")
    if program.seq_len != denoiser.seq_len:
        raise ShapeError(f"the program was compiled for seq_len={program.seq_len}; the denoiser has {denoiser.seq_len}")
    program.require(denoiser)
    batch = validate.integer("batch", batch, allow_none=True)
    seed = validate.seed("seed", seed)
    row_offset = validate.integer("row_offset", row_offset, 0)
    as_text = isinstance(prompt, str) or (isinstance(prompt, (list, tuple)) and all(isinstance(t, str) for t in prompt))
    if as_text and not isinstance(denoiser, TextCodec):
        raise SNRTypeError(f"a text prompt needs a denoiser that carries its tokenizer (the TextCodec protocol: "
                           f"encode_prompts, decode); {type(denoiser).__name__} has none: give token ids, -1 where free")
    if as_text:
        prompt = denoiser.encode_prompts([prompt])[0] if isinstance(prompt, str) else denoiser.encode_prompts(prompt)
    if prompt is not None:
        prompt = validate.token_ids("prompt", prompt, denoiser.vocab_size, ndims=(1, 2), free=UNKNOWN)
        if prompt.shape[-1] != program.seq_len:
            raise ShapeError(f"the prompt has length {prompt.shape[-1]}; the denoiser's seq_len is {program.seq_len}")
        if prompt.ndim == 2:
            if prompt.shape[0] == 0:
                raise ShapeError("'prompt' has no rows; give a [B, L] prompt with B >= 1, or an [L] one")
            if batch is not None and batch != prompt.shape[0]:
                raise ShapeError(f"'prompt' has {prompt.shape[0]} rows but batch={batch} was asked for; give one "
                                 "or make them agree (an [L] prompt is repeated over batch rows)")
            batch = prompt.shape[0]
    batch = 1 if batch is None else batch
    if row_offset > 2**63 - batch:  # the streams index rows in int64
        raise SNRPathError(f"'row_offset' must be an integer in [0, 2**63 - batch] = [0, {2**63 - batch}] for "
                           f"batch={batch}: row b draws from stream row_offset + b, and stream indices stop below "
                           f"2**63 (got {row_offset})")
    stop_token = validate.integer("stop_token", stop_token, 0, high=denoiser.vocab_size - 1, allow_none=True)
    check_size(program, denoiser, batch)
    device = denoiser.table.anchors.device
    if prompt is None:
        state = SNRState.masked(batch, program.seq_len, denoiser.table, device=device)
    else:
        state = SNRState.from_prompt(prompt.to(device), denoiser.table, batch=batch)
    streams = Streams.for_batch(seed, batch, row_offset, device=device)
    result = _Run(program, denoiser, streams, state, trace, stop_token).run(progress)
    return attrs.evolve(result, text=_texts(denoiser, result.tokens, stop_token, prompt)) if as_text else result


def _texts(denoiser: TextCodec, tokens: torch.Tensor, stop_token: int | None,
           prompt: torch.Tensor | None) -> tuple[str, ...]:
    """The ``B`` texts of ``[B, L]`` samples, each cut before its first stop token (:func:`trim_at_stop`), as
    ``snrpaths sample`` prints them."""
    if stop_token is None:
        return tuple(denoiser.decode(tokens))
    rows = prompt.expand_as(tokens) if prompt is not None else [None] * tokens.shape[0]
    cut = [trim_at_stop(row, stop_token, fixed) for row, fixed in zip(tokens, rows)]
    return tuple(denoiser.decode(row)[0] if row.numel() else "" for row in cut)


def check_size(program: Program, denoiser: Denoiser, batch: int) -> None:
    """Raise :class:`snrpaths.errors.LimitError` when ``batch`` rows of ``program`` would pass the logits or work
    limits of :mod:`snrpaths.limits` (what :func:`sample` checks before its first call)."""
    where = f"sample({program.path!r}, batch={batch})"
    limits.check_logits(where, batch, program.seq_len, denoiser.vocab_size, "lower batch")
    limits.check_work(where, len(program.steps) * batch, program.seq_len,
                      f"{len(program.steps)} steps x {batch} rows", "lower batch or the steps")


class _Run:
    def __init__(self, program: Program, denoiser: Denoiser, streams: Streams, state: SNRState, trace: bool,
                 stop_token: int | None = None):
        self.program, self.denoiser, self.streams, self.state = program, denoiser, streams, state
        self.stop_token = stop_token
        # the first step after which no step can send a clean position back: from there an all-clean run is over
        self.settled_from = 1 + max((k for k, step in enumerate(program.steps) if any(op.reopens for op in step.ops)),
                                    default=-1)
        # an op's positions -> (positions, its free mask [B, L], whether that is every position); keyed by the tuple's
        # id, since hashing a tuple of L ints costs microseconds every step (the entry keeps the tuple, so its id holds)
        self.masks: dict[int, tuple[tuple[int, ...], torch.Tensor, bool]] = {}
        self.logits: torch.Tensor | None = None  # [B, L, V]: each row's logits from its own last call
        self.owns_logits = False  # whether self.logits is a tensor of this run's own (not the denoiser's output)
        # sample() starts every position at z = 0 (masked or prompt), and only ops that write evidence (ramps,
        # renoising) move it: a program with none keeps z = 0 throughout, so its steps need not rewrite it
        self.z_stays_zero = not any(op.writes_evidence for step in program.steps for op in step.ops) \
            and not bool(state.z.any())
        self.nfe = 0
        # per row: the calls it needed (see Result.calls; a call on every row is a host count, added at the end), and
        # whether it changed since its own last one: the rows a call goes to
        self.row_calls = torch.zeros(state.batch, dtype=torch.int64, device=state.gamma.device)
        self.full_calls = 0
        self.row_stale = torch.ones(state.batch, dtype=torch.bool, device=state.gamma.device)
        self.no_rows = torch.zeros_like(self.row_stale)  # after a call on every row; shared, never written in place
        self.where, self.index = "", 0
        # the first step that sent a position to gamma = inf without a token (an SNR overflow), -1 for none; kept on
        # the device so that no step pays a host synchronisation for a check made once, after the run
        self.lost_at = torch.tensor(-1, device=state.gamma.device)
        self.recorder = _Recorder(state) if trace else None
        # [B, L] float64: the clock each position's ramp started it at (0 from [MASK]; set by a ramp's first step)
        self.ramp_start = torch.zeros_like(state.gamma, dtype=torch.float64)
        # a Heun step's predictor -> its corrector, by the op's positions: (dgamma [B, L], drift target [B, L, d])
        self.predicted: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        # cached blocks: the key/value cache the current step's call works under (None: none), and each row's cache
        self.scope, self.caches = None, RowCaches(state.batch, state.gamma.device)

    def run(self, progress: bool) -> Result:
        # the bar counts denoiser calls, as Result.nfe does, against the program's planned ones
        with Meter(self.program.nfe, "call", "sampling", progress, leave=False) as bar:
            for index, step in enumerate(self.program.steps):
                self.where, self.index = f"step {index} ({step.stage})", index
                nfe_before = self.nfe
                self._step(step)
                if self.recorder is not None:
                    self.recorder.record(self.state, self.logits, self.nfe > nfe_before, step.stage)
                if progress:
                    bar.update(self.nfe - nfe_before)
                # Whether the run is over is asked on steps that made no call (once every row is clean, no step
                # calls), so no step pays a host synchronisation for it and at most one idle step runs past the end.
                if self.nfe == nfe_before and index + 1 >= self.settled_from and bool(self.state.clean.all()):
                    if self.recorder is not None:
                        for rest in self.program.steps[index + 1:]:
                            self.recorder.record(self.state, None, False, rest.stage)
                    break
        unknown = self.state.tokens == UNKNOWN
        if bool(unknown.any()):  # one comparison per run, not per step
            if bool((unknown & self.state.clean).any()):
                self._lost(unknown & self.state.clean)
            if not self.program.partial:
                self._unrevealed()
        trace = self.recorder.finish() if self.recorder is not None else None
        return Result(tokens=self.state.tokens, nfe=self.nfe, state=self.state, trace=trace,
                      calls=self.row_calls + self.full_calls)

    def _unrevealed(self) -> None:
        """Raise for a run that ended with positions not clean (a hand-built Program, or a lowering bug): never
        hand back -1 ids as tokens."""
        rows, cols = (~self.state.clean).nonzero(as_tuple=True)
        where = self.where or "the start (the program has no steps)"
        raise SNRPathError(f"after {where}, the last step of {self.program.path!r}, {rows.numel()} positions are "
                           f"still unrevealed (first at row {int(rows[0])}, position {int(cols[0])}; positions "
                           f"{shown_positions(sorted(set(cols.tolist())))}); end the path with a stage that reveals them, "
                           "e.g. >> mdm(T), or run program.prefix(k) to look at an unfinished state on purpose")

    def _lost(self, lost: torch.Tensor) -> None:
        """Raise for positions ``lost`` (``[B, L]`` bool) at gamma = inf with no token: never hand back -1 ids."""
        rows, cols = lost.nonzero(as_tuple=True)
        k = int(self.lost_at)
        where = f"step {k} ({self.program.steps[k].stage})" if k >= 0 else self.where
        raise DenoiserError(f"at {where} of {self.program.path!r}, {rows.numel()} positions reached gamma = inf "
                            f"without a token (first at row {int(rows[0])}, position {int(cols[0])}): the SNR "
                            f"arithmetic overflowed {self.state.gamma.dtype}; lower the path's SNRs (gamma_max) or "
                            "use a denoiser whose token table computes in a wider dtype")

    def _step(self, step: Step) -> None:
        """Select every op's positions on the state at the start of the step, call the denoiser only if some
        selection needs logits (a step whose coin flips chose nothing costs no call), then apply the ops."""
        self.scope = step.cache
        selections = [_SELECT[type(op)](self, op) for op in step.ops]
        needs = [selection.needs_logits for selection in selections if selection.needs_logits is not False]
        if needs:
            self.logits_now(functools.reduce(operator.or_, needs))
        for op, selection in zip(step.ops, selections):
            self.state = _APPLY[type(op)](self, op, selection)
            self._changed(selection.changes)
        if self.stop_token is not None:
            self._fill_after_stop()

    def _changed(self, rows: torch.Tensor) -> None:
        """``rows`` ``[B]`` bool changed: their next need of logits is a fresh call."""
        # right after a call on every row, nothing is stale: the changed rows are (row_stale is never written in place)
        self.row_stale = rows if self.row_stale is self.no_rows else self.row_stale | rows

    def _fill_after_stop(self) -> None:
        """Every free position after a row's first revealed stop token takes it, clean, with no call.

        With ``hit[b, i]`` = position ``i`` of row ``b`` revealed (not fixed) holding the stop token and ``first[b]``
        its smallest such ``i`` (``L`` when none), positions ``i > first[b]`` that are free and do not hold it clean
        already become clean stop tokens (confidence 1). No draw, no host synchronisation.
        """
        state, stop = self.state, self.stop_token
        clean, free = state.clean, ~state.fixed
        hit = clean & free & (state.tokens == stop)
        L = state.seq_len
        index = torch.arange(L, device=hit.device)
        first = torch.where(hit, index, L).amin(1)  # [B]
        fill = free & (index > first[:, None]) & ~(clean & (state.tokens == stop))
        inf = torch.tensor(float("inf"), dtype=state.gamma.dtype, device=state.gamma.device)
        self.state = state.advance(
            gamma=torch.where(fill, inf, state.gamma),
            z=torch.where(fill[..., None], 0.0, state.z),
            tokens=torch.where(fill, stop, state.tokens),
            confidence=torch.where(fill, 1.0, state.confidence),
        )
        self._changed(fill.any(1))

    def logits_now(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, V]`` logits, current for ``rows`` ``[B]`` bool (default: all): one call of the denoiser on the
        rows among them that changed since their own last call (the whole state when that is every row), unless
        there are none; every other row keeps the logits of its own last call."""
        need = self.row_stale if rows is None else rows & self.row_stale
        n = int(need.sum())
        if n:
            logits = self._call(self.state if n == self.state.batch else self.state.rows(need), need)
            if n < self.state.batch and self.owns_logits:  # a tensor this run made: written in place
                logits = self.logits.index_put_((need,), logits)
            elif n < self.state.batch:
                # rows never called yet hold zeros, never read: only rows that need logits read them
                old = self.logits if self.logits is not None else logits.new_zeros(self.state.batch, *logits.shape[1:])
                logits = old.index_put((need,), logits)  # out of place: the old tensor may be the denoiser's own
            self.logits, self.nfe, self.owns_logits = logits, self.nfe + 1, n < self.state.batch
            if n < self.state.batch:
                self.row_calls += need
                self.row_stale = self.row_stale & ~need
            else:
                self.full_calls += 1
                self.row_stale = self.no_rows
        return self.logits

    def _call(self, state: SNRState, rows: torch.Tensor) -> torch.Tensor:
        """The denoiser's logits of ``state``, the run's ``rows`` (``[B]`` bool); through the rows' key/value caches
        (:class:`snrpaths.blockcache.RowCaches`) in a cached block."""
        try:
            if self.scope is None:
                logits = self.denoiser.logits(state)
            else:
                logits = self.caches.logits(self.denoiser, state, rows, self.scope, self.logits)
        except Exception as err:  # KeyboardInterrupt and SystemExit are not Exceptions: they pass unwrapped
            raise DenoiserError(f"at {self.where} the denoiser raised {type(err).__name__}: {err}") from err
        self._check(logits, state)
        return logits

    def _check(self, logits: torch.Tensor, state: SNRState) -> None:
        expected = (state.batch, state.seq_len, self.denoiser.vocab_size)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
            got = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ShapeError(f"at {self.where} the denoiser returned logits of shape {got}; expected {list(expected)}")
        if not logits.is_floating_point():
            raise ShapeError(f"at {self.where} the denoiser returned logits of dtype {logits.dtype}; logits must be "
                             "floating point (log-probabilities up to a constant)")
        # A finite sum means every entry is finite (NaN and +-inf propagate): the common case, in one reduction and
        # one host synchronisation. Otherwise the maxima decide: max propagates NaN and +inf, and a position whose
        # logits are all -inf has no option to draw; -inf entries alone are fine (exact toys give log 0), and so is
        # anything at clean positions, which are never drawn (and a sum that merely overflowed passes here too).
        if math.isfinite(logits.sum()):
            return
        top = logits.amax(-1)
        bad = ~torch.isfinite(top) & ~state.clean
        if bool(bad.any()):
            raise DenoiserError(f"at {self.where} the denoiser returned NaN or infinite logits at {int(bad.sum())} "
                                f"unrevealed positions (NaN: {int(torch.isnan(logits).sum())}, "
                                f"+inf: {int(torch.isposinf(logits).sum())})")

    def mask(self, positions: tuple[int, ...]) -> torch.Tensor:
        """``[B, L]`` bool: the op's positions that are not fixed by the prompt (no step changes ``fixed``, so it is
        computed once per run). Read-only: callers combine it out of place."""
        return self._free(positions)[1]

    def unrevealed(self, positions: tuple[int, ...]) -> torch.Tensor:
        """``[B, L]`` bool: the op's free positions that are not clean (``gamma < inf``); one kernel when the op
        takes every position and the prompt fixes none (``gamma != inf`` is ``~clean`` for every value)."""
        _, free, everywhere = self._free(positions)
        not_clean = self.state.gamma != math.inf
        return not_clean if everywhere else free & not_clean

    def _free(self, positions: tuple[int, ...]) -> tuple[tuple[int, ...], torch.Tensor, bool]:
        entry = self.masks.get(id(positions))
        if entry is None:
            m = torch.zeros(self.state.seq_len, dtype=torch.bool, device=self.state.gamma.device)
            m[list(positions)] = True
            free = m & ~self.state.fixed
            entry = self.masks[id(positions)] = (positions, free, bool(free.all()))
        return entry

    def uniform(self) -> torch.Tensor:
        """``[B, L]`` float64 uniforms, one draw of every row's stream."""
        return self.streams.uniform(self.state.gamma.shape)


@attrs.frozen(eq=False)
class _Selection:
    """What one op will do this step: ``chosen`` positions move (revealed, ramped or masked), ``remasked`` clean
    positions go to [MASK]; ``needs_logits`` (``[B]`` bool, or False for none) says which rows' application needs
    the denoiser; ``moved`` is ``chosen.any(1)`` where the selection computed it already."""

    chosen: torch.Tensor
    remasked: torch.Tensor | None = None
    needs_logits: torch.Tensor | bool = False
    moved: torch.Tensor | None = None

    @property
    def changes(self) -> torch.Tensor:
        """``[B]`` bool: the rows this op changes."""
        moved = self.chosen.any(1) if self.moved is None else self.moved
        return moved if self.remasked is None else moved | self.remasked.any(1)


# -- ops -----------------------------------------------------------------------------------------------------------


def _select_reveal(run: _Run, op: RevealOp) -> _Selection:
    """Which positions the reveal takes this step (and which clean ones it remasks).

    The floor: coin flips with MDLM's probability (random order on a clock), or the ``n`` best by ``order``, ``n``
    the count or what the clock needs clean, ``round(alpha_s * n_free) - n_clean``. An adaptive rule's positions
    ``A`` come first: the floor adds coin flips to them, or the ``n - |A|`` best of the rest; a row with something
    left that this names nothing in reveals the rule's best position when the rule is ``at_least_one``. Logits are
    asked for only by rows with something left to reveal.
    """
    state = run.state
    free, unrevealed = run.mask(op.positions), run.unrevealed(op.positions)
    remasked, sigma_bar = _remask_draw(op, state, free, run)
    u_reveal = run.uniform()
    logits = None
    if op.uses_evidence:
        left = unrevealed.any(1)
        if not bool(left.any()):  # nothing left in any row: no ranking, no call
            return _Selection(torch.zeros_like(unrevealed), remasked, left)
        logits = run.logits_now(left)
    taken = op.adaptive.select(logits, unrevealed) if op.adaptive is not None else None
    if op.flips_coins:
        chosen = unrevealed & (u_reveal < _reveal_probability(op, sigma_bar))
        chosen = chosen if taken is None else taken | chosen
    else:
        if op.count is not None:
            n = torch.full((state.batch,), op.count, device=u_reveal.device)
        else:
            n = (torch.round(op.alpha_s * free.sum(1)) - (free & state.clean).sum(1)).clamp_min(0)
        score = op.order.score(logits if op.order.uses_evidence else None, u_reveal)
        chosen = (best(score, unrevealed, n) if taken is None
                  else taken | best(score, unrevealed & ~taken, n - taken.sum(1)))
    if op.adaptive is not None and op.adaptive.at_least_one:
        idle = unrevealed.any(1) & ~chosen.any(1)
        chosen = chosen | (idle[:, None] & best(op.adaptive.score(logits), unrevealed, idle.long()))
    moved = chosen.any(1)
    return _Selection(chosen, remasked, moved, moved)


def _reveal_probability(op: RevealOp, sigma_bar: torch.Tensor | float) -> torch.Tensor | float:
    """ReMDM's reveal probability ``clip((alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t), 0, 1)`` (1 when
    ``alpha_t = 1``): ``[B, 1]`` float64 for a per-row ``sigma_bar`` ``[B]``, a Python float for a scalar one (the
    same float64 arithmetic, with no tensor operation)."""
    keep = 1 - op.alpha_t
    if keep <= 0:
        return 1.0
    p = (op.alpha_s - (1 - sigma_bar) * op.alpha_t) / keep
    return p.clamp(0, 1)[:, None] if isinstance(p, torch.Tensor) else min(max(p, 0.0), 1.0)


def _apply_reveal(run: _Run, op: RevealOp, sel: _Selection) -> SNRState:
    """Reveal ``chosen`` with tokens drawn (float64) from the step's logits; send ``remasked`` to [MASK]."""
    state, chosen, remasked = run.state, sel.chosen, sel.remasked
    rows, cols = chosen.nonzero(as_tuple=True)
    tokens, confidence = state.tokens, state.confidence
    if not rows.numel():
        run.streams.skip()  # the draw is counted whatever was chosen, so that every row's stream stays in step
        if remasked is None:
            return state
    else:
        u = run.streams.uniform_at(rows, cols, bound=state.seq_len)  # positions lie below L
        probs = probabilities(run.logits[rows, cols], op.temperature, op.top_p)
        drawn = inverse_cdf(probs, u[:, None])  # [n, 1]
        tokens = tokens.index_put((rows, cols), drawn.squeeze(-1))
        confidence = confidence.index_put((rows, cols), probs.gather(-1, drawn).squeeze(-1).to(confidence.dtype))
    gamma, emptied = state.gamma, chosen  # chosen (unrevealed) and remasked (clean) positions are disjoint
    if remasked is not None:
        gamma, emptied = torch.where(remasked, 0.0, gamma), chosen | remasked
        tokens, confidence = torch.where(remasked, UNKNOWN, tokens), torch.where(remasked, 0.0, confidence)
    z = state.z if run.z_stays_zero else torch.where(emptied[..., None], 0.0, state.z)
    return state.advance(gamma=torch.where(chosen, math.inf, gamma), z=z, tokens=tokens, confidence=confidence)


def _remask_draw(op: RevealOp, state: SNRState, free: torch.Tensor, run: _Run):
    """Which clean ``free`` positions go back to [MASK] (None for none: ``sigma = 0``), and the ``sigma`` of the
    reveal rule: a float, or per row ``[B]``.

    Uniform policies use their scalar sigma in ``(alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)``, as ReMDM does.
    Confidence remasking spreads ``sigma_max`` as ``sigma_l = sigma_max softmax(-psi)_l`` over a row's clean
    positions; the reveal rule then uses their mean, ``sigma_max / n_clean`` (0 for a row with none).
    """
    if op.sigma == 0:
        return None, 0.0
    candidates, u = free & state.clean, run.uniform()
    if not op.sigma_by_confidence:
        return candidates & (u < op.sigma), op.sigma
    neg_psi = torch.where(candidates, -state.confidence.to(torch.float64), float("-inf"))
    # softmax over a row with no clean position is NaN: such a row remasks nothing.
    eta = torch.where(candidates, torch.softmax(neg_psi, dim=1), 0.0).nan_to_num(0.0)
    sigma = op.sigma * eta
    return candidates & (u < sigma), sigma.sum(1) / candidates.sum(1).clamp_min(1)


def best(score: torch.Tensor, eligible: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: the ``n[b]`` eligible positions of highest score in each row."""
    masked = torch.where(eligible, score, float("-inf"))
    rank = masked.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return eligible & (rank < n[:, None])


def _select_ramp(run: _Run, op: RampOp | RampCorrectOp) -> _Selection:
    active = run.unrevealed(op.positions)
    return _Selection(active, needs_logits=active.any(1))


def _apply_ramp(run: _Run, op: RampOp, sel: _Selection) -> SNRState:
    """One Euler-Maruyama step of the ramp (Heun's predictor): ``z += dgamma m(z) + noise sqrt(dgamma) eps``."""
    state = run.state
    if op.step == 1:  # where each position's ramp starts: the schedule's clock at its current SNR
        run.ramp_start = torch.where(run.mask(op.positions), op.ramp.clock(state.gamma.to(torch.float64)),
                                     run.ramp_start)
    if run.logits is None:  # no call was ever needed, so no position is active (e.g. a prompt fixes them all)
        run.streams.skip(op.ramp.form.draws + 1)  # the draws a batch with an active row would make (target, eps)
        return state
    level = _ramp_levels(op, sel.chosen, run.ramp_start).to(state.gamma.dtype)
    dgamma = torch.where(sel.chosen, (level - state.gamma).clamp_min(0), 0.0)
    target = _ramp_target(run, op.ramp, sel.chosen)
    if op.ramp.solver.corrects:
        run.predicted[op.positions] = (dgamma, target)
    z = increment(state.z, dgamma, target, run.streams, op.ramp.noise)
    gamma = state.gamma + dgamma
    run.lost_at = torch.where((run.lost_at < 0) & (sel.chosen & torch.isinf(gamma)).any(), run.index, run.lost_at)
    return state.advance(gamma=gamma, z=z)


def _apply_ramp_correct(run: _Run, op: RampCorrectOp, sel: _Selection) -> SNRState:
    """Heun's corrector on the predicted state ``z~``: ``z_{k+1} = z~ + dgamma (m(z~) - m(z_k)) / 2``, which is
    ``z_k + dgamma (m(z_k) + m(z~)) / 2 + noise sqrt(dgamma) eps`` with the predictor's ``eps``."""
    state, predicted = run.state, run.predicted.pop(op.positions, None)
    if predicted is None:  # the predictor had no call to read (nothing active in any row)
        run.streams.skip(op.ramp.form.draws)
        return state
    dgamma, before = predicted
    after = _ramp_target(run, op.ramp, sel.chosen)
    return state.advance(z=state.z + 0.5 * dgamma.to(state.z.dtype)[..., None] * (after - before))


def _ramp_target(run: _Run, ramp: Ramp, moving: torch.Tensor) -> torch.Tensor:
    """``[B, L, d]`` the drift target ``m(z)`` of the ``moving`` positions (``[B, L]`` bool; 0 elsewhere) from the
    step's logits, by the ramp's form (:class:`snrpaths.forms.RampForm`: the mean of the ramp's guarded posterior ``q``
    or the anchor of a token drawn from it) with the ramp's guards: ``q = softmax(logits / temperature)``, cut to
    ``top_k`` then to the nucleus ``top_p`` (:func:`snrpaths.draw.probabilities`)."""
    target = ramp.form.target(run.logits, run.denoiser.table, run.streams, run.state.z.dtype,
                              temperature=ramp.temperature, top_p=ramp.top_p, top_k=ramp.top_k)
    # Outside the moving positions the target is 0, not whatever the logits made of it: clean positions may carry
    # any logits (NaN included, by the protocol), and 0 * NaN would leave NaN evidence where z must stay 0.
    return torch.where(moving[..., None], target, 0.0)


def _ramp_levels(op: RampOp, active: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` float64: the SNR ``gamma(v_i)`` each active position (``[B, L]`` bool: the op's unrevealed free
    positions) rises to at this step, at its own clock (:meth:`snrpaths.Path.ramp`)

        u_i = clip(u (1 + lag (n - 1)) - lag r_i, 0, 1) = clip((k + lag (k (n - 1) - r_i T)) / T, 0, 1),
        v_i = u0_i + (1 - u0_i) u_i,

    ``u = k / T`` the ramp's clock after step ``k`` of ``T``, ``r_i`` the position's rank among its row's ``n``
    active positions, left to right, ``u0_i`` (``start``, ``[B, L]``) the schedule's clock at the SNR the position
    held when the ramp began. The second form of ``u_i`` keeps ``k (n - 1) - r_i T`` an exact integer, so a window
    that ends on a step ends exactly there (no rise of 1e-16 on the next step), and every clock is exactly 1 at the
    last step; ``u0_i = 0`` (a position that starts at [MASK]) gives ``v_i = u_i`` exactly. Values off the active
    positions are finite and unused."""
    T, k, lag = op.ramp.steps, op.step, op.ramp.lag
    rank = active.cumsum(1) - 1  # [B, L]
    n = active.sum(1, keepdim=True)  # [B, 1]
    u = ((k + lag * (k * (n - 1) - rank * T).to(torch.float64)) / T).clamp(0.0, 1.0)
    return op.ramp.level(start + (1 - start) * u)


def _select_renoise(run: _Run, op: RenoiseOp) -> _Selection:
    state = run.state
    return _Selection(run.unrevealed(op.positions) & (state.gamma > op.gamma))


def _apply_renoise(run: _Run, op: RenoiseOp, sel: _Selection) -> SNRState:
    """The chosen positions drop to ``op.gamma`` by the exact forward channel (one draw of ``eps``, always)."""
    state = run.state
    gamma = torch.where(sel.chosen, op.gamma, state.gamma)
    return state.advance(gamma=gamma, z=renoise(state.z, state.gamma, gamma, run.streams))


def _apply_mask(run: _Run, op: RemaskOp | MaskOp, sel: _Selection) -> SNRState:
    state, selected = run.state, sel.chosen
    return state.advance(
        gamma=torch.where(selected, 0.0, state.gamma),
        z=torch.where(selected[..., None], 0.0, state.z),
        tokens=torch.where(selected, UNKNOWN, state.tokens),
        confidence=torch.where(selected, 0.0, state.confidence),
    )


_SELECT: dict[type, Callable[[_Run, object], _Selection]] = {
    RevealOp: _select_reveal,
    RampOp: _select_ramp,
    RampCorrectOp: _select_ramp,
    RenoiseOp: _select_renoise,
    RemaskOp: lambda run, op: _Selection(run.mask(op.positions) & run.state.clean),
    MaskOp: lambda run, op: _Selection(run.unrevealed(op.positions)),
}
_APPLY: dict[type, Callable[[_Run, object, _Selection], SNRState]] = {
    RevealOp: _apply_reveal,
    RampOp: _apply_ramp,
    RampCorrectOp: _apply_ramp_correct,
    RenoiseOp: _apply_renoise,
    RemaskOp: _apply_mask,
    MaskOp: _apply_mask,
}


# -- trace ---------------------------------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, state: SNRState):
        self.gamma, self.tokens = [state.gamma.cpu()], [state.tokens.cpu()]
        self.confidence, self.entropy, self.called, self.stages = [], [], [], []

    def record(self, state: SNRState, logits: torch.Tensor | None, called: bool, stage: str) -> None:
        self.gamma.append(state.gamma.cpu())
        self.tokens.append(state.tokens.cpu())
        if logits is None:
            nan = torch.full(state.gamma.shape, float("nan"))
            conf, ent = nan, nan
        else:
            conf = torch.softmax(logits.to(torch.float32), -1).amax(-1).cpu()
            ent = entropy(logits).cpu()
        self.confidence.append(conf)
        self.entropy.append(ent)
        self.called.append(called)
        self.stages.append(stage)

    def finish(self) -> Trace:
        empty = torch.zeros(0, *self.gamma[0].shape)
        return Trace(
            gamma=torch.stack(self.gamma), tokens=torch.stack(self.tokens),
            confidence=torch.stack(self.confidence) if self.confidence else empty,
            entropy=torch.stack(self.entropy) if self.entropy else empty,
            called=torch.tensor(self.called, dtype=torch.bool), stages=tuple(self.stages))


def trim_at_stop(ids: torch.Tensor, stop_token: int | None, prompt: torch.Tensor | None = None) -> torch.Tensor:
    """``ids`` ``[L]`` up to, not including, the first stop token the path drew: the first position ``i`` with
    ``ids[i] == stop_token`` that ``prompt`` (``[L]``, ``-1`` where free) does not fix, as
    :func:`snrpaths.sample`'s ``stop_token`` reads a run. All of ``ids`` when there is none or ``stop_token`` is
    None."""
    ids = validate.token_ids("ids", ids, ndims=(1,))
    if stop_token is None:
        return ids
    stop_token = validate.integer("stop_token", stop_token, 0)
    hit = ids == stop_token
    if prompt is not None:
        hit &= validate.token_ids("prompt", prompt, ndims=(1,)).to(ids.device) == -1
    where = hit.nonzero()
    return ids if where.numel() == 0 else ids[:int(where[0])]
