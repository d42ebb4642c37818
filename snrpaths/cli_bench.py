"""The ``bench`` subcommand: run one study of ``benchmarks/`` (installed as ``snrpaths.benchmarks``) by name.

    snrpaths bench toy-quality --quick
    snrpaths bench text-quality --checkpoints tiny-shakespeare-dsl --budgets 16 32
    snrpaths bench all --quick

Everything after the study's name goes to the study (``snrpaths bench NAME --help`` lists its options); ``all`` runs
every study in turn with the same options.
"""

from __future__ import annotations

import argparse
import importlib

from .errors import one_of
from .files import check_output_folder, check_writable


def add_command(commands) -> None:
    from snrpaths.benchmarks import STUDIES

    listing = "\n".join(f"  {name:20} {what}" for name, (_, what) in STUDIES.items())
    p = commands.add_parser("bench", help="run a benchmark study (tables, JSON and plots in benchmarks/results/)",
                            description=__doc__.splitlines()[0], epilog=f"studies:\n{listing}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help=f"one of {', '.join(STUDIES)}, or all")
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed to the study (see snrpaths bench STUDY --help)")
    p.set_defaults(run=run_bench)


def run_bench(args) -> int:
    from snrpaths.benchmarks import STUDIES

    if args.study != "all" and args.study not in STUDIES:
        raise one_of("study", args.study, (*STUDIES, "all"))
    names = list(STUDIES) if args.study == "all" else [args.study]
    out = _out(args.options)
    if out is None:  # the studies' own results folder, made where it is missing (benchmarks/results)
        from snrpaths.benchmarks._results import RESULTS

        check_writable(RESULTS, "the results folder")  # before a study that may run for an hour, not after it
    else:
        check_output_folder(out, "--out")
    for name in names:
        module = importlib.import_module(f"snrpaths.benchmarks.{STUDIES[name][0]}")
        if len(names) > 1:
            print(f"\n## {name}\n", flush=True)
        module.main([*args.options])
    return 0


def _out(options: list[str]) -> str | None:
    """The results folder the studies write into: the last ``--out`` among their options, None for their default."""
    folder = None
    for i, option in enumerate(options):
        if option == "--out" and i + 1 < len(options):
            folder = options[i + 1]
        elif option.startswith("--out="):
            folder = option.removeprefix("--out=")
    return folder
