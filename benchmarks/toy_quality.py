"""Exact study: what each path itself gets right or wrong, with the exact Bayes denoiser of toy joints.

For several enumerable joints P (a Markov chain, a Dirichlet joint, the paper's two-bit toy, parity over all
positions) every built-in sampler, and the adaptive reveals (their budget bounds their calls), runs at NFE budgets
from 2 to 64 with ``ExactToy`` as its denoiser, so any error is the path's, not a model's; staggered ramps
(``ramp(T, lag=l)``, issue 17) run as ``ramp+commit`` rows at lags 0.25, 0.5 and 1 beside the joint ramp (lag 0), at
the same calls, in both ramp forms (``mean``, ``sample``). Quality is the total variation between the sampler's law Q
and P, estimated from n samples with a 95% interval: ``E[TV(Q_n, P)] >= TV(Q, P)`` (convexity) and ``TV(Q_n, P) <=
TV(Q, P) + TV(Q_n, Q)``, with ``E[TV(Q_n, Q)] <= 1/2 sum sqrt(Q(1-Q)/n)`` and McDiarmid's deviation
``sqrt(ln(2/0.05) / 2n)``.

    python benchmarks/toy_quality.py            # full (about 15 minutes on one core)
    python benchmarks/toy_quality.py --quick    # a few minutes
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import time

import torch
from snrpaths.backends.toy import ExactToy
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._samplers import ADAPTIVE, BUILTIN

from snrpaths import parse_path, sample
from snrpaths.samplers import sampler as sampler_spec
from snrpaths.testing.stats import empirical_law


def ramp_commit(T: int, lag: float = 0.0, form: str = "mean") -> str:
    """A ramp of ``T - 1`` calls then one committing call, staggered by ``lag`` (0: the joint ramp)."""
    return f"ramp({max(T - 1, 1)}, lag={lag}, gamma_max=400.0, form='{form}') >> switch('commit')"


#: the staggered ramps' lags (issue 17), from the joint ramp (0) to one position at a time (1), in both ramp forms
LAGS = (0.0, 0.25, 0.5, 1.0)
RAMPS = {"ramp+commit" + " sample" * (form == "sample") + f" lag={lag}" * (lag > 0):
         functools.partial(ramp_commit, lag=lag, form=form) for form in ("mean", "sample") for lag in LAGS}
#: sampler name -> path expression for a budget of `T` calls (AR and ROAR always cost L calls).
SAMPLERS = {
    **BUILTIN,
    **RAMPS,
    # switch('commit') reveals everything, so a hybrid with it is ramp+commit; 'mask' throws the ramp away.
    "hybrid-keep": lambda T: f"hybrid({max(T // 2, 1)}, {max(T - T // 2, 1)}, gamma_max=400.0)",
    **ADAPTIVE,
}


def toys(quick: bool) -> dict[str, ExactToy]:
    out = {"markov V3 L4": ExactToy.markov(3, 4, seed=0, concentration=0.5),
           "two-bit": ExactToy.two_bit()}
    if not quick:
        out["dirichlet V3 L4"] = ExactToy.random(3, 4, seed=1, concentration=0.3)
        out["parity L6"] = ExactToy.parity(6)
    return out


def tv_interval(probs: torch.Tensor, law: torch.Tensor, n: int) -> tuple[float, float, float]:
    """TV(Q_n, P) and a 95% interval for TV(Q, P) (see the module docstring)."""
    tv = 0.5 * float((law - probs.flatten()).abs().sum())
    spread = 0.5 * float((law * (1 - law) / n).sqrt().sum())
    dev = math.sqrt(math.log(2 / 0.05) / (2 * n))
    return tv, max(0.0, tv - spread - dev), tv + dev


def run(quick: bool, n: int, seed: int, samplers: list[str] | None = None, only: list[str] | None = None) -> list[dict]:
    """Every cell (toy, sampler, budget); ``samplers`` / ``only`` restrict the samplers and the toys (default: all)."""
    budgets = [2, 8, 32] if quick else [2, 4, 8, 16, 32, 64]
    rows = []
    for toy_name, toy in toys(quick).items():
        if only and toy_name not in only:
            continue
        for sampler in samplers or SAMPLERS:
            make = sampler_spec(sampler, SAMPLERS)
            for budget in budgets:
                path = parse_path(make(budget))
                start = time.perf_counter()
                result = sample(path, toy, batch=n, seed=seed)
                tv, lo, hi = tv_interval(toy.probs, empirical_law(result.tokens, toy.vocab_size), n)
                rows.append({"toy": toy_name, "sampler": sampler, "budget": budget, "path": repr(path),
                             "nfe_static": path.compile(toy.seq_len).nfe, "nfe": result.nfe, "tv": tv, "tv_low": lo,
                             "tv_high": hi, "seconds": time.perf_counter() - start})
                print(f"{toy_name:>16} {sampler:>20} T={budget:<3} nfe={result.nfe:<3} TV={tv:.4f} "
                      f"[{lo:.4f}, {hi:.4f}]", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in rows})
    out = []
    for toy in dict.fromkeys(r["toy"] for r in rows):
        out += [f"\n**{toy}**: TV to P (95% interval), rows = samplers, columns = NFE budget\n",
                "| sampler | " + " | ".join(f"T={b}" for b in budgets) + " |",
                "|---|" + "---:|" * len(budgets)]
        for sampler in dict.fromkeys(r["sampler"] for r in rows):
            cells = {r["budget"]: r for r in rows if r["toy"] == toy and r["sampler"] == sampler}
            out.append(f"| {sampler} | " + " | ".join(
                f"{cells[b]['tv']:.3f} [{cells[b]['tv_low']:.3f}, {cells[b]['tv_high']:.3f}] ({cells[b]['nfe']})"
                for b in budgets) + " |")
    return "\n".join(out)


def plot(rows: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["toy"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), constrained_layout=True, squeeze=False)
    for ax, toy in zip(axes[0], names):
        samplers = list(dict.fromkeys(r["sampler"] for r in rows))
        colors = plt.get_cmap("tab10" if len(samplers) <= 10 else "tab20")  # one colour per row
        for i, sampler in enumerate(samplers):
            pts = sorted((r["nfe"], r["tv"], r["tv_low"], r["tv_high"]) for r in rows
                         if r["toy"] == toy and r["sampler"] == sampler)
            x, y, lo, hi = zip(*pts)
            style = "--" if sampler in ("AR", "ROAR") else ":" if "lag=" in sampler else "-"
            ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]], fmt=style + "o",
                        ms=3, capsize=2, color=colors(i % colors.N), label=sampler)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("denoiser calls actually made (NFE)")
        ax.set_ylabel("total variation to P")
        ax.set_title(toy)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("Exact toy study: sampler error with the exact Bayes denoiser")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench toy-quality", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings: seconds, not minutes (the tests run it)")
    parser.add_argument("--n", type=int, default=None, help="samples per cell (default 20000, quick 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--samplers", nargs="+", metavar="NAME|EXPR",
                        help=f"run only these rows: names (default: all of {', '.join(SAMPLERS)}) or path "
                             "expressions, {T} standing for the budget, e.g. \"ramp({T}) >> switch('commit')\"")
    parser.add_argument("--toys", nargs="+", choices=list(toys(False)), metavar="NAME",
                        help=f"run only these toys (default: all of {', '.join(toys(False))}; --quick: the first two)")
    parser.add_argument("--stem", default=None, help="file name of the results (default: toy_quality, with _quick "
                        "and _subset appended for --quick and for --samplers / --toys)")
    args = parser.parse_args(argv)
    for spec in args.samplers or ():
        sampler_spec(spec, SAMPLERS)  # a bad name or expression is refused before any cell runs
    n = args.n or (2000 if args.quick else 20_000)
    rows = run(args.quick, n, args.seed, args.samplers, args.toys)
    text = f"Exact toy study, n = {n} samples per cell, seed {args.seed}; cells: TV [95% interval] (NFE used)\n" + table(rows)
    print(text)
    # by default a subset of the study never overwrites the whole study's results
    stem = args.stem or "toy_quality" + "_quick" * args.quick + "_subset" * bool(args.samplers or args.toys)
    write(args.out, stem, rows, text, lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
