"""The ``compare`` subcommand: paths head to head on one judge, every path run with the same seeds.

    snrpaths compare "mdm(4)" "ramp(3) >> switch('commit')" --judge toy:two-bit --samples 500 --seeds 5
    snrpaths compare "mdm({2,4,8,16})" "hybrid(4, 4)" --judge hmm --out cmp.json --plot cmp.png

A PATH is a path expression, a built-in sampler name (AR, ROAR, MDLM, ReMDM-cap, ReMDM-rescale, ReMDM-conf,
ReMDM-loop: at L calls, or NAME@T at T calls), or a brace list expanding to several (mdm({4,8,16}) is three paths,
drawn as one curve). Judges: toy:NAME (markov, random, parity, two-bit: exact), hmm (an exact HMM), text (the shipped
model, bits/char under SmolLM2), checkpoint:NAME_OR_FOLDER or mlm:FOLDER (judged by the model itself). The table
gives calls used / planned, each metric's mean over seeds with its 95% t-interval, and the difference to the first
path paired by seed (snrpaths.compare).
"""

from __future__ import annotations

import argparse

from .comparison import compare
from .files import FIGURE_SUFFIXES, check_output_file

#: the flags that go to the judge's builder (:data:`snrpaths.comparison.JUDGES`), by their keyword
JUDGE_FLAGS = ("vocab", "length", "toy_seed", "states", "successors", "emissions", "hmm_seed", "seq_len")


def add_command(commands) -> None:
    p = commands.add_parser("compare", help="paths head to head on one judge, with intervals on the differences",
                            description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="path expressions, built-in names (MDLM, NAME@T) or brace lists; the first is the baseline")
    p.add_argument("--judge", required=True,
                   help="toy:NAME, hmm, text[:CHECKPOINT], checkpoint:NAME_OR_FOLDER, mlm:FOLDER, or a folder")
    p.add_argument("--samples", type=int, default=256, help="samples per path and seed (default: 256)")
    p.add_argument("--seeds", type=int, default=5, help="seeds, the same for every path, at least 2 (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="the first seed; seed k is SEED + k (default: 0)")
    p.add_argument("--out", default=None, help="also write the table as JSON here, e.g. cmp.json")
    p.add_argument("--plot", default=None, help="also draw each metric against calls here (.png, .svg or .pdf)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no time estimate or progress bar (default: both)")
    judge = p.add_argument_group("judge options (each for the judges named; unset: the judge's default)")
    judge.add_argument("--vocab", type=int, help="V of a markov / random toy (default 3) or of the hmm (16)")
    judge.add_argument("--length", type=int, help="L of a toy (default 4) or of the hmm (64)")
    judge.add_argument("--toy-seed", type=int, help="seeds a markov / random toy's joint (default 0)")
    judge.add_argument("--states", type=int, help="hidden states K of the hmm (default 16)")
    judge.add_argument("--successors", type=int, help="states each hmm state can move to (default 4)")
    judge.add_argument("--emissions", type=int, help="tokens each hmm state can emit (default 4)")
    judge.add_argument("--hmm-seed", type=int, help="seeds the hmm's tables (default 0)")
    judge.add_argument("--seq-len", type=int, help="positions a masked LM samples (mlm:FOLDER; default: the model's, "
                                                   "at most 128)")
    p.set_defaults(run=run_compare)


def run_compare(args) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out")  # before any sampling, not after it
    if args.plot is not None:
        check_output_file(args.plot, "--plot", FIGURE_SUFFIXES)
    options = {name: getattr(args, name) for name in JUDGE_FLAGS if getattr(args, name) is not None}
    result = compare(args.paths, args.judge, samples=args.samples, seeds=args.seeds, seed=args.seed,
                     judge_options=options, progress=args.progress)
    print(result.table())
    if args.out is not None:
        print(f"wrote {result.save(args.out)}")
    if args.plot is not None:
        result.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0
