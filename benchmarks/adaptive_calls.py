"""Calls saved by paths that adapt (issue 17): threshold and entropy-bounded reveals, and stop tokens, on exact toys.

Every sampler runs with ``ExactToy`` as its denoiser, so what changes is the path alone. For each: the static
bound ``program.nfe``, the calls a row needs on average (``Result.calls``: what sampling it alone costs), and the
total variation to P with the 95% interval of ``toy_quality.py``.

* Adaptive reveals, on a peaked Markov chain: the confidence clock alone against the same clock with a threshold
  (Fast-dLLM), a count of one with a threshold, and entropy-bounded reveals (count one, bound eps).
* Stop tokens, on ``ExactToy.ended`` (only the end token follows the end token): each sampler with and without
  ``stop_token``; the exact denoiser draws the end token after the end token anyway, so the law is unchanged and
  the calls after the end are saved.

    python benchmarks/adaptive_calls.py            # about ten minutes on a shared 2-core machine
    python benchmarks/adaptive_calls.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import pathlib
import time

import torch
from snrpaths.backends.toy import ExactToy
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks.toy_quality import tv_interval

from snrpaths import parse_path, sample
from snrpaths.testing.stats import empirical_law


def adaptive_samplers(L: int, quick: bool) -> dict[str, str]:
    """label -> path expression, for sequences of ``L`` positions."""
    thresholds = (0.9, 0.7) if quick else (0.95, 0.9, 0.8, 0.7, 0.5)
    bounds = (0.5,) if quick else (0.1, 0.5, 1.0)
    return {
        "ar()": "ar()",
        f"mdm({L})": f"mdm({L})",
        "confidence clock": f"reveal({L}, order='confidence', schedule='linear')",
        **{f"clock + threshold {t}": f"reveal({L}, order='confidence', threshold={t})" for t in thresholds},
        "count 1 + threshold 0.9": "reveal(order='confidence', count=1, threshold=0.9)",
        **{f"count 1 + entropy bound {e}": f"reveal(order='entropy', count=1, entropy_bound={e})" for e in bounds},
    }


def stop_samplers(L: int, quick: bool) -> dict[str, str]:
    out = {"ar()": "ar()", f"mdm({L})": f"mdm({L})",
           "confidence clock": f"reveal({L}, order='confidence', schedule='linear')",
           f"blocks({L // 2}, mdm(2))": f"blocks({L // 2}, mdm(2))"}
    if not quick:
        out["blocks(2, confidence clock)"] = f"blocks(2, reveal({L // 2}, order='confidence', schedule='linear'))"
        out["clock + threshold 0.9"] = f"reveal({L}, order='confidence', threshold=0.9)"
    return out


def adaptive_toys(quick: bool) -> dict[str, ExactToy]:
    """Markov chains from peaked (many positions near certain once a neighbour is known) to flat."""
    out = {"markov V=3, L=6, concentration 0.3, seed 1": ExactToy.markov(3, 6, seed=1, concentration=0.3)}
    if not quick:
        out["markov V=3, L=6, concentration 0.3, seed 3"] = ExactToy.markov(3, 6, seed=3, concentration=0.3)
    return out


def measure(study: str, toy: ExactToy, label: str, text: str, n: int, seed: int, stop: int | None) -> dict:
    path = parse_path(text)
    start = time.perf_counter()
    result = sample(path, toy, batch=n, seed=seed, stop_token=stop)
    tv, lo, hi = tv_interval(toy.probs, empirical_law(result.tokens, toy.vocab_size), n)
    row = {"study": study, "toy": repr(toy), "sampler": label, "path": repr(path), "stop_token": stop,
           "nfe_static": path.compile(toy.seq_len).nfe, "calls_mean": float(result.calls.double().mean()),
           "calls_max": int(result.calls.max()), "nfe_batch": result.nfe, "tv": tv, "tv_low": lo, "tv_high": hi,
           "seconds": time.perf_counter() - start}
    print(f"{study:>14} {label:>28} stop={stop!s:<4} static={row['nfe_static']:<2} calls/row={row['calls_mean']:.2f} "
          f"TV={tv:.4f} [{lo:.4f}, {hi:.4f}]", flush=True)
    return row


def run(quick: bool, n: int, seed: int) -> list[dict]:
    rows = []
    for name, chain in adaptive_toys(quick).items():
        for label, text in adaptive_samplers(chain.seq_len, quick).items():
            rows.append(measure("adaptive", chain, label, text, n, seed, None) | {"toy": name})
    ended = ExactToy.ended(3, 6 if quick else 7, seed=0, p_end=0.25)
    end = ended.vocab_size - 1
    for label, text in stop_samplers(ended.seq_len, quick).items():
        for stop in (None, end):
            rows.append(measure("stop tokens", ended, label, text, n, seed, stop))
    return rows


def _cell(r: dict) -> str:
    return f"{r['calls_mean']:.2f} | {r['tv']:.3f} [{r['tv_low']:.3f}, {r['tv_high']:.3f}]"


def table(rows: list[dict]) -> str:
    out = []
    adaptive = [r for r in rows if r["study"] == "adaptive"]
    for toy in dict.fromkeys(r["toy"] for r in adaptive):
        out += [f"\n**Adaptive reveals** ({toy}): calls a row needs on average (static bound `program.nfe`), TV to P "
                "[95% interval]\n",
                "| sampler | path | static | calls / row | TV |", "|---|---|---:|---:|---|"]
        out += [f"| {r['sampler']} | `{r['path']}` | {r['nfe_static']} | {_cell(r)} |" for r in adaptive
                if r["toy"] == toy]
    out += ["\n**Stop tokens** (`ExactToy.ended`, end token V - 1, p_end = 0.25): calls a row needs on average and TV "
            "to P, without and with `stop_token`\n",
            "| sampler | static | calls / row | TV | calls / row, stop | TV, stop | calls saved |",
            "|---|---:|---:|---|---:|---|---:|"]
    stops = [r for r in rows if r["study"] == "stop tokens"]
    for plain, stopped in zip(stops[0::2], stops[1::2]):
        saved = 1 - stopped["calls_mean"] / plain["calls_mean"]
        out.append(f"| `{plain['path']}` | {plain['nfe_static']} | {_cell(plain)} | {_cell(stopped)} | "
                   f"{100 * saved:.0f}% |")
    return "\n".join(out)


def plot(rows: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    adaptive = [r for r in rows if r["study"] == "adaptive"]
    toys = list(dict.fromkeys(r["toy"] for r in adaptive))
    for i, r in enumerate(r for r in adaptive if r["toy"] == toys[0]):
        axes[0].errorbar(r["calls_mean"], r["tv"], yerr=[[r["tv"] - r["tv_low"]], [r["tv_high"] - r["tv"]]],
                         fmt="o", ms=4, capsize=2, color=f"C{i % 10}", label=r["sampler"])
    axes[0].set_title(f"adaptive reveals ({toys[0]})", fontsize=9)
    axes[0].legend(fontsize=7)
    stops = [r for r in rows if r["study"] == "stop tokens"]
    for i, (plain, stopped) in enumerate(zip(stops[0::2], stops[1::2])):
        axes[1].annotate("", xy=(stopped["calls_mean"], stopped["tv"]), xytext=(plain["calls_mean"], plain["tv"]),
                         arrowprops={"arrowstyle": "->", "color": f"C{i % 10}"})
        axes[1].plot([plain["calls_mean"]], [plain["tv"]], "o", color=f"C{i % 10}", ms=4, label=plain["sampler"])
        axes[1].plot([stopped["calls_mean"]], [stopped["tv"]], "s", color=f"C{i % 10}", ms=4)
    axes[1].set_title("stop tokens (ExactToy.ended): circle without, square with")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("denoiser calls a row needs (mean)")
        ax.set_ylabel("total variation to P")
    fig.suptitle("Calls saved by paths that adapt, with the exact Bayes denoiser")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench adaptive-calls", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings: seconds, not minutes (the tests run it)")
    parser.add_argument("--n", type=int, default=None, help="samples per cell (default 10000, quick 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    args = parser.parse_args(argv)
    n = args.n or (2000 if args.quick else 10_000)
    torch.set_num_threads(1)  # many small tensor operations: one thread is faster on a shared machine
    rows = run(args.quick, n, args.seed)
    text = f"Calls saved by paths that adapt, n = {n} samples per cell, seed {args.seed}\n" + table(rows)
    print(text)
    stem = "adaptive_calls_quick" if args.quick else "adaptive_calls"
    write(args.out, stem, rows, text, lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
