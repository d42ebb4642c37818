"""Where every study leaves its numbers: ``benchmarks/results/<stem>.{json,md,png}``, each file written atomically."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable

from snrpaths.errors import SNRPathError
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


class Record:
    """Finished cells by key, read from and appended to a ``.partial.jsonl`` file, so that a study interrupted at any
    moment continues where it stopped. ``accept(row)`` drops rows computed under other settings (default: keep all;
    a key may instead name its settings). Each line is flushed to disk before the next cell starts."""

    def __init__(self, partial: pathlib.Path, accept: Callable[[dict], bool] = lambda row: True):
        self.partial, self.done = partial, {}
        if partial.exists():
            text = partial.read_text()
            if text and not text.endswith("\n"):  # cut mid-line: end the torn line, or the next would join it
                with open(partial, "a") as log:
                    log.write("\n")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the last line of an interrupted run
                    continue
                key = row.pop("key")
                if accept(row):
                    self.done[key] = row

    def get(self, key: str, compute: Callable[[], dict]) -> dict:
        """The row of ``key``: read back, or ``compute()``d and appended."""
        if key not in self.done:
            self.done[key] = compute()
            try:
                self.partial.parent.mkdir(parents=True, exist_ok=True)
                with open(self.partial, "a") as log:
                    log.write(json.dumps({"key": key, **self.done[key]}) + "\n")
                    log.flush()
                    os.fsync(log.fileno())
            except OSError as err:  # a torn line is skipped on the next start
                raise SNRPathError(f"cannot write {str(self.partial)!r}: {err.strerror or err}") from None
        return self.done[key]
