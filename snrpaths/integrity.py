"""A run folder's manifest: the SHA-256 of every file the trainer writes, so that a damaged file is found, not used.

``manifest.json`` beside ``checkpoint.pt`` lists the hashes of the good checkpoints (the newest and the one before
it, kept as ``checkpoint.prev.pt``) and of the files written with them (``model/``'s weights and config)::

    {"format": "snrpaths.manifest", "version": 1, "checkpoints": ["<sha256>", "<sha256>"],
     "files": {"model/model.safetensors": "<sha256>", "model/config.json": "<sha256>"}}

A commit (:func:`commit_checkpoint`) writes the new checkpoint beside the old one, records its hash in the manifest,
keeps the old one as ``checkpoint.prev.pt`` (a hard link: no copy), then renames the new one into place. So at every
moment, a kill included, ``checkpoint.pt`` holds a checkpoint whose hash the manifest lists, and :func:`good_checkpoint`
tells a damaged file (bit rot, a bad copy) from a good one: it resumes from ``checkpoint.prev.pt`` when only that one
is good, saying so, and refuses when neither is. A folder without a manifest (written before there was one, or by
another tool) is read unverified.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Callable

from .errors import SNRPathError
from .files import hard_link, sha256, temporary_name, write_stream, write_text

MANIFEST, FORMAT, VERSION = "manifest.json", "snrpaths.manifest", 1


def previous(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``, None when it has none; a damaged one is an error (nothing could be verified)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_bytes())
        ok = (isinstance(manifest, dict) and manifest.get("format") == FORMAT
              and isinstance(manifest.get("checkpoints"), list) and isinstance(manifest.get("files"), dict)
              and all(isinstance(h, str) for h in [*manifest["checkpoints"], *manifest["files"].values()]))
    except (OSError, ValueError, RecursionError):
        ok = False
    if not ok:
        raise SNRPathError(f"{path} is damaged, so the checkpoints beside it cannot be verified; remove it to resume "
                           "unverified, or start afresh in another folder")
    return manifest


def good_checkpoint(path: str | os.PathLike, say: bool = True) -> Path | None:
    """The checkpoint to resume from: ``path`` when its SHA-256 is one the manifest lists (or when the folder has no
    manifest), else ``checkpoint.prev.pt`` when that one's is (with ``say``, a line on stderr says so); None when there
    is no checkpoint. A checkpoint that fails its hash with no good one before it is an error naming the file."""
    path = Path(path)
    manifest = read_manifest(path.parent)
    if not path.is_file():
        return None
    if manifest is None:
        return path
    good = set(manifest["checkpoints"])
    if sha256(path) in good:
        return path
    prev = previous(path)
    if prev.is_file() and sha256(prev) in good:
        if say:
            print(f"snrpaths: {path} is damaged (its SHA-256 is not in {MANIFEST}); resuming from the checkpoint "
                  f"before it, {prev}", file=sys.stderr)
        return prev
    raise SNRPathError(f"{path} is damaged: its SHA-256 is not one {path.parent / MANIFEST} records, and there is no "
                       f"good checkpoint before it ({prev.name}); restore the file, or start afresh in another folder")


def commit_checkpoint(path: str | os.PathLike, dump: Callable[[IO[bytes]], object],
                      files: tuple[str, ...] = ()) -> Path:
    """Write a new checkpoint ``dump(f)`` at ``path``, recorded in the manifest with ``files`` (paths relative to the
    folder, written before: their hashes are taken now), keeping the good checkpoint it replaces as
    ``checkpoint.prev.pt`` (see the module docstring for the order that keeps every moment verifiable)."""
    path = Path(path)
    folder, prev = path.parent, previous(path)
    manifest = read_manifest(folder)
    kept = _kept(path, manifest)
    hashes = {name: sha256(folder / name) for name in files}

    def record(tmp: Path) -> None:
        checkpoints = [sha256(tmp)] + ([] if kept is None else [kept[1]])
        write_text(folder / MANIFEST, json.dumps({"format": FORMAT, "version": VERSION, "checkpoints": checkpoints,
                                                  "files": hashes}, indent=1) + "\n")
        if kept is not None and kept[0] == path:
            _link(path, prev)

    return write_stream(path, dump, before_commit=record)


def _kept(path: Path, manifest: dict | None) -> tuple[Path, str] | None:
    """The good checkpoint a commit keeps as the one before (its file and hash): ``path`` when it is good (or there is
    no manifest to say otherwise), else ``checkpoint.prev.pt`` when that is, else none."""
    prev = previous(path)
    for candidate in (path, prev):
        if candidate.is_file():
            digest = sha256(candidate)
            if manifest is None or digest in manifest["checkpoints"]:
                return candidate, digest
        if manifest is None:
            return None
    return None


def _link(source: Path, target: Path) -> None:
    """``target`` becomes another name of ``source``'s file, atomically (a hidden link, then a rename)."""
    tmp = temporary_name(target)
    try:
        hard_link(source, tmp)
        os.replace(tmp, target)
    except OSError as err:
        raise SNRPathError(f"cannot write {str(target)!r}: {err.strerror or err}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
