"""Training objectives (DESIGN.md sections 4 and 4d): MDLM's, DSL's mixed-SNR objective, the covering distribution,
the states of a path (teacher-forced or on-policy), and mixtures of any of them.

Each is one per-position cross-entropy under per-token SNRs, weighted:

    loss = mean_b  sum_i w_bi CE_bi,   CE_bi = -sum_v q_bi(v) log p_theta(s_bi = v | z_b)          (a scalar)

with ``q_bi`` the one-hot of the data token ``s_bi``, or a teacher's posterior (soft targets). Each objective is split
in two so that every process of a data-parallel run draws the same randomness for the whole global batch and keeps
its own rows: ``draw(tokens, generator, anchor_dim)`` makes a :class:`Corruption` (rows independent),
``corruption[rows]`` slices it, and :func:`loss` runs the model. The loss is a mean of per-row terms, so the mean over
equal shards equals the loss of the whole batch, which is what DDP's gradient averaging assumes.

Where the objective scores the data tokens, the evidence ``z = gamma x_s + sqrt(gamma) eps`` is built inside
:func:`loss` from the model's *current* anchors and the stored noise ``eps``, so gradients reach the learned anchor
directions through ``z`` as well as through the converter's keys. A teacher's targets are posteriors of a given ``z``,
so those corruptions carry ``z`` itself (and the teacher's anchors must be the model's, frozen: checked).

Every objective is a frozen value whose ``repr`` is the expression :func:`parse_objective` reads back (``snrpaths train
--objective EXPR``), and :data:`OBJECTIVES` maps the names a user types to the classes.
"""

from __future__ import annotations

import ast
import copy
import math
import weakref
from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import validate
from .compile import MaskOp, Program, RampCorrectOp, RampOp, RemaskOp, RenoiseOp, RevealOp, Step, compile_path
from .denoiser import Denoiser, Trainable, reads_finite_snr
from .diagnostics import require_same_channel
from .errors import SNRPathError, SNRTypeError
from .geometry import TokenTable
from .orders import RANDOM
from .parse import PathSyntaxError, parse_path
from .path import Path
from .runner import best, sample
from .state import SNRState


@attrs.frozen(eq=False)
class Corruption:
    """One batch's corrupted state, loss weights and targets. ``B`` rows, ``L`` positions, ``d`` anchor dimension.

    Attributes:
        tokens: ``(B, L)`` the clean sequences (the targets; read by the model only where ``gamma = inf``).
        gamma: ``(B, L)`` SNRs in ``[0, inf]``.
        eps: ``(B, L, d)`` standard normal noise (used where ``0 < gamma < inf``), or None when ``z`` is given.
        weight: ``(B, L)`` loss weight of each position's cross-entropy (0 = not counted).
        z: ``(B, L, d)`` the evidence itself, or None to build it from the model's anchors and ``eps``.
        target: ``(B, L, V)`` target probabilities (a teacher's posterior), or None for the one-hot of ``tokens``.
    """

    tokens: torch.Tensor
    gamma: torch.Tensor
    eps: torch.Tensor | None
    weight: torch.Tensor
    z: torch.Tensor | None = None
    target: torch.Tensor | None = None

    def _fields(self) -> tuple[torch.Tensor | None, ...]:
        return self.tokens, self.gamma, self.eps, self.weight, self.z, self.target

    def __getitem__(self, rows) -> "Corruption":
        return Corruption(*(None if t is None else t[rows] for t in self._fields()))

    def to(self, device) -> "Corruption":
        return Corruption(*(None if t is None else t.to(device) for t in self._fields()))

    @property
    def soft(self) -> bool:
        """Whether its targets are given (a teacher's), with their evidence."""
        return self.target is not None

    def scored_softly(self, anchors: torch.Tensor, vocab_size: int) -> "Corruption":
        """The same rows with their evidence built now from ``anchors`` ``(V, d)`` (no gradient reaches them) and
        one-hot targets: the form a data-scoring corruption takes beside a teacher's rows (:class:`Mixture`)."""
        if self.soft:
            return self
        z = _evidence(anchors.detach(), self.tokens, self.gamma, self.eps)
        return Corruption(self.tokens, self.gamma, None, self.weight, z, F.one_hot(self.tokens, vocab_size).float())

    @staticmethod
    def cat(parts: list["Corruption"]) -> "Corruption":
        """The rows of ``parts`` one after another (all soft or all scoring the data)."""
        if len({p.soft for p in parts}) > 1:
            raise SNRPathError("cannot join soft and data-scoring corruptions: give the data rows targets first "
                               "(Corruption.scored_softly)")
        columns = zip(*(p._fields() for p in parts))
        return Corruption(*(None if c[0] is None else torch.cat(c) for c in columns))


def loss(model, corruption: Corruption) -> torch.Tensor:
    """``mean_b sum_i w_bi CE_bi`` with ``CE_bi = -sum_v q_bi(v) log p_theta(s_bi = v | z_b)`` (nats).

    ``model`` is a :class:`snrpaths.denoiser.Trainable` (or a DDP wrapper of one): ``model(z, gamma, tokens)``
    gives ``(B, L, V)`` logits and ``model.converter.anchors`` the ``(V, d)`` anchors.
    """
    return per_row(model, corruption).mean()


def per_row(model, corruption: Corruption) -> torch.Tensor:
    """``(B,)`` the per-row terms ``sum_i w_bi CE_bi``."""
    c = corruption
    anchors = _unwrap(model).converter.anchors  # (V, d), differentiable
    z = _evidence(anchors, c.tokens, c.gamma, c.eps) if c.z is None else c.z.to(anchors.dtype)
    logits = model(z, c.gamma, c.tokens).flatten(0, 1).float()  # (B L, V)
    target = c.tokens.flatten() if c.target is None else c.target.flatten(0, 1).float()
    ce = F.cross_entropy(logits, target, reduction="none").view_as(c.gamma)
    return (c.weight * ce).sum(1)


def _evidence(anchors: torch.Tensor, tokens: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``(B, L, d)`` ``z = gamma x_s + sqrt(gamma) eps`` in the anchors' dtype, exactly 0 where gamma is 0 or inf."""
    finite = torch.isfinite(gamma) & (gamma > 0)
    g = torch.where(finite, gamma, torch.zeros_like(gamma)).unsqueeze(-1)  # (B, L, 1), 0 at the endpoints
    return g * anchors[tokens] + g.sqrt() * eps.to(anchors.dtype)


def _unwrap(model) -> Trainable:
    """The Trainable itself: DistributedDataParallel keeps it in ``.module``."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _noise(tokens: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(*tokens.shape, dim, generator=generator, device=tokens.device)


# -- what every objective offers ------------------------------------------------------------------------------------


class Objective:
    """Base of the objectives: a frozen attrs value (validated fields, ``repr`` = the expression that builds it).

    ``draw(tokens, generator, anchor_dim, *, model=None, step=0)`` corrupts ``(B, L)`` data ``tokens``; ``model``
    (the Trainable being trained) and ``step`` (completed optimizer steps) are what an on-policy objective rolls out
    with, the others ignore them. :func:`snrpaths.train.train` calls :meth:`check` once before anything runs.
    """

    name: ClassVar[str]  # the key in OBJECTIVES, what `snrpaths train --objective NAME` takes

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        raise NotImplementedError

    def finite_snr(self, seq_len: int) -> bool:
        """Whether its states reach finite SNRs (then a run starts the converter at the context-free Bayes rule)."""
        return True

    def check(self, model: Trainable, save_every: int) -> None:
        """Raise before any work when this objective cannot train ``model`` in a run saving every ``save_every``."""

    def settings(self) -> dict:
        """JSON values of its fields, with its class name: what a checkpoint records, and resumes only with."""
        return {"name": type(self).__name__, **{f.name: _setting(getattr(self, f.name)) for f in _init_fields(self)}}

    def __repr__(self) -> str:
        parts = []
        for f in _init_fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("positional"):
                parts.append(_shown(value))
            elif value != f.default:
                parts.append(f"{f.name}={_shown(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _init_fields(obj: Objective) -> list[attrs.Attribute]:
    return [f for f in attrs.fields(type(obj)) if f.init]


def _shown(value: Any) -> str:
    """``value`` as an objective expression writes it: a path as its expression in quotes."""
    if isinstance(value, Path):
        return repr(repr(value))
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_shown, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _setting(value: Any) -> Any:
    if isinstance(value, Objective):
        return value.settings()
    if isinstance(value, tuple):
        return [_setting(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def _field(default: Any = attrs.NOTHING, check=validate.number, *, help: str, flag: str | None = None,
           cli: Any = True, positional: bool = False, **options: Any) -> Any:
    """A validated field with what the command line says of it: ``help``, its ``flag`` (default ``--field-name``)
    and ``cli``, False for a value the command line cannot spell (:func:`snrpaths.cli_model` refuses it)."""
    metadata = {"help": help, "flag": flag, "cli": cli, "positional": positional}
    return attrs.field(default=default, converter=validate.field(check, **options), metadata=metadata)


_FINITE = dict(low_open=True, high_open=True, phrase="a finite number")
_POSITIVE = dict(low=0.0, high=math.inf, low_open=True, high_open=True, phrase="a finite number > 0")


# -- endpoint and SNR-distribution objectives ----------------------------------------------------------------------


@attrs.frozen(repr=False)
class MDLM(Objective):
    """MDLM's objective with the log-linear schedule ``alpha_t = 1 - t`` (fraction clean):

        t_b = eps + (1 - eps) ((u + b / B) mod 1),   u ~ U[0, 1)         antithetic: one uniform, B strata
        position i masked (gamma = 0) with probability t_b, else clean (gamma = inf)
        row term = (1 / L) sum_{i masked} CE_bi / t_b

    The weight ``1/t`` is ``-alpha'_t / (1 - alpha_t)``, so the loss is the continuous-time NELBO in nats per token,
    an upper bound on the per-token negative log-likelihood.

    Attributes:
        eps: smallest ``t`` (MDLM's sampling_eps), keeps the weight ``1/t`` finite.
    """

    name = "mdlm"
    eps: float = _field(1e-3, low=0.0, high=1.0, low_open=True, high_open=True, flag="mdlm-eps",
                        help="MDLM: smallest masking time t")

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        """The corruption of ``(B, L)`` ``tokens``; ``eps`` is all zeros (no finite SNR)."""
        B, L = tokens.shape
        u = torch.rand((), generator=generator, device=tokens.device)
        t = self.eps + (1 - self.eps) * ((u + torch.arange(B, device=tokens.device) / B) % 1)  # (B,)
        masked = torch.rand(B, L, generator=generator, device=tokens.device) < t[:, None]
        gamma = torch.where(masked, 0.0, math.inf)
        weight = masked / (t[:, None] * L)
        return Corruption(tokens, gamma, torch.zeros(B, L, anchor_dim, device=tokens.device), weight)

    def finite_snr(self, seq_len: int) -> bool:
        return False


@attrs.frozen(repr=False)
class DSL(Objective):
    """DSL's mixed-SNR objective: one cross-entropy on two supports (DESIGN.md section 4).

    ``round(roar_fraction * B)`` rows, chosen at random, are on the endpoint (ROAR) branch:

        k ~ U{0, ..., L-1};  k random positions clean (gamma = inf), the rest masked (gamma = 0)
        row term = mean over the L - k masked positions of CE

    (the row term is an unbiased estimate of the random-order autoregressive NLL per position). The other rows are on
    the continuous branch:

        log gamma ~ N(mu, sigma^2), gamma capped at gamma_max; one draw per row, or per position if per_token
        row term = mean over all L positions of CE

    Attributes: the public DSL code's defaults (a quarter of each batch on ROAR, mu = 1.4, sigma = 0.55, cap 40,
    one SNR per sequence).
    """

    name = "dsl"
    roar_fraction: float = _field(0.25, low=0.0, high=1.0,
                                  help="DSL: share of each batch on the endpoint (ROAR) branch")
    mu: float = _field(1.4, **_FINITE, help="DSL: mean of log gamma on the continuous branch")
    sigma: float = _field(0.55, low=0.0, high_open=True, phrase="a finite number >= 0",
                          help="DSL: spread of log gamma on the continuous branch")
    gamma_max: float = _field(40.0, **_POSITIVE, help="DSL: cap of the continuous branch's SNR; covering: largest SNR")
    per_token: bool = _field(False, validate.boolean, help="DSL: one SNR per position, not per sequence")

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        B, L = tokens.shape
        device = tokens.device
        roar = torch.zeros(B, dtype=torch.bool, device=device)
        roar[torch.randperm(B, generator=generator, device=device)[: round(self.roar_fraction * B)]] = True
        gamma_roar, weight_roar = roar_state(B, L, generator, device)
        shape = (B, L) if self.per_token else (B, 1)
        normal = torch.randn(shape, generator=generator, device=device)
        gamma_cont = (self.mu + self.sigma * normal).exp().clamp(max=self.gamma_max).expand(B, L)
        gamma = torch.where(roar[:, None], gamma_roar, gamma_cont)
        weight = torch.where(roar[:, None], weight_roar, torch.full_like(weight_roar, 1 / L))
        return Corruption(tokens, gamma, _noise(tokens, anchor_dim, generator), weight)


@attrs.frozen(repr=False)
class Covering(Objective):
    """A distribution that covers the states continuous paths visit (issue 25; DESIGN.md 4d): clean + finite
    mixtures and SNRs outside DSL's log-normal. Per row

        k ~ U{0, ..., L-1};  k random positions clean (gamma = inf), the other L - k share one state:
        [MASK] (gamma = 0) on round(mask_fraction * B) rows chosen at random,
        else one gamma with log gamma ~ U[log gamma_min, log gamma_max]
        row term = mean over the L - k non-clean positions of CE

    Attributes:
        mask_fraction: share of the rows whose non-clean positions are [MASK] (ROAR states).
        gamma_min, gamma_max: the range of the log-uniform SNR of the other rows.
    """

    name = "covering"
    mask_fraction: float = _field(0.25, low=0.0, high=1.0,
                                  help="covering: share of rows whose non-clean positions are [MASK]")
    gamma_min: float = _field(0.1, **_POSITIVE, help="covering: smallest SNR of the log-uniform draw")
    gamma_max: float = _field(100.0, **_POSITIVE, help="DSL: cap of the continuous branch's SNR; covering: largest SNR")

    def __attrs_post_init__(self) -> None:
        if self.gamma_min > self.gamma_max:
            raise SNRPathError(f"'gamma_min' must lie in (0.0, {self.gamma_max}] (got {self.gamma_min!r})")

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        B, L = tokens.shape
        device = tokens.device
        layout, weight = roar_state(B, L, generator, device)
        masked = torch.zeros(B, dtype=torch.bool, device=device)
        masked[torch.randperm(B, generator=generator, device=device)[: round(self.mask_fraction * B)]] = True
        low, high = math.log(self.gamma_min), math.log(self.gamma_max)
        u = torch.rand(B, 1, generator=generator, dtype=torch.float64, device=device)
        level = (low + (high - low) * u).exp().clamp(self.gamma_min, self.gamma_max).to(layout.dtype)
        gamma = torch.where(torch.isinf(layout) | masked[:, None], layout, level)
        return Corruption(tokens, gamma, _noise(tokens, anchor_dim, generator), weight)


def roar_state(B: int, L: int, generator: torch.Generator, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ROAR branch for ``B`` rows: ``gamma`` ``(B, L)`` with ``k_b ~ U{0..L-1}`` random positions at inf and the
    rest at 0, and ``weight`` ``(B, L)`` = ``1 / (L - k_b)`` on the masked positions (a mean over them)."""
    k = torch.randint(0, L, (B, 1), generator=generator, device=device)
    rank = torch.rand(B, L, generator=generator, device=device).argsort(1).argsort(1)  # a random permutation per row
    clean = rank < k
    gamma = torch.where(clean, math.inf, 0.0)
    return gamma, (~clean) / (L - k)


def roar_validation(tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int) -> Corruption:
    """The ROAR branch on every row: ``mean_b`` of its row terms is an unbiased estimate of the negative
    log-likelihood per position (nats), averaged over random orders and steps."""
    gamma, weight = roar_state(*tokens.shape, generator, tokens.device)
    return Corruption(tokens, gamma, torch.zeros(*tokens.shape, anchor_dim, device=tokens.device), weight)


# -- the states of a path -------------------------------------------------------------------------------------------

#: The ops whose states PathStates can draw: the stages reveal, ramp (Heun's corrector included), renoise, remask and
#: switch, and their compositions. With the data as the outcome a ramp's drift target is ``x_s`` whatever its guards,
#: so Heun's correction is 0, and renoise is the exact forward channel: both keep ``z`` the channel's.
SIMULATED_OPS = (RevealOp, RampOp, RampCorrectOp, RenoiseOp, RemaskOp, MaskOp)
#: The ops that read a call's logits: the positions they can move are the call's (:func:`changeable`).
_MOVED_BY_A_CALL = (RevealOp, RampOp, RampCorrectOp)
#: Position-steps (``(steps + 1) x rows x L``) of one route run's trace: larger batches run in chunks of rows.
_TRACE_ENTRIES = 2**22


@attrs.frozen(eq=False)
class CallStates:
    """The SNRs of ``B`` rows at every denoiser call of a program (``C`` calls), drawn as the runner draws them.

    Attributes:
        steps: the program step of each call.
        gamma: ``[C, B, L]`` float64, each row's SNRs when the call reads its state.
        changeable: ``[C, B, L]`` bool, the positions the call can move (:func:`changeable`).
    """

    steps: tuple[int, ...]
    gamma: torch.Tensor
    changeable: torch.Tensor


def call_states(program: Program, batch: int, seed: int) -> CallStates:
    """The state law of ``program`` at each call, for any data outcome: no model is called.

    Given the tokens, a run's route through SNR space (who is revealed, remasked or ramped when, to which SNR) reads
    the model only through orders that rank by it, adaptive reveals and confidence remasking. So the program runs on
    a one-token denoiser (:func:`snrpaths.sample`, per-row streams keyed by ``seed``, rows in chunks), which draws
    every route exactly as the runner does for a data outcome with evidence orders replaced (a ranked order by a
    uniformly random one revealing the same number, an adaptive rule by its floor) and every revealed token at
    probability 1 (confidence remasking spreads uniformly over the clean positions, as it does under a certain
    denoiser). The evidence needs no route: with ``x_hat = x_s`` every ramp increment is the forward channel's, so a
    position at SNR ``gamma`` holds ``z = gamma x_s + sqrt(gamma) eps`` (tested against the runner with an oracle
    denoiser). Stages other than :data:`SIMULATED_OPS` are refused, naming the stage.
    """
    _check_ops(program)
    for step in program.steps:  # on-policy runs may take any ramp: the runner runs it for real
        if any(isinstance(op, RampOp) and op.ramp.noise != 1.0 for op in step.ops):
            raise SNRPathError(f"PathStates cannot draw the states of `{step.stage}` from the data: with noise != 1 "
                               "a ramp's state at a data outcome is not the forward channel's, gamma x_s + "
                               "sqrt(gamma) eps")
    batch = validate.integer("batch", batch)
    L = program.seq_len
    calls = tuple(k for k, step in enumerate(program.steps) if step.call)
    route, one = _route(program), _OneToken(L)
    chunk = max(1, _TRACE_ENTRIES // ((len(program.steps) + 1) * L))
    gamma = torch.cat([sample(route, one, batch=min(chunk, batch - start), seed=seed, trace=True,
                              row_offset=start).trace.gamma[list(calls)] for start in range(0, batch, chunk)], 1)
    moving = torch.stack([changeable(program.steps[k], g) for k, g in zip(calls, gamma)])
    return CallStates(calls, gamma, moving)


def changeable(step: Step, gamma: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: the positions the call of ``step`` can move on a state of SNRs ``gamma`` ``[B, L]``.

    Every unrevealed position of its ramps and reveals, except that a reveal in a fixed order (left to right, an
    explicit permutation) with no adaptive rule takes exactly its next ``n`` positions (its count, or what its clock
    needs clean, ``round(alpha_s |positions|) - n_clean``), so only those count."""
    B, L = gamma.shape
    unrevealed = ~torch.isinf(gamma)
    out = torch.zeros_like(unrevealed)
    for op in step.ops:
        if not isinstance(op, _MOVED_BY_A_CALL):
            continue
        own = torch.zeros(B, L, dtype=torch.bool, device=gamma.device)
        own[:, list(op.positions)] = True
        left = own & unrevealed
        if isinstance(op, RevealOp) and _fixed_order(op):
            if op.count is not None:
                n = torch.full((B,), op.count, device=gamma.device)
            else:  # the runner's count for a clock, to the rounding
                n = (torch.round(op.alpha_s * own.sum(1)) - (own & ~unrevealed).sum(1)).clamp_min(0)
            left = best(op.order.score(None, torch.zeros(B, L, dtype=torch.float64, device=gamma.device)), left, n)
        out |= left
    return out


def _fixed_order(op: RevealOp) -> bool:
    return op.adaptive is None and op.order.fixed


def _check_ops(program: Program) -> None:
    """Refuse a stage whose states (and whose calls' movable positions, :func:`changeable`) are not known here."""
    for step in program.steps:
        for op in step.ops:
            if not isinstance(op, SIMULATED_OPS):
                raise SNRPathError(f"PathStates cannot draw the states of `{step.stage}` in {program.path!r} (a "
                                   f"{type(op).__name__}): it knows the stages reveal, ramp, renoise, remask and "
                                   "switch")


def _route(program: Program) -> Program:
    """``program`` with every choice that reads the model made without it: a ranked order becomes a random one that
    reveals the same number (``exact`` on a clock), an adaptive rule its floor."""
    def plain(op):
        if not (isinstance(op, RevealOp) and op.uses_evidence):
            return op
        ranked = op.order.uses_evidence
        return attrs.evolve(op, order=RANDOM if ranked else op.order, adaptive=None,
                            exact=op.exact or (ranked and op.count is None))

    return attrs.evolve(program, steps=tuple(attrs.evolve(s, ops=tuple(map(plain, s.ops))) for s in program.steps))


_ONE_TOKEN = TokenTable(torch.ones(1, 1, dtype=torch.float64))


class _OneToken:
    """A denoiser of a one-token vocabulary, certain everywhere: what :func:`call_states` runs a route on."""

    vocab_size = 1
    table = _ONE_TOKEN

    def __init__(self, seq_len: int):
        self.seq_len = seq_len

    def logits(self, state: SNRState) -> torch.Tensor:
        return torch.zeros(state.batch, state.seq_len, 1, dtype=torch.float64, device=state.gamma.device)


class _Recording:
    """``inner`` with every state it is called on kept, in call order (an on-policy rollout's visited states)."""

    def __init__(self, inner: Denoiser):
        self.inner, self.states = inner, []
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.reads_finite_snr = reads_finite_snr(inner)

    def logits(self, state: SNRState) -> torch.Tensor:
        self.states.append(state)
        return self.inner.logits(state)


POLICY_MODEL = "model"  #: PathStates(policy=...): roll out the model being trained


def _a_path(name: str, value: Any) -> Path:
    if isinstance(value, str):
        try:
            return parse_path(value)
        except PathSyntaxError as err:
            raise PathSyntaxError(f"{name!r} {value!r}: {err}") from None
    if not isinstance(value, Path):
        raise SNRTypeError(f"{name!r} must be a Path or a path expression, e.g. 'hybrid(16, 16)' (got {value!r})")
    return value


def _a_denoiser(name: str, value: Any, model_ok: bool = False) -> Any:
    if value is None or isinstance(value, Denoiser):
        return value
    if model_ok and value == POLICY_MODEL:
        return value
    also = f"{POLICY_MODEL!r} (the model being trained), " if model_ok else ""
    raise (SNRPathError if model_ok and isinstance(value, str) else SNRTypeError)(
        f"{name!r} must be {also}a Denoiser (snrpaths.denoiser) or None (got {value!r})")


@attrs.frozen(repr=False)
class PathStates(Objective):
    """Training on the states a path visits (DESIGN.md 4d): per row, one call of ``path`` compiled for the batch's
    length, and the state the path is in there; loss on the positions that call can move (:func:`changeable`), a
    mean over them.

    Teacher-forced (no ``policy``): the data sequence ``s`` is taken as the path's outcome. A call is drawn
    uniformly among the row's calls that have something to move, its SNRs as the runner draws them
    (:func:`call_states`: random orders in place of orders that need the model), and ``z_i = gamma_i x_{s_i} +
    sqrt(gamma_i) eps_i``; no model is called. The target is ``s``, or with a ``teacher`` its posterior on that state.

    On-policy (``policy`` and ``teacher``): the path runs with ``policy`` on ``rollouts`` rows (default ``B``; no data
    read), every state the policy was called on is kept, ``B`` of them are drawn uniformly (with replacement only when
    fewer were visited), and the targets are the ``teacher``'s posterior marginals there: distillation along the
    path, onto the states the policy's own drift reaches. A rollout costs one policy call per call of the path, so
    fewer ``rollouts`` than ``B`` (each row then gives several of its states) make a step cheaper.
    ``policy='model'`` rolls out the model being trained, as a frozen copy of its weights taken every ``refresh``
    steps (default 1: its current weights; ``refresh`` must divide the run's ``save_every``, so that a resumed run
    takes the same copy); a Denoiser is a fixed policy.

    A teacher's posterior is for its own anchors: the model's must be the same and frozen (:meth:`check`).
    """

    name = "path-states"
    path: Path = _field(check=_a_path, positional=True, cli=str,
                        help="path-states: the path whose states to train on (a path expression)")
    policy: Any = _field(None, _a_denoiser, model_ok=True, cli=str,
                         help="path-states: 'model' rolls out the model being trained (on-policy; needs a teacher)")
    teacher: Any = _field(None, _a_denoiser, cli=False,
                          help="path-states: a denoiser whose posterior the model learns; Python only: "
                               "train(model, PathStates(path, policy='model', teacher=...), ...)")
    refresh: int | None = _field(None, validate.integer, allow_none=True, cli=int,
                                 help="path-states: steps between copies of the on-policy model (default 1)")
    rollouts: int | None = _field(None, validate.integer, allow_none=True, cli=int,
                                  help="path-states: rows the policy rolls out per draw (default: the batch's)")
    _copies: dict = attrs.field(factory=dict, init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.policy is not None and self.teacher is None:
            raise SNRPathError("PathStates(policy=...) trains on states the policy drew, with no data sequence to "
                               "score: give teacher=, a denoiser whose posterior the model learns there (e.g. an exact "
                               "HMM); on the command line no teacher can be given: train from Python")
        if self.refresh is not None and self.policy != POLICY_MODEL:
            raise SNRPathError(f"'refresh' applies to policy={POLICY_MODEL!r} (got policy={self.policy!r})")
        if self.rollouts is not None and self.policy is None:
            raise SNRPathError("'rollouts' applies to on-policy states (give policy=)")

    def program(self, seq_len: int) -> Program:
        """The path compiled for ``seq_len``, checked to be one whose states can be drawn."""
        program = compile_path(self.path, seq_len)
        _check_ops(program)
        return program

    def finite_snr(self, seq_len: int) -> bool:
        return self.program(seq_len).finite_snr_call() is not None

    def check(self, model: Trainable, save_every: int) -> None:
        self.program(model.seq_len)
        for role in ("policy", "teacher"):
            other = getattr(self, role)
            if other is not None and other != POLICY_MODEL:
                require_same_channel(f"PathStates {role}", other, "model", model, "the model learns on states of "
                                     "its evidence (copy the teacher's table into the model's frozen anchors)")
        if self.teacher is not None and _unwrap(model).converter.anchors.requires_grad:
            raise SNRPathError("PathStates(teacher=...): the teacher's posterior is for its own anchors and the model "
                               "learns its own; build the model with frozen anchors equal to the teacher's "
                               "(ConverterConfig(learn_anchors=False), the teacher's table copied into "
                               "converter.anchor_weight)")
        if self.policy == POLICY_MODEL and save_every % (self.refresh or 1):
            raise SNRPathError(f"'refresh' ({self.refresh}) must divide the run's save_every ({save_every}): a resumed "
                               "run restarts at a checkpoint and must take its policy copy there")

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        B, L = tokens.shape
        program = self.program(L)
        if self.policy is not None:
            return self._on_policy(program, B, generator, self._policy(model, step))
        states = call_states(program, B, _seed(generator))
        call = _uniform_call(states.changeable.any(-1), generator)
        rows = torch.arange(B)
        gamma, moving = states.gamma[call, rows], states.changeable[call, rows]
        if self.teacher is None:
            weight = moving / moving.sum(1, keepdim=True)
            return Corruption(tokens, gamma.float().to(tokens.device), _noise(tokens, anchor_dim, generator),
                              weight.to(tokens.device))
        device = self.teacher.table.anchors.device
        state = SNRState.from_tokens(tokens.to(device), gamma.to(device), self.teacher.table, generator)
        return self._taught(state, moving.to(device))

    def _on_policy(self, program: Program, batch: int, generator: torch.Generator, policy: Denoiser) -> Corruption:
        recording = _Recording(policy)
        with torch.no_grad():
            run = sample(program, recording, batch=self.rollouts or batch, seed=_seed(generator), trace=True)
        steps = run.trace.called.nonzero().flatten().tolist()
        if len(steps) != len(recording.states):  # parallel stages whose selections called the policy twice in a step
            raise SNRPathError(f"PathStates: a step of {program.path!r} called the policy more than once; on-policy "
                               "states need one call per step (rank the parallel stages without the model)")
        visited = recording.states
        moving = torch.cat([changeable(program.steps[k], s.gamma) for k, s in zip(steps, visited)])
        pool = len(moving)
        pick = (torch.randperm(pool, generator=generator)[:batch] if pool >= batch else
                torch.randint(0, pool, (batch,), generator=generator)).to(moving.device)
        picked = [torch.cat([getattr(s, f) for s in visited])[pick] for f in ("gamma", "z", "tokens")]
        device = self.teacher.table.anchors.device
        gamma, z, tokens = (t.to(device) for t in picked)
        state = SNRState(gamma, z, tokens, torch.zeros_like(tokens, dtype=torch.bool), torch.zeros_like(gamma))
        return self._taught(state, moving[pick].to(device))

    def _taught(self, state: SNRState, moving: torch.Tensor) -> Corruption:
        """The corruption of ``state`` with the teacher's posterior marginals as targets on the ``moving`` positions."""
        with torch.no_grad():
            target = torch.softmax(self.teacher.logits(state).double(), -1)
        target = torch.where(moving[..., None], target, 0.0).float()  # 0 elsewhere, whatever the teacher gave there
        tokens = torch.where(state.clean, state.tokens, 0)  # read by the model only where clean
        weight = moving / moving.sum(1, keepdim=True).clamp_min(1)
        return Corruption(tokens, state.gamma.float(), None, weight, state.z.float(), target)

    def _policy(self, model, step: int) -> Denoiser:
        """The denoiser that rolls out at ``step``: the fixed policy, or the model's weights at the last multiple of
        ``refresh`` (the live model when ``refresh`` is 1)."""
        if self.policy != POLICY_MODEL:
            return self.policy
        if model is None:
            raise SNRPathError("PathStates(policy='model') rolls out the model being trained: draw(..., model=model, "
                               "step=step) (snrpaths.train.train passes both)")
        every = self.refresh or 1
        if every == 1:
            return model
        start = step - step % every
        if step == start:  # a fresh copy at every refresh, whatever an earlier run of this value left here
            self._copies.update(model=weakref.ref(model), start=start,
                                policy=copy.deepcopy(model).eval().requires_grad_(False))
        elif self._copies.get("start") != start or self._copies["model"]() is not model:
            raise SNRPathError(f"PathStates: the policy of step {step} is the model at step {start}, which this run "
                               f"never held (resumed at step {step}?); make save_every a multiple of refresh")
        return self._copies["policy"]


def _seed(generator: torch.Generator) -> int:
    """A seed for the runner's streams, drawn from the trainer's generator (so a resumed run draws it again)."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator))


def _uniform_call(has: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``[B]`` for each row (column of ``has``, ``[C, B]`` bool) one of its True entries, uniformly."""
    count = has.sum(0)
    if bool((count == 0).any()):
        raise SNRPathError("PathStates: a row has no call with anything left to move")
    u = torch.rand(has.shape[1], generator=generator, dtype=torch.float64)
    k = (u * count).long().clamp(max=count - 1)  # [B] which of the row's calls, 0-based
    return ((has.cumsum(0) - 1 == k) & has).long().argmax(0)


# -- mixtures -------------------------------------------------------------------------------------------------------


def _parts(name: str, value: Any) -> tuple[tuple[Objective, float], ...]:
    if not isinstance(value, tuple) or not value:
        raise SNRTypeError(f"{name!r} must be one or more (objective, weight) pairs (got {value!r})")
    out = []
    for part in value:
        if not (isinstance(part, (tuple, list)) and len(part) == 2 and isinstance(part[0], Objective)):
            raise SNRTypeError(f"each part of a Mixture must be an (objective, weight) pair, e.g. (DSL(), 0.75) "
                               f"(got {part!r})")
        out.append((part[0], validate.number("weight", part[1], **_POSITIVE)))
    return tuple(out)


@attrs.frozen(init=False, repr=False)
class Mixture(Objective):
    """``Mixture((objective, weight), ...)``: each batch's rows split among the objectives in proportion to the
    weights (the counts rounded by largest remainder, so a batch of 8 at (3, 1) is 6 and 2 rows; which rows, at
    random), each part drawn on its rows. When some part's rows carry a teacher's targets, every other part's rows get
    one-hot targets and their evidence from the model's anchors at draw time (:meth:`Corruption.scored_softly`)."""

    name = "mixture"
    parts: tuple[tuple[Objective, float], ...] = _field(
        check=_parts, cli=False,
        help="mixture: (objective, weight) pairs, in an expression only: "
             "--objective \"Mixture((DSL(), 3), (Covering(), 1))\"")

    def __init__(self, *parts: tuple[Objective, float]):
        self.__attrs_init__(parts)

    def __repr__(self) -> str:
        return f"Mixture({', '.join(map(_shown, self.parts))})"

    def counts(self, batch: int) -> list[int]:
        """The rows of each part in a batch of ``batch``: ``batch w_j / sum w`` rounded by largest remainder."""
        total = sum(w for _, w in self.parts)
        exact = [batch * w / total for _, w in self.parts]
        counts = [math.floor(x) for x in exact]
        by_remainder = sorted(range(len(exact)), key=lambda j: counts[j] - exact[j])  # stable: ties go to the first
        for j in by_remainder[: batch - sum(counts)]:
            counts[j] += 1
        return counts

    def draw(self, tokens: torch.Tensor, generator: torch.Generator, anchor_dim: int, *, model=None,
             step: int = 0) -> Corruption:
        order = torch.randperm(len(tokens), generator=generator, device=tokens.device)
        pieces, rows, start = [], [], 0
        for (objective, _), n in zip(self.parts, self.counts(len(tokens))):
            if n:
                index = order[start:start + n]
                pieces.append(objective.draw(tokens[index], generator, anchor_dim, model=model, step=step))
                rows.append(index)
                start += n
        pieces = [p.to(tokens.device) for p in pieces]
        soft = [p for p in pieces if p.soft]
        if soft and len(soft) < len(pieces):
            if model is None:
                raise SNRPathError("a Mixture with a teacher's part gives its other rows one-hot targets and their "
                                   "evidence from the model's anchors: draw(..., model=model)")
            anchors = _unwrap(model).converter.anchors.to(tokens.device)
            pieces = [p.scored_softly(anchors, soft[0].target.shape[-1]) for p in pieces]
        return Corruption.cat(pieces)[torch.cat(rows).argsort()]

    def finite_snr(self, seq_len: int) -> bool:
        return any(objective.finite_snr(seq_len) for objective, _ in self.parts)

    def check(self, model: Trainable, save_every: int) -> None:
        for objective, _ in self.parts:
            objective.check(model, save_every)

    def settings(self) -> dict:
        return {"name": "Mixture", "parts": [[objective.settings(), w] for objective, w in self.parts]}


#: The objectives by the name a user types (``snrpaths train --objective NAME``).
OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (MDLM, DSL, Covering, PathStates, Mixture)}
_CALLABLE = {**OBJECTIVES, **{cls.__name__: cls for cls in OBJECTIVES.values()}}


def parse_objective(text: str) -> Objective:
    """The objective a name of :data:`OBJECTIVES` or an expression names: the inverse of ``repr(objective)``, read as
    Python syntax but never evaluated (calls of the objectives, numbers, strings, tuples, True / False / None)::

        parse_objective("dsl")
        parse_objective("Mixture((DSL(), 3), (PathStates('hybrid(16, 16)'), 1))")

    A denoiser (``policy=``, ``teacher=``) has no expression: build such a PathStates in Python.
    """
    if not isinstance(text, str):
        raise SNRTypeError(f"an objective expression must be a string (got {type(text).__name__})")
    if text.strip() in OBJECTIVES:
        return OBJECTIVES[text.strip()]()
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise SNRPathError(f"cannot read the objective {text!r} ({err.msg}); write one of {tuple(OBJECTIVES)} or an "
                           "expression such as \"Mixture((DSL(), 3), (PathStates('hybrid(16, 16)'), 1))\"") from None
    return _objective(tree.body)


def _objective(node: ast.expr) -> Objective:
    if isinstance(node, ast.Name) and node.id in _CALLABLE:
        return _CALLABLE[node.id]()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLABLE:
        cls = _CALLABLE[node.func.id]
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise SNRPathError(f"{ast.unparse(node)}: write every argument out (no * or **)")
        args = [_value(a) for a in node.args]
        kwargs = {k.arg: _value(k.value) for k in node.keywords}
        try:
            return cls(*args, **kwargs)
        except SNRPathError:
            raise
        except TypeError as err:  # a wrong argument name or count
            raise SNRTypeError(f"{ast.unparse(node)}: {err}") from None
    what = ast.unparse(node.func if isinstance(node, ast.Call) else node)
    valid = ", ".join(cls.__name__ for cls in OBJECTIVES.values())
    raise SNRPathError(f"{what!r} is not an objective (valid: {valid}); a denoiser (policy=, teacher=) has no "
                       "expression: build PathStates(path, policy='model', teacher=...) in Python")


def _value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)):
        return -node.operand.value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, (ast.Name, ast.Call)):
        return _objective(node)
    raise SNRPathError(f"{ast.unparse(node)!r}: an objective expression holds numbers, strings, tuples, True, False, "
                       "None and objectives")
