"""Exact HMM study, part (a) of issue 14: the error each path itself adds at L = 256 when the denoiser is perfect.

A random hidden Markov model with structural zeros (``ExactHMM.random``: K states, V tokens, each state moving to
``--successors`` states and emitting ``--emissions`` tokens) is its own exact Bayes denoiser, so every error is the
path's. Each built-in sampler runs at NFE budgets 8..256 and its samples are judged by the true model
(:func:`snrpaths.quality.exact_quality`): generative NLL gap ``E_Q[-log2 P(s)] / L - H(P) / L`` in bits per token
and the invalid rate (samples with ``P(s) = 0``), each ± 1 standard error. The zero-error control is stochastic
localization with tokens drawn from the exact joint posterior (``ExactHMM.sample_posterior``): exact at every
budget, its gap and invalid rate show the study's noise floor.

    python benchmarks/hmm_study.py --quick    # seconds: K = V = 16, L = 64
    python benchmarks/hmm_study.py            # K = V = 64, L = 256
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import torch
from snrpaths.backends.hmm import ExactHMM
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._samplers import BUILTIN, OWN_NFE

from snrpaths import Path, SNRState, parse_path, sample
from snrpaths.channel import localize
from snrpaths.quality import exact_quality

CONTROL = "SL joint posterior"
#: sampler name -> path expression for a budget of ``T`` calls (AR and ROAR cost L calls and run once).
SAMPLERS = {
    **BUILTIN,
    "ramp+commit": lambda T: f"ramp({max(T - 1, 1)}) >> switch('commit')",
    "hybrid": lambda T: f"hybrid({max(T // 2, 1)}, {max(T - T // 2, 1)})",
}
FULL = {"states": 64, "vocab": 64, "seq_len": 256, "n": 256, "budgets": (8, 16, 32, 64, 128, 256), "entropy_n": 4096}
QUICK = {"states": 16, "vocab": 16, "seq_len": 64, "n": 64, "budgets": (8, 32), "entropy_n": 512}


def localization_control(hmm: ExactHMM, n: int, steps: int, seed: int) -> torch.Tensor:
    """``[n, L]`` samples by ``steps`` stochastic-localization steps on the ramp's schedule, each moving ``z`` toward
    the anchors of a sequence drawn from the exact joint posterior, then one last joint-posterior draw (``steps``
    calls of ``sample_posterior`` in all, counted as NFE): exact in law at any ``steps``."""
    g = torch.Generator().manual_seed(seed)
    state = SNRState.masked(n, hmm.seq_len, hmm.table)
    ramp = Path.ramp(max(steps - 1, 1))  # the built-in ramp's schedule and defaults
    levels = [ramp.schedule.gamma(k / ramp.steps, ramp.gamma_max, ramp.kappa, ramp.gamma_min)
              for k in range(1, steps)]
    for level in levels:
        target = hmm.table.embed(hmm.sample_posterior(state, g))
        gamma = torch.full_like(state.gamma, float(level))
        state = SNRState(gamma, localize(state.z, state.gamma, gamma, target, g), state.tokens, state.fixed,
                         state.confidence)
    return hmm.sample_posterior(state, g)


def run(args) -> tuple[list[dict], tuple[float, float]]:
    hmm = ExactHMM.random(args.states, args.vocab, args.seq_len, seed=args.seed, successors=args.successors,
                          emissions=args.emissions)
    entropy = hmm.entropy_rate(n=args.entropy_n, seed=args.seed + 1)
    cells = [(name, None if name in OWN_NFE else budget) for name in SAMPLERS for budget in args.budgets]
    cells = list(dict.fromkeys(cells)) + [(CONTROL, budget) for budget in args.budgets]
    rows = []
    for name, budget in cells:
        start = time.perf_counter()
        if name == CONTROL:
            tokens, nfe, path = localization_control(hmm, args.n, budget, args.seed), budget, CONTROL
        else:
            path = parse_path(SAMPLERS[name](budget or hmm.seq_len))
            result = sample(path, hmm, batch=args.n, seed=args.seed)
            tokens, nfe, path = result.tokens, result.nfe, repr(path)
        q = exact_quality(hmm, tokens, entropy)
        rows.append({"sampler": name, "budget": budget or nfe, "path": path, "nfe": nfe, **q.to_dict(),
                     "seconds": time.perf_counter() - start})
        print(f"{name:>20} T={budget or '-':<4} nfe={nfe:<4} gap={q.gap:+.4f} ± {q.gap_se:.4f} "
              f"invalid={q.invalid:.3f} ± {q.invalid_se:.3f}", flush=True)
    return rows, entropy


def _cell(row: dict | None) -> str:
    if row is None:
        return "—"
    gap = "—" if math.isnan(row["gap"]) else f"{row['gap']:+.3f} ± {row['gap_se']:.3f}"
    return f"{gap} ({100 * row['invalid']:.1f}% ± {100 * row['invalid_se']:.1f})"


def table(rows: list[dict], args, entropy: tuple[float, float]) -> str:
    budgets = sorted({r["budget"] for r in rows})
    h, h_se = (v / math.log(2) for v in entropy)
    out = [f"Exact HMM study: K = {args.states}, V = {args.vocab}, L = {args.seq_len}, successors {args.successors}, "
           f"emissions {args.emissions}, seed {args.seed}; {args.n} samples per cell; entropy rate {h:.4f} ± "
           f"{h_se:.4f} bits/token from {args.entropy_n} exact samples.\n",
           "Cells: gen. NLL gap to the entropy rate, bits/token ± s.e. (invalid rate ± s.e.); columns = NFE budget "
           "(AR and ROAR in the column of their L calls).\n",
           "| sampler | " + " | ".join(f"T={b}" for b in budgets) + " |", "|---|" + "---:|" * len(budgets)]
    for name in [*SAMPLERS, CONTROL]:
        cells = {r["budget"]: r for r in rows if r["sampler"] == name}
        out.append(f"| {name} | " + " | ".join(_cell(cells.get(b)) for b in budgets) + " |")
    return "\n".join(out)


def plot(rows: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, name in enumerate([*SAMPLERS, CONTROL]):
        pts = sorted((r["nfe"], r["gap"], r["gap_se"], r["invalid"], r["invalid_se"]) for r in rows
                     if r["sampler"] == name)
        nfe, gap, gap_se, invalid, invalid_se = zip(*pts)
        style = dict(fmt="s" if name in OWN_NFE else ("k--o" if name == CONTROL else "-o"), ms=3, capsize=2,
                     label=name, **({} if name == CONTROL else {"color": f"C{i % 10}"}))
        axes[0].errorbar(nfe, gap, yerr=gap_se, **style)
        axes[1].errorbar(nfe, invalid, yerr=invalid_se, **style)
    for ax, label in zip(axes, ("gen. NLL gap to the entropy rate (bits/token)", "invalid rate (P(s) = 0)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("denoiser calls actually made (NFE)")
        ax.set_ylabel(label)
    axes[1].legend(fontsize=7)
    fig.suptitle("Exact HMM study: the error each path adds with the exact Bayes denoiser")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench hmm", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = V = 16, L = 64, budgets 8 and 32 (seconds)")
    parser.add_argument("--states", type=int, help=f"hidden states K (default {FULL['states']})")
    parser.add_argument("--vocab", type=int, help=f"tokens V (default {FULL['vocab']})")
    parser.add_argument("--seq-len", type=int, help=f"L (default {FULL['seq_len']})")
    parser.add_argument("--successors", type=int, default=4, help="states each state can move to (default 4)")
    parser.add_argument("--emissions", type=int, default=4, help="tokens each state can emit (default 4)")
    parser.add_argument("--n", type=int, help=f"samples per cell (default {FULL['n']})")
    parser.add_argument("--budgets", type=int, nargs="+", help=f"NFE budgets (default {FULL['budgets']})")
    parser.add_argument("--entropy-n", type=int, help=f"exact samples for the entropy rate (default {FULL['entropy_n']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small ops, shared cores)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.n < 2 or min(args.budgets) < 1:
        parser.error("--n must be at least 2 and every budget at least 1")
    torch.set_num_threads(args.threads)
    rows, entropy = run(args)
    text = table(rows, args, entropy)
    print(text)
    stem = "hmm_study_quick" if args.quick else "hmm_study"
    write(args.out, stem, {"settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
                           "entropy_rate_nats": entropy, "rows": rows}, text, lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
