"""Paths through per-token SNR space, as immutable values.

A path says how each position's SNR ``gamma_i`` moves from 0 (``[MASK]``) to inf (clean). The primitives:

* ``reveal``: send chosen positions from their current gamma to inf, tokens drawn from the denoiser (a count or a
  clock per step, optionally adaptive: ``threshold=`` / ``entropy_bound=`` reveal more when the denoiser is sure);
* ``remask``: send clean positions back to 0 (a ReMDM policy sharing a reveal's clock, or an explicit selection);
* ``ramp``: raise the gamma of every unrevealed position by stochastic localization, together or staggered
  (``lag``: one position after another at ``lag = 1``), its drift optionally guarded (tempered and truncated
  posterior, scaled noise, Heun steps);
* ``switch``: hand finite-SNR states over to endpoint decoding;
* ``renoise``: lower finite SNRs to a level by the exact forward channel, with no call (a ramp after it
  rises again: a predictor-corrector path).

Combinators: ``a >> b`` (b after a), ``a | b`` (a and b side by side on disjoint positions, sharing denoiser
calls), ``remask(...) & reveal(...)`` (remask on the reveal's clock, one call per step), ``on(positions, p)``,
``blocks(n, p)`` (``p`` on ``n`` consecutive spans, left to right: semi-autoregressive decoding; ``cache='prefix'`` or
``'dual'`` keeps the keys and values of the positions outside the active block, Fast-dLLM's caches).
The paper's samplers (``ar``, ``roar``, ``mdm`` with every ReMDM strategy, ``hybrid``) are named compositions of
these primitives: sugar with a readable ``repr``, never separate code paths.

``repr(path)`` prints the expression, ``snrpaths.parse_path(repr(path)) == path``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from typing import Any, Callable, ClassVar, Iterable

import attrs

from . import validate
from .errors import SNRPathError, SNRTypeError, shown_positions
from .forms import RAMP_FORMS, RAMP_SOLVERS, RampForm, RampSolver
from .orders import ORDERS, RANDOM, REVEAL_RULES, Explicit, Order, RevealRule
from .reprs import TypedRepr
from .schedules import ALPHA_SCHEDULES, RAMP_SCHEDULES, REMASK_POLICIES, AlphaSchedule, RampSchedule, RemaskPolicy



@attrs.frozen(repr=False)
class SwitchMode(TypedRepr):
    """How ``switch(mode)`` hands finite-SNR positions over to endpoint decoding; ``repr`` prints the name. The
    compiler reads the two things a mode may do: ``drops`` (every unrevealed position back to gamma = 0, no call)
    and ``commits`` (one call, then every unrevealed position revealed from its posterior: ``calls`` is 1)."""

    name: ClassVar[str]
    drops: ClassVar[bool] = False
    commits: ClassVar[bool] = False

    @property
    def calls(self) -> int:
        """Denoiser calls the switch makes."""
        return int(self.commits)


@attrs.frozen(repr=False)
class Keep(SwitchMode):
    """Nothing moves: the finite-SNR evidence stays as soft context for the next stage's reveals."""

    name = "keep"


@attrs.frozen(repr=False)
class Commit(SwitchMode):
    """One call, then every unrevealed position is revealed from its current posterior."""

    name = "commit"
    commits = True


@attrs.frozen(repr=False)
class Mask(SwitchMode):
    """Every unrevealed position goes back to gamma = 0: the next stage starts from [MASK]."""

    name = "mask"
    drops = True


#: Switch modes by the name a user types.
SWITCH_MODES: dict[str, SwitchMode] = {m.name: m for m in (Keep(), Commit(), Mask())}


@attrs.frozen(repr=False)
class BlockCache(TypedRepr):
    """Which positions a cached ``blocks(...)`` stage recomputes at every call inside a block (``active``); the
    keys and values of every other position come from the call that started the block (a refresh), as in
    Fast-dLLM. ``repr`` prints the name."""

    name: ClassVar[str]

    def active(self, block: tuple[int, ...], seq_len: int) -> tuple[int, ...]:
        """The positions each cached call computes, for a block of (sorted) positions ``block``."""
        raise NotImplementedError


@attrs.frozen(repr=False)
class PrefixCache(BlockCache):
    """The positions before the block are cached: the block and everything after it are recomputed each call."""

    name = "prefix"

    def active(self, block: tuple[int, ...], seq_len: int) -> tuple[int, ...]:
        return tuple(range(block[0], seq_len))


@attrs.frozen(repr=False)
class DualCache(BlockCache):
    """The positions before and after the block are cached: only the block's positions are computed each call."""

    name = "dual"

    def active(self, block: tuple[int, ...], seq_len: int) -> tuple[int, ...]:
        return block


#: Key/value caches of ``blocks(..., cache=...)`` by the name a user types.
BLOCK_CACHES: dict[str, BlockCache] = {c.name: c for c in (PrefixCache(), DualCache())}


# -- position sets -------------------------------------------------------------------------------------------------


@attrs.frozen
class Span:
    """Positions ``range(start, stop, step)`` of a sequence, like a Python slice; ``stop=None`` runs to the end."""

    start: int = attrs.field(default=0, converter=validate.field(validate.integer, low=0))
    stop: int | None = attrs.field(default=None, converter=validate.field(validate.integer, low=0, allow_none=True))
    step: int = attrs.field(default=1, converter=validate.field(validate.integer))

    def indices(self, seq_len: int) -> tuple[int, ...]:
        return tuple(range(*slice(self.start, self.stop, self.step).indices(seq_len)))

    def __repr__(self) -> str:
        args = [repr(self.start), repr(self.stop)] + ([repr(self.step)] if self.step != 1 else [])
        return f"slice({', '.join(args)})"


def positions_of(value: Any, name: str = "positions") -> Span | tuple[int, ...]:
    """Normalise a slice / range / sequence of ints into a hashable position set."""
    if isinstance(value, Span):
        return value
    if isinstance(value, (slice, range)):
        return Span(0 if value.start is None else value.start, value.stop, 1 if value.step is None else value.step)
    out = validate.int_tuple(name, value)
    if len(set(out)) != len(out):
        raise SNRPathError(f"{name!r} must not repeat a position (got {value!r})")
    return out


def _optional_positions(name: str, value: Any) -> Span | tuple[int, ...] | None:
    return None if value is None else positions_of(value, name)


def resolve_positions(positions: Span | tuple[int, ...], seq_len: int, where: str) -> tuple[int, ...]:
    """The concrete positions for a sequence of ``seq_len``; out-of-range positions are an error."""
    if isinstance(positions, Span):
        out = positions.indices(seq_len)
        if not out:
            raise SNRPathError(f"{where}: {positions!r} selects no position of a sequence of length {seq_len}")
        return out
    bad = [p for p in positions if p >= seq_len]
    if bad:
        raise SNRPathError(f"{where}: positions {shown_positions(bad)} are out of range for seq_len={seq_len} (valid: 0..{seq_len - 1})")
    return positions


# -- the vocabulary, as field converters ----------------------------------------------------------------------------


def _order(name: str, value: Any) -> Order:
    """A named order (``ORDERS``), an :class:`Order` value, or an explicit permutation of ``0..n-1``."""
    if isinstance(value, Order):
        return value
    if isinstance(value, str):
        return ORDERS[validate.choice(name, value, ORDERS)]
    return Explicit(value)


def _named(registry: dict[str, Any], kind: type, allow_none: bool = False) -> Callable[[str, Any], Any]:
    """A check that turns a registered name into its value and passes values of ``kind`` through."""

    def check(name: str, value: Any) -> Any:
        if (value is None and allow_none) or isinstance(value, kind):
            return value
        return registry[validate.choice(name, value, registry)]

    return check


def _path(name: str, value: Any) -> "Path":
    if not isinstance(value, Path):
        raise SNRTypeError(f"{name!r} must be a Path (got {value!r})")
    return value


def _paths(name: str, value: Any) -> tuple["Path", ...]:
    if isinstance(value, Path) or not isinstance(value, (tuple, list)) or not value:
        raise SNRTypeError(f"{name!r} must be a non-empty tuple of Paths (got {value!r})")
    return tuple(_path(name, p) for p in value)


def remask_policy(name: str, policy: Any, **params: Any) -> RemaskPolicy:
    """The policy value a user's ``policy`` names (a registered name, or a :class:`RemaskPolicy` as is), built with
    the ``params`` the user typed; ``name`` is the argument the user typed it as, for errors."""
    if isinstance(policy, RemaskPolicy):
        if params:
            raise SNRPathError(f"{policy!r} is a policy value: give {', '.join(params)} inside it")
        return policy
    cls = REMASK_POLICIES[validate.choice(name, policy, REMASK_POLICIES)]
    own = {f.name for f in attrs.fields(cls)}
    for key in params:
        if key not in own:
            owners = [p for p, c in REMASK_POLICIES.items() if key in {f.name for f in attrs.fields(c)}]
            raise SNRPathError(f"the {cls.name!r} policy takes no {key} (parameters that belong to the "
                               f"{' or '.join(map(repr, owners))} policy)")
    return cls(**params)


def reveal_rule(**params: Any) -> RevealRule | None:
    """The adaptive rule of the keywords a user typed (``threshold=0.9``), ``None`` when none was; at most one."""
    given = {k: v for k, v in params.items() if v is not None}
    if len(given) > 1:
        raise SNRPathError(f"a reveal takes at most one adaptive rule of {tuple(REVEAL_RULES)} "
                           f"(got {', '.join(f'{k}={v!r}' for k, v in given.items())})")
    if not given:
        return None
    (keyword, value), = given.items()
    return REVEAL_RULES[keyword](value)


def _rule(name: str, value: Any) -> RevealRule | None:
    if value is None or isinstance(value, RevealRule):
        return value
    raise SNRTypeError(f"{name!r} must be a reveal rule value, e.g. snrpaths.orders.Threshold(0.9), or None "
                       f"(got {value!r})")


def _shown(fn: Callable, skip: int = 0) -> str:
    """``fn``'s signature as a user writes the call, without annotations (and without its first ``skip``)."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return str(inspect.Signature([p.replace(annotation=inspect.Parameter.empty) for p in params]))


def _typed(**params: Any) -> dict[str, Any]:
    """The keywords a user actually typed (the constructors' ``None`` means "not given": the policy's default)."""
    return {k: v for k, v in params.items() if v is not None}


def _constructor(fn: Callable) -> Callable:
    """A named constructor whose wrong argument names or counts raise :class:`SNRTypeError`, like its values."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def build(cls, *args: Any, **kwargs: Any) -> "Path":
        try:
            signature.bind(cls, *args, **kwargs)
        except TypeError as err:
            raise SNRTypeError(f"{fn.__name__}{_shown(fn, skip=1)}: {err}") from None
        return fn(cls, *args, **kwargs)

    return build


# -- conveniences provided by higher layers -------------------------------------------------------------------------

#: ``Path.compile``, ``Path.graph`` and ``Path.plot`` live on the layers above the path language (the compiler, the
#: graph view, the plots), which this module never imports: each of those modules fills its slot here when it is
#: imported (:func:`provide`). A slot still empty at call time is filled by importing its provider by name, as pandas
#: finds its plotting backend, so ``path.plot(...)`` works without ``import snrpaths.plot`` and matplotlib loads only
#: then.
PROVIDERS: dict[str, str] = {"compile": "snrpaths.compile", "graph": "snrpaths.graph", "plot": "snrpaths.plot"}
_PROVIDED: dict[str, Callable[..., Any]] = {}


def provide(name: str, fn: Callable[..., Any]) -> None:
    """Fill the slot ``name`` (one of :data:`PROVIDERS`) of the path conveniences with ``fn`` (its provider calls
    this once, at import)."""
    _PROVIDED[validate.choice("name", name, PROVIDERS)] = fn


def provided(name: str) -> Callable[..., Any]:
    """The function behind ``Path.<name>``, importing its provider first if nothing has filled the slot yet."""
    if name not in _PROVIDED:
        importlib.import_module(PROVIDERS[name])
    return _PROVIDED[name]


# -- rendering -----------------------------------------------------------------------------------------------------

# Python's operator precedence, which the parser follows: '|' < '&' < '>>' < a call.
_PREC = {"|": 1, "&": 2, ">>": 3, "call": 4}


def _render_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_render_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _render_call(name: str, args: list[tuple[str, Any, Any, bool]]) -> str:
    """``name(a, k=v)`` from ``(key, value, default, positional)`` rows, defaults left out."""
    parts, positional_ok = [], True
    for key, value, default, positional in args:
        if value == default and not (positional and default is inspect.Parameter.empty):
            positional_ok = False
            continue
        text = _render_value(value)
        parts.append(text if positional and positional_ok else f"{key}={text}")
    return f"{name}({', '.join(parts)})"


def _wrap(path: "Path", prec: int) -> str:
    text = repr(path)
    return f"({text})" if path._prec < prec else text


# -- the values ----------------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Path:
    """Base of every path value. Build paths with the classmethods; a subclass called directly validates its fields
    the same way."""

    _prec = _PREC["call"]
    __array_ufunc__ = None  # numpy defers to the reflected operators below instead of broadcasting over a path

    def __rshift__(self, other: "Path") -> "Path":
        return Then(_flatten(Then, (self, _operand(">>", self, other))))

    def __or__(self, other: "Path") -> "Path":
        return Parallel(_flatten(Parallel, (self, _operand("|", self, other))))

    def __and__(self, other: "Path") -> "Path":
        raise SNRPathError(
            f"'&' puts a remask policy on a reveal's clock: write remask(policy) & reveal(T, schedule=...) "
            f"(got {self!r} & {other!r})"
        )

    def __rrshift__(self, other: Any) -> "Path":
        return _operand(">>", other, self, reflected=True)

    def __ror__(self, other: Any) -> "Path":
        return _operand("|", other, self, reflected=True)

    def __rand__(self, other: Any) -> "Path":
        return _operand("&", other, self, reflected=True)

    def compile(self, seq_len: int):
        """The :class:`snrpaths.Program` of this path for sequences of ``seq_len`` (pure, cached):
        :func:`snrpaths.compile.compile_path`."""
        return provided("compile")(self, seq_len)

    def graph(self):
        """A networkx DiGraph of the stages: nodes ``start``, ``end`` and one per stage (attribute ``label``):
        :func:`snrpaths.graph.path_graph`."""
        return provided("graph")(self)

    def plot(self, denoiser: Any, positions: tuple[int, int] = (0, 1), **kwargs: Any):
        """This path's runs on ``denoiser`` in the ``(gamma_i, gamma_j)`` plane, a matplotlib Figure: see
        :func:`snrpaths.plot.gamma_plane` (keywords ``runs``, ``seed``, ``cols``, ``title``)."""
        return provided("plot")(self, positions=positions, denoiser=denoiser, **kwargs)

    # -- primitives --

    @classmethod
    @_constructor
    def reveal(
        cls,
        steps: int | None = None,
        *,
        order: str | Iterable[int] = "random",
        count: int | None = None,
        schedule: str | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        exact: bool = False,
        threshold: float | None = None,
        entropy_bound: float | None = None,
    ) -> "Reveal":
        """Send positions from their current gamma to inf, tokens drawn from the denoiser (float64, optionally
        tempered and nucleus-truncated to ``top_p``), one denoiser call per step. ``temperature=0`` draws the
        argmax (greedy; tied maxima equally likely); any positive temperature, however small, is applied exactly.

        How many per step: ``count`` positions, or a masked-diffusion clock ``schedule`` (``"linear"`` |
        ``"cosine"``) over ``steps``; with the clock and ``order="random"`` each unrevealed position is revealed
        with MDLM's probability ``(alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)``; with a ranked order the best
        positions are revealed until a fraction ``alpha_s`` is clean. Which: ``order`` (``left-to-right``,
        ``random``, ``confidence`` = highest max-probability first, ``margin`` = largest top-1 minus top-2
        probability, ``entropy`` = lowest entropy first) or an explicit permutation of positions.
        ``steps=None`` with a ``count`` means as many steps as it takes. ``exact=True`` (random order with a
        clock only) reveals exactly the scheduled number per step, uniformly at random, instead of coin flips.

        Adaptive reveals (at most one rule, :data:`snrpaths.orders.REVEAL_RULES`): ``threshold=tau`` also reveals
        every position whose confidence ``max_v p(v)`` is at least ``tau`` (Fast-dLLM); ``entropy_bound=eps`` also
        reveals positions in increasing order of entropy while the step's summed entropy stays within ``eps``. The
        count or clock is the floor that bounds the steps (without either, ``steps`` runs a linear clock, so every
        position is revealed within ``steps`` steps; ``count=1`` is Fast-dLLM's "at least one per step"); the
        entropy bound reveals at least its lowest-entropy position per step whatever the floor. The run stops
        calling the denoiser once nothing is left: ``program.nfe`` is an upper bound.
        """
        adaptive = reveal_rule(threshold=threshold, entropy_bound=entropy_bound)
        if adaptive is not None and count is None and schedule is None:
            if steps is None:
                raise SNRPathError(f"reveal({adaptive.keyword}={adaptive.value!r}) needs a floor: steps T (a linear "
                                   "clock: every position revealed within T steps) or count=k (at least k per step)")
            schedule = "linear"
        return Reveal(steps=steps, order=order, count=count, schedule=schedule, temperature=temperature,
                      top_p=top_p, exact=exact, adaptive=adaptive)

    @classmethod
    @_constructor
    def remask(
        cls,
        policy: str | RemaskPolicy | None = None,
        *,
        eta: float | None = None,
        t_on: float | None = None,
        t_off: float | None = None,
        alpha_on: float | None = None,
        positions: Iterable[int] | slice | None = None,
    ) -> "Remask":
        """Send clean positions back to gamma = 0.

        Either a ReMDM ``policy`` (``cap`` | ``rescale`` | ``confidence`` | ``loop``, DESIGN.md section 5, or a
        :class:`snrpaths.schedules.RemaskPolicy` value) that runs on a reveal's clock
        (``remask(policy) & reveal(T, schedule=...)``), or an explicit selection of ``positions`` remasked once,
        with no denoiser call. ``eta`` defaults to the public OWT values (cap 0.008, rescale 0.015, loop 0.02);
        ``loop`` holds ``alpha = alpha_on`` between ``t_on`` (0.55) and ``t_off`` (0.05), ``alpha_on`` 0.9.
        """
        params = _typed(eta=eta, t_on=t_on, t_off=t_off, alpha_on=alpha_on)
        if (policy is None) == (positions is None):
            raise SNRPathError(
                f"remask needs exactly one of a policy {tuple(REMASK_POLICIES)} or explicit positions "
                f"(got policy={policy!r}, positions={positions!r})"
            )
        if policy is None and params:
            raise SNRPathError(f"{', '.join(params)} belong to a remask policy, not to explicit positions")
        return Remask(policy=None if policy is None else remask_policy("policy", policy, **params),
                      positions=positions)

    @classmethod
    @_constructor
    def ramp(
        cls,
        steps: int,
        *,
        gamma_max: float = 40.0,
        schedule: str = "logit",
        form: str = "mean",
        kappa: float = 4.0,
        gamma_min: float = 0.01,
        lag: float = 0.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float = 1.0,
        noise: float = 1.0,
        solver: str = "euler",
    ) -> "Ramp":
        """Raise the SNR of every unrevealed position on the schedule ``gamma(u)``, one call per step; ``lag``
        staggers the positions, from all together (0, the joint ramp) to one after another (1).

        The ramp's clock is ``u = k / steps`` after step ``k``. Each row of a batch queues the ``n`` positions of the
        stage that are unrevealed and not fixed by its prompt, left to right (``r_i`` in ``0..n-1`` the rank of
        position ``i``; prompt positions take no place in the queue), and position ``i`` follows the schedule at
        its own clock:

            u_i = clip(u * (1 + lag * (n - 1)) - lag * r_i, 0, 1),    gamma_i = gamma(u_i)    (per row: [B, L]).

        Every position rises over a window of the same length ``1 / (1 + lag (n - 1))`` of the clock, and each
        starts ``lag`` windows after the one before it: ``lag = 0`` is the joint ramp (``u_i = u``), ``lag = 1``
        ramps one position at a time, ``steps / n`` steps each (continuous left-to-right decoding), and a ``lag``
        between overlaps neighbouring windows by ``1 - lag``. So ``lag`` is a delay in units of a position's own
        ramp time; above 1 some steps would move nothing, hence the range ``[0, 1]``. Every position reaches
        ``gamma_max`` at the last step, its SNR never falls, and the route does not depend on the evidence: a
        curve for :func:`snrpaths.nll.path_integral`. Inside ``on(...)`` or ``blocks(...)`` the queue is the
        span's positions.

        A position that holds a finite SNR ``gamma_0 > 0`` when the ramp begins (after ``renoise``, or another
        ramp) rises from there: it follows ``gamma(v_i)`` with ``v_i = u0_i + (1 - u0_i) u_i``, ``u0_i`` the clock at
        which the schedule reaches ``gamma_0`` (clipped to [0, 1]): the rest of the schedule's curve, spread over
        the ramp's steps. A position at 0 follows ``gamma(u_i)`` exactly, one at or above ``gamma_max`` does not
        move, and no SNR is ever lowered. So ``ramp(8) >> renoise(4.0) >> ramp(8)`` re-ramps from 4 to gamma_max.

        The stochastic-localization update of step ``k``, ``dgamma = gamma_{k+1} - gamma_k`` per position, is

            z_{k+1} = z_k + dgamma * m(z_k) + noise * sqrt(dgamma) * eps,    eps ~ N(0, I_d)    (solver="euler")

        with ``m(z) = sum_v q(v | z) x_v`` (``form="mean"``: the posterior mean ``xhat``) or ``m(z) = x_s``, ``s ~
        q(. | z)`` drawn per position (``form="sample"``), where ``q`` is the denoiser's posterior guarded as a
        reveal's is: ``q = softmax(logits / temperature)`` (``temperature=0``: argmax), kept to its ``top_k`` most
        likely tokens, then to the nucleus of mass ``top_p``, renormalised after each cut. ``noise`` scales the
        Brownian term: 1 is the stochastic-localization SDE, 0 the deterministic (probability-flow-like) drift. The
        drift is not rescaled to compensate, so every guard biases the law of an exact denoiser (``noise=0``, 16
        steps, exact posterior of a 3 x 3 Markov chain: total variation 0.75 to P, against 0.024 at ``noise=1``):
        they are knobs for learned models, to be chosen on validation seeds.
        ``solver="heun"`` takes a predictor-corrector step, two calls (``program.nfe`` counts both):

            z~      = z_k + dgamma * m(z_k) + noise * sqrt(dgamma) * eps               (call 1, at z_k)
            z_{k+1} = z_k + dgamma * (m(z_k) + m(z~)) / 2 + noise * sqrt(dgamma) * eps  (call 2, at z~)

        with the same ``eps`` in both halves (and, for ``form="sample"``, a token drawn afresh at ``z~``); the
        predicted state ``z~`` is a step of the program, at ``gamma_{k+1}``. The defaults are the plain
        Euler-Maruyama ramp. Schedules are the values of :data:`snrpaths.schedules.RAMP_SCHEDULES`. The default
        ``gamma_max = 40`` is the top of the public DSL training distribution of continuous SNRs.
        """
        return Ramp(steps=steps, gamma_max=gamma_max, schedule=schedule, form=form, kappa=kappa, gamma_min=gamma_min,
                    lag=lag, temperature=temperature, top_k=top_k, top_p=top_p, noise=noise, solver=solver)

    @classmethod
    @_constructor
    def renoise(cls, gamma: float) -> "Renoise":
        """Lower every finite SNR above ``gamma`` to ``gamma`` by the exact forward channel, with no denoiser call:

            z' = (gamma / gamma_i) z_i + sqrt(gamma - gamma^2 / gamma_i) eps_i    (each position with gamma_i > gamma)

        (:func:`snrpaths.channel.renoise`). Clean, prompt and ``[MASK]`` positions, and those at or below ``gamma``,
        are untouched. Given the tokens, the evidence keeps the channel's law, so with the exact posterior a path's
        law is unchanged by a renoise; with a learned denoiser it sends evidence that the model's own drift carried
        off the data manifold back towards states it was trained on. A ramp after it rises again from ``gamma``:
        ``ramp(8) >> renoise(4.0) >> ramp(8)`` is a predictor-corrector path.
        """
        return Renoise(gamma=gamma)

    @classmethod
    @_constructor
    def switch(cls, mode: str = "keep") -> "Switch":
        """Hand finite-SNR positions over to endpoint decoding.

        ``keep``: nothing moves; the finite-SNR evidence stays as soft context for the next stage's reveals.
        ``commit``: one call, then every unrevealed position is revealed from its current posterior.
        ``mask``: every unrevealed position goes back to gamma = 0 (the next stage starts from [MASK]).
        """
        return Switch(mode=mode)

    @classmethod
    @_constructor
    def on(cls, positions: Iterable[int] | slice, path: "Path") -> "On":
        """Run ``path`` on the given positions only (combine with ``|`` to run several spans side by side)."""
        return On(positions=positions, path=path)

    @classmethod
    @_constructor
    def blocks(cls, n: int, inner: "Path", cache: str | None = None, refresh: int | None = None) -> "Blocks":
        """Semi-autoregressive decoding (LLaDA): cut the stage's positions into ``n`` consecutive spans of (nearly)
        equal length and run ``inner`` on each in turn, left to right: ``on(span_1, inner) >> ... >> on(span_n,
        inner)`` with spans known once the sequence length is (``n x inner``'s steps in all). Prompt positions
        inside a block are skipped, so a block the prompt fills costs no call.

        ``cache`` (default None: every call sees the whole state) asks a denoiser that can
        (:class:`snrpaths.denoiser.BlockCaching`) for Fast-dLLM's key/value caching: the first call of a block in
        each row is a full call that also stores every position's keys and values (a refresh); later calls in the
        block recompute only ``'prefix'``: the block and the positions after it, ``'dual'``: the block's positions,
        and read the stored keys and values of the rest (their logits stay those of the refresh). ``refresh=k``
        refreshes again after every ``k`` calls of a row inside a block (``refresh=1``: every call, exactly the
        uncached run). Every other denoiser refuses a cached path before its first call.
        """
        return Blocks(n=n, inner=inner, cache=cache, refresh=refresh)

    # -- the paper's samplers, as compositions --

    @classmethod
    @_constructor
    def ar(cls) -> "Alias":
        """Autoregressive: one position per step, left to right."""
        return Alias.make("ar")

    @classmethod
    @_constructor
    def roar(cls) -> "Alias":
        """Random-order autoregressive: one position per step, in a uniformly random order."""
        return Alias.make("roar")

    @classmethod
    @_constructor
    def mdm(cls, steps: int, **kw: Any) -> "Alias":
        """Masked diffusion (MDLM) over ``steps`` on a ``schedule`` clock, with optional ReMDM remasking.

        Keywords: ``schedule`` (``"linear"`` | ``"cosine"``), ``remask`` (None | ``"cap"`` | ``"rescale"`` |
        ``"confidence"`` | ``"loop"``), ``eta``, ``t_on``, ``t_off``, ``alpha_on``, ``top_p``, ``temperature``.
        """
        return Alias.make("mdm", steps, **kw)

    @classmethod
    @_constructor
    def hybrid(cls, T_cont: int, T_mdm: int, **kw: Any) -> "Alias":
        """DSL hybrid: ``ramp(T_cont) >> switch(mode) >> mdm(T_mdm)``. Keywords: ``switch``, ``gamma_max``,
        ``schedule`` and ``lag`` (the ramp's hand-over SNR, schedule and stagger), ``form``, ``remask``, ``eta``,
        ``top_p`` (the reveals'); the ramp's drift guards ``ramp_temperature``, ``ramp_top_k``, ``ramp_top_p``,
        ``noise`` and ``solver`` (its ``temperature``, ``top_k``, ``top_p``, ``noise``, ``solver``: see
        :meth:`ramp`; ``solver='heun'`` spends ``2 T_cont + T_mdm`` calls)."""
        return Alias.make("hybrid", T_cont, T_mdm, **kw)


def _operand(op: str, left: Any, right: Any, reflected: bool = False) -> Any:
    """``right`` when both sides are paths; else the error naming what stood where."""
    other = left if reflected else right
    if isinstance(other, Path):
        return other
    raise SNRTypeError(f"'{op}' combines two paths (got {left!r} {op} {right!r})")


def _flatten(kind: type, parts: Iterable[Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in parts:
        out.extend(p.parts if isinstance(p, kind) else (p,))
    return tuple(out)


_STEPS = validate.field(validate.integer)
_SNR = validate.field(validate.snr)
#: How far a ramp's last level may fall from its gamma_max in float64 (the logit schedule's ``1 - r`` loses digits
#: as ``gamma_max / kappa`` grows: a relative error of about ``1e-16 sqrt(gamma_max / kappa)``).
RAMP_END_RTOL = 1e-6


@attrs.frozen(repr=False)
class Reveal(Path):
    steps: int | None = attrs.field(default=None, converter=validate.field(validate.integer, allow_none=True))
    order: Order = attrs.field(default=RANDOM, converter=validate.field(_order))
    count: int | None = attrs.field(default=None, converter=validate.field(validate.integer, allow_none=True))
    schedule: AlphaSchedule | None = attrs.field(
        default=None, converter=validate.field(_named(ALPHA_SCHEDULES, AlphaSchedule, allow_none=True)))
    temperature: float = attrs.field(default=1.0, converter=validate.field(validate.temperature))
    top_p: float = attrs.field(default=1.0, converter=validate.field(validate.top_p))
    exact: bool = attrs.field(default=False, converter=validate.field(validate.boolean))
    remask: RemaskPolicy | None = attrs.field(
        default=None, converter=validate.field(_named(REMASK_POLICIES, RemaskPolicy, allow_none=True)))
    adaptive: RevealRule | None = attrs.field(default=None, converter=validate.field(_rule))

    def __attrs_post_init__(self) -> None:
        if (self.count is None) == (self.schedule is None):
            raise SNRPathError(
                f"reveal needs exactly one of count=k or schedule in {tuple(ALPHA_SCHEDULES)} "
                f"(got count={self.count!r}, schedule={self.schedule!r})"
            )
        if self.schedule is not None and self.steps is None:
            raise SNRPathError(f"reveal with schedule={self.schedule!r} needs a number of steps, e.g. reveal(32, ...)")
        if self.exact and (self.order != RANDOM or self.schedule is None):
            raise SNRPathError("exact=True applies to order='random' with a schedule (ranked orders and counts are "
                               f"always exact); got order={self.order!r}, schedule={self.schedule!r}")
        if self.remask is not None and self.schedule is None:
            raise SNRPathError("a remask policy needs a reveal clock: give the reveal a schedule, not a count")

    @property
    def _prec(self) -> int:
        return _PREC["&"] if self.remask is not None else _PREC["call"]

    def __repr__(self) -> str:
        # An adaptive reveal's clock defaults to the linear one (Path.reveal fills it in), so repr leaves it out.
        clock = ALPHA_SCHEDULES["linear"] if self.adaptive is not None and self.count is None else None
        rule = [] if self.adaptive is None else [(self.adaptive.keyword, self.adaptive.value, None, False)]
        own = _render_call("reveal", [
            ("steps", self.steps, None, True), ("order", self.order, RANDOM, False),
            ("count", self.count, None, False), ("schedule", self.schedule, clock, False),
            ("temperature", self.temperature, 1.0, False), ("top_p", self.top_p, 1.0, False),
            ("exact", self.exact, False, False), *rule])
        return own if self.remask is None else f"{Remask(policy=self.remask)!r} & {own}"


@attrs.frozen(repr=False)
class Remask(Path):
    policy: RemaskPolicy | None = attrs.field(
        default=None, converter=validate.field(_named(REMASK_POLICIES, RemaskPolicy, allow_none=True)))
    positions: Span | tuple[int, ...] | None = attrs.field(default=None,
                                                           converter=validate.field(_optional_positions))

    def __attrs_post_init__(self) -> None:
        if (self.policy is None) == (self.positions is None):
            raise SNRPathError(f"remask needs exactly one of a policy {tuple(REMASK_POLICIES)} or explicit "
                               f"positions (got policy={self.policy!r}, positions={self.positions!r})")

    def __and__(self, other: Path) -> Path:
        if self.policy is None or not isinstance(other, Reveal) or other.remask is not None:
            return super().__and__(other)
        return attrs.evolve(other, remask=self.policy)

    def __repr__(self) -> str:
        policy = [] if self.policy is None else [("policy", self.policy.name, None, True)] + [
            (key, value, default, False) for key, value, default in self.policy.arguments()]
        return _render_call("remask", policy + [("positions", self.positions, None, False)])


@attrs.frozen(repr=False)
class Ramp(Path):
    steps: int = attrs.field(converter=_STEPS)
    gamma_max: float = attrs.field(default=40.0, converter=_SNR)
    schedule: RampSchedule = attrs.field(default="logit",
                                         converter=validate.field(_named(RAMP_SCHEDULES, RampSchedule)))
    form: RampForm = attrs.field(default="mean", converter=validate.field(_named(RAMP_FORMS, RampForm)))
    kappa: float = attrs.field(default=4.0, converter=_SNR)
    gamma_min: float = attrs.field(default=0.01, converter=_SNR)
    lag: float = attrs.field(default=0.0, converter=validate.field(validate.number, low=0.0, high=1.0))
    temperature: float = attrs.field(default=1.0, converter=validate.field(validate.temperature))
    top_k: int | None = attrs.field(default=None, converter=validate.field(validate.integer, allow_none=True))
    top_p: float = attrs.field(default=1.0, converter=validate.field(validate.top_p))
    noise: float = attrs.field(default=1.0, converter=validate.field(validate.number, low=0.0, high=math.inf,
                                                                       high_open=True))
    solver: RampSolver = attrs.field(default="euler", converter=validate.field(_named(RAMP_SOLVERS, RampSolver)))

    def __attrs_post_init__(self) -> None:
        if self.gamma_min > self.gamma_max:
            raise SNRPathError(f"'gamma_min' must lie in (0.0, {self.gamma_max}] (got {self.gamma_min!r})")
        try:
            end = self.level(1.0)
        except (ZeroDivisionError, OverflowError):  # Python floats raise where the runner's tensors give inf
            end = math.inf
        if not abs(end - self.gamma_max) <= RAMP_END_RTOL * self.gamma_max:  # NaN and inf fail too
            raise SNRPathError(f"{self!r}: the {self.schedule.name!r} schedule ends at gamma {end:.6g} instead of "
                               f"gamma_max={self.gamma_max!r} in float64 (gamma_max / kappa = "
                               f"{self.gamma_max / self.kappa:.3g}); lower gamma_max or raise kappa")

    def level(self, u: Any) -> Any:
        """``gamma(u)`` on this ramp's schedule, for a clock ``u`` in [0, 1] (a float, or elementwise a float64
        tensor)."""
        return self.schedule.gamma(u, self.gamma_max, self.kappa, self.gamma_min)

    def clock(self, gamma: Any) -> Any:
        """The clock ``u`` in [0, 1] at which this ramp's schedule reaches ``gamma`` (its inverse, clipped: 0 at or
        below ``gamma(0+)``, 1 at or above ``gamma_max``); a float, or elementwise a float64 tensor."""
        return self.schedule.clock(gamma, self.gamma_max, self.kappa, self.gamma_min)

    def __repr__(self) -> str:
        return _render_call("ramp", [
            ("steps", self.steps, inspect.Parameter.empty, True), ("lag", self.lag, 0.0, False),
            ("gamma_max", self.gamma_max, 40.0, False),
            ("schedule", self.schedule, RAMP_SCHEDULES["logit"], False), ("form", self.form, RAMP_FORMS["mean"], False),
            ("kappa", self.kappa, 4.0, False), ("gamma_min", self.gamma_min, 0.01, False),
            ("temperature", self.temperature, 1.0, False), ("top_k", self.top_k, None, False),
            ("top_p", self.top_p, 1.0, False), ("noise", self.noise, 1.0, False),
            ("solver", self.solver, RAMP_SOLVERS["euler"], False)])


@attrs.frozen(repr=False)
class Renoise(Path):
    """Lower finite SNRs above ``gamma`` to ``gamma`` by the exact forward channel (see :meth:`Path.renoise`)."""

    gamma: float = attrs.field(converter=_SNR)

    def __repr__(self) -> str:
        return _render_call("renoise", [("gamma", self.gamma, inspect.Parameter.empty, True)])


@attrs.frozen(repr=False)
class Switch(Path):
    mode: SwitchMode = attrs.field(default="keep", converter=validate.field(_named(SWITCH_MODES, SwitchMode)))

    def __repr__(self) -> str:
        return _render_call("switch", [("mode", self.mode, SWITCH_MODES["keep"], True)])


@attrs.frozen(repr=False)
class On(Path):
    positions: Span | tuple[int, ...] = attrs.field(converter=validate.field(lambda name, value: positions_of(value, name)))
    path: Path = attrs.field(converter=validate.field(_path))

    def __repr__(self) -> str:
        return f"on({_render_value(self.positions)}, {self.path!r})"


@attrs.frozen(repr=False)
class Blocks(Path):
    """``inner`` on ``n`` consecutive spans of the stage's positions, left to right (see :meth:`Path.blocks`)."""

    n: int = attrs.field(converter=_STEPS)
    inner: Path = attrs.field(converter=validate.field(_path))
    cache: BlockCache | None = attrs.field(
        default=None, converter=validate.field(_named(BLOCK_CACHES, BlockCache, allow_none=True)))
    refresh: int | None = attrs.field(default=None, converter=validate.field(validate.integer, allow_none=True))

    def __attrs_post_init__(self) -> None:
        if self.refresh is not None and self.cache is None:
            raise SNRPathError(f"refresh={self.refresh!r} sets how often a cache is refreshed; give blocks a cache "
                               f"in {tuple(BLOCK_CACHES)} (got cache=None)")

    def __repr__(self) -> str:
        return _render_call("blocks", [("n", self.n, inspect.Parameter.empty, True),
                                       ("inner", self.inner, inspect.Parameter.empty, True),
                                       ("cache", self.cache, None, False), ("refresh", self.refresh, None, False)])


def _group(value: Any, group: "Then | Parallel") -> tuple[Path, ...]:
    """The parts of a ``>>`` or ``|`` group built directly: nested groups of its kind flattened, as the operators
    build them, and at least two, so that every group prints as an expression that parses back to it."""
    parts = _flatten(type(group), _paths("parts", value))
    if len(parts) < 2:
        raise SNRPathError(f"'{group._op}' joins at least two paths (got {type(group).__name__}({value!r})); a single "
                           "path stands for itself")
    return parts


_GROUP = attrs.Converter(_group, takes_self=True)


@attrs.frozen(repr=False)
class Then(Path):
    parts: tuple[Path, ...] = attrs.field(converter=_GROUP)
    _op = ">>"
    _prec = _PREC[">>"]

    def __repr__(self) -> str:
        # '>>' is left-associative: a right operand of equal precedence needs no parentheses only because
        # Then is flattened, so every part is rendered at one level above.
        return " >> ".join(_wrap(p, _PREC[">>"] + 1) for p in self.parts)


@attrs.frozen(repr=False)
class Parallel(Path):
    parts: tuple[Path, ...] = attrs.field(converter=_GROUP)
    _op = "|"
    _prec = _PREC["|"]

    def __repr__(self) -> str:
        return " | ".join(_wrap(p, _PREC["|"] + 1) for p in self.parts)


# -- named compositions ------------------------------------------------------------------------------------------


def _mdm(steps: int, schedule: str = "linear", remask: str | None = None, eta: float | None = None,
         t_on: float | None = None, t_off: float | None = None, alpha_on: float | None = None, top_p: float = 1.0,
         temperature: float = 1.0) -> Path:
    reveal = Path.reveal(steps, schedule=schedule, top_p=top_p, temperature=temperature)
    params = _typed(eta=eta, t_on=t_on, t_off=t_off, alpha_on=alpha_on)
    if remask is None:
        if params:
            raise SNRPathError(f"{', '.join(f'{k}={v!r}' for k, v in params.items())} given without a remask "
                               f"policy; choose remask in {tuple(REMASK_POLICIES)}")
        return reveal
    # Only a name: the sampler's repr must stay what a user types (a policy value goes to Path.remask).
    return Remask(policy=remask_policy("remask", validate.choice("remask", remask, REMASK_POLICIES), **params)) & reveal


def _hybrid(T_cont: int, T_mdm: int, switch: str = "keep", gamma_max: float = 40.0, form: str = "mean",
            remask: str | None = None, eta: float | None = None, top_p: float = 1.0, schedule: str = "logit",
            lag: float = 0.0, ramp_temperature: float = 1.0, ramp_top_k: int | None = None, ramp_top_p: float = 1.0,
            noise: float = 1.0, solver: str = "euler") -> Path:
    # The hybrid's own names for the primitives' arguments: errors must name what the user typed.
    validate.integer("T_cont", T_cont)
    validate.integer("T_mdm", T_mdm)
    validate.choice("switch", switch, SWITCH_MODES)
    validate.temperature("ramp_temperature", ramp_temperature)
    validate.integer("ramp_top_k", ramp_top_k, allow_none=True)
    validate.top_p("ramp_top_p", ramp_top_p)
    ramp = Path.ramp(T_cont, gamma_max=gamma_max, form=form, schedule=schedule, lag=lag, temperature=ramp_temperature,
                     top_k=ramp_top_k, top_p=ramp_top_p, noise=noise, solver=solver)
    return ramp >> Path.switch(switch) >> Path.mdm(T_mdm, remask=remask, eta=eta, top_p=top_p)


#: Named samplers: name -> a function of the sampler's arguments returning its composition of primitives.
ALIASES: dict[str, Callable[..., Path]] = {
    "ar": lambda: Path.reveal(order="left-to-right", count=1),
    "roar": lambda: Path.reveal(order="random", count=1),
    "mdm": _mdm,
    "hybrid": _hybrid,
}


@attrs.frozen(repr=False)
class Alias(Path):
    """A named composition (``mdm(32, remask='cap')``): compared and printed by name and arguments, compiled
    through ``body``, the composition of primitives it stands for."""

    name: str = attrs.field(converter=validate.field(validate.choice, valid=ALIASES))
    args: tuple[tuple[str, Any], ...]
    body: Path = attrs.field(eq=False, converter=validate.field(_path))

    @classmethod
    def make(cls, name: str, *args: Any, **kwargs: Any) -> "Alias":
        fn = ALIASES[validate.choice("sampler", name, ALIASES)]
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as err:
            raise SNRTypeError(f"{name}{_shown(fn)}: {err}") from None
        bound.apply_defaults()
        # Plain Python values in the arguments, so that equal samplers compare (and hash) equal.
        arguments = tuple((k, validate.scalar(v)) for k, v in bound.arguments.items())
        return cls(name=name, args=arguments, body=fn(*bound.args, **bound.kwargs))

    def __repr__(self) -> str:
        params = inspect.signature(ALIASES[self.name]).parameters
        return _render_call(self.name, [
            (key, value, params[key].default, params[key].default is inspect.Parameter.empty)
            for key, value in self.args])


#: Every name of the path language, the one table the parser reads: the primitives and the named samplers.
CONSTRUCTORS: dict[str, Callable[..., Path]] = {
    **{name: getattr(Path, name) for name in ("reveal", "remask", "ramp", "switch", "renoise", "on", "blocks")},
    **{name: functools.partial(Alias.make, name) for name in ALIASES},
}
