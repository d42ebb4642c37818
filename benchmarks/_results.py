"""Where every study leaves its numbers: ``benchmarks/results/<stem>.{json,md,png}``, each file written atomically."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable


def _default_results() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve().parent
    if (here.parent / "pyproject.toml").is_file():  # a source checkout: results sit beside the studies, in git
        return here / "results"
    return pathlib.Path.cwd() / "benchmarks" / "results"  # an installed copy: never write into site-packages


RESULTS = _default_results()


def write(out: pathlib.Path, stem: str, data: object, text: str, plot: Callable[[pathlib.Path], None]) -> None:
    """The raw numbers as JSON, the printed table as Markdown, and the figure ``plot(path)`` draws as PNG."""
    out.mkdir(parents=True, exist_ok=True)
    writers = {".json": lambda p: p.write_text(json.dumps(data, indent=2)),
               ".md": lambda p: p.write_text(text + "\n"),
               ".png": plot}
    for suffix, writer in writers.items():
        final = out / f"{stem}{suffix}"
        tmp = out / f".{stem}.{os.getpid()}.tmp{suffix}"  # the suffix tells matplotlib the format
        try:
            writer(tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
