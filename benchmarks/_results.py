"""Where every study leaves its numbers: ``benchmarks/results/<stem>.{json,md,png}``, each file written atomically."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

from snrpaths.files import atomic_write


def _default_results() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve().parent
    if (here.parent / "pyproject.toml").is_file():  # a source checkout: results sit beside the studies, in git
        return here / "results"
    return pathlib.Path.cwd() / "benchmarks" / "results"  # an installed copy: never write into site-packages


RESULTS = _default_results()


def write(out: pathlib.Path, stem: str, data: object, text: str, plot: Callable[[pathlib.Path], None]) -> None:
    """The raw numbers as JSON, the printed table as Markdown, and the figure ``plot(path)`` draws as PNG."""
    writers = {".json": lambda p: p.write_text(json.dumps(data, indent=2)),
               ".md": lambda p: p.write_text(text + "\n"),
               ".png": plot}
    for suffix, writer in writers.items():
        atomic_write(out / f"{stem}{suffix}", writer)
