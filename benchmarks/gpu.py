"""GPU-ready throughput: tokens/s and calls/s of sampling rows against the weight-read bound of the device.

Two random-weight models (no download): an MDLM-small-sized DiT (hidden 768, 12 blocks, 12 heads, GPT-2's V = 50257;
its head and adaLN are drawn at random too, so that its logits are as peaked as a trained model's and the threshold
row has something to act on) behind the DSL converter, and a wrapped masked LM: a random BERT sized like BERT-base
(hidden 768, 12 layers, feed-forward 3072, V = 30522 words; positions L + 2) written with
:func:`snrpaths.backends.hf.save_random` and loaded back with :meth:`~snrpaths.backends.MaskedLM.from_pretrained`.
Each runs every row of :data:`ROWS` at batch 1 and 64, L = 1024, ``T`` steps (``--steps``, default L / 4). Those are
GPU sizes; ``--size cpu`` runs the same rows on a 6 M-parameter DiT (hidden 256, 4 blocks, V = 4096) and a 4-layer
BERT (hidden 256, V = 4096), still at L = 1024, batches 1 and 8, ``T = 16``, the cached row in blocks of 256 (minutes
at one thread), and ``--quick`` on tiny models (the test suite's). :data:`SIZES` holds all three.

* a row is a path expression (``{T}`` the steps) and load options (:mod:`snrpaths.backends.fast`): plain
  ``mdm(T)``; ``threshold``, the confidence-threshold reveal (Fast-dLLM's parallel decoding: a linear clock of ``T``
  steps as the floor, plus every position whose confidence reaches 0.9, so it can stop early); ``compiled``
  (``compile=True``, static shapes: its warm-up round compiles every batch shape it meets); ``bf16`` (autocast);
  ``cached``, Fast-dLLM's dual key/value cache over blocks of 32 positions (``blocks(L / 32, mdm(T / (L / 32)),
  cache='dual')``: the same budget of calls). Adding a row is one line of :data:`ROWS`; a row a model cannot run
  (the masked LM has no block cache) is reported with the reason instead of a time.
* measured: ``sample(path, den, batch=B, seed=r)`` round-robin over every (model, row, batch), one warm-up round, the
  median of ``--repeats`` rounds, timed between device synchronisations. tokens/s = ``B L / t``; calls/s =
  ``nfe / t`` (``nfe`` the denoiser calls the run made).
* the weight-read bound: a call reads every weight at least once, so calls/s <= ``bandwidth / weight_bytes``
  (``weight_bytes`` = parameters x bytes each, as stored: float32 here, also under bf16 autocast, which reads them
  to cast), and tokens/s <= that x ``B L / nfe``. The bandwidth is the card's peak from its data sheet on a known
  GPU (:data:`PEAK_BANDWIDTH`), else a copy calibration: the best of 5 timed ``dst.copy_(src)`` of 256 MiB (2 x 256
  MiB moved each). Both are printed with the table; the ratio measured / bound says how far a row is from it (at
  batch 64 a call is compute-bound, so the ratio falls far below 1 by design).

    snrpaths bench gpu                      # full sizes on the default device (cuda when there is one)
    snrpaths bench gpu --size cpu           # a 6 M DiT and a small BERT, L = 1024, batches 1 and 8: minutes on a CPU
    snrpaths bench gpu --quick              # tiny models, L = 32, batches 1 and 4: seconds on a CPU
    snrpaths bench gpu --batches 1 --repeats 1 --steps 128   # a shorter GPU run
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

import attrs
import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, MaskedLM
from snrpaths.backends.hf import save_random
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._timing import describe_device, round_robin, sync

from snrpaths import SNRPathError, parse_path, sample


@attrs.frozen
class Row:
    """One row of the table: a path expression run with load options. In the expression ``{T}`` stands for the
    steps, ``{blocks}`` for Fast-dLLM's blocks of 32 positions (``L / 32``; cpu: of 256; quick: of 8) and
    ``{T_block}`` for the steps of one block (``T / blocks``), so every row has the same budget of calls."""

    name: str
    path: str
    options: dict = attrs.field(factory=dict)  # set_forward's precision / compile


ROWS = (
    Row("plain", "mdm({T})"),
    Row("threshold", "reveal({T}, order='confidence', threshold=0.9)"),
    Row("compiled", "mdm({T})", {"compile": True}),
    Row("bf16", "mdm({T})", {"precision": "bf16"}),
    Row("cached", "blocks({blocks}, mdm({T_block}), cache='dual')"),
)
#: Peak memory bandwidth (bytes/s) from the data sheets, by a substring of torch's device name.
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.039e12,
                  "A100-PCIE-80GB": 1.935e12, "A100": 1.555e12, "L40S": 0.864e12, "A10G": 0.6e12, "T4": 0.32e12}


#: ``--size``: the models (labels and shapes), L, the batches, the default steps ``T`` and the cached row's block
#: length (``T`` divided evenly among ``L / block`` blocks).
SIZES = {
    "gpu": {"labels": ("DiT (MDLM-small size)", "masked LM (BERT-base size)"),
            "dit": {"vocab": 50257, "hidden": 768, "blocks": 12, "heads": 12},
            "bert": {"vocab": 30522, "hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072},
            "seq_len": 1024, "batches": (1, 64), "steps": 256, "block": 32},
    # a few minutes at one CPU thread: each call still reads all 1024 positions
    "cpu": {"labels": ("DiT (CPU size)", "masked LM (small BERT)"),
            "dit": {"vocab": 4096, "hidden": 256, "blocks": 4, "heads": 4},
            "bert": {"vocab": 4096, "hidden": 256, "layers": 4, "heads": 4, "intermediate": 1024},
            "seq_len": 1024, "batches": (1, 8), "steps": 16, "block": 256},
    "quick": {"labels": ("DiT (tiny)", "masked LM (tiny BERT)"),
              "dit": {"vocab": 128, "hidden": 64, "blocks": 2, "heads": 4},
              "bert": {"vocab": 100, "hidden": 32, "layers": 2, "heads": 2, "intermediate": 128},
              "seq_len": 32, "batches": (1, 4), "steps": 8, "block": 8},
}


# -- models -----------------------------------------------------------------------------------------------------------


def build_dit(vocab: int, hidden: int, blocks: int, heads: int, seq_len: int, seed: int) -> DSLDenoiser:
    """An MDLM-layout DiT with every weight random: MDLM zero-initialises the head and the adaLN maps, which would make
    every logit 0 (the threshold row would never fire). The head's scale puts the logits' spread at about 8 nats."""
    den = DSLDenoiser.build(DiTConfig(vocab_size=vocab, seq_len=seq_len, hidden=hidden, n_blocks=blocks, n_heads=heads),
                            ConverterConfig(), seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in den.backbone.named_parameters():
            if "adaLN" in name or "output_layer.linear" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (8.0 if "output_layer.linear" in name else 0.02)
                        / p.shape[-1] ** 0.5)
    return den


def load_bert(folder: pathlib.Path, vocab: int, hidden: int, layers: int, heads: int, intermediate: int,
              seq_len: int, seed: int) -> MaskedLM:
    save_random(folder, [f"w{k}" for k in range(vocab - 5)], hidden=hidden, layers=layers, heads=heads,
                intermediate=intermediate, max_len=seq_len + 2, seed=seed)
    return MaskedLM.from_pretrained(folder, seq_len=seq_len)


def variant(den, options: dict):
    """A denoiser sharing ``den``'s weights with its own forward options (so rows with different options interleave
    without recompiling)."""
    if isinstance(den, DSLDenoiser):
        twin = DSLDenoiser(den.backbone, den.converter, den.tokenizer).eval()
    else:
        twin = MaskedLM(den.model, mask_id=den.mask_id, seq_len=den.seq_len, samplable=den.samplable,
                        shift=den.shift, prefix=den.prefix, suffix=den.suffix, tokenizer=den.tokenizer)
    return twin.set_forward(**options)


def weight_bytes(den) -> int:
    module = den.backbone if isinstance(den, DSLDenoiser) else den.model
    return sum(p.numel() * p.element_size() for p in module.parameters())


# -- the device --------------------------------------------------------------------------------------------------------


def bandwidth(device: torch.device) -> tuple[float, str]:
    """``(bytes/s, how)``: the data sheet's peak for a known GPU, else the copy calibration."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BANDWIDTH.items():
            if key in name:
                return peak, f"data sheet peak of {key}"
    return copy_bandwidth(device), "copy calibration (best of 5 copies of 256 MiB)"


def copy_bandwidth(device: torch.device, mib: int = 256, repeats: int = 5) -> float:
    """Bytes moved per second by ``dst.copy_(src)`` of ``mib`` MiB (read + write = 2 x size), best of ``repeats``."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 1):  # the first copy faults the pages in
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


# -- the study ---------------------------------------------------------------------------------------------------------


def measure(args, device: torch.device) -> dict:
    size = SIZES[args.size]
    L, T = size["seq_len"], args.steps or size["steps"]
    batches = tuple(args.batches or size["batches"])
    rows = tuple(attrs.evolve(r, options={**r.options, "compile": args.compile_backend})
                 if r.options.get("compile") is True and args.compile_backend else r for r in ROWS)
    with tempfile.TemporaryDirectory() as folder:
        dit, bert = size["labels"]
        models = {dit: build_dit(**size["dit"], seq_len=L, seed=args.seed).to(device),
                  bert: load_bert(pathlib.Path(folder), **size["bert"], seq_len=L, seed=args.seed).to(device)}
    peak, how = bandwidth(device)
    jobs, cells = {}, {}
    for model_name, den in models.items():
        for row in rows:
            try:
                twin = variant(den, row.options)
                blocks = L // size["block"]
                program = parse_path(row.path.format(T=T, blocks=blocks, T_block=max(1, T // blocks))).compile(L)
                program.require(twin)
            except SNRPathError as err:
                cells.update({(model_name, row.name, b): {"skipped": f"{type(err).__name__}: {err}"} for b in batches})
                continue
            for b in batches:
                jobs[(model_name, row.name, b)] = lambda s, twin=twin, program=program, b=b: sample(
                    program, twin, batch=b, seed=s).nfe
    times = round_robin(jobs, args.repeats, args.seed, device=device, warmup=1)
    for key, t in times.items():
        model_name, _, b = key
        seconds, nfe = statistics.median(t["seconds"]), statistics.median(t["nfe"])
        bound_calls = peak / weight_bytes(models[model_name])
        cells[key] = {"seconds": t["seconds"], "nfe": t["nfe"], "median_s": seconds, "tokens_per_s": b * L / seconds,
                      "calls_per_s": nfe / seconds, "bound_calls_per_s": bound_calls,
                      "bound_tokens_per_s": bound_calls * b * L / nfe, "of_bound": (nfe / seconds) / bound_calls}
    against_plain(cells)
    return {"device": describe_device(device), "bandwidth_bytes_per_s": peak, "bandwidth_source": how,
            "size": args.size, "seq_len": L, "steps": T, "batches": list(batches), "repeats": args.repeats,
            "seed": args.seed,
            "rows": [attrs.asdict(r) for r in rows],
            "models": {name: {"parameters": sum(p.numel() for p in (den.backbone if isinstance(den, DSLDenoiser)
                                                                    else den.model).parameters()),
                              "weight_bytes": weight_bytes(den)} for name, den in models.items()},
            "cells": [{"model": m, "row": r.name, "batch": b, **cells[(m, r.name, b)]} for m in models for r in rows
                      for b in batches]}


def against_plain(cells: dict) -> None:
    """Add to each timed cell its tokens/s and calls/s over those of the plain row (same model and batch), in place."""
    for (model, _, b), cell in cells.items():
        plain = cells.get((model, "plain", b), {})
        if "tokens_per_s" in cell and "tokens_per_s" in plain:
            cell["tokens_vs_plain"] = cell["tokens_per_s"] / plain["tokens_per_s"]
            cell["calls_vs_plain"] = cell["calls_per_s"] / plain["calls_per_s"]


def report(result: dict) -> str:
    gb = result["bandwidth_bytes_per_s"] / 1e9
    lines = [f"Throughput on {result['device']}, L = {result['seq_len']}, T = {result['steps']} steps, median of "
             f"{result['repeats']} after a warm-up; bandwidth {gb:.1f} GB/s ({result['bandwidth_source']})", "",
             "weight-read bound: calls/s <= bandwidth / weight bytes; tokens/s <= that x B L / calls", ""]
    for name, model in result["models"].items():
        lines.append(f"* {name}: {model['parameters'] / 1e6:.3g} M parameters, {model['weight_bytes'] / 1e6:.3g} MB")
    lines += ["", "x plain: the row's tokens/s (calls/s) over the plain row's, same model and batch", "",
              "| model | row | batch | calls | tokens/s | x plain | calls/s | x plain | bound calls/s | bound tokens/s "
              "| of bound |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in result["cells"]:
        head = f"| {cell['model']} | {cell['row']} | {cell['batch']} |"
        if "skipped" in cell:
            lines.append(f"{head} | n/a: {cell['skipped'][:90]} | | | | | | |")
            continue
        ratios = [f"{cell[k]:.2f}" if k in cell else "n/a" for k in ("tokens_vs_plain", "calls_vs_plain")]
        lines.append(f"{head} {cell['nfe'][-1]} | {cell['tokens_per_s']:.1f} | {ratios[0]} | {cell['calls_per_s']:.2f} "
                     f"| {ratios[1]} | {cell['bound_calls_per_s']:.0f} | {cell['bound_tokens_per_s']:.0f} | "
                     f"{cell['of_bound']:.4f} |")
    return "\n".join(lines)


def plot(result: dict, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, batches = list(result["models"]), result["batches"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.4), constrained_layout=True, squeeze=False)
    for ax, model in zip(axes[0], models):
        cells = [c for c in result["cells"] if c["model"] == model]
        names = list(dict.fromkeys(c["row"] for c in cells))
        width = 0.8 / len(batches)
        for j, b in enumerate(batches):
            values = [next((c.get("tokens_per_s", 0.0) for c in cells if c["row"] == n and c["batch"] == b), 0.0)
                      for n in names]
            ax.bar([i + j * width for i in range(len(names))], values, width, label=f"batch {b}", color=f"C{j}")
        ax.set_xticks([i + width * (len(batches) - 1) / 2 for i in range(len(names))], names)
        if any(c.get("tokens_per_s", 0.0) > 0 for c in cells):  # a model with no runnable row has nothing to log-scale
            ax.set_yscale("log")
        ax.set_ylabel("tokens/s")
        ax.set_title(model)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['device']}, L = {result['seq_len']}", fontsize=9)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="gpu",
                        help="gpu (default): MDLM-small DiT and BERT-base, batches 1 and 64, T = 256; cpu: a 6 M "
                             "DiT and a 4-layer BERT (hidden 256, V = 4096), batches 1 and 8, T = 16, blocks of 256 "
                             "(minutes at one thread); quick: the same as --quick")
    parser.add_argument("--quick", action="store_true", help="tiny models, L = 32, batches 1 and 4 (seconds on a CPU); "
                                                             "the compiled row traces with aot_eager")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="default: 1 and 64 (cpu: 1 and 8; quick: 1 and 4)")
    parser.add_argument("--steps", type=int, default=None, help="T (default: L / 4; cpu: 16; quick: 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default: 2; "
                                                                    "cpu and quick: 1)")
    parser.add_argument("--compile-backend", default=None,
                        help="the compiled row's torch.compile backend (default: inductor; quick: aot_eager)")
    parser.add_argument("--seed", type=int, default=0, help="weights and sampling seeds")
    args = parser.parse_args(argv)
    args.size = "quick" if args.quick else args.size
    if args.size == "quick" and args.compile_backend is None:
        args.compile_backend = "aot_eager"
    args.repeats = args.repeats or (2 if args.size == "gpu" else 1)
    device = torch.device(args.device)
    result = measure(args, device)
    text = report(result)
    print(text)
    write(args.out, "gpu" + ("" if args.size == "gpu" else f"_{args.size}"), result, text,
          lambda path: plot(result, path))


if __name__ == "__main__":
    main()
