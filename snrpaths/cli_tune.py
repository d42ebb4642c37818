"""The ``tune`` subcommand: search a path family at a call budget for the best validation metric.

    snrpaths tune --family hybrid --nfe 8 --toy markov --trials 30 --storage tune.db --out tune.png
    snrpaths tune --family mdm --nfe 16 --checkpoint tiny-shakespeare-dsl --metric bits --trials 10

On an exact toy joint the metric is by default the total variation to the truth (``tv``); on a checkpoint, the
samples' bits per character under the reference LM (``bits``). With ``--storage`` every finished trial is kept in an
SQLite file: interrupt the run and start it again with the same options, and only the missing trials run. Prints
the trials, the default's and the best path's values, and the best path's expression (:func:`snrpaths.tune`).
"""

from __future__ import annotations

import argparse

from .cli_toys import TOYS, make_toy
from .errors import SNRPathError
from .files import FIGURE_SUFFIXES, check_output_file
from .tuning import DEFAULT_SAMPLES, FAMILIES, METRICS, tune


def add_command(commands) -> None:
    p = commands.add_parser("tune", help="search a path family at a call budget for the best validation metric",
                            description=__doc__.split("\n\n")[0],
                            epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="hybrid", choices=tuple(FAMILIES),
                   help=f"the paths searched: {', '.join(FAMILIES)} (default: hybrid)")
    p.add_argument("--nfe", type=int, default=16, help="the call budget every path tried keeps to (default: 16)")
    p.add_argument("--metric", default=None, choices=tuple(METRICS),
                   help="tv (exact toy: total variation to the truth), hmm (exact toy: gen. NLL gap + invalid "
                        "penalty), bits (checkpoint: gen. bits/char under SmolLM2); default: tv on a toy, bits on a "
                        "checkpoint")
    p.add_argument("--trials", type=int, default=30, help="trials in all, the default path first (default: 30)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the search and every trial's samples, one seed for all trials (default: 0)")
    p.add_argument("--n", type=int, default=None,
                   help="samples per trial (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_SAMPLES.items())
                        + ")")
    p.add_argument("--storage", default=None,
                   help="an SQLite file (or Optuna storage URL) keeping finished trials, so a rerun resumes "
                        "(default: none, in memory)")
    p.add_argument("--out", default=None, help="also write the figure of the trials here, e.g. tune.png")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (default: a bar)")
    model = p.add_argument_group("the model sampled (an exact toy unless --checkpoint)")
    model.add_argument("--checkpoint", default=None, help="a shipped name or a path (default: none, an exact toy)")
    model.add_argument("--toy", default="markov", choices=TOYS, help="the exact toy joint (default: markov)")
    model.add_argument("--vocab", type=int, default=3, help="V for markov / random toys (default: 3)")
    model.add_argument("--length", type=int, default=4, help="L of the toy (default: 4)")
    model.add_argument("--toy-seed", type=int, default=0, help="seeds the toy's joint (default: 0)")
    p.set_defaults(run=run_tune)


def run_tune(args) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out", FIGURE_SUFFIXES)  # before the trials, not after them
    denoiser, metric = _model(args)
    tuned = tune(args.family, denoiser, args.nfe, metric, trials=args.trials, seed=args.seed, n=args.n,
                 storage=args.storage, progress=args.progress)
    print(f"{args.family} at {args.nfe} calls, metric {metric} (lower is better), seed {args.seed}\n")
    print(tuned.table())
    print(f"\ndefault: {tuned.default!r}  {tuned.default_value:.4f}")
    print(f"best:    {tuned.best!r}  {tuned.value:.4f} (trial {tuned.best_trial})")
    if args.out is not None:
        print(f"wrote {tuned.plot(args.out)}")
    return 0


def _model(args):
    """The denoiser the trials sample from and the metric they are judged by (every flag checked first)."""
    if args.checkpoint is not None:
        from snrpaths.backends.text import load_with_tokenizer  # the CLI is an application: it may pick a backend

        metric = args.metric or "bits"
        if metric != "bits":
            raise SNRPathError(f"--metric {metric} needs an exact toy; a checkpoint is judged by bits")
        return load_with_tokenizer(args.checkpoint)[0], metric
    metric = args.metric or "tv"
    if metric == "bits":
        raise SNRPathError("--metric bits judges text: give a --checkpoint")
    return make_toy(args.toy, args.vocab, args.length, args.toy_seed), metric
