"""Does a denoiser read its evidence? Cross-entropy at finite SNR against the context-free Bayes rule.

At SNR ``gamma`` a position's own evidence ``z_i = gamma x_{s_i} + sqrt(gamma) eps`` alone gives the context-free
Bayes rule (DESIGN.md section 4b)

    r(s_i = v | z_i) = softmax_v(z_i . x_v + log p(v))            p: a unigram prior, x_v: the unit-norm anchors

which needs no network. The exact posterior ``p(s_i | z)`` also uses the rest of the sequence, so on data its
expected cross-entropy is below the rule's at every gamma; a learned denoiser whose cross-entropy is above it is
ignoring its own evidence (as the first shipped DSL fine-tune did: 3.27 bits at gamma = 16 where the rule has 0.82).

:func:`evidence_curve` measures, per SNR and layout, on windows ``s_b`` ``[N, L]`` of held-out text:

    CE_b    = mean_{i scored} -log2 p_theta(s_bi | z_b)                   (bits per scored position)
    rule_b  = mean_{i scored} -log2 r(s_bi | z_bi)                         (the same draws of z)
    diff_b  = CE_b - rule_b                                                paired by window

and reports ``mean_b`` with the standard error ``std_b / sqrt(N)`` of each. Layouts: ``"all"``, every position at
``gamma`` (all scored); ``"half"``, a random half of the positions at ``gamma`` and the rest clean, the state a
hybrid's hand-over sees (only the finite ones scored). Given an exact ``reference`` denoiser (an ``ExactToy``'s
posterior, say), it also reports ``KL_b = mean_{i scored} KL(p_ref(. | z_b) || p_theta(. | z_b))`` in bits.

Verdict per row, at a margin of two standard errors of the paired difference: ``"reads its evidence"`` when
``diff + 2 se < 0``, ``"below the context-free rule"`` when ``diff - 2 se > 0``, otherwise ``"inconclusive"``.

Those states are data noised by the channel. A sampler visits others: its own earlier calls put the evidence where
it is, so a model's error is path-shaped (DESIGN.md 4d). :func:`trajectory` runs a path and scores every call
against an exact reference on the states the run actually visits: ``KL(p_ref(s_i | z) || p_theta(s_i | z))`` in
bits over the positions that call can still change, per call, with the stage it belongs to.
"""

from __future__ import annotations

import json
import math
from typing import Callable, Iterable, Sequence

import attrs
import torch

from . import validate
from .channel import posterior_logits
from .compile import Program, RampOp, RevealOp
from .denoiser import Denoiser, reads_finite_snr, require, require_finite_snr
from .errors import CapabilityError, SNRPathError, SNRTypeError, ShapeError
from .geometry import TokenTable
from .path import Path
from .progress import track
from .reprs import markdown_table
from .runner import Result, sample
from .state import SNRState


@attrs.frozen
class Layout:
    """Which positions of the ``[b, L]`` windows a row of :func:`evidence_curve` puts at the SNR and scores, the others
    clean: ``positions(shape, generator)`` is ``[b, L]`` bool, drawn from ``generator`` (which each row seeds on its
    own)."""

    name: str
    positions: Callable[[tuple[int, int], torch.Generator], torch.Tensor]


def _all(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Every position: no draw."""
    return torch.ones(*shape, dtype=torch.bool)


def _half(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``max(1, L // 2)`` positions per row, uniformly at random (one ``[b, L]`` uniform draw)."""
    b, L = shape
    rank = torch.rand(b, L, generator=generator).argsort(1).argsort(1)
    return rank < max(1, L // 2)


#: The evidence curve's layouts by name.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (Layout("all", _all), Layout("half", _half))}
READS, BELOW, INCONCLUSIVE = "reads its evidence", "below the context-free rule", "inconclusive"
#: The SNRs of issue 13's targets and of ``snrpaths check``.
DEFAULT_GAMMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
LOG2 = math.log(2)


@attrs.frozen
class Estimate:
    """A mean over windows with its standard error (bits)."""

    mean: float
    se: float

    @classmethod
    def of(cls, values: torch.Tensor) -> "Estimate":
        n = values.numel()
        se = float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.nan
        return cls(float(values.mean()), se)

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


@attrs.frozen
class EvidenceRow:
    """One SNR in one layout: model, rule, their paired difference and (with a reference) the KL, in bits."""

    layout: str
    gamma: float
    model: Estimate
    rule: Estimate
    diff: Estimate
    kl: Estimate | None
    scored: int  # positions scored per window

    @property
    def verdict(self) -> str:
        if self.diff.mean + 2 * self.diff.se < 0:
            return READS
        if self.diff.mean - 2 * self.diff.se > 0:
            return BELOW
        return INCONCLUSIVE


@attrs.frozen
class EvidenceCurve:
    """The rows of :func:`evidence_curve`, layout by layout, SNRs in the order given."""

    rows: tuple[EvidenceRow, ...]
    windows: int

    def verdicts(self) -> dict[tuple[str, float], str]:
        return {(r.layout, r.gamma): r.verdict for r in self.rows}

    def table(self) -> str:
        """A Markdown table, one line per (layout, SNR)."""
        kl = any(r.kl is not None for r in self.rows)
        header = ("layout", "gamma", "model CE (bits)", "context-free rule", "model - rule",
                  *(("KL to reference",) if kl else ()), "verdict")
        rows = [(r.layout, f"{r.gamma:g}", r.model, r.rule, f"{r.diff.mean:+.4f} ± {r.diff.se:.4f}",
                 *((r.kl,) if kl else ()), r.verdict) for r in self.rows]
        return markdown_table(header, rows, "lrrrr" + "r" * kl + "l")

    def to_dict(self) -> dict:
        return {"windows": self.windows, "rows": [
            {"layout": r.layout, "gamma": r.gamma, "scored": r.scored, "verdict": r.verdict,
             **{k: None if e is None else {"mean": e.mean, "se": e.se}
                for k, e in (("model", r.model), ("rule", r.rule), ("diff", r.diff), ("kl", r.kl))}}
            for r in self.rows]}


def unigram_prior(tokens: torch.Tensor, vocab_size: int, smoothing: float = 0.5) -> torch.Tensor:
    """``(V,)`` float64 ``p(v) = (count(v) + smoothing) / (N + V smoothing)`` of a token stream (any shape): strictly
    positive for ``smoothing > 0``, so ``log p`` exists for tokens the stream never shows."""
    vocab_size = validate.integer("vocab_size", vocab_size)
    smoothing = validate.number("smoothing", smoothing, 0.0, high_open=True, phrase="a finite number >= 0")
    flat = validate.token_ids("tokens", tokens, vocab_size).flatten().cpu()
    counts = torch.bincount(flat, minlength=vocab_size).double()
    total = counts.sum() + vocab_size * smoothing
    if total <= 0:
        raise SNRPathError("'tokens' is empty and 'smoothing' is 0: no prior can be formed")
    return (counts + smoothing) / total


def evidence_curve(
    denoiser,
    tokens: torch.Tensor,
    gammas: Iterable[float] = DEFAULT_GAMMAS,
    *,
    prior: torch.Tensor,
    layouts: Sequence[str] = tuple(LAYOUTS),
    reference=None,
    seed: int = 0,
    batch: int = 64,
    progress: bool = False,
) -> EvidenceCurve:
    """Cross-entropy of ``denoiser`` at each SNR against the context-free Bayes rule (module docstring).

    Args:
        denoiser: any :class:`snrpaths.Denoiser`.
        tokens: ``[N, L]`` integer windows, ``L = denoiser.seq_len``, ids in ``[0, V)``; ``N >= 2`` for error bars.
        gammas: positive finite SNRs.
        prior: ``[V]`` probabilities of the rule (e.g. :func:`unigram_prior` of the training stream).
        layouts: any of ``"all"``, ``"half"``.
        reference: an exact denoiser of the same ``V``, ``L`` and anchors: adds the KL from it.
        seed: seeds every draw (the noise, the half layout's positions); the same seed gives the same numbers.
        batch: windows per denoiser call.
    Every argument is checked before the first denoiser call.
    """
    require("denoiser", denoiser, Denoiser)
    require_finite_snr(denoiser, "evidence_curve (it scores states at finite SNR)")
    gammas = _check_gammas(gammas)
    layouts = _check_layouts(layouts)
    _check_tokens(denoiser, tokens)
    log_prior = _check_prior(prior, denoiser.vocab_size).log()
    if reference is not None:
        _check_reference(reference, denoiser)
    batch = validate.integer("batch", batch)
    seed = validate.seed("seed", seed)
    jobs = [(layout, gamma) for layout in layouts for gamma in gammas]
    rows = [_row(denoiser, reference, tokens, layout, gamma, log_prior, seed + k, batch)
            for k, (layout, gamma) in enumerate(track(jobs, "cell", "evidence curve", progress))]
    return EvidenceCurve(tuple(rows), int(tokens.shape[0]))


def _row(denoiser, reference, tokens, layout, gamma, log_prior, seed, batch) -> EvidenceRow:
    # on the CPU: the numbers do not depend on the device; mod 2^64 as torch folds a negative seed
    generator = torch.Generator().manual_seed(seed % 2**64)
    device = denoiser.table.anchors.device
    table = denoiser.table.to("cpu")
    # in float64, renormalised (float32 norms are off by ~1e-7); a demonstration table of unequal norms kept as is
    table64 = TokenTable.from_embeddings(table.anchors.double()) if table.is_unit_norm else table
    terms = {"model": [], "rule": [], "kl": []}
    scored = 0
    for chunk in tokens.cpu().split(batch):
        finite = LAYOUTS[layout].positions(chunk.shape, generator)  # [b, L] bool: the positions at gamma, the scored ones
        gamma_bl = torch.where(finite, gamma, math.inf).to(table.anchors.dtype)
        state = SNRState.from_tokens(chunk, gamma_bl, table, generator)
        target = chunk[..., None]
        model = _log_probs(denoiser, on_device(state, device))
        rule = posterior_logits(state.z.double(), table64, log_prior).log_softmax(-1)
        weights = finite.double() / finite.sum(1, keepdim=True)  # [b, L]: a mean over the scored positions
        terms["model"].append(-(model.gather(-1, target)[..., 0] * weights).sum(1) / LOG2)
        terms["rule"].append(-(rule.gather(-1, target)[..., 0] * weights).sum(1) / LOG2)
        if reference is not None:
            ref = _log_probs(reference, on_device(state, reference.table.anchors.device))
            terms["kl"].append((kl_bits(ref, model) * weights).sum(1))
        scored = int(finite[0].sum())
    model, rule = torch.cat(terms["model"]), torch.cat(terms["rule"])
    kl = Estimate.of(torch.cat(terms["kl"])) if reference is not None else None
    return EvidenceRow(layout, float(gamma), Estimate.of(model), Estimate.of(rule), Estimate.of(model - rule), kl, scored)


def kl_bits(ref: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    """``[..., L]`` ``KL(p_ref || p_model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v)) / log 2`` of normalised
    log-probabilities ``[..., L, V]``: 0 where the reference puts no mass (``0 log 0 = 0``, whatever the model says),
    ``+inf`` where the model gives 0 to a token the reference does not, exactly 0 where the two are equal. Clamped at
    0: two laws equal up to rounding give about -1e-16, not a negative divergence."""
    terms = torch.where(torch.isneginf(ref), 0.0, ref.exp() * (ref - model))
    return terms.sum(-1).clamp_min(0.0) / LOG2


def on_device(state: SNRState, device) -> SNRState:
    """``state`` with every field on ``device`` (itself when it is there already)."""
    return state if state.gamma.device == device else SNRState(
        *(getattr(state, f.name).to(device) for f in attrs.fields(SNRState)))


def _log_probs(denoiser, state: SNRState) -> torch.Tensor:
    """``[b, L, V]`` float64 log-probabilities; a NaN or a non-float output is the denoiser's error, named."""
    with torch.no_grad():
        logits = denoiser.logits(state)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise SNRTypeError(f"the denoiser returned {_describe(logits)}; logits must be a floating-point tensor")
    if bool(torch.isnan(logits).any()):
        raise SNRPathError("the denoiser returned NaN logits")
    return logits.double().cpu().log_softmax(-1)


# -- checks ---------------------------------------------------------------------------------------------------------


def _check_gammas(gammas) -> tuple[float, ...]:
    try:
        values = tuple(gammas)
    except TypeError:
        raise SNRTypeError(f"'gammas' must be a sequence of positive finite SNRs (got {_describe(gammas)})") from None
    if not values:
        raise SNRPathError("'gammas' is empty; give at least one positive finite SNR, e.g. (1, 4, 16)")
    # gamma = 0 is [MASK] and inf is clean: no evidence to read
    return tuple(validate.number("gammas", g, 0.0, low_open=True, high_open=True, phrase="positive and finite")
                 for g in values)


def _check_layouts(layouts) -> tuple[str, ...]:
    values = (layouts,) if isinstance(layouts, str) else tuple(layouts)
    if not values:
        raise SNRPathError(f"'layouts' is empty; give any of {tuple(LAYOUTS)}")
    return tuple(validate.choice("layouts", layout, LAYOUTS) for layout in values)


def _check_tokens(denoiser, tokens) -> None:
    validate.token_ids("tokens", tokens, denoiser.vocab_size, ndims=(2,))
    if tokens.shape[0] < 2:
        raise ShapeError(f"'tokens' must have N >= 2 windows [N, L], for an error bar (got {list(tokens.shape)})")
    if tokens.shape[1] != denoiser.seq_len:
        raise ShapeError(f"'tokens' windows have L = {tokens.shape[1]}; the denoiser is built for seq_len = "
                         f"{denoiser.seq_len}")


def _check_prior(prior, vocab_size: int) -> torch.Tensor:
    if not isinstance(prior, torch.Tensor) or not prior.is_floating_point() or tuple(prior.shape) != (vocab_size,):
        raise ShapeError(f"'prior' must be a floating tensor of shape [{vocab_size}] (got {_describe(prior)})")
    p = prior.double().cpu()
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or abs(float(p.sum()) - 1) > 1e-6:
        raise SNRPathError(f"'prior' must hold finite probabilities >= 0 summing to 1 (sum {float(p.sum()):.6g}); "
                           "unigram_prior(train_tokens, V) makes one")
    return p


def _check_reference(reference, denoiser) -> None:
    require("reference", reference, Denoiser)
    require_same_channel("reference", reference, "denoiser", denoiser, "the KL needs the same evidence z")


def require_same_channel(name: str, a, other: str, b, why: str) -> None:
    """Raise :class:`SNRPathError` unless denoisers ``a`` and ``b`` (called ``name`` and ``other`` in the message) have
    the same ``vocab_size``, ``seq_len`` and anchors (to 1e-6: a float32 table against its float64 copy), so that
    one state ``z`` means the same evidence to both; ``why`` says what needs it."""
    for field in ("vocab_size", "seq_len"):
        if getattr(a, field) != getattr(b, field):
            raise SNRPathError(f"the {name} has {field} = {getattr(a, field)!r}; the {other} has "
                               f"{getattr(b, field)!r}: {why}")
    x, y = a.table.anchors, b.table.anchors
    if x.shape != y.shape or not torch.allclose(x.double().cpu(), y.double().cpu(), atol=1e-6):
        raise SNRPathError(f"the {name}'s anchors differ from the {other}'s (token tables {list(x.shape)} and "
                           f"{list(y.shape)}): {why}")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"{type(value).__name__} {value!r:.60}"


# -- the error along a path ---------------------------------------------------------------------------------------


@attrs.frozen
class TrajectoryRow:
    """One denoiser call of a run (:func:`trajectory`).

    Attributes:
        call: its number in the run, from 1 (the run made ``len(rows)`` calls).
        step: the index of its step in the compiled program; ``stage`` the expression that step came from.
        kl: ``KL(p_ref(s_i | z) || p_theta(s_i | z))`` in bits, averaged over each row's counted positions, then its
            mean and standard error across the rows in the call (the statistic is per row: the noise of a row's
            positions is shared).
        rows: the rows the call went to (the runner calls only rows that changed since their own last call).
        positions: the positions counted, summed over those rows.
        gamma: the mean SNR of the counted positions (0 for a masked-diffusion call, the ramp's level before its
            step for a ramp call); NaN when nothing was counted.
    """

    call: int
    step: int
    stage: str
    kl: Estimate
    rows: int
    positions: int
    gamma: float


@attrs.frozen(eq=False)
class Trajectory:
    """:func:`trajectory`'s rows, one per denoiser call, and the run they came from (``result``, with its trace).
    ``str()`` (and :meth:`table`) is a Markdown table; :meth:`to_json` the numbers."""

    path: str
    batch: int
    seed: int
    rows: tuple[TrajectoryRow, ...]
    result: Result

    def table(self) -> str:
        rows = [(r.call, r.stage, r.kl, r.rows, r.positions, f"{r.gamma:.3g}") for r in self.rows]
        return markdown_table(("call", "stage", "KL (bits)", "rows", "positions", "mean gamma"), rows, "rlrrrr")

    def __str__(self) -> str:
        return (f"KL to the exact posterior along {self.path}, per call ({self.batch} rows, seed {self.seed}; "
                f"mean over each row's free positions, ± 1 s.e. across rows):\n{self.table()}")

    def to_dict(self) -> dict:
        """Plain numbers; NaN (an undefined mean or standard error) and infinity (a model that gives probability 0
        to a token the reference does not) as in Python, see :meth:`to_json`."""
        return {"path": self.path, "batch": self.batch, "seed": self.seed, "nfe": self.result.nfe, "rows": [
            {"call": r.call, "step": r.step, "stage": r.stage, "kl_mean": r.kl.mean, "kl_se": r.kl.se,
             "rows": r.rows, "positions": r.positions, "gamma": r.gamma} for r in self.rows]}

    def to_json(self) -> str:
        """:meth:`to_dict` as strict JSON: NaN becomes ``null``, an infinite KL the string ``"inf"``."""
        def strict(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
            return value

        data = self.to_dict()
        data["rows"] = [{k: strict(v) for k, v in row.items()} for row in data["rows"]]
        return json.dumps(data, allow_nan=False)


def trajectory(
    path: Path | Program,
    denoiser,
    reference,
    *,
    batch: int,
    seed: int,
    seq_len: int | None = None,
    prompt: torch.Tensor | None = None,
    progress: bool = False,
) -> Trajectory:
    """Run ``path`` with ``denoiser`` and score every call against the exact ``reference`` on the states it visits.

    At call ``c`` (DESIGN.md 4d), on the state ``z`` each called row ``b`` is in,

        KL_bc = mean_{i in S_bc} sum_v p_ref(v | z_b) log2(p_ref(v | z_b) / p_theta(v | z_b))       (bits)

    with ``S_bc`` the positions the call's step can still change: not clean (so never a prompt position) and among
    the positions of the step's reveal and ramp ops. Row ``c`` of the result is the mean of ``KL_bc`` over the rows
    the call went to, with its standard error across them. An exact denoiser scored against itself gives exactly 0
    at every call.

    The run is ``snrpaths.sample(path, denoiser, batch=batch, seed=seed, prompt=prompt, trace=True)`` exactly (the
    same samples, in ``result``): the denoiser's logits go to the runner unchanged, and the reference is asked for
    its own on the same states beside each call.

    Args:
        path: a Path or a Program compiled for ``denoiser.seq_len``.
        denoiser: any :class:`snrpaths.Denoiser`.
        reference: an exact denoiser (``exact_posterior = True``: ``ExactHMM``, ``ExactToy``) with the denoiser's
            vocabulary, length and anchors.
        batch, seed: as :func:`snrpaths.sample`; ``batch >= 2`` for standard errors.
        seq_len: the length to run at, which must be the denoiser's (default).
        prompt: ``[L]`` or ``[B, L]`` token ids, ``-1`` where free (as :func:`snrpaths.sample`).
        progress: a bar of the denoiser calls, with the run's length after two (:class:`snrpaths.progress.Meter`).
    Every argument is checked before the first call. The run keeps its trace (which steps called: the only record
    that ties a call to its step), ``[S + 1, B, L]`` per field, so memory grows as steps x batch x L; the scores
    themselves are a few numbers per row and call. A path one of whose steps calls the denoiser twice (a parallel
    composition whose parts need logits for different rows, e.g. a confidence-ordered reveal beside a ramp once
    some rows have nothing left to reveal) cannot be attributed call by call, and raises after its run.
    """
    require("denoiser", denoiser, Denoiser)
    require("reference", reference, Denoiser)
    if getattr(reference, "exact_posterior", False) is not True:
        raise CapabilityError(f"'reference' must be an exact denoiser (exact_posterior = True, e.g. ExactHMM or "
                              f"ExactToy) to score against; {type(reference).__name__} is not")
    require_same_channel("reference", reference, "denoiser", denoiser, "the KL compares them on the same states")
    seq_len = validate.integer("seq_len", seq_len, allow_none=True)
    if seq_len is not None and seq_len != denoiser.seq_len:
        raise ShapeError(f"'seq_len' is {seq_len}; the denoiser and the reference are built for {denoiser.seq_len}")
    program = path.compile(denoiser.seq_len) if isinstance(path, Path) else path
    if not isinstance(program, Program):
        raise SNRTypeError(f"'path' must be a Path or a Program (got {_describe(path)})")
    batch = validate.integer("batch", batch)
    seed = validate.seed("seed", seed)
    acted, which = _acted_positions(program)
    scoring = _Scoring(denoiser, reference, acted)
    result = sample(program, scoring, batch=batch, seed=seed, prompt=prompt, trace=True, progress=progress)
    steps = result.trace.called.nonzero().flatten().tolist()
    if len(steps) != len(scoring.calls):
        raise SNRPathError(f"{program.path!r} made {len(scoring.calls)} calls at {len(steps)} steps: some step called "
                           "the denoiser twice (parallel parts needing logits for different rows), so its calls "
                           "cannot be told apart; score the parts as separate paths")
    rows = tuple(_trajectory_row(c + 1, k, program.steps[k].stage, which[k], sums)
                 for c, (k, sums) in enumerate(zip(steps, scoring.calls)))
    return Trajectory(repr(program.path), batch, seed, rows, result)


def _acted_positions(program: Program) -> tuple[torch.Tensor, dict[int, int]]:
    """``[J, L]`` bool, the distinct position sets that the calling steps' reveal and ramp ops (the ops that read a
    call's logits) act on, and for each calling step the index of its set. Usually ``J = 1``: every position."""
    sets: dict[tuple[int, ...], int] = {}
    which = {}
    for k, step in enumerate(program.steps):
        if step.call:
            acted = sorted({i for op in step.ops if isinstance(op, (RevealOp, RampOp)) for i in op.positions})
            which[k] = sets.setdefault(tuple(acted), len(sets))
    masks = torch.zeros(max(1, len(sets)), program.seq_len, dtype=torch.bool)
    for positions, j in sets.items():
        masks[j, list(positions)] = True
    return masks, which


@attrs.frozen(eq=False)
class _CallSums:
    """One call's numbers per called row ``n`` and position set ``J`` (``[n, J]`` float64 each), over the positions
    of the set that are not clean: their count, the sum of their finite KLs (bits), how many have an infinite KL,
    and the sum of their SNRs. Sums, not ``[n, L]`` maps: a long path at ``L = 1024`` keeps megabytes, not
    gigabytes."""

    count: torch.Tensor
    kl: torch.Tensor
    infinite: torch.Tensor
    gamma: torch.Tensor


class _Scoring:
    """``denoiser`` as the runner sees it (its logits unchanged), recording at each call, for the rows called, the
    :class:`_CallSums` of the KL from ``reference``'s logits of the same state over each of the position sets
    ``acted`` ``[J, L]``."""

    def __init__(self, denoiser, reference, acted: torch.Tensor):
        self.denoiser, self.reference = denoiser, reference
        self.vocab_size, self.seq_len, self.table = denoiser.vocab_size, denoiser.seq_len, denoiser.table
        self.reads_finite_snr = reads_finite_snr(denoiser)
        self.sets = acted.T.double()  # [L, J]
        self.calls: list[_CallSums] = []

    def logits(self, state: SNRState) -> torch.Tensor:
        logits = self.denoiser.logits(state)
        expected = (state.batch, state.seq_len, self.vocab_size)
        if isinstance(logits, torch.Tensor) and logits.is_floating_point() and tuple(logits.shape) == expected:
            # otherwise the runner's own check names the problem
            model = logits.detach().double().cpu().log_softmax(-1)
            ref = _log_probs(self.reference, on_device(state, self.reference.table.anchors.device))
            kl = kl_bits(ref, model)  # [n, L]
            free = ~state.clean.cpu()
            infinite = free & torch.isinf(kl)
            self.calls.append(_CallSums(  # sums over each set by one product; inf * 0 would be NaN, so apart
                count=free.double() @ self.sets, kl=torch.where(free & ~infinite, kl, 0.0) @ self.sets,
                infinite=infinite.double() @ self.sets,
                gamma=torch.where(free, state.gamma.double().cpu(), 0.0) @ self.sets))
        return logits


def _trajectory_row(call: int, k: int, stage: str, j: int, sums: _CallSums) -> TrajectoryRow:
    count, scored = sums.count[:, j], sums.count[:, j] > 0
    row_kl = torch.where(sums.infinite[:, j] > 0, math.inf, sums.kl[:, j] / count.clamp_min(1))[scored]
    kl = Estimate.of(row_kl) if row_kl.numel() else Estimate(math.nan, math.nan)
    positions = int(count.sum())
    gamma = float(sums.gamma[:, j].sum()) / positions if positions else math.nan
    return TrajectoryRow(call, k, stage, kl, int(count.shape[0]), positions, gamma)
