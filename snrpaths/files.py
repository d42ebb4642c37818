"""Files that are whole or absent: every file snrpaths writes goes through :func:`atomic_write`.

A writer fills a temporary file beside the target; its bytes are flushed to disk, then it is renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder entry is flushed. A crash at any moment leaves either the
old file or the new one, never a mix, and at most a hidden ``.NAME.PID.tmp`` file that :func:`clean_temporaries`
removes on the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable

from .errors import SNRPathError

TMP_MARK = ".tmp"


def temporary_name(path: Path) -> Path:
    """The hidden sibling a write of ``path`` goes through: ``.NAME.PID.tmp`` plus ``path``'s suffix, which some writers
    (matplotlib, safetensors) read to choose a format."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_MARK}{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], mode: int = 0o644) -> Path:
    """Run ``write(tmp)`` to fill a temporary file, then put it at ``path`` in one rename.

    ``mode`` is set before the rename because some writers create private (0600) files and results are meant to be
    read. An ``OSError`` becomes the library's error naming ``path``; anything else propagates unchanged. The temporary
    file never outlives a failed write.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the name does
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as err:
        raise SNRPathError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):  # nothing to remove where the folder itself could not be made
            tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` at ``path``, whole or not at all."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """One JSON object per line at ``path``, all lines or none."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    return atomic_write(path, write)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is); a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(fd)


def clean_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (``.NAME.PID.tmp*``) an interrupted write left in ``folder``; returns them.

    Call it only where no other process is writing into ``folder`` (a run's own output folder at its start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    left = [p for p in folder.iterdir() if p.name.startswith(".") and TMP_MARK in p.name and p.is_file()]
    for p in left:
        p.unlink(missing_ok=True)
    return left
