"""Runner overhead: ``sample(Path.mdm(T), ...)`` against a minimal hand-written MDLM loop making the same calls.

Both run the same small DiT denoiser on the same device with the same rule (MDLM's reveal probability, float64
draws, a step whose coin flips reveal nothing costs no call). Runs alternate, after a warm-up, and the table
reports medians and their ratio, measured side by side in one process.

    python benchmarks/runner_overhead.py            # batch 64, L = 256, T = 256 (target: ratio <= 1.05)
    python benchmarks/runner_overhead.py --quick    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import pathlib
import statistics

import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._timing import describe_device, round_robin

from snrpaths import Path, sample
from snrpaths.draw import categorical, probabilities


def hand_written_mdlm(den: DSLDenoiser, batch: int, steps: int, seed: int) -> tuple[torch.Tensor, int]:
    """The loop a researcher writes by hand: MDLM, linear clock, float64 draws, empty steps skipped."""
    g = torch.Generator().manual_seed(seed)
    L, d = den.seq_len, den.table.dim
    gamma = torch.zeros(batch, L)
    z = torch.zeros(batch, L, d)
    tokens = torch.full((batch, L), -1, dtype=torch.int64)
    nfe = 0
    for k in range(steps):
        t, s = (steps - k) / steps, (steps - k - 1) / steps
        masked = torch.isfinite(gamma)
        reveal = masked & (torch.rand(batch, L, generator=g, dtype=torch.float64) < (t - s) / t)
        if not bool(reveal.any()):
            continue
        # The previous non-empty step changed the state, so the cache can only hit on the first step.
        with torch.no_grad():
            logits = den(z, gamma, tokens)
        nfe += 1
        rows, cols = reveal.nonzero(as_tuple=True)
        tokens[rows, cols] = categorical(probabilities(logits[rows, cols]), g)
        gamma = torch.where(reveal, float("inf"), gamma)
    return tokens, nfe


def measure(batch: int, seq_len: int, steps: int, repeats: int, hidden: int, blocks: int, seed: int = 0) -> dict:
    """Both loops on one random-init DiT (weights from ``seed``), alternating, one warm-up round; round ``r`` of
    both samples with seed ``seed + 1 + r``."""
    torch.manual_seed(seed)
    den = DSLDenoiser.build(DiTConfig(vocab_size=64, seq_len=seq_len, hidden=hidden, cond_dim=64, n_blocks=blocks,
                                      n_heads=4), ConverterConfig(anchor_dim=16)).eval()
    path = Path.mdm(steps).compile(seq_len)
    jobs = {"hand-written loop": lambda s: hand_written_mdlm(den, batch, steps, s)[1],
            "snrpaths.sample": lambda s: sample(path, den, batch=batch, seed=s).nfe}
    times = round_robin(jobs, repeats, seed, warmup=1)  # warm-up: allocator, kernels
    hand, ours = (statistics.median(times[n]["seconds"]) for n in jobs)
    return {"batch": batch, "seq_len": seq_len, "steps": steps, "repeats": repeats, "hidden": hidden, "blocks": blocks,
            "seed": seed, "device": describe_device(torch.device("cpu")),
            "seconds": {n: t["seconds"] for n, t in times.items()},
            "median_s": {"hand-written loop": hand, "snrpaths.sample": ours},
            "nfe": {n: t["nfe"][-1] for n, t in times.items()}, "ratio": ours / hand}


def report(result: dict) -> str:
    med = result["median_s"]
    lines = [(f"Runner overhead, MDLM T={result['steps']}, batch {result['batch']}, L={result['seq_len']}, "
              f"DiT hidden {result['hidden']} x {result['blocks']} blocks, {result['device']}"), "",
             "| loop | median s | NFE | s per call |", "|---|---:|---:|---:|"]
    for name, seconds in med.items():
        lines.append(f"| {name} | {seconds:.3f} | {result['nfe'][name]} | {seconds / result['nfe'][name] * 1e3:.2f} ms |")
    lines.append(f"\n**ratio snrpaths / hand-written = {result['ratio']:.3f}** (target <= 1.05)")
    return "\n".join(lines)


def plot(result: dict, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    names = list(result["seconds"])
    for i, name in enumerate(names):
        ax.scatter([i] * len(result["seconds"][name]), result["seconds"][name], color=f"C{i}", alpha=0.6)
        ax.hlines(result["median_s"][name], i - 0.2, i + 0.2, color=f"C{i}", lw=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("wall time per run (s)")
    ax.set_title(f"MDLM T={result['steps']}, batch {result['batch']}, L={result['seq_len']}: "
                 f"ratio {result['ratio']:.3f}")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0, help="weights and sampling seeds")
    args = parser.parse_args(argv)
    sizes = {"batch": 8, "seq_len": 64, "steps": 64, "repeats": 2, "hidden": 64, "blocks": 1} if args.quick else \
        {"batch": 64, "seq_len": 256, "steps": 256, "repeats": 3, "hidden": 128, "blocks": 2}
    result = measure(**sizes, seed=args.seed)
    text = report(result)
    print(text)
    stem = "runner_overhead_quick" if args.quick else "runner_overhead"
    write(args.out, stem, result, text, lambda path: plot(result, path))


if __name__ == "__main__":
    main()
