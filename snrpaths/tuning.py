"""A path tuner: search a family of paths for the one that scores best on a metric at a fixed call budget.

    tuned = snrpaths.tune("hybrid", toy, nfe=8, metric="tv", trials=30, seed=0)
    tuned.best            # hybrid(3, 5, gamma_max=312.4, schedule='loglinear'): repr is the expression
    tuned.trials          # one row per trial: params, path, value, static and actual calls
    tuned.plot("tune.png")

A **family** (:data:`FAMILIES`) is a value that knows, for a budget of ``nfe`` calls, its default path, its search
space (a tuple of :class:`Param` descriptions, each mapped to one Optuna ``suggest_*`` call) and how to build a path
from a trial's parameters whose static cost ``path.compile(L).nfe`` is at most ``nfe``. A **metric**
(:data:`METRICS`, or any callable ``metric(tokens) -> float``) is built once per run from the denoiser and the
validation ``data`` into a scorer ``[n, L] tokens -> float``, lower is better.

Fair comparisons: every trial samples with the same ``seed`` (common random numbers: two paths differ in their
path, not their noise), and the family's default path is trial 0, so the best over all trials is never worse on
the validation metric than the default. Deterministic for a seed: Optuna's TPE sampler seeded, trials run one after
another. Resumable: with ``storage`` (a file, or an Optuna storage URL) every finished trial is kept, and a rerun
with the same settings only runs the trials still missing. Optuna is the optional extra ``snrpaths[tune]``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import pathlib
from typing import Any, Callable, ClassVar

import attrs
import torch

from . import validate
from .denoiser import Denoiser, EnumerableJoint, require
from .errors import SNRPathError, SNRTypeError, one_of
from .files import check_writable
from .progress import Meter
from .reprs import markdown_table
from .orders import ORDERS
from .path import SWITCH_MODES, Path
from .runner import sample
from .schedules import ALPHA_SCHEDULES, RAMP_SCHEDULES, REMASK_POLICIES

_EXTRA = "pip install 'snrpaths[tune]'"


# -- search spaces -------------------------------------------------------------------------------------------------


@attrs.frozen
class Param:
    """One dimension of a search space, suggested only when ``only_if`` (``(name, values)``: another parameter's
    value is among ``values``) holds for the parameters suggested before it."""

    name: str
    only_if: tuple[str, tuple] | None = attrs.field(default=None, kw_only=True)

    def applies(self, params: dict[str, Any]) -> bool:
        return self.only_if is None or params.get(self.only_if[0]) in self.only_if[1]

    def suggest(self, trial) -> Any:
        raise NotImplementedError


@attrs.frozen
class Choice(Param):
    """One of ``options`` (``trial.suggest_categorical``)."""

    options: tuple = ()

    def suggest(self, trial) -> Any:
        return trial.suggest_categorical(self.name, self.options)


@attrs.frozen
class Integer(Param):
    """An integer in ``[low, high]`` (``trial.suggest_int``)."""

    low: int = 1
    high: int = 1

    def suggest(self, trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high)


@attrs.frozen
class Real(Param):
    """A float in ``[low, high]``, sampled uniformly in ``log`` space when ``log`` (``trial.suggest_float``), kept
    to 3 significant digits: the path's expression stays readable, and finer steps are below any metric's noise."""

    low: float = 0.0
    high: float = 1.0
    log: bool = False

    def suggest(self, trial) -> float:
        value = float(f"{trial.suggest_float(self.name, self.low, self.high, log=self.log):.3g}")
        return min(max(value, self.low), self.high)


# -- families ------------------------------------------------------------------------------------------------------


@attrs.frozen
class Family:
    """A parametrised family of paths at a budget of ``nfe`` denoiser calls.

    ``least``: the smallest budget the family can meet; ``space(nfe)``: the search space; ``default(nfe)``: the
    parameters of the family's default path; ``build(nfe, params)``: the path, with ``compile(L).nfe <= nfe``.
    """

    name: ClassVar[str]
    least: ClassVar[int] = 1

    def space(self, nfe: int) -> tuple[Param, ...]:
        raise NotImplementedError

    def default(self, nfe: int) -> dict[str, Any]:
        raise NotImplementedError

    def build(self, nfe: int, params: dict[str, Any]) -> Path:
        raise NotImplementedError

    def check(self, nfe: int) -> None:
        if nfe < self.least:
            raise SNRPathError(f"the {self.name!r} family needs a budget of at least {self.least} calls "
                               f"(got nfe={nfe})")


#: The hand-over SNRs the hybrid searches: from below the text sweep's best (0.5) to above the exact toys' need
#: (separation at gamma ~ 8 / Delta_min^2, a few hundred for random 8-d anchors).
HANDOVER = (0.25, 1000.0)


@attrs.frozen
class Hybrid(Family):
    """``hybrid(T_cont, T_mdm, switch=, gamma_max=, schedule=)`` with ``T_cont + T_mdm`` calls, one fewer under
    ``switch('commit')`` (its own call reveals every position, so its static cost is ``T_cont + 1 + T_mdm``).
    Default: the library's, ``hybrid(nfe // 2, nfe - nfe // 2)``."""

    name = "hybrid"
    least = 2

    def space(self, nfe: int) -> tuple[Param, ...]:
        modes = tuple(name for name, mode in SWITCH_MODES.items() if nfe >= self.least + mode.calls)
        return (Integer("T_cont", low=1, high=nfe - 1), Real("gamma_max", low=HANDOVER[0], high=HANDOVER[1], log=True),
                Choice("switch", options=modes), Choice("schedule", options=tuple(RAMP_SCHEDULES)))

    def default(self, nfe: int) -> dict[str, Any]:
        return {"T_cont": nfe // 2, "gamma_max": 40.0, "switch": "keep", "schedule": "logit"}

    def build(self, nfe: int, params: dict[str, Any]) -> Path:
        own = SWITCH_MODES[params["switch"]].calls
        t_cont = min(params["T_cont"], nfe - 1 - own)
        return Path.hybrid(t_cont, nfe - own - t_cont, switch=params["switch"], gamma_max=params["gamma_max"],
                           schedule=params["schedule"])


#: The ReMDM policies that take an ``eta``, and the range searched: around the OWT defaults 0.008 .. 0.02.
ETA_POLICIES = tuple(name for name, cls in REMASK_POLICIES.items() if "eta" in attrs.fields_dict(cls))
ETA = (1e-3, 0.3)


@attrs.frozen
class MaskedDiffusion(Family):
    """``mdm(nfe, schedule=, remask=, eta=)``: the clock, the ReMDM policy (``'none'`` is MDLM) and its ``eta``
    where the policy takes one. Default: ``mdm(nfe)``."""

    name = "mdm"

    def space(self, nfe: int) -> tuple[Param, ...]:
        return (Choice("schedule", options=tuple(ALPHA_SCHEDULES)),
                Choice("remask", options=("none", *REMASK_POLICIES)),
                Real("eta", low=ETA[0], high=ETA[1], log=True, only_if=("remask", ETA_POLICIES)))

    def default(self, nfe: int) -> dict[str, Any]:
        return {"schedule": "linear", "remask": "none"}

    def build(self, nfe: int, params: dict[str, Any]) -> Path:
        remask = None if params["remask"] == "none" else params["remask"]
        return Path.mdm(nfe, schedule=params["schedule"], remask=remask, eta=params.get("eta"))


@attrs.frozen
class ConfidenceThreshold(Family):
    """``reveal(nfe, order=, threshold=)``: a linear clock over ``nfe`` steps as the floor, plus every position at
    least ``threshold`` sure (Fast-dLLM); a run stops calling once all is revealed, so ``nfe`` is an upper bound.
    Default: ``reveal(nfe, order='confidence', threshold=0.9)``."""

    name = "threshold"

    def space(self, nfe: int) -> tuple[Param, ...]:
        ranked = tuple(name for name, order in ORDERS.items() if order.uses_evidence)
        return Choice("order", options=ranked), Real("threshold", low=0.5, high=1.0)

    def default(self, nfe: int) -> dict[str, Any]:
        return {"order": "confidence", "threshold": 0.9}

    def build(self, nfe: int, params: dict[str, Any]) -> Path:
        return Path.reveal(nfe, order=params["order"], threshold=params["threshold"])


#: Path families by name.
FAMILIES: dict[str, Family] = {f.name: f for f in (Hybrid(), MaskedDiffusion(), ConfidenceThreshold())}


# -- metrics -------------------------------------------------------------------------------------------------------

Scorer = Callable[[torch.Tensor], float]


@attrs.frozen
class Metric:
    """A validation metric, lower is better: ``scorer(denoiser, data)`` checks what it needs and returns the
    function of ``[n, L]`` samples that a trial's value is."""

    name: ClassVar[str]

    def scorer(self, denoiser: Denoiser, data: Any) -> Scorer:
        raise NotImplementedError


@attrs.frozen
class TotalVariation(Metric):
    """``TV(Q_n, P) = 1/2 sum_s |Q_n(s) - P(s)|`` over all ``V^L`` sequences, ``Q_n`` the law of the samples.

    ``data``: ``None`` for the denoiser's own exact joint (an enumerable one, ``ExactToy``), or ``[N, L]`` validation
    sequences, whose empirical law stands in for ``P`` (then the truth can be kept for scoring). An empirical TV is
    biased up by about ``1/2 sum sqrt(2 P (1 - P) / (pi n))``, the same for every trial at a fixed ``n``."""

    name = "tv"

    def scorer(self, denoiser: Denoiser, data: Any) -> Scorer:
        from .testing.stats import empirical_law

        if not isinstance(denoiser, EnumerableJoint):
            raise SNRPathError(f"metric 'tv' needs an enumerable joint (an ExactToy) to count sequences over "
                               f"(got {type(denoiser).__name__})")
        V, L = denoiser.vocab_size, denoiser.seq_len
        if data is None:
            truth = denoiser.log_joint.exp().flatten()
        else:
            validate.token_ids("data", data, V, ndims=(2,))
            if data.shape[1] != L:
                raise SNRPathError(f"'data' must hold sequences of length {L} (got {list(data.shape)})")
            truth = empirical_law(data, V)
        return lambda tokens: 0.5 * float((empirical_law(tokens, V) - truth).abs().sum())


@attrs.frozen
class ExactGap(Metric):
    """``|gap| + penalty * invalid`` from :func:`snrpaths.quality.exact_quality` judged by an exact model (an
    ``ExactHMM``, an ``ExactToy``): ``gap`` the generative NLL of the valid samples minus the entropy rate, bits per
    token, ``invalid`` the fraction of samples the truth rules out.

    Why this form: the gap alone rewards a sampler that collapses onto likely sequences (it goes below 0), so its
    size is scored; invalid samples have no NLL, so they are charged ``penalty`` bits per token per unit of rate
    (default 10: one invalid sample in 100 costs 0.1 bits per token, more than the gaps between the good samplers of
    the HMM study). With no valid sample at all the value is ``penalty``. ``data``: ``None`` to judge by the
    denoiser itself, or the exact model to judge by."""

    name = "hmm"
    penalty: float = attrs.field(default=10.0, converter=validate.field(validate.number, low=0.0))

    def scorer(self, denoiser: Denoiser, data: Any) -> Scorer:
        from .quality import exact_quality

        judge = denoiser if data is None else data
        if not (callable(getattr(judge, "log_prob", None)) and callable(getattr(judge, "entropy_rate", None))):
            raise SNRPathError(f"metric 'hmm' needs an exact model with log_prob and entropy_rate (an ExactHMM or "
                               f"ExactToy) as the denoiser or as data= (got {type(judge).__name__})")
        rate = judge.entropy_rate()

        def score(tokens: torch.Tensor) -> float:
            q = exact_quality(judge, tokens, rate)
            gap = 0.0 if q.n_valid == 0 else abs(q.gap)
            return gap + self.penalty * q.invalid

        return score


@attrs.frozen
class BitsPerChar(Metric):
    """Generative bits per character of the decoded samples under the reference LM (SmolLM2-135M,
    :class:`snrpaths.quality.GenerativePerplexity`), as the text study ranks samplers. ``data``: the tokenizer that
    decodes ids (anything with ``decode``), default the checkpoint's own (``denoiser.tokenizer``)."""

    name = "bits"

    def scorer(self, denoiser: Denoiser, data: Any) -> Scorer:
        from .data import tokenizer_from_config
        from .quality import GenerativePerplexity
        from .quality import require as require_metric

        require_metric(["gen-bpc"])
        if data is None:
            if getattr(denoiser, "tokenizer", None) is None:
                raise SNRPathError(f"metric 'bits' decodes samples to text: pass data=a tokenizer, or a checkpoint "
                                   f"that records one ({type(denoiser).__name__} has none)")
            data = tokenizer_from_config(denoiser.tokenizer)
        if not callable(getattr(data, "decode", None)):
            raise SNRTypeError(f"metric 'bits' takes data=a tokenizer with decode(ids) (got {type(data).__name__})")
        lm = GenerativePerplexity()
        return lambda tokens: lm.bits_per_character([data.decode(row) for row in tokens.tolist()])


#: Validation metrics by name (lower is better); a callable ``metric(tokens) -> float`` is accepted as well.
METRICS: dict[str, Metric] = {m.name: m for m in (TotalVariation(), ExactGap(), BitsPerChar())}
#: Samples per trial when ``n`` is not given: enough for TV over ~100 sequences, few for a reference LM.
DEFAULT_SAMPLES = {"tv": 4000, "hmm": 1000, "bits": 16}


# -- the result ----------------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Tuned:
    """What :func:`tune` found.

    Attributes:
        best: the path with the lowest validation value over all trials, the default's included (``repr`` is its
            expression; ``parse_path(repr(best)) == best``); ``value`` its value, ``best_trial`` its trial number.
        default: the family's default path at the budget (trial 0) and ``default_value`` its value.
        trials: one dict per finished trial, in order: ``number``, ``params``, ``path`` (expression), ``value``,
            ``nfe_static`` (the compiled budget) and ``nfe`` (calls actually made).
    """

    family: str
    metric: str
    nfe: int
    best: Path
    value: float
    best_trial: int
    default: Path
    default_value: float
    trials: tuple[dict, ...]

    def table(self) -> str:
        """The trials as a Markdown table, the best marked."""
        rows = [(row["number"], f"`{row['path']}`" + (" **best**" if row["number"] == self.best_trial else ""),
                 f"{row['value']:.4f}", f"{row['nfe']} ({row['nfe_static']})") for row in self.trials]
        return markdown_table(("trial", "path", self.metric, "calls (static)"), rows, "rlrr")

    def __repr__(self) -> str:
        return (f"Tuned({self.family} at {self.nfe} calls, {self.metric} on validation: best {self.value:.4g} by "
                f"{self.best!r} (trial {self.best_trial}), default {self.default_value:.4g}; {len(self.trials)} "
                "trials)")

    def figure(self):
        """A matplotlib Figure: each trial's value, the best so far, and the default's value."""
        from .plot._common import new_figure

        fig = new_figure(6.0, 3.6)
        ax = fig.subplots()
        numbers = [row["number"] for row in self.trials]
        values = [row["value"] for row in self.trials]
        ax.scatter(numbers, values, s=12, color="C0", label="trial")
        best = [min(values[:k + 1]) for k in range(len(values))]
        ax.step(numbers, best, where="post", color="C1", label=f"best so far: {self.value:.4g}")
        ax.axhline(self.default_value, color="gray", ls="--", lw=0.8, label=f"default: {self.default_value:.4g}")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{self.metric} on validation (lower is better)")
        ax.set_title(f"{self.family} at {self.nfe} calls: {self.best!r}", fontsize=8)
        ax.legend(fontsize=7)
        return fig

    def plot(self, out: str | os.PathLike) -> pathlib.Path:
        """Write :meth:`figure` to ``out`` (PNG, SVG or PDF by its suffix), atomically; returns the path."""
        from .plot import save

        return save(self.figure(), out)


# -- the tuner -----------------------------------------------------------------------------------------------------


def tune(family: str, denoiser: Denoiser, nfe: int, metric: str | Callable[[torch.Tensor], float] = "tv", *,
         data: Any = None, trials: int = 30, seed: int = 0, n: int | None = None,
         storage: str | os.PathLike | None = None, study_name: str | None = None, progress: bool = False) -> Tuned:
    """Search ``family``'s parameters at a budget of ``nfe`` calls for the lowest ``metric`` on ``data``.

    Args:
        family: a name of :data:`FAMILIES` (``hybrid``, ``mdm``, ``threshold``).
        denoiser: the model every trial samples from.
        nfe: the call budget; every path tried compiles to at most ``nfe`` calls at ``denoiser.seq_len``.
        metric: a name of :data:`METRICS` (``tv``, ``hmm``, ``bits``) or a callable ``[n, L] tokens -> float``.
        data: the metric's validation data (see each metric; ``None``: the metric's own default).
        trials: trials in all, the default path (trial 0) included; a resumed study runs only the missing ones.
        seed: seeds the sampler of parameters and every trial's samples (the same seed for every trial).
        n: samples per trial (default :data:`DEFAULT_SAMPLES` of the metric, 64 for a callable).
        storage: a file to keep finished trials in (an SQLite database), or an Optuna storage URL
            (``sqlite:///tune.db``); ``None`` keeps them in memory.
        study_name: the study inside ``storage`` (default: named by family, budget, metric, samples, seed and the
            denoiser's class, ``V`` and ``L``, so that a rerun with other settings starts its own study instead of
            mixing values; name studies yourself to keep two models of one shape, or two data sets, apart).
        progress: a tqdm bar over the trials left.

    Every argument is checked, the default path compiled (and refused for a denoiser that cannot read the states it
    makes: :class:`snrpaths.errors.CapabilityError`) and the metric built before the first trial.
    """
    chosen = FAMILIES[validate.choice("family", family, FAMILIES)]
    require("denoiser", denoiser, Denoiser)
    nfe = validate.integer("nfe", nfe)
    chosen.check(nfe)
    trials = validate.integer("trials", trials)
    seed = validate.seed("seed", seed)
    metric_name, measure = _metric(metric)
    if measure is not None and data is not None:
        raise SNRPathError(f"data= goes to a named metric of {tuple(METRICS)}; a callable metric reads its own data")
    n = validate.integer("n", DEFAULT_SAMPLES.get(metric_name, 64) if n is None else n)
    optuna = _optuna()
    default = chosen.build(nfe, chosen.default(nfe))
    # a budget the sequence cannot take, or a family whose paths need finite-SNR evidence that the denoiser does not
    # read (the hybrid on a masked LM), fails here, before any sampling
    default.compile(denoiser.seq_len).require(denoiser)
    score = measure if measure is not None else METRICS[metric_name].scorer(denoiser, data)
    model = f"{type(denoiser).__name__}-V{denoiser.vocab_size}-L{denoiser.seq_len}"
    name = study_name or f"{family}-nfe{nfe}-{metric_name}-n{n}-seed{seed}-{model}"
    url = _storage(storage)
    with _storage_errors(storage):
        study = optuna.create_study(study_name=name, storage=url, direction="minimize", load_if_exists=True)
    # Seeded by what the study already holds: a resumed run does not propose the first run's parameters again
    # (folded into numpy's seed range).
    study.sampler = optuna.samplers.TPESampler(seed=(seed + len(study.trials)) % 2**32)
    done = _finished(study)
    if not any(t.user_attrs.get("default") for t in _finished(study, waiting=True)):
        study.enqueue_trial(chosen.default(nfe), user_attrs={"default": True})
    seen = {t.user_attrs["path"]: (t.user_attrs["nfe"], t.value) for t in done}
    objective = _Objective(chosen, denoiser, nfe, n, seed, score, seen)
    left = trials - len(done)
    if left > 0:
        with Meter(left, "trial", f"tune {family} @ {nfe} calls", progress) as bar:
            def advance(study, trial) -> None:
                bar.update(1)
                if objective.error is None:
                    bar.set_postfix(best=f"{study.best_value:.4g}")

            with _storage_errors(storage):
                study.optimize(objective, n_trials=left, callbacks=[advance])
    if objective.error is not None:
        raise objective.error
    return _result(study, chosen.name, metric_name, nfe, default)


def _metric(metric: Any) -> tuple[str, Scorer | None]:
    """The metric's name, and the user's own scorer when ``metric`` is a callable (``None``: look it up)."""
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if isinstance(metric, str) and metric in METRICS:
        return metric, None
    raise one_of("metric", metric, (*METRICS, "a callable metric(tokens) -> float"))


def _optuna():
    if importlib.util.find_spec("optuna") is None:
        raise SNRPathError(f"the path tuner needs Optuna: {_EXTRA}")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the progress bar
    return optuna


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def _storage(storage: str | os.PathLike | None) -> str | None:
    """An Optuna storage URL: as given when it is one, else an SQLite database at the file ``storage``, checked
    before any trial: a file that is there must be an SQLite database (an empty file is one), readable and writable,
    in a folder that takes new files (SQLite writes its journal beside the database)."""
    if storage is None or (isinstance(storage, str) and "://" in storage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise SNRTypeError(f"'storage' must be a file path or an Optuna storage URL (got {storage!r})")
    file = pathlib.Path(storage).expanduser().resolve()
    where = f"'storage' {str(storage)!r}"
    if not file.parent.is_dir():
        raise SNRPathError(f"{where}: the folder {str(file.parent)!r} does not exist")
    if file.is_dir():
        raise SNRPathError(f"{where} is a folder; give the name of an SQLite file (a new one is created)")
    if file.exists():
        if not os.access(file, os.R_OK | os.W_OK):
            raise SNRPathError(f"{where}: the file cannot be {'written' if os.access(file, os.R_OK) else 'read'}")
        with open(file, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise SNRPathError(f"{where} is not an SQLite database (it starts with {head[:8]!r}); give a new file "
                               "name, or the database of an earlier run")
    check_writable(file.parent, where)
    return f"sqlite:///{file}"


@contextlib.contextmanager
def _storage_errors(storage: Any):
    """The storage's own failures (a database that cannot be opened or written, a disk that fills) as one clear
    error naming it; the objective's errors pass unchanged."""
    try:
        yield
    except (SNRPathError, KeyboardInterrupt):
        raise
    except Exception as err:
        if not (isinstance(err, OSError) or type(err).__module__.split(".")[0] in ("sqlalchemy", "sqlite3")
                or "Storage" in type(err).__name__):
            raise
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise SNRPathError(f"cannot use the tuner storage {str(storage)!r}: {first}") from None


def _finished(study, waiting: bool = False) -> list:
    """The study's complete trials (and, with ``waiting``, the ones enqueued but not run yet)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.WAITING) if waiting else (TrialState.COMPLETE,)
    return study.get_trials(deepcopy=False, states=states)


@attrs.define
class _Objective:
    """One trial: the family's path for the suggested parameters, sampled with the run's seed, scored. A path
    already scored (TPE proposes the same categorical choices again) is not sampled twice: with common random
    numbers its value would be the same."""

    family: Family
    denoiser: Denoiser
    nfe: int
    n: int
    seed: int
    score: Scorer
    seen: dict[str, tuple[int, float]]  # path expression -> (calls made, value)
    error: SNRPathError | None = None  # what ended the run: raised by tune() once Optuna has stopped

    def __call__(self, trial) -> float:
        """The trial's value; a library error stops the study and is kept for :func:`tune` to raise as itself (a
        trial marked pruned, so Optuna neither logs it with a traceback nor counts it as done)."""
        from optuna import TrialPruned

        try:
            return self.value(trial)
        except SNRPathError as err:
            self.error = err
            trial.study.stop()
            raise TrialPruned(str(err)) from None

    def value(self, trial) -> float:
        params: dict[str, Any] = {}
        for param in self.family.space(self.nfe):
            if param.applies(params):
                params[param.name] = param.suggest(trial)
        path = self.family.build(self.nfe, params)
        text = repr(path)
        static = path.compile(self.denoiser.seq_len).nfe
        if static > self.nfe:  # a family's promise, kept here so that no trial can spend more than the budget
            raise SNRPathError(f"the {self.family.name!r} family built {text} costing {static} calls at a budget "
                               f"of {self.nfe}")
        if text in self.seen:
            calls, value = self.seen[text]
        else:
            with torch.no_grad():  # not inference_mode: a DSL denoiser's table reads its anchors' version counter
                result = sample(path, self.denoiser, batch=self.n, seed=self.seed)
            calls, value = int(result.nfe), _metric_value(self.score(result.tokens), text)
        trial.set_user_attr("params", params)
        trial.set_user_attr("path", text)
        trial.set_user_attr("nfe_static", static)
        trial.set_user_attr("nfe", calls)
        self.seen[text] = (calls, value)
        return value


def _metric_value(value: Any, text: str) -> float:
    """A metric's value as a float when it is a finite real number (a Python, numpy or one-element torch scalar);
    anything else (NaN, inf, a string, a bool) is refused with one message naming the path."""
    try:
        return validate.number("metric", value, -math.inf, math.inf, low_open=True, high_open=True,
                               phrase="a finite number (lower is better)")
    except SNRPathError as err:
        raise type(err)(f"{err} for {text}") from None


def _result(study, family: str, metric: str, nfe: int, default: Path) -> Tuned:
    from .parse import parse_path

    done = sorted(_finished(study), key=lambda t: t.number)
    rows = tuple({"number": t.number, "params": t.user_attrs["params"], "path": t.user_attrs["path"], "value": t.value,
                  "nfe_static": t.user_attrs["nfe_static"], "nfe": t.user_attrs["nfe"]} for t in done)
    first = next(t for t in done if t.user_attrs.get("default"))
    best = min(done, key=lambda t: (t.value, t.number))  # ties go to the earlier trial: the default first
    return Tuned(family=family, metric=metric, nfe=nfe, best=parse_path(best.user_attrs["path"]), value=best.value,
                 best_trial=best.number, default=default, default_value=first.value, trials=rows)
