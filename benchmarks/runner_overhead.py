"""Runner overhead: ``sample(path, ...)`` against a minimal hand-written loop making the same calls.

``--backend dit`` (default): ``Path.mdm(T)`` against a hand-written MDLM loop, both on the same small DiT denoiser
with the same rule (MDLM's reveal probability, float64 draws, a step whose coin flips reveal nothing costs no call).
``--backend masked-lm``: ``reveal(count=L/T, order='confidence')`` on a wrapped masked LM
(:class:`snrpaths.backends.MaskedLM` over a randomly initialised BERT built from its config, saved and loaded back)
against a hand-written LLaDA-style decoding loop on the bare model: each step one forward pass on ``[CLS] ids [SEP]``,
the logits restricted to the samplable ids, the ``L/T`` most confident masked positions of each row revealed with
float64 draws. Runs alternate, after a warm-up, and the table reports medians and their ratio, measured side by side
in one process.

    python benchmarks/runner_overhead.py                        # batch 64, L = 256, T = 256 (target: ratio <= 1.05)
    python benchmarks/runner_overhead.py --backend masked-lm    # batch 8, L = 128, T = 64 (target: ratio <= 1.05)
    python benchmarks/runner_overhead.py --quick                # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile

import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, MaskedLM
from snrpaths.backends.hf import save_random
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._timing import describe_device, round_robin

from snrpaths import Path, parse_path, sample
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


def hand_written_llada(model: torch.nn.Module, mask_id: int, samplable: torch.Tensor, frame: tuple[int, int],
                       batch: int, seq_len: int, steps: int, seed: int) -> tuple[torch.Tensor, int]:
    """LLaDA's decoding loop written by hand on a bare masked LM: ``steps`` forward passes, each revealing the
    ``seq_len / steps`` most confident masked positions of every row (confidence ``max_v p(v)`` over the samplable
    ids), tokens drawn in float64 at those positions only."""
    g = torch.Generator().manual_seed(seed)
    per_step = seq_len // steps
    ids = torch.full((batch, seq_len), mask_id, dtype=torch.int64)
    cls, sep = (torch.full((batch, 1), f, dtype=torch.int64) for f in frame)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.cat([cls, ids, sep], 1)).logits[:, 1:-1].index_select(-1, samplable)
        confidence = torch.softmax(logits.float(), -1).amax(-1).masked_fill(ids != mask_id, -1.0)
        cols = confidence.topk(per_step, dim=1).indices  # [B, k]
        rows = torch.arange(batch)[:, None].expand_as(cols)
        ids[rows, cols] = samplable[categorical(probabilities(logits[rows, cols]), g)]
    return ids, steps


def _timed(jobs: dict, repeats: int, seed: int, sizes: dict) -> dict:
    """The jobs alternating, one warm-up round (allocator, kernels); round ``r`` samples with seed ``seed + 1 + r``."""
    times = round_robin(jobs, repeats, seed, warmup=1)
    median = {n: statistics.median(t["seconds"]) for n, t in times.items()}
    hand, ours = median.values()
    return {**sizes, "repeats": repeats, "seed": seed, "device": describe_device(torch.device("cpu")),
            "seconds": {n: t["seconds"] for n, t in times.items()}, "median_s": median,
            "nfe": {n: t["nfe"][-1] for n, t in times.items()}, "ratio": ours / hand}


def measure(batch: int, seq_len: int, steps: int, repeats: int, hidden: int, blocks: int, seed: int = 0) -> dict:
    """Both loops on one random-init DiT (weights from ``seed``)."""
    torch.manual_seed(seed)
    den = DSLDenoiser.build(DiTConfig(vocab_size=64, seq_len=seq_len, hidden=hidden, cond_dim=64, n_blocks=blocks,
                                      n_heads=4), ConverterConfig(anchor_dim=16)).eval()
    path = Path.mdm(steps).compile(seq_len)
    jobs = {"hand-written loop": lambda s: hand_written_mdlm(den, batch, steps, s)[1],
            "snrpaths.sample": lambda s: sample(path, den, batch=batch, seed=s).nfe}
    sizes = {"batch": batch, "seq_len": seq_len, "steps": steps, "hidden": hidden, "blocks": blocks}
    return _timed(jobs, repeats, seed, sizes | {"what": f"MDLM T={steps}", "model": f"DiT hidden {hidden} x {blocks} "
                                                                                     "blocks"})


def measure_masked_lm(batch: int, seq_len: int, steps: int, repeats: int, hidden: int, blocks: int, vocab: int,
                      seed: int = 0) -> dict:
    """Both loops on one random-init BERT masked LM (``vocab`` words, weights from ``seed``), saved to a temporary
    folder and loaded back with :meth:`MaskedLM.from_pretrained`, as a user would."""
    with tempfile.TemporaryDirectory() as folder:
        save_random(folder, [f"w{k}" for k in range(vocab)], hidden=hidden, layers=blocks, heads=4,
                    max_len=seq_len + 2, seed=seed)
        den = MaskedLM.from_pretrained(folder, seq_len=seq_len)
    path = parse_path(f"reveal(count={seq_len // steps}, order='confidence')").compile(seq_len)
    samplable = torch.tensor(den.samplable)
    jobs = {"hand-written loop": lambda s: hand_written_llada(den.model, den.mask_id, samplable,
                                                              (*den.prefix, *den.suffix), batch, seq_len, steps, s)[1],
            "snrpaths.sample": lambda s: sample(path, den, batch=batch, seed=s).nfe}
    sizes = {"batch": batch, "seq_len": seq_len, "steps": steps, "hidden": hidden, "blocks": blocks, "vocab": vocab}
    return _timed(jobs, repeats, seed, sizes | {"what": f"LLaDA-style confidence decoding T={steps}",
                                                "model": f"masked LM (BERT) hidden {hidden} x {blocks} layers, "
                                                         f"V = {vocab}"})


def report(result: dict) -> str:
    med = result["median_s"]
    lines = [(f"Runner overhead, {result['what']}, batch {result['batch']}, L={result['seq_len']}, "
              f"{result['model']}, {result['device']}"), "",
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
    ax.set_title(f"{result['what']}, batch {result['batch']}, L={result['seq_len']}: "
                 f"ratio {result['ratio']:.3f}")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench runner-overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0, help="weights and sampling seeds")
    parser.add_argument("--backend", choices=("dit", "masked-lm"), default="dit",
                        help="dit: MDLM on a small DiT; masked-lm: LLaDA-style decoding on a wrapped masked LM")
    args = parser.parse_args(argv)
    if args.backend == "dit":
        sizes = {"batch": 8, "seq_len": 64, "steps": 64, "repeats": 2, "hidden": 64, "blocks": 1} if args.quick else \
            {"batch": 64, "seq_len": 256, "steps": 256, "repeats": 3, "hidden": 128, "blocks": 2}
        result = measure(**sizes, seed=args.seed)
    else:
        sizes = ({"batch": 2, "seq_len": 16, "steps": 8, "repeats": 2, "hidden": 32, "blocks": 1, "vocab": 50}
                 if args.quick else
                 {"batch": 8, "seq_len": 128, "steps": 64, "repeats": 5, "hidden": 256, "blocks": 4, "vocab": 2000})
        result = measure_masked_lm(**sizes, seed=args.seed)
    text = report(result)
    print(text)
    stem = "runner_overhead" + ("_masked_lm" if args.backend == "masked-lm" else "") + ("_quick" if args.quick else "")
    write(args.out, stem, result, text, lambda path: plot(result, path))


if __name__ == "__main__":
    main()
