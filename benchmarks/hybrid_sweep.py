"""Hybrid sweep: where the hybrid should hand over, chosen on the tuning play at a budget of 48 calls.

``hybrid(T_cont, T_mdm, gamma_max=g, switch=m, schedule=r)`` on the DSL fine-tune, in two stages. Stage 1: the
hand-over SNR ``gamma_max`` (0.5 .. 40) x the switch mode (keep, commit, mask) at the middle split ``(T_cont, T_mdm) = (24, 24)``
with the logit ramp. Stage 2, at stage 1's best ``(gamma_max, switch)`` among the modes that keep what the ramp
built (keep, commit: under ``switch('mask')`` the ramp's states are discarded, so its schedule cannot matter): the ramp
schedule (logit, loglinear, linear) x the
split of the 48 calls between ramp and masked diffusion. Baselines at the same 48 calls: ``mdm(48)`` on both
checkpoints and ``mdm(48, remask='confidence')`` on the fine-tune. The ranking metric is bits per character under
SmolLM2 (why not MAUVE or gen. PPL: see the text study); unigram entropy is reported to catch repetition.

Nothing here touches the data the text study scores on: held-out rows come from the first validation play
(``benchmarks/_plays.py``; the text study scores on the other two) and the seeds start at 1000 (the text study's at
0). The winner is the cell with the lowest mean bits/char; every cell within two combined standard errors of it is
listed as a tie. The text study then runs with the chosen defaults.

    snrpaths bench hybrid-sweep --quick    # minutes
    snrpaths bench hybrid-sweep            # the README's numbers
"""

from __future__ import annotations

import argparse
import math
import pathlib

import torch
from snrpaths.backends.text import load_with_tokenizer
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks.text_quality import (
    CHECKPOINTS,
    FORMAT,
    HUMAN,
    _diff,
    _fmt,
    _matrix,
    _Plan,
    _run,
    _settings,
    _summarise,
    held_out_text,
)

from snrpaths import parse_path
from snrpaths.errors import SNRPathError
from snrpaths.quality import require
from snrpaths.schedules import RAMP_SCHEDULES

FINE, BASE = "tiny-shakespeare-dsl", "tiny-shakespeare-mdlm"
GAMMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
SWITCHES = ("keep", "commit", "mask")
RAMP_KEEPING = ("keep", "commit")
SPLITS = ((8, 40), (16, 32), (24, 24), (32, 16))
FULL = {"n": 32, "seeds": 3, "budget": 48, "gammas": GAMMAS, "splits": SPLITS}
QUICK = {"n": 4, "seeds": 2, "budget": 8, "gammas": (1.0, 40.0), "splits": ((4, 4),)}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {name: load_with_tokenizer(name) for name in (FINE, BASE)}
    L = models[FINE][0].seq_len
    stem = "hybrid_sweep_quick" if args.quick else "hybrid_sweep"
    partial = args.out / f".{stem}.partial.jsonl"
    reference, human = held_out_text(models[FINE][1], "tune", args, L)

    split = args.splits[len(args.splits) // 2] if len(args.splits) > 1 else args.splits[0]
    stage1 = {(FINE, "stage 1", _row(g, m), args.budget): _hybrid(split, g, m, "logit")
              for g in args.gammas for m in SWITCHES}
    stage1 |= {(BASE, "baseline", "mdm", args.budget): f"mdm({args.budget})",
               (FINE, "baseline", "mdm", args.budget): f"mdm({args.budget})",
               (FINE, "baseline", "mdm, remask='confidence'", args.budget): f"mdm({args.budget}, remask='confidence')"}
    plan = _checked(_Plan(models, reference, human, stage1), L)
    summary = _summarise(plan, _run(plan, args, partial), _seeds(args))
    gamma, mode = _choice(_best(summary, "stage 1", RAMP_KEEPING)["path"])

    stage2 = {(FINE, "stage 2", _row2(r, (tc, tm)), args.budget): _hybrid((tc, tm), gamma, mode, r)
              for r in RAMP_SCHEDULES for tc, tm in args.splits}
    plan = _checked(_Plan(models, reference, human, plan.cells | stage2), L)
    summary = _summarise(plan, _run(plan, args, partial), _seeds(args))
    text = _tables(summary, args, split, gamma, mode)
    print(text)
    write(args.out, stem, {"settings": _settings(args), "cells": summary}, text, lambda p: _plot(summary, args, p))
    partial.unlink(missing_ok=True)


def _parse(argv):
    p = argparse.ArgumentParser(prog="snrpaths bench hybrid-sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="two SNRs, one split of 8 calls, 4 samples (about a minute)")
    p.add_argument("--n", type=int, help=f"samples per cell and seed (default {FULL['n']}, quick {QUICK['n']})")
    p.add_argument("--seeds", type=int, help=f"seeds per cell (default {FULL['seeds']}, quick {QUICK['seeds']})")
    p.add_argument("--seed", type=int, default=1000, help="first seed (default 1000; the text study starts at 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name in ("n", "seeds"):
        if getattr(args, name) < 2:
            raise SNRPathError(f"--{name} must be at least 2 (got {getattr(args, name)})")
    args.metrics = require(["gen-bpc", "entropy"])
    args.reference = 2  # no MAUVE here: two windows keep the held-out split's shape
    return args


def _seeds(args) -> list[int]:
    return [args.seed + s for s in range(args.seeds)]


def _hybrid(split, gamma: float, mode: str, schedule: str) -> str:
    tc, tm = split
    return repr(parse_path(f"hybrid({tc}, {tm}, gamma_max={gamma}, switch='{mode}', schedule='{schedule}')"))


def _row(gamma: float, mode: str) -> str:
    return f"gamma_max={gamma}, switch('{mode}')"


def _row2(schedule: str, split) -> str:
    return f"schedule='{schedule}', {split[0]} + {split[1]}"


def _choice(path: str) -> tuple[float, str]:
    """The hand-over SNR and switch mode of a swept hybrid, read back from its path."""
    args = dict(parse_path(path).args)
    return args["gamma_max"], args["switch"]


def _checked(plan: _Plan, L: int) -> _Plan:
    for text in plan.cells.values():
        parse_path(text).compile(seq_len=L)  # a budget the sequence cannot meet fails before any sampling
    return plan


def _best(summary: list[dict], table: str, modes=SWITCHES) -> dict:
    """The cell of ``table`` with the lowest mean bits/char among hybrids whose switch mode is in ``modes``."""
    cells = [c for c in summary if c["table"] == table and _choice(c["path"])[1] in modes]
    return min(cells, key=lambda c: c["gen-bpc"]["mean"])


def _ties(summary: list[dict], best: dict) -> list[dict]:
    """Every hybrid cell within two combined standard errors of ``best`` on bits/char."""
    cells = {c["path"]: c for c in summary if c["table"].startswith("stage") and c["path"] != best["path"]}
    return [c for c in cells.values() if _diff(c, best, "gen-bpc", -1)[0] >= -2 * _diff(c, best, "gen-bpc", -1)[1]]


def _tables(summary: list[dict], args, split, gamma, mode) -> str:
    by = {(c["checkpoint"], c["table"], c["row"], c["budget"]): c for c in summary}
    human = next(c for c in summary if c["checkpoint"] == HUMAN)
    parts = [f"Hybrid sweep on the tuning play: {args.n} samples x {args.seeds} seeds per cell, mean ± s.e. over "
             f"seeds; held-out text of the tuning play: {_fmt(human, 'gen-bpc')} bits/char, unigram entropy "
             f"{_fmt(human, 'entropy')}."]
    for metric in ("gen-bpc", "entropy"):
        rows = [(f"gamma_max={g}", [_fmt(by.get((FINE, "stage 1", _row(g, m), args.budget)), metric)
                                    for m in SWITCHES]) for g in args.gammas]
        parts.append(_matrix(f"**Stage 1, {FORMAT[metric][0]}**: `hybrid{split}` on DSL-FT, logit ramp",
                             "hand-over SNR", [f"switch('{m}')" for m in SWITCHES], rows))
    calls = [(f"gamma_max={g}", [f"{by[FINE, 'stage 1', _row(g, m), args.budget]['nfe']:.0f}"
                                 for m in SWITCHES]) for g in args.gammas]
    parts.append(_matrix("Calls made (commit reveals every position when the ramp ends)", "hand-over SNR",
                         [f"switch('{m}')" for m in SWITCHES], calls))
    for metric in ("gen-bpc", "entropy"):
        rows = [(f"schedule='{r}'", [_fmt(by.get((FINE, "stage 2", _row2(r, s), args.budget)), metric)
                                     for s in args.splits])
                for r in RAMP_SCHEDULES]
        parts.append(_matrix(f"**Stage 2, {FORMAT[metric][0]}** at gamma_max={gamma}, switch('{mode}') (stage 1's "
                             "best mode that keeps the ramp): ramp schedule x split T_cont + T_mdm", "ramp schedule",
                             [f"{tc} + {tm}" for tc, tm in args.splits], rows))
    rows = [(f"{CHECKPOINTS[c]} {row}", [_fmt(by[c, 'baseline', row, args.budget], m) for m in ("gen-bpc", "entropy")])
            for c, _, row, _ in sorted(k for k in by if k[1] == "baseline")]
    parts.append(_matrix(f"**Baselines at {args.budget} calls**", "sampler", ["bits/char", "unigram entropy"], rows))
    best = min((c for c in summary if c["table"].startswith("stage")), key=lambda c: c["gen-bpc"]["mean"])
    ties = _ties(summary, best)
    parts.append(f"\n**Chosen**: `{best['path']}` at {_fmt(best, 'gen-bpc')} bits/char ({best['nfe']:.0f} calls). "
                 f"Within 2 s.e. of it: {len(ties)} other cells" + (": " + "; ".join(
                     f"`{c['path']}` {_fmt(c, 'gen-bpc')}" for c in ties[:8]) if ties else "") + ".")
    mdm = by[FINE, "baseline", "mdm", args.budget]
    diff, se = _diff(best, mdm, "gen-bpc", -1)
    parts.append(f"Against `mdm({args.budget})` on the same checkpoint: {diff:+.3f} ± {se:.3f} bits/char "
                 f"({'clearly better' if diff > 2 * se else 'clearly worse' if diff < -2 * se else 'a tie'}).")
    return "\n".join(parts)


def _plot(summary: list[dict], args, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in SWITCHES:
        cells = sorted(((_choice(c["path"])[0], c) for c in summary if c["table"] == "stage 1"
                        and _choice(c["path"])[1] == m), key=lambda gc: gc[0])
        ax.errorbar([g for g, _ in cells], [c["gen-bpc"]["mean"] for _, c in cells],
                    yerr=[0 if math.isnan(c["gen-bpc"]["se"]) else c["gen-bpc"]["se"] for _, c in cells],
                    marker="o", ms=3, capsize=2, label=f"switch('{m}')")
    for c in summary:
        if c["table"] == "baseline":
            ax.axhline(c["gen-bpc"]["mean"], lw=0.8, ls="--" if c["checkpoint"] == BASE else ":",
                       color="gray", label=f"{CHECKPOINTS[c['checkpoint']]} {c['row']} ({args.budget} calls)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hand-over SNR gamma_max")
    ax.set_ylabel("bits/char under SmolLM2 (lower is better)")
    ax.set_title("hybrid on DSL-FT, tuning play")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
