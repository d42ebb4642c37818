"""The ``snrpaths`` command line (also ``python -m snrpaths``).

Every bad argument ends in one line ``snrpaths: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import torch

from .cli_bench import add_command as add_bench_command
from .cli_check import add_command as add_check_command
from .cli_compare import add_command as add_compare_command
from .cli_model import add_commands as add_model_commands
from .cli_model import named_by_flags, parse_path_arg
from .cli_nll import add_command as add_nll_command
from .cli_toys import TOYS, make_toy
from .cli_tune import add_command as add_tune_command
from . import __version__
from .errors import SNRPathError
from .files import FIGURE_SUFFIXES, check_output_file
from .progress import track
from .reprs import markdown_table
from .parse import parse_path
from .runner import sample
from .testing.stats import empirical_law, tv_tolerance

DEFAULT_PATH = "ramp(16) >> mdm(32, remask='confidence')"
#: ```x```, ``:func:`x``` and friends: docstring markup that a terminal should not show.
_RST = re.compile(r"(?::[a-z]+:)?`{1,2}~?([^`]+?)`{1,2}")
#: The longest binary toy the plot commands enumerate (``2^L`` sequences).
MAX_PLOT_LEN = 17


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with named_by_flags(args):
            return args.run(args)
    except SNRPathError as err:
        parser.exit(2, f"snrpaths: error: {err}\n")
    except OSError as err:  # a file no check foresaw (a disk that fills, a folder made read-only): one line, no trace
        parser.exit(2, f"snrpaths: error: {f'{err.filename}: ' if err.filename else ''}{err.strerror or err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "snrpaths: interrupted\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snrpaths", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"snrpaths {__version__}")
    commands = parser.add_subparsers(required=True, metavar="command")
    toy = commands.add_parser("toy", help="sample an exact toy joint with any path and compare with the truth",
                              description="Sample an exact toy joint with a path (and reference samplers at the same "
                                          "call budget) and measure the total variation to the true joint.")
    toy.add_argument("--path", action="append", default=None,
                     help=f"path expression; repeat to run several side by side, same seed, with AR as the exact "
                          f"reference (default: {DEFAULT_PATH!r}, with MDLM, ReMDM and the hybrid at its calls)")
    toy.add_argument("--toy", default="markov", choices=TOYS, help="the joint (default: markov)")
    toy.add_argument("--vocab", type=int, default=3, help="V for markov / random toys (default: 3)")
    toy.add_argument("--length", type=int, default=4, help="L (default: 4)")
    toy.add_argument("--n", type=int, default=10_000, help="samples per sampler (default: 10000)")
    toy.add_argument("--seed", type=int, default=0, help="seeds the toy and the samples (default: 0)")
    toy.add_argument("--gamma-max", type=float, default=400.0,
                     help="gamma_max of the reference hybrid (toy anchors separate by gamma ~ 8/Delta^2; default: 400)")
    toy.set_defaults(run=_run_toy)
    add_model_commands(commands)  # train, sample (snrpaths/cli_model.py)
    add_nll_command(commands)  # nll (snrpaths/cli_nll.py)
    add_check_command(commands)  # check (snrpaths/cli_check.py)
    add_tune_command(commands)  # tune (snrpaths/cli_tune.py)
    _add_plot_commands(commands)
    add_bench_command(commands)  # bench (snrpaths/cli_bench.py)
    add_compare_command(commands)  # compare (snrpaths/cli_compare.py)
    _finish(parser)
    return parser


def _finish(parser: argparse.ArgumentParser) -> None:
    """In this parser and every subcommand's: help texts as a terminal shows them (the reStructuredText of the
    docstrings they come from removed: ```x``` and ``:role:`x``` become ``x``), and ``args.typed_options``, the
    destinations of the options the user can type, which errors are named by (:func:`named_by_flags`)."""
    parser.set_defaults(typed_options=frozenset(a.dest for a in parser._actions if a.option_strings))
    for attr in ("description", "epilog"):
        if getattr(parser, attr):
            setattr(parser, attr, _RST.sub(r"\1", getattr(parser, attr)))
    for action in parser._actions:
        if action.help:
            action.help = _RST.sub(r"\1", action.help)
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _finish(sub)


def _add_plot_commands(commands) -> None:
    plot = commands.add_parser("plot", help="draw paths as figures (PNG, SVG or PDF, by the --out suffix)",
                               description="Draw paths as figures. Bare paths are run on an exact toy denoiser (a "
                                           "binary Markov chain) with a trace; the file is written atomically.")
    figures = plot.add_subparsers(required=True, metavar="figure")
    plane = figures.add_parser("gamma-plane", help="runs in the (gamma_i, gamma_j) plane, one panel per path",
                               description="Trajectories of (gamma_i, gamma_j) on compactified axes gamma/(1+gamma), "
                                           "several runs overlaid, one panel per --path.")
    plane.add_argument("--positions", type=int, nargs=2, default=(0, 1), metavar=("I", "J"),
                       help="the two positions on the axes (default: 0 1)")
    plane.add_argument("--runs", type=int, default=8, help="runs overlaid per path (default: 8)")
    plane.add_argument("--length", type=int, default=None,
                       help="sequence length L (default: the smallest holding both positions, at least 2)")
    plane.set_defaults(run=_run_gamma_plane)
    order = figures.add_parser("order", help="positions x steps heatmaps of information, one row per path",
                               description="Token-level generation order: gamma/(1+gamma) of every position after "
                                           "every step of one run, one row per --path.")
    order.add_argument("--length", type=int, default=16, help="sequence length L (default: 16, at most 17)")
    order.set_defaults(run=_run_order)
    for sub in (plane, order):
        sub.add_argument("--path", action="append", required=True, metavar="EXPR",
                         help="path expression; repeat for several, e.g. --path 'ar()' --path 'mdm(16)'")
        sub.add_argument("--out", required=True, help="the image to write, e.g. fig.png")
        sub.add_argument("--seed", type=int, default=0, help="seeds the runs (default: 0)")


def _plot_toy(length: int, flag: str):
    """The exact toy the command line draws bare paths on: a binary Markov chain's Bayes denoiser of ``length``."""
    from snrpaths.backends.toy import ExactToy  # the CLI is an application: it may pick a backend

    if isinstance(length, bool) or not 1 <= length <= MAX_PLOT_LEN:
        raise SNRPathError(f"{flag} {length}: the plots' exact toy enumerates 2^L sequences and stops at "
                           f"L = {MAX_PLOT_LEN} (valid: 1..{MAX_PLOT_LEN})")
    return ExactToy.markov(2, length, seed=0)


def _run_gamma_plane(args) -> int:
    from . import plot  # matplotlib loads only when a plot is asked for

    check_output_file(args.out, "--out", FIGURE_SUFFIXES)

    length = max(max(args.positions) + 1, 2) if args.length is None else args.length
    fig = plot.gamma_plane([parse_path_arg(text) for text in args.path], positions=tuple(args.positions),
                           denoiser=_plot_toy(length, "--length"), runs=args.runs, seed=args.seed)
    print(f"wrote {plot.save(fig, args.out)}")
    return 0


def _run_order(args) -> int:
    from . import plot

    check_output_file(args.out, "--out", FIGURE_SUFFIXES)

    fig = plot.generation_order([parse_path_arg(text) for text in args.path], denoiser=_plot_toy(args.length, "--length"),
                                seed=args.seed)
    print(f"wrote {plot.save(fig, args.out)}")
    return 0


def _run_toy(args) -> int:
    paths = [parse_path_arg(text) for text in args.path or [DEFAULT_PATH]]
    if args.n < 1:
        raise SNRPathError(f"--n must be a positive integer (got {args.n})")
    toy = make_toy(args.toy, args.vocab, args.length, args.seed)
    budgets = [p.compile(toy.seq_len).nfe for p in paths]  # every path checked before any sampling
    half = max(1, budgets[0] // 2)
    rows = [(f"path {i + 1}", p) for i, p in enumerate(paths)] if len(paths) > 1 else [
        ("your path", paths[0]),
        ("MDLM, same budget", parse_path(f"mdm({budgets[0]})")),
        ("ReMDM-conf, same budget", parse_path(f"mdm({budgets[0]}, remask='confidence')")),
        ("hybrid, same budget", parse_path(f"hybrid({half}, {max(1, budgets[0] - half)}, gamma_max={args.gamma_max})"))]
    rows.append(("AR (exact)", parse_path("ar()")))
    floor = tv_tolerance(toy.probs, args.n)
    print(f"{toy}: exact joint over {toy.vocab_size}^{toy.seq_len} sequences, {args.n} samples per sampler")
    print(f"TV of an exact sampler stays below {floor:.4f} (sampling floor, failure probability < 1e-6)\n")
    table = []
    for name, p in track(rows, "sampler", "toy", enabled=None, leave=False):
        start = time.perf_counter()
        result = sample(p, toy, batch=args.n, seed=args.seed)
        law = empirical_law(result.tokens, toy.vocab_size)
        tv = 0.5 * float((law - toy.probs.flatten()).abs().sum())
        table.append((name, repr(p), p.compile(toy.seq_len).nfe, result.nfe, f"{tv:.4f}",
                      f"{time.perf_counter() - start:.0f}"))
    print(markdown_table(("sampler", "path", "NFE static", "NFE used", "TV to P", "s"), table, "llrrrr"))
    result = sample(paths[0], toy, batch=args.n, seed=args.seed)
    _print_top(toy, empirical_law(result.tokens, toy.vocab_size))
    if len(paths) > 1:
        print("\n(the frequencies of path 1; for intervals on the differences between paths: snrpaths compare)")
    return 0


def _print_top(toy, law: torch.Tensor, k: int = 5) -> None:
    truth = toy.probs.flatten()
    print(f"\nThe {k} most likely sequences: true probability vs your path's frequency")
    for index in truth.argsort(descending=True)[:k].tolist():
        seq = " ".join(map(str, toy.states[index].tolist()))
        print(f"  {seq:<{2 * toy.seq_len}}  P = {float(truth[index]):.4f}   sampled = {float(law[index]):.4f}")


if __name__ == "__main__":
    sys.exit(main())
