"""Paths head to head on one judge, with common random numbers: :func:`compare`.

Every path runs for the judge's length with the same seeds: seed ``k`` gives every path the seed ``seed + k``, so
a difference between two paths is measured on paired runs. A *judge* is a denoiser to sample from and the metrics of
its samples (:class:`Judge`); :meth:`Judge.exact` judges by any model with an exact likelihood
(:func:`snrpaths.quality.exact_quality`), and :func:`make_judge` builds the named ones (``toy:NAME``, ``hmm``,
``text``, a checkpoint or masked-LM folder), whose backends the command line's provider module
(:data:`JUDGE_PROVIDER`) brings, imported by name on first use (so this module imports no backend).

Intervals. Each metric is computed once per (path, seed) over that seed's ``samples`` samples, giving ``K`` values
``m_1..m_K``; the 95% interval is Student's t over seeds, ``mean ± t_{0.975, K-1} sd / sqrt(K)``. The difference to
the first path uses the per-seed differences ``d_k = m_k(path) - m_k(first)`` the same way (a paired t-interval).
Sampling is a function of (program, denoiser, seed, batch) alone, so two equal paths give the same samples at every
seed, every ``d_k = 0`` and the difference interval is exactly ``[0, 0]``.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from . import validate
from .compile import Program, compile_path
from .denoiser import Denoiser, require
from .errors import SNRPathError, SNRTypeError
from .files import atomic_write
from .path import Path
from .progress import Meter, duration, per_unit
from .reprs import markdown_table
from .runner import check_size, sample
from .samplers import expand, resolve

#: ``t_{0.975, df}`` for ``df = 1..30`` (Student's t, two-sided 95%); beyond, :func:`t_quantile` expands.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423)
Z975 = 1.959963984540054
METHOD = "95% Student-t interval over seeds; differences to the first path paired by seed"


def t_quantile(df: int) -> float:
    """``t_{0.975, df}``: the table for ``df <= 30``, else the Cornish-Fisher expansion
    ``z + (z^3 + z) / (4 df) + (5 z^5 + 16 z^3 + 3 z) / (96 df^2)`` (error below 1e-4 there)."""
    df = validate.integer("df", df)
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@attrs.frozen(repr=False)
class Interval:
    """A mean over seeds and its 95% t-interval ``[low, high]``; NaN throughout when a seed's value is NaN."""

    mean: float
    low: float
    high: float

    @classmethod
    def over(cls, values: Sequence[float]) -> "Interval":
        """``mean ± t_{0.975, K-1} sd / sqrt(K)`` of ``K >= 2`` values."""
        x = torch.tensor(values, dtype=torch.float64)
        half = t_quantile(len(x) - 1) * float(x.std()) / math.sqrt(len(x))
        mean = float(x.mean())
        return cls(mean, mean - half, mean + half)

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __repr__(self) -> str:
        return f"{_num(self.mean)} [{_num(self.low)}, {_num(self.high)}]"


def _num(x: float) -> str:
    """Three significant digits, plain zeros: what a table of metrics needs."""
    return "nan" if math.isnan(x) else "0" if x == 0 else f"{x:.3g}"


@attrs.frozen
class Metric:
    """What a judge measures: ``name`` (the key of its values), ``unit``, ``better`` (``"lower"``, ``"higher"``,
    ``"closer to 0"`` or ``""`` for a diagnostic that ranks nothing) and ``what`` (its formula, in words)."""

    name: str
    unit: str
    better: str
    what: str


GAP = Metric("gap", "bits/token", "closer to 0",
             "E_Q[-log2 P(s)] / L - H(P) / L over the samples P allows (0 for an exact sampler)")
INVALID = Metric("invalid", "fraction", "lower", "samples with P(s) = 0")
INVALID_PAIRS = Metric("invalid_pairs", "fraction", "lower", "neighbouring pairs (s_i, s_i+1) with P = 0, per sample")


@attrs.frozen(eq=False)
class Judge:
    """A denoiser to sample and the metrics of ``[n, L]`` samples: ``score(tokens) -> {metric name: value}``.

    ``name`` says which judge in a table (``toy:markov V=3 L=4``)."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    denoiser: Any = attrs.field()
    metrics: tuple[Metric, ...] = attrs.field(converter=tuple)
    score: Callable[[torch.Tensor], Mapping[str, float]] = attrs.field(validator=attrs.validators.is_callable())

    @denoiser.validator
    def _check_denoiser(self, attribute, value) -> None:
        require("denoiser", value, Denoiser)

    @metrics.validator
    def _check_metrics(self, attribute, value) -> None:
        if not value or not all(isinstance(m, Metric) for m in value):
            raise SNRTypeError(f"'metrics' must be a non-empty sequence of Metric values (got {value!r})")

    @classmethod
    def exact(cls, model: Any, name: str, denoiser: Any = None) -> "Judge":
        """Judge by ``model``'s exact likelihood (``log_prob``, ``entropy_rate``: ``ExactToy``, ``ExactHMM``), with
        :func:`snrpaths.quality.exact_quality`: ``gap`` and ``invalid``, and ``invalid_pairs`` for a model that
        names impossible neighbours. Samples come from ``denoiser`` (default: the model's own exact Bayes denoiser).
        The entropy rate is computed once, here (exact for a toy; estimated from exact samples for an HMM, whose
        standard error is then not in the gap's interval: it is common to every path and cancels in the paired
        differences)."""
        from .quality import exact_quality

        if not (callable(getattr(model, "log_prob", None)) and callable(getattr(model, "entropy_rate", None))):
            raise SNRPathError(f"an exact judge needs a model with log_prob and entropy_rate (an ExactToy or "
                               f"ExactHMM; got {type(model).__name__})")
        rate = model.entropy_rate()
        pairs = callable(getattr(model, "impossible_pairs", None))
        metrics = (GAP, INVALID, INVALID_PAIRS) if pairs else (GAP, INVALID)

        def score(tokens: torch.Tensor) -> dict[str, float]:
            quality = exact_quality(model, tokens, rate)
            return {m.name: getattr(quality, m.name) for m in metrics}

        return cls(name, model if denoiser is None else denoiser, metrics, score)


# -- judges by name --------------------------------------------------------------------------------------------------


@attrs.frozen
class JudgeKind:
    """A named way to build a judge: ``build(arg, **options)``, ``arg`` the text after ``KIND:`` (``""`` if none);
    ``options`` the keyword options it takes; ``usage`` how a user writes it (``toy:NAME``)."""

    usage: str
    build: Callable[..., Judge]
    options: tuple[str, ...] = ()


#: The judge kinds by the name before ``:``, filled by :data:`JUDGE_PROVIDER` when it is imported.
JUDGES: dict[str, JudgeKind] = {}
#: The module that registers the judges built on backends (the command line may pick a backend; the core may not).
JUDGE_PROVIDER = "snrpaths.cli_judges"
#: The kind a bare folder or shipped model name is read as.
FOLDER_KIND = "checkpoint"


def register_judge(name: str, kind: JudgeKind) -> None:
    """Add (or replace) the judge kind ``name`` (the text before ``:`` in a judge spec)."""
    JUDGES[name] = kind


def judge_usage() -> str:
    """The judge specs a user may write, for error and help messages."""
    _fill()
    return ", ".join(kind.usage for kind in JUDGES.values()) + ", or a checkpoint folder"


def make_judge(spec: str, **options: Any) -> Judge:
    """The judge ``spec`` names: ``KIND`` or ``KIND:ARG`` of :data:`JUDGES` (``toy:markov``, ``hmm``, ``text``,
    ``mlm:FOLDER``, ``checkpoint:NAME``), or an existing folder (a checkpoint). ``options`` (e.g. ``length=6``) go to
    the kind's builder; one it does not take is refused, naming the options it does."""
    if not isinstance(spec, str):
        raise SNRTypeError(f"'judge' must be a Judge or a judge name (got {type(spec).__name__})")
    _fill()
    name, _, arg = spec.partition(":")
    if name not in JUDGES:
        if not os.path.isdir(spec):
            raise SNRPathError(f"unknown judge {spec!r}: give {judge_usage()}")
        name, arg = FOLDER_KIND, spec
    kind = JUDGES[name]
    extra = sorted(set(options) - set(kind.options))
    if extra:
        raise SNRPathError(f"judge {spec!r} takes no option {', '.join(map(repr, extra))} (its options: "
                           f"{', '.join(kind.options) or 'none'})")
    return kind.build(arg, **options)


def _fill() -> None:
    if not JUDGES:
        importlib.import_module(JUDGE_PROVIDER)


# -- the comparison --------------------------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Row:
    """One path's runs: ``family`` the spec it was expanded from (``mdm({4,8})`` for ``mdm(4)``), ``nfe_planned``
    the program's static calls, ``nfe_used`` and ``values[metric]`` one entry per seed."""

    path: Path
    family: str
    nfe_planned: int
    nfe_used: tuple[int, ...]
    values: dict[str, tuple[float, ...]]

    def interval(self, metric: str) -> Interval:
        return Interval.over(self.values[metric])

    def difference(self, metric: str, first: "Row") -> Interval:
        """``self - first``, paired by seed."""
        return Interval.over([a - b for a, b in zip(self.values[metric], first.values[metric])])

    @property
    def calls(self) -> float:
        """Calls used, the mean over seeds."""
        return sum(self.nfe_used) / len(self.nfe_used)

    def __repr__(self) -> str:
        shown = ", ".join(f"{m}={self.interval(m)!r}" for m in self.values)
        return f"Row({self.path!r}, calls {_num(self.calls)} / {self.nfe_planned}, {shown})"


@attrs.frozen
class Comparison:
    """What :func:`compare` measured: one :class:`Row` per path, the first the baseline of every difference.

    ``repr`` is a short summary; :meth:`table` the full table; :meth:`to_dict` / :meth:`from_dict` its JSON form;
    :meth:`save` writes that atomically; :meth:`plot` draws each metric against calls."""

    judge: str
    metrics: tuple[Metric, ...]
    samples: int
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    method: str = METHOD

    def interval(self, path: int, metric: str) -> Interval:
        return self.rows[path].interval(metric)

    def difference(self, path: int, metric: str) -> Interval:
        """Row ``path`` minus the first row, paired by seed, with its 95% interval."""
        return self.rows[path].difference(metric, self.rows[0])

    def __repr__(self) -> str:
        # the first metric that tells the rows apart (on the two-bit toy every gap is 0; the invalid rate is not)
        m = next((m.name for m in self.metrics if len({r.values[m.name] for r in self.rows}) > 1),
                 self.metrics[0].name)
        shown = "; ".join(f"{r.path!r}: {r.interval(m)!r}" for r in self.rows[:4])
        more = f"; ... {len(self.rows) - 4} more" if len(self.rows) > 4 else ""
        return f"Comparison({self.judge}, {m}: {shown}{more})"

    def table(self) -> str:
        """A Markdown table: path, calls used / planned, each metric with its interval and its difference to the
        first path (paired by seed), under a line saying how it was measured."""
        head = ["path", "calls used / planned"]
        for m in self.metrics:
            head += [f"{m.name} ({m.unit})", f"Δ {m.name}"]
        lines = [[repr(r.path), f"{_num(r.calls)} / {r.nfe_planned}"]
                 + [cell for m in self.metrics
                    for cell in (repr(r.interval(m.name)), "—" if i == 0 else repr(self.difference(i, m.name)))]
                 for i, r in enumerate(self.rows)]
        about = (f"judge {self.judge}; {self.samples} samples x {len(self.seeds)} seeds "
                 f"({self.seeds[0]}..{self.seeds[-1]}, the same for every path); {self.method}; "
                 f"Δ = path - {self.rows[0].path!r}")
        better = "; ".join(f"{m.name}: {m.what}" + (f", {m.better} is better" if m.better else "")
                           for m in self.metrics)
        return "\n".join([about, better, "", markdown_table(head, lines, "l" + "r" * (len(head) - 1))])

    def to_dict(self) -> dict:
        """The JSON form: settings, each metric's meaning, and per row the raw per-seed values with the intervals
        computed from them (NaN written as null)."""
        rows = []
        for i, r in enumerate(self.rows):
            rows.append({"path": repr(r.path), "family": r.family, "nfe_planned": r.nfe_planned,
                         "nfe_used": list(r.nfe_used), "values": {m: _json(v) for m, v in r.values.items()},
                         "intervals": {m.name: _json(attrs.asdict(r.interval(m.name))) for m in self.metrics},
                         "differences": None if i == 0 else
                         {m.name: _json(attrs.asdict(self.difference(i, m.name))) for m in self.metrics}})
        return {"judge": self.judge, "samples": self.samples, "seeds": list(self.seeds), "method": self.method,
                "metrics": [attrs.asdict(m) for m in self.metrics], "rows": rows}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Comparison":
        """The inverse of :meth:`to_dict` (the intervals are recomputed from the per-seed values)."""
        from .parse import parse_path

        rows = tuple(Row(parse_path(r["path"]), r["family"], r["nfe_planned"], tuple(r["nfe_used"]),
                         {m: tuple(math.nan if v is None else v for v in vs) for m, vs in r["values"].items()})
                     for r in data["rows"])
        return cls(data["judge"], tuple(Metric(**m) for m in data["metrics"]), data["samples"], tuple(data["seeds"]),
                   rows, data["method"])

    def save(self, path: str | os.PathLike) -> str:
        """Write :meth:`to_dict` as JSON at ``path``, whole or not at all."""
        import json

        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        return str(atomic_write(path, lambda tmp: tmp.write_text(text + "\n")))

    def plot(self, path: str | os.PathLike | None = None):
        """One panel per metric: each path's mean and 95% interval. When a family was given at several budgets
        (``mdm({4,8,16})``) against calls used, one curve per family (a single path is a point); otherwise one point
        per path, side by side. Returns the figure; with ``path``, also writes it there (atomically)."""
        from . import plot
        from .plot._common import new_figure

        curves = any(sum(q.family == r.family for q in self.rows) > 1 for r in self.rows)
        fig = new_figure(max(4.6, 1.2 * len(self.rows) if not curves else 0) * len(self.metrics), 4.0)
        fig.suptitle(f"judge {self.judge}: {len(self.seeds)} seeds x {self.samples} samples, 95% t-intervals",
                     fontsize=9)
        for ax, m in zip(fig.subplots(1, len(self.metrics), squeeze=False)[0], self.metrics):
            label = f"{m.name} ({m.unit})"
            if curves:
                families: dict[str, list] = {}
                for r in self.rows:
                    ci = r.interval(m.name)
                    families.setdefault(r.family, []).append((r.calls, ci.mean, ci.high - ci.mean))
                plot.nfe_curves(families, metric=label, logy=False, title=m.name, ax=ax)
            else:
                for i, r in enumerate(self.rows):
                    ci = r.interval(m.name)
                    ax.errorbar([i], [ci.mean], yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="o",
                                capsize=3, color=f"C{i}")
                ax.set_xticks(range(len(self.rows)), [f"{r.path!r}\n({_num(r.calls)} calls)" for r in self.rows],
                              fontsize=7, rotation=15, ha="right")
                ax.set_title(m.name, fontsize=10)
                ax.grid(True, axis="y", color="#e6e6e6", linewidth=0.6)
            ax.set_ylabel(label + (f", {m.better} is better" if m.better else ""), fontsize=9)
        if path is not None:
            plot.save(fig, path)
        return fig


def _json(values: Sequence[float] | Mapping[str, float]) -> list | dict:
    """NaN as null: strict JSON has no NaN."""
    if isinstance(values, Mapping):
        return {k: None if math.isnan(v) else v for k, v in values.items()}
    return [None if math.isnan(v) else v for v in values]


def compare(paths: Sequence[Path | str], judge: Judge | str, *, samples: int = 256, seeds: int = 5, seed: int = 0,
            judge_options: Mapping[str, Any] | None = None, progress: bool = False) -> Comparison:
    """Run every path on ``judge`` with ``samples`` samples at each of ``seeds`` seeds ``seed, seed + 1, ...``, the
    same seeds for every path, and measure each (path, seed) by the judge's metrics.

    Args:
        paths: :class:`Path` values or specs: path expressions, built-in sampler names (``MDLM``, ``ReMDM-conf``:
            at ``L`` calls, or ``NAME@T`` at ``T``), brace lists expanding to several (``"mdm({4,8,16})"``: a
            family, drawn as one curve). At least one; the first is the baseline of every difference.
        judge: a :class:`Judge`, or a name for :func:`make_judge` (``"toy:markov"``, ``"hmm"``, ``"text"``, a
            folder) with ``judge_options``.
        seeds: at least 2 (the intervals are t-intervals over seeds).
        progress: a bar counting samples, with a line estimating the time after the first run (its calls and its
            scoring, timed; :class:`snrpaths.progress.Meter`).

    Every path is compiled for the judge's length and checked against its denoiser (a finite-SNR path on an
    endpoint-only denoiser, a path that does not fit the length) before any denoiser call; the error names the
    path and why.
    """
    samples = validate.integer("samples", samples)
    seeds = validate.integer("seeds", seeds, 2, phrase="an integer >= 2 (the intervals are t-intervals over seeds)")
    seed = validate.seed("seed", seed)
    progress = validate.boolean("progress", progress)
    if seed + seeds - 1 > validate.MAX_SEED:
        raise SNRPathError(f"'seed' {seed} with {seeds} seeds runs seeds up to {seed + seeds - 1}, past the largest "
                           f"seed 2**64 - 1: lower 'seed'")
    if isinstance(judge, str):
        judge = make_judge(judge, **(judge_options or {}))
    elif not isinstance(judge, Judge):
        raise SNRTypeError(f"'judge' must be a Judge or a judge name (got {type(judge).__name__})")
    elif judge_options:
        raise SNRPathError("judge_options build a judge by name; this judge is built already")
    entries = _entries(paths, judge.denoiser)
    denoiser = judge.denoiser
    for _, _, program in entries:  # every path's size limits too, before the first path runs
        check_size(program, denoiser, samples)
    todo = [(k, i) for k in range(seeds) for i in range(len(entries))]
    bar = Meter(len(todo) * samples, "sample", "compare") if progress else None
    runs: dict[tuple[int, int], tuple[int, Mapping[str, float]]] = {}
    with torch.no_grad():
        for k, i in todo:
            start = time.perf_counter()
            result = sample(entries[i][2], denoiser, batch=samples, seed=seed + k)
            sampled = time.perf_counter()
            runs[k, i] = result.nfe, judge.score(result.tokens)
            if bar is not None:
                if len(runs) == 1:  # after the first run: its sampling and its scoring, timed
                    bar.announce(_estimate(entries, samples, seeds, result.nfe, sampled - start,
                                           time.perf_counter() - sampled))
                bar.update(samples)
    if bar is not None:
        bar.close()
    rows = tuple(Row(path, family, program.nfe, tuple(runs[k, i][0] for k in range(seeds)),
                     {m.name: tuple(float(runs[k, i][1][m.name]) for k in range(seeds)) for m in judge.metrics})
                 for i, (family, path, program) in enumerate(entries))
    return Comparison(judge.name, judge.metrics, samples, tuple(range(seed, seed + seeds)), rows)


def _entries(paths: Sequence[Path | str], denoiser: Any) -> list[tuple[str, Path, Program]]:
    """``(family, path, program)`` per path, braces expanded and names resolved, each compiled for the denoiser's
    length and checked against it; errors name the path."""
    if isinstance(paths, (str, Path)) or not isinstance(paths, Sequence) or not paths:
        raise SNRTypeError(f"'paths' must be a non-empty list of paths or path expressions (got {paths!r})")
    L = denoiser.seq_len
    out = []
    for given in paths:
        if isinstance(given, Path):
            specs = [(repr(given), given)]
        elif isinstance(given, str):
            specs = [(given, resolve(text, L)) for text in expand(given)]
        else:
            raise SNRTypeError(f"each path must be a Path or a path expression (got {type(given).__name__})")
        for family, path in specs:
            try:
                program = compile_path(path, L)
                program.require(denoiser)
            except SNRPathError as err:
                raise type(err)(f"path {path!r} cannot run on this judge (L = {L}): {err}") from None
            out.append((family, path, program))
    return out


def _estimate(entries, samples: int, seeds: int, nfe: int, sampling: float, scoring: float) -> str:
    """The comparison's length from its first run: the planned calls at that run's time per call, plus every run's
    scoring at its scoring time (the first run also pays the warm-up, so this errs long)."""
    calls, runs = seeds * sum(program.nfe for _, _, program in entries), seeds * len(entries)
    each = sampling / max(1, nfe)
    return (f"compare: about {duration(calls * each + runs * scoring)} ({calls} denoiser calls at ~{per_unit(each)} "
            f"each, {runs} scorings at ~{per_unit(scoring)} each): {len(entries)} paths x {seeds} seeds x {samples} "
            f"samples")
