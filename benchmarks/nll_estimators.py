"""Likelihood estimators: standard error and bias versus denoiser calls, on exact toy joints.

Every estimator of ``-log P(s)`` in ``snrpaths.nll`` (the path integral on the joint ramp, the sequential and the
random-order paths with each control variate; ROAR over random orders; random-step ROAR; MDLM's ELBO) runs with
``ExactToy`` as the denoiser, where ``-log P(s)`` is known exactly, at budgets of 32 to 1024 denoiser calls per
sequence. For a fixed set of sequences drawn from P, each configuration is repeated with independent seeds:

* standard error = the standard deviation of one run's estimate over the repeats (the real error of a run at that
  budget, whatever the estimator reports), root-mean-squared over the sequences;
* bias = mean over repeats minus the truth, averaged over sequences, with its 95% interval;
* calibration = the mean reported ``stderr`` over the measured standard error (1 = honest; the stratified ROAR-step
  and ELBO estimators report conservatively, > 1).

Both are in bits per token. The issue's target: the path integral reaches a standard error of 0.01 bits per token
with fewer than 256 calls per sequence.

    python benchmarks/nll_estimators.py            # full (about ten minutes on 2 cores)
    python benchmarks/nll_estimators.py --quick    # about a minute
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time
from collections.abc import Callable

import torch
from snrpaths.backends.toy import ExactToy
from snrpaths.benchmarks._results import RESULTS, write

from snrpaths import nll

TARGET_BITS, TARGET_CALLS = 0.01, 256


def toys(quick: bool) -> dict[str, ExactToy]:
    out = {"markov V3 L4": ExactToy.markov(3, 4, seed=0, concentration=0.5)}
    if not quick:
        out["markov V2 L8"] = ExactToy.markov(2, 8, seed=1, concentration=0.5)
        out["parity L6"] = ExactToy.parity(6)
    return out


def _split(budget: int, pieces: int, control: str) -> tuple[int, int]:
    """(n_samples, n_nodes) spending ``budget`` calls. With a control, nodes first (its variance per trajectory
    falls like 1/n_nodes^2, faster than 1/n_samples), keeping the 2 trajectories a standard error needs; without
    one, 8 nodes (more nodes do not reduce the Brownian path's own noise) and the rest in trajectories."""
    n_max = 8 if control == "none" else 128
    n_nodes = max(2, min(n_max, budget // (2 * pieces)))
    return max(2, budget // (n_nodes * pieces)), n_nodes


def estimators(length: int) -> dict[str, Callable[[ExactToy, torch.Tensor, int, int], nll.NLLEstimate]]:
    """name -> run(toy, tokens, budget, seed); each spends about ``budget`` calls per sequence."""
    out: dict[str, Callable] = {}
    for path, pieces in (("joint", 1), ("sequential", length), ("random-order", length)):
        for control in nll.CONTROLS:
            def run(toy, tokens, budget, seed, path=path, pieces=pieces, control=control):
                n_samples, n_nodes = _split(budget, pieces, control)
                return nll.path_integral(toy, tokens, path, n_samples=n_samples, seed=seed, n_nodes=n_nodes,
                                         control=control, progress=False)
            out[f"PI {path} {control}"] = run
    out["ROAR orders"] = lambda toy, tokens, budget, seed: nll.roar(
        toy, tokens, n_orders=max(1, budget // length), seed=seed, progress=False)
    out["ROAR steps"] = lambda toy, tokens, budget, seed: nll.roar_steps(
        toy, tokens, n_steps=budget, seed=seed, progress=False)
    out["MDLM ELBO"] = lambda toy, tokens, budget, seed: nll.mdm_elbo(
        toy, tokens, n_samples=budget, seed=seed, progress=False)
    return out


def measure(toy, tokens: torch.Tensor, run: Callable, budget: int, repeats: int) -> dict:
    """Standard error over repeats and, when ``toy`` knows ``log P`` (an exact toy), the bias; for a trained model the
    bias is NaN and only the mean estimate is reported."""
    scale = toy.seq_len * math.log(2)
    truth = -toy.log_prob(tokens) if hasattr(toy, "log_prob") else torch.full((tokens.shape[0],), math.nan)
    start = time.perf_counter()
    runs = [run(toy, tokens, budget, 1000 + r) for r in range(repeats)]
    seconds = (time.perf_counter() - start) / repeats
    values = torch.stack([e.nll for e in runs])  # [repeats, S]
    reported = torch.stack([e.stderr for e in runs]).nanmean(0)
    sd = values.std(0)  # [S]
    bias = (values.mean(0) - truth).mean()
    bias_se = (sd.square().mean() / (repeats * values.shape[1])).sqrt()
    return {"calls": runs[0].n_calls, "se_bits": float(sd.square().mean().sqrt()) / scale,
            "mean_bits": float(values.mean()) / scale,
            "bias_bits": float(bias) / scale, "bias_ci_bits": 1.96 * float(bias_se) / scale,
            "calibration": float((reported / sd).mean()) if bool((sd > 1e-12).all()) else math.nan,
            "seconds": seconds}


def run_all(quick: bool, budgets: list[int], repeats: int, n_seqs: int, seed: int) -> list[dict]:
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and steadier on a shared machine
    rows = []
    for toy_name, toy in toys(quick).items():
        tokens = toy.sample(n_seqs, torch.Generator().manual_seed(seed))
        for name, run in estimators(toy.seq_len).items():
            for budget in budgets:
                if name.startswith("PI") and "joint" not in name and budget < 2 * 2 * toy.seq_len:
                    continue  # a sequential trajectory needs at least 2 nodes on each of L pieces
                row = dict(toy=toy_name, estimator=name, budget=budget, **measure(toy, tokens, run, budget, repeats))
                rows.append(row)
                print(f"{toy_name:>13} {name:>24} calls={row['calls']:<5} SE={row['se_bits']:.4f} b/tok "
                      f"bias={row['bias_bits']:+.4f}±{row['bias_ci_bits']:.4f} cal={row['calibration']:.2f} "
                      f"({row['seconds']:.2f}s/run)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in rows})
    out = []
    for toy in dict.fromkeys(r["toy"] for r in rows):
        out += [f"\n**{toy}**: standard error in bits/token (bias ± 95% CI) at each budget of calls per sequence\n",
                "| estimator | " + " | ".join(f"{b} calls" for b in budgets) + " | reported/measured SE |",
                "|---|" + "---:|" * (len(budgets) + 1)]
        for name in dict.fromkeys(r["estimator"] for r in rows if r["toy"] == toy):
            cells = {r["budget"]: r for r in rows if r["toy"] == toy and r["estimator"] == name}
            text = [_cell(c) if (c := cells.get(b)) else "—" for b in budgets]
            cal = [c["calibration"] for c in cells.values() if not math.isnan(c["calibration"])]
            out.append(f"| {name} | " + " | ".join(text) + (f" | {sum(cal) / len(cal):.2f} |" if cal else " | — |"))
    return "\n".join(out)


def _cell(c: dict) -> str:
    if math.isnan(c["bias_bits"]):  # a trained model: no truth, so the mean estimate instead of the bias
        return f"{c['se_bits']:.4f} (mean {c['mean_bits']:.3f})"
    return f"{c['se_bits']:.4f} ({c['bias_bits']:+.4f}±{c['bias_ci_bits']:.4f})"


#: The SNR cap of the shipped checkpoints' continuous training branch: where their path integral must stop.
TRAINED_GAMMA_MAX = 40.0


def finite_endpoint_estimators(length: int) -> dict[str, Callable]:
    """name -> run(denoiser, tokens, budget, seed): the joint-ramp path integral stopped at ``TRAINED_GAMMA_MAX`` plus
    the endpoint term, by the chain rule (``L`` calls per trajectory) or the product of marginals (1 call), on 2
    trajectories with the remaining calls as nodes (``auto`` runs the Ito control for a learned denoiser); the
    chain-rule row needs a budget of at least ``2 (L + 2)``."""
    out: dict[str, Callable] = {}
    for endpoint, states in (("marginals", 1), ("roar", length)):
        def run(den, tokens, budget, seed, endpoint=endpoint, states=states):
            return nll.path_integral(den, tokens, "joint", n_samples=2, seed=seed, n_nodes=budget // 2 - states,
                                     gamma_max=TRAINED_GAMMA_MAX, endpoint=endpoint, progress=False)
        out[f"PI joint ito gamma_max={TRAINED_GAMMA_MAX:g} {endpoint}"] = run
    return out


def trained_rows(checkpoint: str, budgets: list[int], repeats: int, n_seqs: int, seed: int) -> list[dict]:
    """The endpoint estimators on held-out windows of the Shakespeare corpus, for a shipped checkpoint, and the path
    integral stopped at ``TRAINED_GAMMA_MAX``. The path integral to infinite SNR is left out: these models were
    trained with continuous SNRs up to 40 only, ``E_i`` does not vanish as gamma grows, and that integral diverges
    (``snrpaths nll --estimator path-integral`` shows it)."""
    from snrpaths.backends.text import load_with_tokenizer
    from snrpaths.data import encode_text
    from snrpaths.data import fixed_windows, load_corpus

    den, tokenizer = load_with_tokenizer(checkpoint)
    den = den.eval()
    tokens = fixed_windows(encode_text(tokenizer, load_corpus().text("valid"), "validation"), n_seqs, den.seq_len)
    rows = []
    runs = {name: run for name, run in estimators(den.seq_len).items() if not name.startswith("PI")}
    for name, run in (runs | finite_endpoint_estimators(den.seq_len)).items():
        for budget in budgets:
            if name.endswith("roar") and budget < 2 * (den.seq_len + 2):
                continue  # the chain-rule endpoint alone costs L calls per trajectory
            with torch.no_grad():
                row = dict(toy=f"{checkpoint} (no truth)", estimator=name, budget=budget,
                           **measure(den, tokens, run, budget, repeats))
            rows.append(row)
            print(f"{checkpoint:>13} {name:>24} calls={row['calls']:<5} SE={row['se_bits']:.4f} b/tok "
                  f"mean={row['mean_bits']:.4f} ({row['seconds']:.2f}s/run)", flush=True)
    return rows


def target(rows: list[dict]) -> str:
    """Which path-integral configurations reach TARGET_BITS below TARGET_CALLS calls, per toy."""
    lines = [(f"\nTarget: path-integral standard error <= {TARGET_BITS} bits/token with < {TARGET_CALLS} calls per "
              "sequence")]
    # Exact toys only: a trained model's finite-endpoint rows have no truth to hold the error to.
    pi_rows = [r for r in rows if r["estimator"].startswith("PI") and not math.isnan(r["bias_bits"])]
    for toy in dict.fromkeys(r["toy"] for r in pi_rows):
        pi = [r for r in rows if r["toy"] == toy and r["estimator"].startswith("PI")]
        met = sorted((r["calls"], r["estimator"], r["se_bits"]) for r in pi
                     if r["calls"] < TARGET_CALLS and r["se_bits"] <= TARGET_BITS)
        best = min((r for r in pi if r["calls"] < TARGET_CALLS), key=lambda r: r["se_bits"], default=None)
        verdict = (f"MET by {', '.join(f'{n} ({c} calls, {s:.4f})' for c, n, s in met)}" if met else
                   f"NOT met; best under {TARGET_CALLS} calls: {best['estimator']} {best['se_bits']:.4f} at "
                   f"{best['calls']} calls" if best else "no configuration under the call limit")
        lines.append(f"- {toy}: {verdict}")
    return "\n".join(lines)


#: Colour by path (or endpoint estimator, or a finite end point's endpoint term), line style by control variate.
COLOURS = {"joint": "C0", "sequential": "C1", "random-order": "C2", "ROAR orders": "C5", "ROAR steps": "C3",
           "MDLM ELBO": "C4", "marginals": "C6", "roar": "C7"}
STYLES = {"ito": "-", "stein": "--", "none": ":"}
BIAS_CLIP = 0.1  # bits/token shown in the bias panel; the few-call sequential runs' intervals are far wider


def _style(name: str) -> dict:
    parts = name.split()
    if parts[0] == "PI":  # "PI <path> <control>", then "gamma_max=<G> <endpoint>" for a finite end point
        return {"color": COLOURS[parts[-1] if len(parts) > 3 else parts[1]], "ls": STYLES[parts[2]]}
    return {"color": COLOURS[name], "ls": "-."}


def plot(rows: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    names = list(dict.fromkeys(r["toy"] for r in rows))
    estimators_ = list(dict.fromkeys(r["estimator"] for r in rows))
    fig, axes = plt.subplots(2, len(names), figsize=(5.2 * len(names), 8.8), constrained_layout=True, squeeze=False)
    for col, toy in enumerate(names):
        top, bottom = axes[0][col], axes[1][col]
        for name in estimators_:
            pts = sorted((r["calls"], r["se_bits"], r["bias_bits"], r["bias_ci_bits"]) for r in rows
                         if r["toy"] == toy and r["estimator"] == name)
            if not pts:
                continue
            x, se, bias, ci = zip(*pts)
            style = dict(marker="o", ms=3, **_style(name))
            shown = [(a, b) for a, b in zip(x, se) if b > 1e-9]  # ROAR over orders is exact for a joint: SE 0
            label = name if shown else f"{name} (SE 0, not shown)"
            if shown:
                top.plot(*zip(*shown), label=label, **style)
            else:
                top.plot([], [], label=label, **style)
            bottom.errorbar(x, bias, yerr=ci, capsize=2, **style)
        top.axhline(TARGET_BITS, color="k", lw=0.8, ls="--")
        top.axvline(TARGET_CALLS, color="k", lw=0.8, ls="--")
        top.set_yscale("log")
        top.set_ylabel("standard error of one run (bits/token)")
        top.set_title(f"{toy}\ntarget: below 0.01 left of 256 calls (dashed)", fontsize=10)
        has_truth = not all(math.isnan(r["bias_bits"]) for r in rows if r["toy"] == toy)
        if has_truth:
            bottom.axhline(0, color="k", lw=0.8)
            bottom.set_ylim(-BIAS_CLIP, BIAS_CLIP)
            bottom.set_xlabel("denoiser calls per sequence")
            bottom.set_ylabel(f"bias, 95% CI (bits/token; clipped at ±{BIAS_CLIP})")
        else:  # a trained model: -log P(s) is unknown, so there is no bias to show
            bottom.axis("off")
            bottom.text(0.5, 0.5, "no bias panel:\n-log P(s) is unknown for a trained model", ha="center",
                        va="center", transform=bottom.transAxes)
        for ax in (top, bottom) if has_truth else (top,):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(ScalarFormatter())
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=min(6, 2 * len(names)),
               fontsize=7)
    fig.suptitle("NLL estimators: error vs denoiser calls (exact toys; a trained model has no truth, so no bias)",
                 fontsize=11)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench nll-estimators", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings: seconds, not minutes (the tests run it)")
    parser.add_argument("--repeats", type=int, default=None, help="independent runs per cell (default 64, quick 16)")
    parser.add_argument("--seqs", type=int, default=None, help="sequences per toy (default 4, quick 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--checkpoint", default=None,
                        help="also measure the endpoint estimators on this trained checkpoint (full mode default: "
                             "tiny-shakespeare-dsl; quick mode: none)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (16 if args.quick else 64)
    n_seqs = args.seqs or (2 if args.quick else 4)
    # 240 = 120 nodes x 2 trajectories on the joint ramp: the largest budget under the target's 256 that splits evenly.
    budgets = [32, 128, 240] if args.quick else [32, 64, 128, 240, 512, 1024]
    start = time.perf_counter()
    rows = run_all(args.quick, budgets, repeats, n_seqs, args.seed)
    checkpoint = args.checkpoint or (None if args.quick else "tiny-shakespeare-dsl")
    if checkpoint:  # each call evaluates a 128-token window of a 1 M-parameter model: fewer budgets and repeats
        rows += trained_rows(checkpoint, [128, 512], max(4, repeats // 8), n_seqs, args.seed)
    text = (f"NLL estimators on exact toys: {repeats} repeats x {n_seqs} sequences per cell, seed {args.seed}; "
            f"cells: measured standard error (bias ± 95% CI), bits/token\n" + table(rows) + "\n" + target(rows))
    print(text)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    stem = "nll_estimators_quick" if args.quick else "nll_estimators"
    write(args.out, stem, rows, text, lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
