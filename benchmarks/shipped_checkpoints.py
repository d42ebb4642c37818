"""Validation bits per character and samples of the shipped checkpoints (the numbers in the README).

For each checkpoint: the ROAR estimate of bits per character on the held-out plays (every non-overlapping window of
``seq_len`` characters up to ``--windows``, one random order and step each; mean and standard error over windows),
then ``--n`` samples at each of a few paths with their call counts (sample ``i`` is what
``snrpaths sample --seed S`` prints as sample ``i``).

    snrpaths bench shipped-checkpoints                 # both shipped checkpoints, 2048 windows
    snrpaths bench shipped-checkpoints --quick         # 64 windows, one sample per path
"""

import argparse
import pathlib
import time

import torch
from snrpaths.backends.text import load_with_tokenizer
from snrpaths.benchmarks._results import RESULTS, write

from snrpaths import parse_path, sample
from snrpaths.data import fixed_windows, load_corpus
from snrpaths.train import evaluate

PATHS = ("ramp(16) >> mdm(32, remask='confidence')", "mdm(48)", "mdm(128)", "ar()")


def main(argv: list[str] | None = None) -> None:
    with torch.no_grad():  # not inference_mode: DSLDenoiser.table reads the version counter of its anchors
        _run(argv)


def _run(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(prog="snrpaths bench shipped-checkpoints", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="64 windows and one sample per path")
    p.add_argument("--checkpoints", nargs="+", default=["tiny-shakespeare-mdlm", "tiny-shakespeare-dsl"],
                   help="shipped names or paths (default: both shipped checkpoints)")
    p.add_argument("--windows", type=int, default=None, help="validation windows, at most all (default 2048)")
    p.add_argument("--n", type=int, default=None, help="samples per path (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS,
                   help="results folder for the JSON, table and plot (default: benchmarks/results)")
    args = p.parse_args(argv)
    windows_wanted = args.windows or (64 if args.quick else 2048)
    n = args.n or (1 if args.quick else 2)
    corpus = load_corpus()
    rows, lines = [], ["| checkpoint | validation bits/char (ROAR, ± 1 s.e.) | windows | s |", "|---|---|---:|---:|"]
    models = {name: load_with_tokenizer(name) for name in args.checkpoints}
    for name, (model, tokenizer) in models.items():
        windows = fixed_windows(tokenizer.encode(corpus.text("valid")), windows_wanted, model.seq_len)
        start = time.perf_counter()
        bpc, se = evaluate(model, None, windows, seed=args.seed)
        rows.append({"checkpoint": name, "bits_per_char": bpc, "se": se, "windows": len(windows),
                     "seconds": time.perf_counter() - start, "samples": {}})
        lines.append(f"| {name} | {bpc:.3f} ± {se:.3f} | {len(windows)} | {rows[-1]['seconds']:.0f} |")
    for row, (model, tokenizer) in zip(rows, models.values()):
        for text in PATHS:
            result = sample(parse_path(text), model, batch=n, seed=args.seed)
            row["samples"][text] = {"nfe": result.nfe, "calls": result.calls.tolist(),
                                    "texts": [tokenizer.decode(t) for t in result.tokens]}
    text = "\n".join(lines)
    print(text)
    for row in rows:
        for path, got in row["samples"].items():
            print(f"\n{row['checkpoint']}, path {path} ({got['nfe']} calls for the batch):")
            for i, (calls, sample_text) in enumerate(zip(got["calls"], got["texts"])):
                print(f"  sample {i} ({calls} calls):\n    " + sample_text.replace("\n", "\n    "))
    write(args.out, "shipped_checkpoints_quick" if args.quick else "shipped_checkpoints", rows, text,
          lambda path: _plot(rows, path))


def _plot(rows, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([r["checkpoint"] for r in rows], [r["bits_per_char"] for r in rows], yerr=[r["se"] for r in rows],
           capsize=4, color="0.6")
    ax.set_ylabel("validation bits/char (ROAR)")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
