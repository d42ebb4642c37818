"""Text study: sample quality of the shipped pair on held-out Shakespeare, the paper's OWT tables at CPU scale.

The two shipped checkpoints (MDLM objective, and its DSL fine-tune) x samplers (MDLM, ReMDM cap / rescale /
confidence / loop, ROAR) x step budgets, the hybrid's ``(T_cont, T_mdm)`` grid, the hybrid's switch modes, and the
paper's hybrid-vs-ReMDM comparison (the hybrid at ``T_cont + T_mdm`` calls against ReMDM at 4x the calls). Metrics
(:mod:`snrpaths.quality`): MAUVE on MiniLM sentence features, bits per character and generative perplexity (per
token) under SmolLM2-135M, and unigram entropy, each beside held-out windows of the validation plays. Every cell is sampled with ``--seeds`` seeds of
``--n`` samples; tables give mean ± standard error over seeds. The budgets scale the paper's (T = L/8 .. L at
L = 1024) to our L = 128; the hybrid grid keeps the paper's step counts (its continuous steps do not scale with L).

Held-out text: ``--reference`` windows of the two scoring plays (``benchmarks/_plays.py``) are the MAUVE reference; a
disjoint set of ``--n`` windows per seed is scored like a sampler (row "held-out text": the ceiling of each metric at
this sample size). Nothing is tuned on either: the hybrid's defaults were chosen by ``snrpaths bench hybrid-sweep`` on
the third validation play, with other seeds. Finished (cell, seed) results are appended to a ``.partial.jsonl`` file beside the
outputs, so an interrupted run continues where it stopped when rerun with the same options.

    snrpaths bench text-quality --quick      # a few minutes
    snrpaths bench text-quality              # the README's numbers (33 min on 2 idle cores)
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import torch
from snrpaths.backends.text import load_with_tokenizer
from snrpaths.benchmarks._plays import held_out
from snrpaths.benchmarks._results import RESULTS, Record, write
from snrpaths.benchmarks._timing import describe_device
from snrpaths.progress import track

from snrpaths import parse_path, sample
from snrpaths.data import fixed_windows
from snrpaths.errors import SNRPathError
from snrpaths.quality import (
    METRICS,
    GenerativePerplexity,
    Mauve,
    require,
    unigram_entropy,
)
from snrpaths.samplers import sampler

CHECKPOINTS = {"tiny-shakespeare-mdlm": "MDLM", "tiny-shakespeare-dsl": "DSL-FT"}
SAMPLERS = {
    "mdlm": "mdm({T})",
    "remdm-cap": "mdm({T}, remask='cap')",
    "remdm-rescale": "mdm({T}, remask='rescale')",
    "remdm-confidence": "mdm({T}, remask='confidence')",
    "remdm-loop": "mdm({T}, remask='loop')",
    "roar": "roar()",  # always L calls: shown in the column T = L
}
SWITCHES = ("keep", "commit", "mask")
#: The hand-over SNR at which switch('keep') did best in ``snrpaths bench hybrid-sweep`` (on the tuning play; the
#: lowest swept: every step down from 40 helped, none reached mdm at the same calls). The hybrid's default stays 40,
#: where exact denoisers need it (see the README's Results).
SWEPT_GAMMA = 0.5
HUMAN = "held-out text"
FULL = {"samplers": tuple(SAMPLERS), "n": 32, "seeds": 3, "budgets": (16, 32, 64, 128), "target": (16, 32), "reference": 512,
        "grid": ((16, 16), (16, 32), (16, 48), (32, 16), (32, 32), (32, 48))}
QUICK = {"samplers": ("mdlm", "remdm-confidence"), "n": 6, "seeds": 2, "budgets": (8,), "target": (4, 4), "reference": 32,
         "grid": ((4, 4),)}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = _plan(args)  # every name, budget and path checked, every model loaded, before any sampling
    stem = "text_quality_quick" if args.quick else "text_quality"
    records = _run(plan, args, args.out / f".{stem}.partial.jsonl")
    summary = _summarise(plan, records, [args.seed + s for s in range(args.seeds)])
    text = _tables(plan, summary, args)
    print(text)
    write(args.out, stem, {"settings": _settings(args), "cells": summary}, text, lambda p: _plot(plan, summary, p))
    (args.out / f".{stem}.partial.jsonl").unlink(missing_ok=True)


def _parse(argv):
    p = argparse.ArgumentParser(prog="snrpaths bench text-quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one budget, one hybrid, small samples (a few minutes)")
    p.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS), help="shipped names or folders")
    p.add_argument("--samplers", nargs="+", metavar="NAME|EXPR",
                   help=f"any of {', '.join(SAMPLERS)} (default all; quick: mdlm, remdm-confidence), or path "
                        "expressions, {T} standing for the budget, e.g. \"ramp({T}) >> switch('commit')\"")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), help=f"any of {', '.join(METRICS)}")
    p.add_argument("--budgets", nargs="+", type=int, help=f"step budgets T (default {FULL['budgets']})")
    p.add_argument("--n", type=int, help=f"samples per cell and seed (default {FULL['n']}, quick {QUICK['n']})")
    p.add_argument("--seeds", type=int, help=f"seeds per cell (default {FULL['seeds']}, quick {QUICK['seeds']})")
    p.add_argument("--reference", type=int, help="held-out windows for MAUVE's reference (default 512)")
    p.add_argument("--grid", nargs="+", type=_pair, help="hybrid (T_cont, T_mdm) cells as TC+TM (default: the "
                   "paper's 16+16 16+32 16+48 32+16 32+32 32+48)")
    p.add_argument("--target", type=_pair, help="the hybrid set against ReMDM at 4x its calls, and whose switch modes "
                   "are compared, as TC+TM, or none (default 16+32)")
    p.add_argument("--seed", type=int, default=0, help="first seed; seed k of every cell is seed + k")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS,
                   help="results folder for the JSON, table and plot (default: benchmarks/results)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name in ("samplers", "n", "seeds", "budgets", "reference", "grid", "target"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    if "none" in args.grid:
        raise SNRPathError("--grid takes TC+TM pairs; 'none' is only for --target")
    for name, least in (("n", 2), ("seeds", 1), ("reference", 2)):
        if getattr(args, name) < least:
            raise SNRPathError(f"--{name} must be at least {least} (got {getattr(args, name)})")
    if any(t < 1 for t in args.budgets):
        raise SNRPathError(f"--budgets must be positive step counts (got {args.budgets})")
    return args


def _pair(text: str):
    if text == "none":
        return text
    try:
        tc, tm = (int(part) for part in text.split("+"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TC+TM, e.g. 16+32, or none (got {text!r})") from None
    return tc, tm


class _Plan:
    """What the run will do: models, reference text, and the cells ``(checkpoint, table, row, column) -> path``."""

    def __init__(self, models, reference, human, cells):
        self.models, self.reference, self.human, self.cells = models, reference, human, cells


def _plan(args) -> _Plan:
    metrics = require(args.metrics)
    makers = {name: sampler(name, {k: (lambda T, text=text: text.format(T=T)) for k, text in SAMPLERS.items()})
              for name in args.samplers}
    args.metrics = metrics
    models = {name: load_with_tokenizer(name) for name in args.checkpoints}
    lengths = {den.seq_len for den, _ in models.values()}
    if len(lengths) != 1:
        raise SNRPathError(f"the checkpoints must share one sequence length to share budgets (got {sorted(lengths)})")
    (L,) = lengths
    if "roar" in args.samplers and L not in args.budgets:
        raise SNRPathError(f"roar() spends L = {L} calls: add {L} to --budgets or leave roar out of --samplers")
    cells = {}
    for ckpt in models:
        for name in args.samplers:
            for T in ([L] if name == "roar" else args.budgets):
                cells[ckpt, "samplers", name, T] = makers[name](T)
        for tc, tm in args.grid:
            cells[ckpt, "hybrid", f"{tc} + {tm}", tc + tm] = f"hybrid({tc}, {tm})"
        if args.target == "none":
            continue
        tc, tm = args.target
        for mode in SWITCHES:
            cells[ckpt, "switch", f"switch('{mode}')", tc + tm] = f"hybrid({tc}, {tm}, switch='{mode}')"
        cells[ckpt, "switch", "switch('keep'), remask='confidence'", tc + tm] = \
            f"hybrid({tc}, {tm}, remask='confidence')"
        cells[ckpt, "switch", f"switch('keep'), gamma_max={SWEPT_GAMMA}", tc + tm] = \
            f"hybrid({tc}, {tm}, gamma_max={SWEPT_GAMMA})"
        for name in ("remdm-confidence", "remdm-loop"):
            cells[ckpt, "target", name, 4 * (tc + tm)] = SAMPLERS[name].format(T=4 * (tc + tm))
    for key, text in cells.items():
        try:
            path = parse_path(text)
            path.compile(seq_len=L)
        except SNRPathError as err:
            raise SNRPathError(f"{text} cannot run at L = {L} (cell {key[2]}, T = {key[3]}): {err}") from None
        cells[key] = repr(path)  # one spelling per path, so equal cells are sampled once
    return _Plan(models, *held_out_text(next(iter(models.values()))[1], "score", args, L), cells)


def held_out_text(tokenizer, role: str, args, L: int) -> tuple[list[str], tuple]:
    """From the validation plays of ``role`` (:mod:`snrpaths.benchmarks._plays`): ``args.reference`` windows of
    ``L`` characters as MAUVE's reference texts, and a disjoint ``(seeds, n, L)`` set scored like a sampler."""
    names, text = held_out(role)
    windows = fixed_windows(tokenizer.encode(text), args.reference + args.seeds * args.n, L)
    if len(windows) < args.reference + args.seeds * args.n:
        raise SNRPathError(f"the held-out plays {names} have {len(windows)} windows of {L}; --reference + --seeds "
                           f"x --n = {args.reference + args.seeds * args.n} is too many")
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(args.seed))
    reference = [tokenizer.decode(w) for w in windows[order[:args.reference]]]
    return reference, (tokenizer, windows[order[args.reference:]].view(args.seeds, args.n, L))


def _run(plan: _Plan, args, partial: pathlib.Path) -> dict:
    """Every (checkpoint, path, seed) once: its samples' metrics, calls and time; resumed from ``partial``."""
    record = Record(partial, accept=lambda row: row.get("n") == args.n and set(args.metrics) <= set(row))
    seeds = [args.seed + s for s in range(args.seeds)]
    # cheapest cells first, both checkpoints side by side, the hybrid's comparison before the full-length budgets:
    # an interrupted run has whole columns and the headline comparison to show
    cells = sorted(dict.fromkeys((min(k[3], 100) if k[1] == "target" else k[3], v, k[0])
                                 for k, v in plan.cells.items()))
    jobs = [(HUMAN, HUMAN, s) for s in seeds] + [(ckpt, text, s) for _, text, ckpt in cells for s in seeds]
    todo = [j for j in jobs if _key(*j) not in record.done]
    scorers = _scorers(args.metrics, plan.reference) if todo else []
    for ckpt, text, s in track(todo, "cell", "text study"):
        record.get(_key(ckpt, text, s), lambda: {"n": args.n, **_job(plan, args, scorers, ckpt, text, s)})
    return record.done


def _key(ckpt: str, text: str, s: int) -> str:
    return f"{ckpt}|{text}|{s}"


def _scorers(metrics, reference) -> list:
    """Functions ``(ids, texts, seed) -> {metric: value}``, each loading its model once; together they give at least
    ``metrics``."""
    scorers = [lambda ids, texts, seed: {"entropy": unigram_entropy(ids)}]
    if "mauve" in metrics:
        mauve = Mauve(reference)
        scorers.append(lambda ids, texts, seed: {"mauve": mauve(texts, seed=seed)})
    if {"gen-bpc", "gen-ppl"} & set(metrics):
        lm = GenerativePerplexity()
        scorers.append(lambda ids, texts, seed: lm.scores(texts))
    return scorers


def _job(plan: _Plan, args, scorers, ckpt, text, seed) -> dict:
    start = time.perf_counter()
    if ckpt == HUMAN:
        tokenizer, human = plan.human
        ids, nfe = human[seed - args.seed], 0
    else:
        den, tokenizer = plan.models[ckpt]
        with torch.no_grad():  # not inference_mode: DSLDenoiser.table reads the version counter of its anchors
            result = sample(parse_path(text), den, batch=args.n, seed=seed)
        ids, nfe = result.tokens, result.nfe
    seconds = time.perf_counter() - start
    texts = [tokenizer.decode(row) for row in ids]
    scores = {}
    for score in scorers:
        scores |= score(ids.tolist(), texts, seed)
    scores = {m: scores[m] for m in args.metrics}
    return {**scores, "nfe": nfe, "seconds": seconds, "example": texts[0]}


def _summarise(plan: _Plan, records: dict, seeds: list[int]) -> list[dict]:
    """One row per cell: mean and standard error over seeds of every metric, with calls and seconds."""
    out = []
    cells = [(k, v) for k, v in plan.cells.items()] + [((HUMAN, "reference", HUMAN, 0), HUMAN)]
    for (ckpt, table, row, column), text in cells:
        rows = [records[_key(ckpt, text, s)] for s in seeds]
        cell = {"checkpoint": ckpt, "table": table, "row": row, "budget": column, "path": text,
                "nfe": _mean([r["nfe"] for r in rows]), "seconds": sum(r["seconds"] for r in rows),
                "example": rows[0]["example"]}
        for metric in METRICS:
            if metric in rows[0]:
                values = [r[metric] for r in rows]
                cell[metric] = {"mean": _mean(values), "se": _se(values), "seeds": values}
        out.append(cell)
    return out


def _mean(values):
    return sum(values) / len(values)


def _se(values):
    if len(values) < 2:
        return math.nan
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


FORMAT = {"mauve": ("MAUVE ↑", "{:.3f}"), "gen-bpc": ("gen. bits/char ↓", "{:.2f}"), "gen-ppl": ("gen. PPL ↓", "{:.0f}"),
          "entropy": ("unigram entropy", "{:.3f}")}
#: said under a metric's table
NOTES = {"gen-ppl": "Per SmolLM2 token (the papers' convention). Text the reference LM splits into more tokens is "
                    "divided by more: character soup scores lower than text that forms words; gen. bits/char, per "
                    "character, does not reward that (see `snrpaths.quality`)."}


def _fmt(cell: dict | None, metric: str) -> str:
    if cell is None or metric not in cell:
        return "—"
    pattern = FORMAT[metric][1]
    value = cell[metric]
    se = "" if math.isnan(value["se"]) else " ± " + pattern.format(value["se"])
    return pattern.format(value["mean"]) + se


def _matrix(title: str, corner: str, columns: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = [f"\n{title}\n", f"| {corner} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def _tables(plan: _Plan, summary: list[dict], args) -> str:
    by = {(c["checkpoint"], c["table"], c["row"], c["budget"]): c for c in summary}
    human = by[HUMAN, "reference", HUMAN, 0]
    metrics = list(args.metrics)
    head = (f"Text study: {args.n} samples x {args.seeds} seeds per cell, L = {next(iter(plan.models.values()))[0].seq_len}"
            f" characters, MAUVE reference {args.reference} held-out windows; mean ± s.e. over seeds; {_device()}.")
    parts = [head]
    budgets = sorted({k[3] for k in by if k[1] == "samplers"})
    conts, mdms = sorted({tc for tc, _ in args.grid}), sorted({tm for _, tm in args.grid})
    for metric in metrics:
        rows = [(HUMAN, [_fmt(human, metric)] * len(budgets))] + [
            (f"{CHECKPOINTS.get(ckpt, ckpt)} + {name}", [_fmt(by.get((ckpt, "samplers", name, t)), metric)
                                                        for t in budgets])
            for ckpt in plan.models for name in args.samplers]
        parts.append(_matrix(f"**{FORMAT[metric][0]}** by step budget T (calls actually made are in the JSON)",
                             "checkpoint + sampler", [f"T={t}" for t in budgets], rows)
                     + ("\n\n" + NOTES[metric] if metric in NOTES else ""))
    for metric in metrics:
        rows = [(f"{CHECKPOINTS.get(ckpt, ckpt)}, T_cont={tc}",
                 [_fmt(by.get((ckpt, "hybrid", f"{tc} + {tm}", tc + tm)), metric) for tm in mdms])
                for ckpt in plan.models for tc in conts]
        parts.append(_matrix(f"**Hybrid `hybrid(T_cont, T_mdm)`, {FORMAT[metric][0]}** (NFE = T_cont + T_mdm)",
                             "checkpoint, T_cont", [f"T_mdm={tm}" for tm in mdms], rows))
    tables = [] if args.target == "none" else [
        ("switch", f"**Hybrid switch modes at (T_cont, T_mdm) = {args.target}**"),
        ("target", f"**ReMDM at 4x the hybrid's {sum(args.target)} calls**")]
    for table, title in tables:
        settings = sorted({(k[2], k[3]) for k in by if k[1] == table}, key=lambda r: (r[1], r[0]))
        cols = [(ckpt, m) for ckpt in plan.models for m in metrics]
        rows = [(row, ["/".join(f"{by[c, table, row, budget]['nfe']:.0f}" for c in plan.models)]
                 + [_fmt(by[c, table, row, budget], m) for c, m in cols]) for row, budget in settings]
        parts.append(_matrix(title, "setting", ["calls made"] + [f"{CHECKPOINTS.get(c, c)} {FORMAT[m][0]}"
                                                                 for c, m in cols], rows))
    parts.append(_verdicts(plan, by, args))
    return "\n".join(parts)


#: metrics that rank samples (higher MAUVE, lower gen. PPL is better); unigram entropy only diagnoses repetition
RANKED = {"mauve": 1, "gen-bpc": -1, "gen-ppl": -1}


def _verdicts(plan: _Plan, by: dict, args) -> str:
    """The issue's two questions, and the best switch mode, on every ranking metric measured, with 2-s.e. margins."""
    lines = ["\n**Verdicts** ('clearly' = by more than 2 combined standard errors)"]
    ranked = [m for m in args.metrics if m in RANKED]
    if not ranked:
        lines.append("\n- none: unigram entropy does not rank samplers (measure mauve, gen-bpc or gen-ppl)")
    for metric in ranked:
        lines.append(f"\nOn {FORMAT[metric][0]}:\n")
        lines += _verdicts_on(plan, by, args, metric, RANKED[metric])
    return "\n".join(lines)


def _verdicts_on(plan: _Plan, by: dict, args, metric: str, sign: int) -> list[str]:
    lines = []
    base, fine = "tiny-shakespeare-mdlm", "tiny-shakespeare-dsl"
    if base in plan.models and fine in plan.models:
        wins = clear = lose = total = 0
        for (ckpt, table, row, budget), cell in by.items():
            if ckpt == fine and table == "samplers":
                diff, se = _diff(cell, by[base, table, row, budget], metric, sign)
                total, wins = total + 1, wins + (diff > 0)
                clear, lose = clear + (diff > 2 * se), lose + (diff < -2 * se)
        lines.append(f"- DSL-FT beats MDLM with the same sampler and budget in {wins} of {total} cells "
                     f"({clear} clearly; MDLM clearly better in {lose}).")
    if args.target == "none":
        return lines
    tc, tm = args.target
    for ckpt in plan.models:
        name_ = CHECKPOINTS.get(ckpt, ckpt)
        modes = sorted(((row, c) for (k, table, row, _), c in by.items() if k == ckpt and table == "switch"),
                       key=lambda rc: -sign * rc[1][metric]["mean"])
        (best, first), (second, runner_up) = modes[0], modes[1]
        diff, se = _diff(first, runner_up, metric, sign)
        lines.append(f"- {name_}: best switch mode at ({tc}, {tm}) is {best} ({_fmt(first, metric)}, "
                     f"{first['nfe']:.0f} calls), {'clearly' if diff > 2 * se else 'not clearly'} ahead of {second} "
                     f"({_fmt(runner_up, metric)}).")
        # the paper's hybrid keeps the continuous phase's tokens; the best mode is set against ReMDM as well
        for mode in dict.fromkeys(("switch('keep')", best)):
            hybrid = by[ckpt, "switch", mode, tc + tm]
            for name in ("remdm-confidence", "remdm-loop"):
                remdm = by[ckpt, "target", name, 4 * (tc + tm)]
                diff, se = _diff(hybrid, remdm, metric, sign)
                verdict = "matches" if abs(diff) <= 2 * se else ("beats" if diff > 0 else "falls short of")
                lines.append(f"- {name_}: hybrid({tc}, {tm}), {mode}, at {hybrid['nfe']:.0f} calls {verdict} {name} "
                             f"at {4 * (tc + tm)} calls ({_fmt(hybrid, metric)} vs {_fmt(remdm, metric)}).")
    return lines


def _diff(a: dict, b: dict, metric: str, sign: int) -> tuple[float, float]:
    se = math.hypot(a[metric]["se"], b[metric]["se"])
    return sign * (a[metric]["mean"] - b[metric]["mean"]), 0.0 if math.isnan(se) else se


def _device() -> str:
    return f"{describe_device(torch.device('cpu'))}, torch {torch.__version__}"


def _settings(args) -> dict:
    return {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()} | {"device": _device()}


def _plot(plan: _Plan, summary: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if m in summary[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    colors = dict(zip(SAMPLERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = dict(zip(plan.models, ("--", "-", ":", "-.")))
    for ax, metric in zip(axes[0], metrics):
        for ckpt in plan.models:
            for name in SAMPLERS:
                cells = sorted((c for c in summary if c["checkpoint"] == ckpt and c["table"] == "samplers"
                                and c["row"] == name), key=lambda c: c["nfe"])
                if cells:
                    ax.errorbar([c["nfe"] for c in cells], [c[metric]["mean"] for c in cells],
                                yerr=[0 if math.isnan(c[metric]["se"]) else c[metric]["se"] for c in cells],
                                color=colors[name], ls=styles[ckpt], marker="o", ms=3,
                                label=f"{CHECKPOINTS.get(ckpt, ckpt)} {name}")
            hybrids = [c for c in summary if c["checkpoint"] == ckpt and c["table"] == "hybrid"]
            ax.scatter([c["nfe"] for c in hybrids], [c[metric]["mean"] for c in hybrids], marker="*", s=70,
                       color="black" if styles[ckpt] == "-" else "gray", label=f"{CHECKPOINTS.get(ckpt, ckpt)} hybrid",
                       zorder=3)
        human = next(c for c in summary if c["checkpoint"] == HUMAN)
        ax.axhline(human[metric]["mean"], color="gray", lw=0.8, label=HUMAN)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("denoiser calls (NFE)")
        ax.set_title(FORMAT[metric][0])
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
