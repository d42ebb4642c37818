"""Paths through per-token SNR space, as immutable values.

A path says how each position's SNR ``gamma_i`` moves from 0 (``[MASK]``) to inf (clean). Four primitives:

* ``reveal``: send chosen positions from their current gamma to inf, tokens drawn from the denoiser;
* ``remask``: send clean positions back to 0 (a ReMDM policy sharing a reveal's clock, or an explicit selection);
* ``ramp``: raise the gamma of every unrevealed position together by stochastic localization;
* ``switch``: hand finite-SNR states over to endpoint decoding.

Combinators: ``a >> b`` (b after a), ``a | b`` (a and b side by side on disjoint positions, sharing denoiser
calls), ``remask(...) & reveal(...)`` (remask on the reveal's clock, one call per step), ``on(positions, p)``.
The paper's samplers (``ar``, ``roar``, ``mdm`` with every ReMDM strategy, ``hybrid``) are named compositions of
these primitives: sugar with a readable ``repr``, never separate code paths.

``repr(path)`` prints the expression, ``snrpaths.parse_path(repr(path)) == path``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Iterable

import attrs

from . import schedules
from .errors import SNRPathError, SNRTypeError, one_of

ORDERS = ("left-to-right", "random", "confidence", "margin", "entropy")
RAMP_FORMS = ("mean", "sample")
SWITCH_MODES = ("keep", "commit", "mask")


# -- validation helpers ------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SNRPathError(f"{name!r} must be a positive integer (got {value!r})")
    return int(value)


def _number(name: str, value: Any, low: float, high: float, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise SNRTypeError(f"{name!r} must be a number (got {value!r})")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        span = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise SNRPathError(f"{name!r} must lie in {span} (got {value!r})")
    return float(value)


def _choice(name: str, value: Any, valid: Iterable[Any]) -> Any:
    valid = tuple(valid)
    if value not in valid:
        raise one_of(name, value, valid)
    return value


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SNRTypeError(f"{name!r} must be a sequence of position indices (got {value!r})")
    out = tuple(value)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in out):
        raise SNRPathError(f"{name!r} must be a non-empty sequence of non-negative integers (got {value!r})")
    return out


# -- position sets -------------------------------------------------------------------------------------------------


@attrs.frozen
class Span:
    """Positions ``range(start, stop, step)`` of a sequence, like a Python slice; ``stop=None`` runs to the end."""

    start: int = 0
    stop: int | None = None
    step: int = 1

    def indices(self, seq_len: int) -> tuple[int, ...]:
        return tuple(range(*slice(self.start, self.stop, self.step).indices(seq_len)))

    def __repr__(self) -> str:
        args = [repr(self.start), repr(self.stop)] + ([repr(self.step)] if self.step != 1 else [])
        return f"slice({', '.join(args)})"


def positions_of(value: Any) -> Span | tuple[int, ...]:
    """Normalise a slice / range / sequence of ints into a hashable position set."""
    if isinstance(value, Span):
        value = slice(value.start, value.stop, value.step)
    if isinstance(value, (slice, range)):
        start, stop, step = value.start or 0, value.stop, value.step or 1
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0) for v in (start, stop)):
            raise SNRPathError(f"position slices need non-negative integer bounds (got {value!r})")
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise SNRPathError(f"position slices need a positive integer step (got {value!r})")
        return Span(start, stop, step)
    out = _int_tuple("positions", value)
    if len(set(out)) != len(out):
        raise SNRPathError(f"'positions' must not repeat a position (got {value!r})")
    return out


def resolve_positions(positions: Span | tuple[int, ...], seq_len: int, where: str) -> tuple[int, ...]:
    """The concrete positions for a sequence of ``seq_len``; out-of-range positions are an error."""
    if isinstance(positions, Span):
        out = positions.indices(seq_len)
        if not out:
            raise SNRPathError(f"{where}: {positions!r} selects no position of a sequence of length {seq_len}")
        return out
    bad = [p for p in positions if p >= seq_len]
    if bad:
        raise SNRPathError(f"{where}: positions {bad[:10]} are out of range for seq_len={seq_len} (valid: 0..{seq_len - 1})")
    return positions


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
    """Base of every path value. Build paths with the classmethods, never by calling a subclass directly."""

    _prec = _PREC["call"]

    def __rshift__(self, other: "Path") -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        return Then(_flatten(Then, (self, other)))

    def __or__(self, other: "Path") -> "Path":
        if not isinstance(other, Path):
            return NotImplemented
        return Parallel(_flatten(Parallel, (self, other)))

    def __and__(self, other: "Path") -> "Path":
        raise SNRPathError(
            f"'&' puts a remask policy on a reveal's clock: write remask(policy) & reveal(T, schedule=...) "
            f"(got {self!r} & {other!r})"
        )

    def compile(self, seq_len: int):
        """The :class:`snrpaths.Program` of this path for sequences of ``seq_len`` (pure, cached)."""
        from .compile import compile_path

        return compile_path(self, seq_len)

    def graph(self):
        """A networkx DiGraph of the stages: nodes ``start``, ``end`` and one per stage (attribute ``label``)."""
        from .graph import path_graph

        return path_graph(self)

    def plot(self, positions: tuple[int, int] = (0, 1), **kwargs: Any):
        """This path's runs in the ``(gamma_i, gamma_j)`` plane, a matplotlib Figure: see
        :func:`snrpaths.plot.gamma_plane` (keywords ``denoiser``, ``seq_len``, ``runs``, ``seed``, ``title``)."""
        from .plot import gamma_plane

        return gamma_plane(self, positions=positions, **kwargs)

    # -- primitives --

    @classmethod
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
    ) -> "Reveal":
        """Send positions from their current gamma to inf, tokens drawn from the denoiser (float64, optionally
        tempered and nucleus-truncated to ``top_p``), one denoiser call per step.

        How many per step: ``count`` positions, or a masked-diffusion clock ``schedule`` (``"linear"`` |
        ``"cosine"``) over ``steps``; with the clock and ``order="random"`` each unrevealed position is revealed
        with MDLM's probability ``(alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)``; with a ranked order the best
        positions are revealed until a fraction ``alpha_s`` is clean. Which: ``order`` (``left-to-right``,
        ``random``, ``confidence`` = highest max-probability first, ``margin`` = largest top-1 minus top-2
        probability, ``entropy`` = lowest entropy first) or an explicit permutation of positions.
        ``steps=None`` with a ``count`` means as many steps as it takes. ``exact=True`` (random order with a
        clock only) reveals exactly the scheduled number per step, uniformly at random, instead of coin flips.
        """
        if not isinstance(exact, bool):
            raise SNRTypeError(f"'exact' must be True or False (got {exact!r})")
        return Reveal(
            steps=_positive_int("steps", steps, allow_none=True),
            order=_order(order),
            count=_positive_int("count", count, allow_none=True),
            schedule=None if schedule is None else _choice("schedule", schedule, schedules.ALPHA_SCHEDULES),
            temperature=_number("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True),
            top_p=_number("top_p", top_p, 0.0, 1.0, low_open=True),
            exact=exact,
        )

    @classmethod
    def remask(
        cls,
        policy: str | None = None,
        *,
        eta: float | None = None,
        t_on: float = 0.55,
        t_off: float = 0.05,
        alpha_on: float = 0.9,
        positions: Iterable[int] | slice | None = None,
    ) -> "Remask":
        """Send clean positions back to gamma = 0.

        Either a ReMDM ``policy`` (``cap`` | ``rescale`` | ``confidence`` | ``loop``, DESIGN.md section 5) that runs
        on a reveal's clock (``remask(policy) & reveal(T, schedule=...)``), or an explicit selection of
        ``positions`` remasked once, with no denoiser call. ``eta`` defaults to the public OWT values
        (cap 0.008, rescale 0.015, loop 0.02); ``loop`` holds ``alpha = alpha_on`` between ``t_on`` and ``t_off``.
        """
        if (policy is None) == (positions is None):
            raise SNRPathError(
                f"remask needs exactly one of a policy {schedules.REMASK_POLICIES} or explicit positions "
                f"(got policy={policy!r}, positions={positions!r})"
            )
        if policy is not None:
            _choice("policy", policy, schedules.REMASK_POLICIES)
        if policy == "confidence" and eta is not None:
            raise SNRPathError("the 'confidence' policy takes no eta: sigma_max is spread by softmax(-confidence)")
        default_eta = schedules.DEFAULT_ETA.get(policy) if policy else None
        eta = default_eta if eta is None else _number("eta", eta, 0.0, 1.0)
        _number("alpha_on", alpha_on, 0.0, 1.0, low_open=True, high_open=True)
        _number("t_off", t_off, 0.0, 1.0, low_open=True, high_open=True)
        _number("t_on", t_on, 0.0, 1.0, low_open=True, high_open=True)
        if not t_off < t_on:
            raise SNRPathError(f"the loop needs t_off < t_on (got t_on={t_on!r}, t_off={t_off!r})")
        if policy != "loop" and (t_on, t_off, alpha_on) != (0.55, 0.05, 0.9):
            raise SNRPathError(f"t_on, t_off and alpha_on belong to the 'loop' policy (got policy={policy!r})")
        return Remask(policy=policy, eta=eta, t_on=float(t_on), t_off=float(t_off), alpha_on=float(alpha_on),
                      positions=None if positions is None else positions_of(positions))

    @classmethod
    def ramp(
        cls,
        steps: int,
        *,
        gamma_max: float = 40.0,
        schedule: str = "logit",
        form: str = "mean",
        kappa: float = 4.0,
        gamma_min: float = 0.01,
    ) -> "Ramp":
        """Raise the SNR of every unrevealed position together to ``gamma(k / steps)`` at step k, one call each.

        The stochastic-localization update ``z += dgamma * target + sqrt(dgamma) * eps`` uses ``target =
        xhat(z)`` (``form="mean"``) or the anchor of a token drawn per position from the posterior
        (``form="sample"``). Schedules are in :func:`snrpaths.schedules.ramp_gamma`. The default ``gamma_max = 40``
        is the top of the public DSL training distribution of continuous SNRs.
        """
        return Ramp(
            steps=_positive_int("steps", steps),
            gamma_max=_number("gamma_max", gamma_max, 0.0, math.inf, low_open=True, high_open=True),
            schedule=_choice("schedule", schedule, schedules.RAMP_SCHEDULES),
            form=_choice("form", form, RAMP_FORMS),
            kappa=_number("kappa", kappa, 0.0, math.inf, low_open=True, high_open=True),
            gamma_min=_number("gamma_min", gamma_min, 0.0, gamma_max, low_open=True),
        )

    @classmethod
    def switch(cls, mode: str = "keep") -> "Switch":
        """Hand finite-SNR positions over to endpoint decoding.

        ``keep``: nothing moves; the finite-SNR evidence stays as soft context for the next stage's reveals.
        ``commit``: one call, then every unrevealed position is revealed from its current posterior.
        ``mask``: every unrevealed position goes back to gamma = 0 (the next stage starts from [MASK]).
        """
        return Switch(mode=_choice("mode", mode, SWITCH_MODES))

    @classmethod
    def on(cls, positions: Iterable[int] | slice, path: "Path") -> "On":
        """Run ``path`` on the given positions only (combine with ``|`` to run several spans side by side)."""
        if not isinstance(path, Path):
            raise SNRTypeError(f"on(positions, path) needs a Path as its second argument (got {path!r})")
        return On(positions=positions_of(positions), path=path)

    # -- the paper's samplers, as compositions --

    @classmethod
    def ar(cls) -> "Alias":
        """Autoregressive: one position per step, left to right."""
        return Alias.make("ar")

    @classmethod
    def roar(cls) -> "Alias":
        """Random-order autoregressive: one position per step, in a uniformly random order."""
        return Alias.make("roar")

    @classmethod
    def mdm(cls, steps: int, **kw: Any) -> "Alias":
        """Masked diffusion (MDLM) over ``steps`` on a ``schedule`` clock, with optional ReMDM remasking.

        Keywords: ``schedule`` (``"linear"`` | ``"cosine"``), ``remask`` (None | ``"cap"`` | ``"rescale"`` |
        ``"confidence"`` | ``"loop"``), ``eta``, ``t_on``, ``t_off``, ``alpha_on``, ``top_p``, ``temperature``.
        """
        return Alias.make("mdm", steps, **kw)

    @classmethod
    def hybrid(cls, T_cont: int, T_mdm: int, **kw: Any) -> "Alias":
        """DSL hybrid: ``ramp(T_cont) >> switch(mode) >> mdm(T_mdm)``. Keywords: ``switch``, ``gamma_max``,
        ``form``, ``remask``, ``eta``, ``top_p``."""
        return Alias.make("hybrid", T_cont, T_mdm, **kw)


def _order(order: Any) -> str | tuple[int, ...]:
    if isinstance(order, str):
        return _choice("order", order, ORDERS)
    perm = _int_tuple("order", order)
    if sorted(perm) != list(range(len(perm))):
        raise SNRPathError(f"an explicit order must be a permutation of 0..n-1 (got {order!r})")
    return perm


def _flatten(kind: type, parts: Iterable[Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in parts:
        out.extend(p.parts if isinstance(p, kind) else (p,))
    return tuple(out)


@attrs.frozen(repr=False)
class Reveal(Path):
    steps: int | None
    order: str | tuple[int, ...]
    count: int | None
    schedule: str | None
    temperature: float
    top_p: float
    exact: bool = False
    remask: "Remask | None" = None

    def __attrs_post_init__(self) -> None:
        if (self.count is None) == (self.schedule is None):
            raise SNRPathError(
                f"reveal needs exactly one of count=k or schedule in {schedules.ALPHA_SCHEDULES} "
                f"(got count={self.count!r}, schedule={self.schedule!r})"
            )
        if self.schedule is not None and self.steps is None:
            raise SNRPathError(f"reveal with schedule={self.schedule!r} needs a number of steps, e.g. reveal(32, ...)")
        if self.exact and (self.order != "random" or self.schedule is None):
            raise SNRPathError("exact=True applies to order='random' with a schedule (ranked orders and counts are "
                               f"always exact); got order={self.order!r}, schedule={self.schedule!r}")
        if self.remask is not None and self.schedule is None:
            raise SNRPathError("a remask policy needs a reveal clock: give the reveal a schedule, not a count")

    @property
    def _prec(self) -> int:
        return _PREC["&"] if self.remask is not None else _PREC["call"]

    def __repr__(self) -> str:
        own = _render_call("reveal", [
            ("steps", self.steps, None, True), ("order", self.order, "random", False),
            ("count", self.count, None, False), ("schedule", self.schedule, None, False),
            ("temperature", self.temperature, 1.0, False), ("top_p", self.top_p, 1.0, False),
            ("exact", self.exact, False, False)])
        return own if self.remask is None else f"{self.remask!r} & {own}"


@attrs.frozen(repr=False)
class Remask(Path):
    policy: str | None
    eta: float | None
    t_on: float
    t_off: float
    alpha_on: float
    positions: Span | tuple[int, ...] | None

    def __and__(self, other: Path) -> Path:
        if self.policy is None or not isinstance(other, Reveal) or other.remask is not None:
            return super().__and__(other)
        return attrs.evolve(other, remask=self)

    def __repr__(self) -> str:
        eta_default = schedules.DEFAULT_ETA.get(self.policy) if self.policy else None
        return _render_call("remask", [
            ("policy", self.policy, None, True), ("eta", self.eta, eta_default, False),
            ("t_on", self.t_on, 0.55, False), ("t_off", self.t_off, 0.05, False),
            ("alpha_on", self.alpha_on, 0.9, False), ("positions", self.positions, None, False)])


@attrs.frozen(repr=False)
class Ramp(Path):
    steps: int
    gamma_max: float
    schedule: str
    form: str
    kappa: float
    gamma_min: float

    def __repr__(self) -> str:
        return _render_call("ramp", [
            ("steps", self.steps, inspect.Parameter.empty, True), ("gamma_max", self.gamma_max, 40.0, False),
            ("schedule", self.schedule, "logit", False), ("form", self.form, "mean", False),
            ("kappa", self.kappa, 4.0, False), ("gamma_min", self.gamma_min, 0.01, False)])


@attrs.frozen(repr=False)
class Switch(Path):
    mode: str

    def __repr__(self) -> str:
        return _render_call("switch", [("mode", self.mode, "keep", True)])


@attrs.frozen(repr=False)
class On(Path):
    positions: Span | tuple[int, ...]
    path: Path

    def __repr__(self) -> str:
        return f"on({_render_value(self.positions)}, {self.path!r})"


@attrs.frozen(repr=False)
class Then(Path):
    parts: tuple[Path, ...]
    _prec = _PREC[">>"]

    def __repr__(self) -> str:
        # '>>' is left-associative: a right operand of equal precedence needs no parentheses only because
        # Then is flattened, so every part is rendered at one level above.
        return " >> ".join(_wrap(p, _PREC[">>"] + 1) for p in self.parts)


@attrs.frozen(repr=False)
class Parallel(Path):
    parts: tuple[Path, ...]
    _prec = _PREC["|"]

    def __repr__(self) -> str:
        return " | ".join(_wrap(p, _PREC["|"] + 1) for p in self.parts)


# -- named compositions ------------------------------------------------------------------------------------------


def _mdm(steps: int, schedule: str = "linear", remask: str | None = None, eta: float | None = None,
         t_on: float = 0.55, t_off: float = 0.05, alpha_on: float = 0.9, top_p: float = 1.0,
         temperature: float = 1.0) -> Path:
    reveal = Path.reveal(steps, schedule=schedule, top_p=top_p, temperature=temperature)
    if remask is None:
        if eta is not None:
            raise SNRPathError(f"eta={eta!r} given without a remask policy; choose remask in {schedules.REMASK_POLICIES}")
        return reveal
    return Path.remask(remask, eta=eta, t_on=t_on, t_off=t_off, alpha_on=alpha_on) & reveal


def _hybrid(T_cont: int, T_mdm: int, switch: str = "keep", gamma_max: float = 40.0, form: str = "mean",
            remask: str | None = None, eta: float | None = None, top_p: float = 1.0) -> Path:
    return (Path.ramp(T_cont, gamma_max=gamma_max, form=form) >> Path.switch(switch)
            >> Path.mdm(T_mdm, remask=remask, eta=eta, top_p=top_p))


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

    name: str
    args: tuple[tuple[str, Any], ...]
    body: Path = attrs.field(eq=False)

    @classmethod
    def make(cls, name: str, *args: Any, **kwargs: Any) -> "Alias":
        fn = ALIASES[_choice("sampler", name, ALIASES)]
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as err:
            raise SNRTypeError(f"{name}{inspect.signature(fn)}: {err}") from None
        bound.apply_defaults()
        return cls(name=name, args=tuple(bound.arguments.items()), body=fn(*bound.args, **bound.kwargs))

    def __repr__(self) -> str:
        params = inspect.signature(ALIASES[self.name]).parameters
        return _render_call(self.name, [
            (key, value, params[key].default, params[key].default is inspect.Parameter.empty)
            for key, value in self.args])
