"""Files that are whole or absent: every file snrpaths writes goes through :func:`atomic_write`.

A writer fills a temporary file beside the target; its bytes are flushed to disk, then it is renamed over the target
(``os.replace`` is atomic on POSIX and Windows), and the folder entry is flushed. A crash at any moment leaves either the
old file or the new one, never a mix, and at most a hidden ``.NAME.PID.tmp`` file that :func:`clean_temporaries`
removes on the next start. A folder that must change as a whole (a model: weights and config) is written by
:func:`replace_folder`: a new folder beside it, then a swap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Callable, Iterable

from .errors import SNRPathError

TMP_MARK = ".tmp"


def temporary_name(path: Path) -> Path:
    """The hidden sibling a write of ``path`` goes through: ``.NAME.PID.tmp`` plus ``path``'s suffix, which some writers
    (matplotlib, safetensors) read to choose a format."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_MARK}{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], mode: int = 0o644, *,
                 before_commit: Callable[[Path], object] | None = None) -> Path:
    """Run ``write(tmp)`` to fill a temporary file, then put it at ``path`` in one rename.

    ``mode`` is set before the rename because some writers create private (0600) files and results are meant to be
    read. ``before_commit(tmp)`` runs once the temporary file is on disk, just before the rename (to record its hash
    where a reader will look for it). An ``OSError`` becomes the library's error naming ``path``; anything else
    propagates unchanged. The temporary file never outlives a failed write.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the name does
        os.chmod(tmp, mode)
        if before_commit is not None:
            before_commit(tmp)
        os.replace(tmp, path)
        sync_folder(path.parent)
    except OSError as err:
        raise SNRPathError(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):  # nothing to remove where the folder itself could not be made
            tmp.unlink(missing_ok=True)
    return path


def _write(file: IO[bytes], data: bytes) -> int:
    """One block into a file: the one place a test makes the disk fill (``monkeypatch.setattr(files, "_write", ...)``)."""
    return file.write(data)


class _Sink:
    """A binary file that keeps the first ``OSError`` its writes raised: writers such as ``torch.save`` turn a full
    disk into a ``RuntimeError`` of their own, and :func:`write_stream` puts the cause back."""

    def __init__(self, file: IO[bytes]):
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return _write(self.file, data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.file.flush()


def write_stream(path: str | os.PathLike, dump: Callable[[IO[bytes]], object], *,
                 before_commit: Callable[[Path], object] | None = None) -> Path:
    """:func:`atomic_write` for a writer ``dump(f)`` of a binary file object (``lambda f: torch.save(obj, f)``): a
    write that fails (a full disk, a quota) is reported as the ``OSError`` it was, naming ``path``, whatever the writer
    made of it."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            sink = _Sink(f)
            try:
                dump(sink)
            except Exception:
                if sink.error is not None:
                    raise sink.error from None
                raise
            if sink.error is not None:  # a writer that swallowed the error
                raise sink.error

    return atomic_write(path, write, before_commit=before_commit)


def replace_files(folder: str | os.PathLike, contents: dict[str, bytes], *, first_out: str | None = None) -> Path:
    """Put the files ``contents`` (name -> bytes) into ``folder`` as one set: all or none, short of a crash.

    Every new file is written whole (and flushed) under a temporary name first, where a full disk fails; then the old
    files are kept under hidden hard links, ``first_out`` (a file that must never sit beside the wrong others, such as
    a config) is removed, and the new files are renamed in, in order. A failure there puts the old files back. A crash
    during the renames can leave the set part old, part new, with ``first_out`` missing until its rename, which is
    last: name it last in ``contents``. Errors name the file and the cause."""
    folder = Path(folder)
    temporary = {name: temporary_name(folder / name) for name in contents}
    kept: dict[str, Path] = {}
    name = next(iter(contents))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            with open(temporary[name], "wb") as f:
                _write(f, data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temporary[name], 0o644)
        for name in contents:
            if (folder / name).is_file():
                kept[name] = folder / f".{name}.{os.getpid()}.old{TMP_MARK}"
                hard_link(folder / name, kept[name])
        if first_out is not None:
            name = first_out
            (folder / first_out).unlink(missing_ok=True)
        for name, tmp in temporary.items():
            os.replace(tmp, folder / name)
        sync_folder(folder)
    except OSError as err:
        for old, aside in kept.items():
            with contextlib.suppress(OSError):
                os.replace(aside, folder / old)
        raise SNRPathError(f"cannot write {str(folder / name)!r}: {err.strerror or err}") from None
    finally:
        for leftover in (*temporary.values(), *kept.values()):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
    return folder


def hard_link(source: Path, target: Path) -> None:
    """``target`` becomes another name of ``source``'s file (no bytes copied), or a copy where the file system has no
    hard links; a ``target`` already there (left by a crash) is replaced. Raises ``OSError``."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path``, in hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, a ``folder`` that cannot take a result (read-only, a file in the way, no room for a
    block): make it and its missing parents, write and remove a probe file, then remove the folders it made. The
    error names ``what`` (the argument or flag that gave the folder) and the cause."""
    folder = Path(folder).expanduser().absolute()
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    probe = temporary_name(folder / "probe")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise SNRPathError(f"{what}: cannot write into {str(folder)!r}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
            for p in made:
                p.rmdir()


#: The figure formats the command line writes (by the file's suffix).
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def check_output_file(value: str | os.PathLike, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """The file a command writes at its end, checked before any work (the command line's one rule: snrpaths writes
    the file or folder you name, never a folder above it): its folder exists and takes a file (:func:`check_writable`),
    it is not a folder, and it ends in one of ``suffixes`` when given; errors name ``flag`` and the value."""
    path = _parent_exists(value, flag)
    if path.is_dir():
        raise SNRPathError(f"{flag} {str(value)!r} is a folder; give the name of a file to write")
    if suffixes and path.suffix.lower() not in suffixes:
        raise SNRPathError(f"{flag} {str(value)!r} must end in {', '.join(suffixes[:-1])} or {suffixes[-1]}"
                           if len(suffixes) > 1 else f"{flag} {str(value)!r} must end in {suffixes[0]}")
    check_writable(path.parent, f"{flag} {str(value)!r}")
    return path


def check_output_folder(value: str | os.PathLike, flag: str) -> Path:
    """The folder a command writes into (made when new), checked before any work by the same rule as
    :func:`check_output_file`: the folder above it exists, and the folder is not a file and takes files."""
    path = _parent_exists(value, flag)
    if path.exists() and not path.is_dir():
        raise SNRPathError(f"{flag} {str(value)!r} is a file; give the name of a folder to write into")
    check_writable(path, f"{flag} {str(value)!r}")
    return path


def _parent_exists(value: str | os.PathLike, flag: str) -> Path:
    path = Path(value).expanduser()
    if not path.parent.is_dir():
        raise SNRPathError(f"{flag} {str(value)!r}: the folder {str(path.parent)!r} does not exist; create it first "
                           "(snrpaths makes the file or folder you name, never the folders above it)")
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


#: The name an interrupted swap leaves the previous folder under (``.NAME.swapped-out``): see :func:`replace_folder`.
SWAPPED_OUT = ".swapped-out"


def replace_folder(path: str | os.PathLike, fill: Callable[[Path], object]) -> Path:
    """Run ``fill(staging)`` to write a whole new folder, then put it at ``path`` in place of the old one.

    The staging folder ``.NAME.PID.tmp`` sits beside ``path``; once ``fill`` returns, every file in it is flushed to
    disk, then two renames swap it in: ``path -> .NAME.swapped-out``, ``staging -> path``; the old folder is removed
    last. A reader never sees a half-written ``path``: it holds the old folder or the new one, whole.

    Why renames and not a symlink swap (``path`` a link re-pointed in one atomic rename): ``path`` stays a plain
    folder that users copy, archive, ship and ``load`` like any other, on every platform (links need privileges on
    Windows, and a real folder written before would have to be migrated). The price is one moment, between the two
    renames, when ``path`` is missing; a kill there leaves the old folder complete under ``.NAME.swapped-out``, and
    :func:`recover_folder` (run by this function and by :func:`clean_temporaries` on the next start) renames it back,
    as if the swap had not begun. The swap is committed by the second rename.
    """
    path = Path(path)
    staging, old = temporary_name(path), path.with_name(f".{path.name}{SWAPPED_OUT}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        _remove(staging)  # a folder of an earlier process that had this PID
        staging.mkdir()
        fill(staging)
        for file in staging.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as f:
                    os.fsync(f.fileno())
        sync_folder(staging)
        if path.exists():
            os.rename(path, old)
            sync_folder(path.parent)
        os.rename(staging, path)  # the commit
        sync_folder(path.parent)
        _remove(old)
    except SNRPathError as err:  # a file of the new folder that could not be written: the old folder stands
        raise SNRPathError(f"cannot write the folder {str(path)!r} ({err})") from None
    except OSError as err:
        raise SNRPathError(f"cannot write the folder {str(path)!r}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            _remove(staging)
    return path


def recover_folder(path: str | os.PathLike) -> Path | None:
    """Undo a :func:`replace_folder` interrupted between its renames: put ``.NAME.swapped-out`` back at ``path`` when
    ``path`` is missing, else remove it (a swap that was committed before its clean-up). Returns the folder put back,
    or None."""
    path = Path(path)
    old = path.with_name(f".{path.name}{SWAPPED_OUT}")
    if not old.is_dir():
        return None
    if path.exists():
        _remove(old)
        return None
    os.rename(old, path)
    sync_folder(path.parent)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


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
    """Undo what interrupted writes left in ``folder``: a folder swap stopped between its renames is rolled back
    (:func:`recover_folder`), and temporary files and folders (``.NAME.PID.tmp*``) are removed; returns what was
    removed.

    Call it only where no other process is writing into ``folder`` (a run's own output folder at its start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        for old in [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(SWAPPED_OUT)]:
            recover_folder(folder / old.name[1 : -len(SWAPPED_OUT)])
        left = sorted(p for p in folder.iterdir() if p.name.startswith(".") and TMP_MARK in p.name)
        for p in left:
            _remove(p)
    except OSError as err:
        raise SNRPathError(f"cannot clean up {str(folder)!r}: {err.strerror or err}") from None
    return left
