"""Validation bits per character and samples of the shipped checkpoints (the numbers in the README).

For each checkpoint: the ROAR estimate of bits per character on the held-out plays (every non-overlapping window of
``seq_len`` characters up to ``--windows``, one random order and step each; mean and standard error over windows),
then ``--n`` samples at each of a few paths with their call counts.

    python benchmarks/shipped_checkpoints.py                 # both shipped checkpoints, 2048 windows
    python benchmarks/shipped_checkpoints.py --windows 256 --n 1
"""

import argparse
import time

import torch

from snrpaths import parse_path, sample
from snrpaths.cli_model import load_with_tokenizer
from snrpaths.data import fixed_windows, load_corpus
from snrpaths.train import evaluate

PATHS = ("ramp(16) >> mdm(32, remask='confidence')", "mdm(48)", "mdm(128)", "ar()")


def main(argv: list[str] | None = None) -> None:
    with torch.no_grad():  # not inference_mode: DSLDenoiser.table reads the version counter of its anchors
        _run(argv)


def _run(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", nargs="+", default=["tiny-shakespeare-mdlm", "tiny-shakespeare-dsl"])
    p.add_argument("--windows", type=int, default=2048, help="validation windows (at most all of them)")
    p.add_argument("--n", type=int, default=2, help="samples per path")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    corpus = load_corpus()
    print("| checkpoint | validation bits/char (ROAR, ± 1 s.e.) | windows | s |\n|---|---|---:|---:|")
    models = {}
    for name in args.checkpoints:
        model, tokenizer = load_with_tokenizer(name)
        models[name] = (model, tokenizer)
        windows = fixed_windows(tokenizer.encode(corpus.text("valid")), args.windows, model.seq_len)
        start = time.perf_counter()
        bpc, se = evaluate(model, None, windows, seed=args.seed)
        print(f"| {name} | {bpc:.3f} ± {se:.3f} | {len(windows)} | {time.perf_counter() - start:.0f} |")
    for name, (model, tokenizer) in models.items():
        for text in PATHS:
            path = parse_path(text)
            result = sample(path, model, batch=args.n, seed=args.seed)
            print(f"\n{name}, path {text} ({result.nfe} calls):")
            for row in result.tokens:
                print("    " + tokenizer.decode(row).replace("\n", "\n    "))


if __name__ == "__main__":
    main()
