"""Robustness campaign (issue 27): wrong inputs, damaged files, failing disks and kills, tried as an attacker would.

Each surface draws random inputs from one seeded generator and runs each through the library; every input ends in
exactly one class:

* **ok**: accepted, and the result passes the surface's oracle (tokens in the vocabulary, fixed positions kept, a
  ``repr`` that parses back to an equal value, the weights that were saved, a row equal to the same row run alone);
* **library error**: refused with snrpaths' error family (:class:`snrpaths.SNRPathError` and its subclasses);
* **valid refused**: a library error for an input the oracle knows to be valid (surfaces with an exact oracle only);
* **other exception**: anything else escaping (a bug: the first few are printed);
* **silent wrong**: accepted, but the result breaks the oracle;
* **data lost**: after a failed write or a kill, an earlier result is gone or changed, a temporary file is left, or a
  run cannot resume.

Surfaces: path expressions (mutated valid ones, with numbers out of range), the SNR fields of ramps and hybrids, path
values built directly, prompts (every integer dtype, out-of-vocabulary ids), integers that become seeds and indices,
damaged files (bytes flipped, files truncated in a saved model and a run folder), disk failures (``ENOSPC``,
``EACCES``, ``EIO`` injected at every write of ``save``, ``write_jsonl`` and a checkpoint commit), tuner metric values
and storage files, and kills (SIGKILL during training and tuning, then the same command again).

    python benchmarks/robustness.py            # 10,000 inputs a surface (storage 1,000, kills 200); ~12 minutes
    python benchmarks/robustness.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import pathlib
import random
import shutil
import signal
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, load, save
from snrpaths.backends.toy import ExactToy
from snrpaths.benchmarks._results import RESULTS, write

import snrpaths.files
from snrpaths import Path, SNRPathError, parse_path, sample, tune
from snrpaths.files import write_jsonl
from snrpaths.integrity import commit_checkpoint, good_checkpoint
from snrpaths.path import Blocks, On, Parallel, Ramp, Remask, Then

OK, LIBRARY, REFUSED, OTHER, WRONG, LOST = ("ok", "library error", "valid refused", "other exception",
                                            "silent wrong", "data lost")
OUTCOMES = (OK, LIBRARY, REFUSED, OTHER, WRONG, LOST)
#: The joint every sampling surface runs on: 3 tokens, 3 positions.
TOY = ExactToy.markov(3, 3, seed=0)
V, L = TOY.vocab_size, TOY.seq_len


class Wrong(Exception):
    """A probe's verdict against the library: ``outcome`` is silent wrong, data lost or valid refused."""

    def __init__(self, what: str, outcome: str = WRONG):
        super().__init__(what)
        self.outcome = outcome


def check(condition: bool, what: str, outcome: str = WRONG) -> None:
    if not condition:
        raise Wrong(what, outcome)


def classify(probe: Callable[[Any], object], case: Any, valid: bool | None = None) -> tuple[str, str]:
    """``probe(case)``'s class and a note: ``valid`` is the oracle's verdict on the input where it has one."""
    try:
        probe(case)
    except Wrong as verdict:
        return verdict.outcome, str(verdict)
    except SNRPathError as err:
        return (REFUSED if valid else LIBRARY), str(err).splitlines()[0][:200]
    except Exception as err:  # noqa: BLE001 - the point is to catch what should never escape
        return OTHER, f"{type(err).__name__}: {str(err)[:200]}"
    return (WRONG, "an invalid input was accepted") if valid is False else (OK, "")


# -- inputs an attacker types ----------------------------------------------------------------------------------


def wild_number(rng: random.Random) -> Any:
    """A number as a user might give one: any magnitude, the special values, other types."""
    if rng.random() < 0.5:
        try:
            return rng.choice([1, -1]) * 10.0 ** rng.uniform(-330, 330)
        except OverflowError:
            return math.inf
    return rng.choice([0, -1, 1e-300, 5e-324, 0.5, 4.0, 40, 400.0, 1e18, 2.0**64, 1.8446744073709556e19, 1e30, 1e38,
                       3.4e38, 1e300, math.inf, -math.inf, math.nan, -0.0, 2**64, 2**70, True, "40", None,
                       np.float32(1e38), np.float64(40.0), torch.tensor(1e30), torch.tensor([4.0])])


def ramp_case(rng: random.Random) -> dict:
    """A ramp (maybe renoised and ramped again) or a hybrid with wild SNR fields."""
    fields = ("gamma_max",) if rng.random() < 0.3 else ("gamma_max", "kappa", "gamma_min")
    kw = {k: wild_number(rng) for k in fields if rng.random() < 0.8}
    return {"hybrid": len(fields) == 1, "steps": rng.randint(1, 3), "schedule": rng.choice(["logit", "loglinear",
                                                                                           "linear"]),
            "lag": rng.choice([0.0, 0.5, 1.0]), "renoise": wild_number(rng) if rng.random() < 0.3 else None, **kw}


VALID = ("ar()", "roar()", "mdm(3)", "mdm(3, remask='cap', eta=0.01)", "hybrid(2, 2)", "hybrid(1, 2, gamma_max=400.0)",
         "ramp(2, gamma_max=8.0, kappa=4.0, gamma_min=0.01) >> switch('commit')", "reveal(count=1, order='entropy')",
         "on(slice(0, 2), ar()) | on((2,), roar())", "remask('rescale') & reveal(2, schedule='linear')",
         "ramp(2, lag=0.5, schedule='loglinear') >> mdm(2)", "blocks(2, mdm(2))",
         "ar() >> remask(positions=[0]) >> ar()",
         "ramp(2, noise=0.5, solver='heun', top_k=2) >> renoise(2.0) >> ramp(2) >> switch('commit')")
NUMBERS = ("0", "-1", "1e38", "3.5e38", "1e308", "1e-320", "2e19", "18446744073709551616", "99999999999999999999",
           "nan", "inf", "1e30", "0.0", "40.0", "2", "True", "None", "'x'")


def text_case(rng: random.Random) -> str:
    """A valid expression, mutated: a number replaced by a wild one, characters deleted, inserted or repeated."""
    text = rng.choice(VALID)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        kind, at = rng.random(), rng.randrange(len(text) + 1)
        if kind < 0.5:
            digits = [i for i, c in enumerate(text) if c.isdigit()]
            if digits:
                i = rng.choice(digits)
                j = i
                while j < len(text) and (text[j].isdigit() or text[j] in ".e"):
                    j += 1
                text = text[:i] + rng.choice(NUMBERS) + text[j:]
        elif kind < 0.7:
            text = text[:at] + text[at + 1:]
        elif kind < 0.9:
            text = text[:at] + rng.choice("()[],=|&>. 0123456789e-+'_abcgmx") + text[at:]
        else:
            text = text[:at] + text[at:at + rng.randint(1, 8)] + text[at:]
    return text


def value_case(rng: random.Random, depth: int = 0) -> tuple:
    """A path value as nested constructor calls (built by :func:`build`): groups of 0..3 parts, nested groups,
    positions and fields out of range."""
    leaves = [("alias", "ar()"), ("alias", "roar()"), ("alias", f"mdm({rng.randint(1, 3)})"),
              ("alias", "switch('commit')"), ("alias", "renoise(2.0)"), ("remask", (rng.randint(-1, 3),)),
              ("ramp", rng.randint(0, 2), wild_number(rng) if rng.random() < 0.3 else 4.0)]
    if depth >= 2 or rng.random() < 0.4:
        return rng.choice(leaves)
    kind = rng.choice(["then", "parallel", "on", "blocks"])
    if kind in ("then", "parallel"):
        return (kind, tuple(value_case(rng, depth + 1) for _ in range(rng.randint(0, 3))))
    if kind == "on":
        return ("on", tuple(rng.sample(range(-1, 4), rng.randint(0, 3))), value_case(rng, depth + 1))
    return ("blocks", rng.randint(0, 3), value_case(rng, depth + 1))


def build(case: tuple) -> Path:
    kind, *args = case
    if kind == "alias":
        return parse_path(args[0])
    if kind == "remask":
        return Remask(positions=args[0])
    if kind == "ramp":
        return Ramp(steps=args[0], gamma_max=args[1])
    if kind == "then":
        return Then(tuple(build(a) for a in args[0]))
    if kind == "parallel":
        return Parallel(tuple(On(positions=(i,), path=build(a)) for i, a in enumerate(args[0])))
    if kind == "on":
        return On(positions=args[0], path=build(args[1]))
    return Blocks(n=args[0], inner=build(args[1]))


DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32, torch.uint64,
          torch.bool, torch.float32)
IDS = (-1, -1, 0, 1, 2, 3, 4, -2, 127, 128, 255, 256, 65535, 2**31 - 1, 2**32 - 1, 2**63 - 1, -(2**63))


def prompt_case(rng: random.Random) -> torch.Tensor:
    """A prompt of any dtype and shape; ids as int64 then cast, so -1 wraps to 255 in uint8 and so on."""
    shape = rng.choice([(L,), (L,), (rng.randint(1, 3), L), (L + 1,), (0, L), (2, 2, L)])
    pool = IDS if rng.random() < 0.5 else (-1, 0, 1, V - 1)
    ids = torch.tensor([rng.choice(pool) for _ in range(math.prod(shape))], dtype=torch.int64).reshape(shape)
    return ids.to(rng.choice(DTYPES))


def true_ids(prompt: torch.Tensor) -> list[int]:
    """The ids a prompt holds as numbers (uint64 included), flat."""
    wide = prompt.to(torch.int64).flatten().tolist()
    return [v + 2**64 if prompt.dtype == torch.uint64 and v < 0 else v for v in wide]


def prompt_valid(prompt: torch.Tensor) -> bool:
    integer = not (prompt.is_floating_point() or prompt.dtype == torch.bool)
    shaped = prompt.ndim in (1, 2) and prompt.shape[-1] == L and prompt.shape[0] > 0
    return integer and shaped and all(v == -1 or 0 <= v < V for v in true_ids(prompt))


def integers_case(rng: random.Random) -> dict:
    """Each argument wild with probability 1/2, else a plain valid value."""
    def pick(wild: list) -> Any:
        return rng.choice(wild) if rng.random() < 0.5 else rng.choice(wild[:3])

    return {"batch": pick([None, 1, 2, 3, 0, -1, True, 2.0, np.int64(2), 2**63, torch.tensor(2)]),
            "seed": pick([0, 1, 2**64 - 1, 2**63, -1, 2**64, 1.9, True, np.uint64(2**64 - 1), "0"]),
            "row_offset": pick([0, 5, 2**63 - 3, 2**63 - 1, 2**63 - 2, 2**63, 2**64 - 1, 2**64, -1, 1.0, True,
                                np.int64(7)]),
            "stop_token": pick([None, 0, V - 1, V, -1, True, 2**70, np.int64(1)])}


def _int(value: Any) -> int | None:
    """``value`` as the integer a check would accept (numpy, 0-d tensors), None for anything else."""
    if hasattr(value, "ndim") and getattr(value, "ndim") == 0:
        value = value.item()
    return None if isinstance(value, bool) or not isinstance(value, (int, np.integer)) else int(value)


def integers_valid(case: dict) -> bool:
    batch, seed, offset = (_int(case[k]) for k in ("batch", "seed", "row_offset"))
    stop = case["stop_token"]
    rows = 1 if case["batch"] is None else batch
    return (rows is not None and 1 <= rows <= 8 and seed is not None and 0 <= seed < 2**64 and offset is not None
            and 0 <= offset <= 2**63 - rows and (stop is None or (_int(stop) is not None and 0 <= _int(stop) < V)))


# -- probes: run one input, raise Wrong when the library accepted it and got it wrong ---------------------------


def sampled(path: Path, **kwargs: Any):
    """``path`` sampled on the toy (2 rows unless given), its tokens checked; paths of many steps are only compiled."""
    program = path.compile(L)
    if len(program.steps) > 64:
        return None
    result = sample(program, TOY, **{"batch": 2, **kwargs})
    tokens = result.tokens
    check(tokens.dtype == torch.int64 and tokens.ndim == 2 and tokens.shape[1] == L, f"tokens {list(tokens.shape)}")
    check(bool(((tokens >= 0) & (tokens < V)).all()), f"tokens outside the vocabulary: {tokens.tolist()}")
    check(result.nfe <= program.nfe, f"nfe {result.nfe} above the static {program.nfe}")
    return result


def round_trips(path: Path) -> None:
    text = repr(path)
    try:
        back = parse_path(text)
    except SNRPathError as err:
        raise Wrong(f"repr {text!r} does not parse: {err}") from None
    check(back == path, f"repr {text!r} parses to another value")


def probe_text(text: str) -> None:
    path = parse_path(text)
    round_trips(path)
    if all(int(n) <= 64 for n in _integers(text)):  # a million steps would only take time
        sampled(path)


def _integers(text: str) -> list[str]:
    import re

    return re.findall(r"(?<![.\deE])\d+(?![.\deE])", text)


def probe_ramp(case: dict) -> None:
    snr = {k: case[k] for k in ("gamma_max", "kappa", "gamma_min") if k in case}
    if case["hybrid"]:
        path = Path.hybrid(case["steps"], 2, schedule=case["schedule"], lag=case["lag"], **snr)
    else:
        path = Path.ramp(case["steps"], schedule=case["schedule"], lag=case["lag"], **snr)
        if case["renoise"] is not None:  # down to an SNR, then up again
            path = path >> Path.renoise(case["renoise"]) >> Path.ramp(case["steps"], **snr)
        path = path >> Path.switch("commit")
    round_trips(path)
    sampled(path)


def probe_value(case: tuple) -> None:
    path = build(case)
    round_trips(path)
    sampled(path)


def probe_prompt(prompt: torch.Tensor) -> None:
    result = sampled(Path.mdm(2), prompt=prompt, batch=None)
    ids = torch.tensor(true_ids(prompt)).reshape(prompt.shape).expand(result.tokens.shape)
    fixed = ids != -1
    check(torch.equal(result.tokens[fixed], ids[fixed]), "a prompt position changed")


def probe_integers(case: dict) -> None:
    result = sampled(Path.mdm(2), **case)
    alone = sample(Path.mdm(2), TOY, batch=1, seed=case["seed"], row_offset=case["row_offset"],
                   stop_token=case["stop_token"])
    check(torch.equal(result.tokens[:1], alone.tokens), "row 0 differs from the same row sampled alone")


# -- files: a saved model, a run folder with two checkpoints ------------------------------------------------------


def tiny_model(seed: int = 0) -> DSLDenoiser:
    config = DiTConfig(vocab_size=5, seq_len=4, hidden=16, cond_dim=8, n_blocks=1, n_heads=2, freq_dim=16)
    return DSLDenoiser.build(config, ConverterConfig(anchor_dim=4), seed=seed,
                             tokenizer={"kind": "char", "chars": "abcde"})


def state_of(k: int) -> dict:
    """The ``k``-th checkpoint of the fake run: a few tensors, distinct per ``k``."""
    return {"step": k, "weights": torch.arange(64, dtype=torch.float32) * (k + 1)}


class Files:
    """Reference files, made once in ``root``: ``model/`` (saved, with hashes), ``run/`` (two commits: checkpoint.pt,
    checkpoint.prev.pt, manifest.json), ``log.jsonl``; each probe works on a fresh copy."""

    def __init__(self, root: pathlib.Path):
        self.root, self.model = root, tiny_model()
        save(self.model, root / "model")
        self.run = root / "run"
        self.run.mkdir()
        for k in (1, 2):
            commit_checkpoint(self.run / "checkpoint.pt", lambda f, k=k: torch.save(state_of(k), f))
        write_jsonl(root / "log.jsonl", [{"step": 1}])
        self.copies = 0

    def copy(self) -> pathlib.Path:
        self.copies += 1
        target = self.root / f"copy{self.copies}"
        shutil.copytree(self.root / "model", target / "model")
        shutil.copytree(self.run, target / "run")
        shutil.copy(self.root / "log.jsonl", target / "log.jsonl")
        return target


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


DAMAGED = ("model/model.safetensors", "model/config.json", "run/checkpoint.pt", "run/checkpoint.prev.pt",
           "run/manifest.json")


def damage_case(rng: random.Random) -> dict:
    return {"file": rng.choice(DAMAGED), "kind": rng.choice(["flip", "flip", "truncate", "append", "zero"]),
            "seed": rng.randrange(2**32)}


def damage(data: bytes, kind: str, rng: random.Random) -> bytes:
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    if kind == "append":
        return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    out = bytearray(data)
    if kind == "zero":
        at = rng.randrange(len(out))
        out[at:at + rng.randint(1, 64)] = bytes(min(64, len(out) - at))
        return bytes(out) if bytes(out) != data else data + b"\0"
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def probe_damage(files: Files, case: dict) -> None:
    folder = files.copy()
    try:
        target = folder / case["file"]
        target.write_bytes(damage(target.read_bytes(), case["kind"], random.Random(case["seed"])))
        if case["file"].startswith("model/"):
            loaded = load(folder / "model").state_dict()
            check(all(torch.equal(loaded[k], v) for k, v in files.model.state_dict().items()), "changed weights loaded")
            return
        path = good_checkpoint(folder / "run" / "checkpoint.pt", say=False)
        state = torch.load(path, weights_only=True)
        check(state["step"] in (1, 2) and torch.equal(state["weights"], state_of(state["step"])["weights"]),
              "a damaged checkpoint was accepted")
    finally:
        shutil.rmtree(folder)


# -- disk failures ------------------------------------------------------------------------------------------------

FAILURES = {"ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES, "EIO": errno.EIO, "EDQUOT": errno.EDQUOT,
            "EROFS": errno.EROFS}


@contextlib.contextmanager
def failing_at(k: int, code: int):
    """The ``k``-th write, flush or rename from here on raises ``OSError(code)`` (the blocks of
    :func:`snrpaths.files.write_stream`, every ``os.fsync``, ``os.replace`` and ``os.link``)."""
    count = [0]
    real = {"fsync": os.fsync, "replace": os.replace, "link": os.link, "_write": snrpaths.files._write}

    def counted(fn):
        def call(*a, **kw):
            count[0] += 1
            if count[0] == k:
                if fn is real["_write"]:
                    a[0].write(a[1][: len(a[1]) // 2])  # half the block reaches the file
                raise OSError(code, os.strerror(code))
            return fn(*a, **kw)
        return call

    patches = [(os, "fsync"), (os, "replace"), (os, "link"), (snrpaths.files, "_write")]
    for owner, name in patches:
        setattr(owner, name, counted(real[name]))
    try:
        yield count
    finally:
        for owner, name in patches:
            setattr(owner, name, real[name])


def disk_case(rng: random.Random) -> dict:
    return {"writer": rng.choice(["save", "write_jsonl", "commit"]), "k": rng.randint(1, 14),
            "error": rng.choice(sorted(FAILURES))}


def probe_disk(files: Files, case: dict) -> None:
    folder = files.copy()
    try:
        before = snapshot(folder)
        writers = {"save": lambda: save(tiny_model(seed=1), folder / "model"),
                   "write_jsonl": lambda: write_jsonl(folder / "log.jsonl", [{"step": 2}]),
                   "commit": lambda: commit_checkpoint(folder / "run" / "checkpoint.pt",
                                                       lambda f: torch.save(state_of(3), f))}
        try:
            with failing_at(case["k"], FAILURES[case["error"]]):
                writers[case["writer"]]()
        except SNRPathError as err:
            check(os.strerror(FAILURES[case["error"]]) in str(err), f"the cause is not named: {err}")
            _kept(folder, before, case["writer"])
            raise
        _written(folder, case["writer"])
    finally:
        shutil.rmtree(folder)


def _kept(folder: pathlib.Path, before: dict[str, bytes], writer: str) -> None:
    """After a failed write: no temporary file, and the earlier result whole (a run still resumes from the checkpoint
    it had, or from the one before it when the failure came after the manifest moved on)."""
    left = [p.name for p in folder.rglob("*") if snrpaths.files.TMP_MARK in p.name]
    check(not left, f"temporary files left: {left}", LOST)
    if writer == "commit":
        path = good_checkpoint(folder / "run" / "checkpoint.pt", say=False)
        check(path is not None and torch.load(path, weights_only=True)["step"] == 2, "the last checkpoint is lost",
              LOST)
        return
    after = snapshot(folder)
    changed = [k for k in before if not k.startswith("run/") and after.get(k) != before[k]]
    check(not changed, f"earlier files changed: {changed}", LOST)


def _written(folder: pathlib.Path, writer: str) -> None:
    if writer == "save":
        loaded = load(folder / "model").state_dict()
        check(all(torch.equal(loaded[k], v) for k, v in tiny_model(seed=1).state_dict().items()), "saved wrongly")
    elif writer == "commit":
        path = good_checkpoint(folder / "run" / "checkpoint.pt", say=False)
        check(torch.load(path, weights_only=True)["step"] == 3, "the new checkpoint is not the one resumed")
    else:
        check((folder / "log.jsonl").read_text() == '{"step": 2}\n', "written wrongly")


# -- the tuner ------------------------------------------------------------------------------------------------------

METRIC_VALUES = (0.0, 0.25, 1.0, -3.5, 1e308, 5e-324, math.inf, -math.inf, math.nan, "0.5", "abc", None, True, False,
                 np.float32(0.5), np.float64(math.inf), np.int64(3), torch.tensor(0.5), torch.tensor([0.5]),
                 torch.tensor(math.nan), 10**400, [0.5], 2)


def tuner_case(rng: random.Random) -> list:
    return [rng.choice(METRIC_VALUES) if rng.random() < 0.3 else rng.random() for _ in range(rng.randint(1, 6))]


def metric_valid(value: Any) -> bool:
    if hasattr(value, "ndim") and getattr(value, "ndim") == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def probe_tuner(values: list) -> None:
    """Tune with a metric returning ``values`` in turn (a path proposed again is not scored again, so fewer may be
    read): refused exactly when a value read was invalid, and otherwise every trial holds a value that was read."""
    read: list = []

    def metric(tokens: torch.Tensor) -> Any:
        read.append(values[len(read)])
        return read[-1]

    try:
        tuned = tune("mdm", TOY, 2, metric, trials=len(values), n=4, seed=0)
    except SNRPathError:
        check(bool(read) and not metric_valid(read[-1]), f"refused after the valid values {read!r}", REFUSED)
        raise
    check(all(metric_valid(v) for v in read), f"accepted {read!r}")
    check(len(tuned.trials) == len(values) and {r["value"] for r in tuned.trials} <= {float(v) for v in read},
          "the trials hold values the metric never returned")


STORAGES = ("empty", "sqlite", "random", "text", "folder", "missing folder", "url", "new")


def storage_case(rng: random.Random) -> dict:
    return {"kind": rng.choice(STORAGES), "seed": rng.randrange(2**32)}


def probe_storage(root: pathlib.Path, case: dict) -> None:
    kind, rng = case["kind"], random.Random(case["seed"])
    folder = pathlib.Path(tempfile.mkdtemp(dir=root))
    try:
        target = folder / "tune.db"
        if kind == "empty":
            target.write_bytes(b"")
        elif kind == "sqlite":
            tune("mdm", TOY, 2, trials=1, n=4, storage=target)
        elif kind == "random":
            target.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096))))
        elif kind == "text":
            target.write_text("not a database\n")
        elif kind == "folder":
            target.mkdir()
        storage = {"missing folder": folder / "no" / "tune.db", "url": "sqlite:///" + str(folder / "u.db")}.get(
            kind, target)
        tuned = tune("mdm", TOY, 2, trials=2, n=4, storage=storage)
        check(len(tuned.trials) == 2 and kind in ("empty", "sqlite", "url", "new"), f"storage {kind!r} accepted")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- kills ----------------------------------------------------------------------------------------------------------


def forked(run: Callable[[], object], kill_at: int | None) -> int:
    """Run ``run()`` in a forked child that sends itself SIGKILL before its ``kill_at``-th call of ``os.replace``,
    ``os.rename``, ``os.fsync`` or ``os.unlink`` (None: never); returns the exit status, -9 when killed."""
    pid = os.fork()
    if pid:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    code = 70
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the run's own lines would drown the table
        torch.set_num_threads(1)
        count = [0]
        for name in ("replace", "rename", "fsync", "unlink"):
            real = getattr(os, name)

            def call(*a, _real=real, **kw):
                count[0] += 1
                if count[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _real(*a, **kw)

            setattr(os, name, call)
        run()
        code = 0
    except BaseException:  # noqa: BLE001 - the parent reads the status
        code = 71
    finally:
        os._exit(code)


def train_args(corpus: pathlib.Path, out: pathlib.Path, steps: int = 6) -> list[str]:
    return ["train", "--corpus", str(corpus), "--valid-every", "2", "--seq-len", "16", "--hidden", "16", "--blocks",
            "1", "--heads", "2", "--cond-dim", "8", "--anchor-dim", "4", "--steps", str(steps), "--batch", "4",
            "--eval-every", "3", "--eval-rows", "4", "--save-every", "1", "--objective", "dsl", "--no-progress",
            "--out", str(out)]


class Kills:
    """A straight training run and a straight tuning run, to compare each killed-then-rerun one with."""

    def __init__(self, root: pathlib.Path):
        from snrpaths.cli import main

        self.root, self.main = root, main
        self.corpus = root / "corpus"
        self.corpus.mkdir(parents=True)
        for k in range(4):
            (self.corpus / f"doc{k}.txt").write_text("to be or not to be that is the question\n" * (3 + k))
        assert forked(lambda: main(train_args(self.corpus, root / "straight")), None) == 0
        self.straight = torch.load(root / "straight" / "checkpoint.pt", weights_only=True)
        self.runs = 0

    def probe(self, case: dict) -> None:
        """Kill at call ``k``, halving ``k`` until the run dies before it ends (so every case is a kill), then rerun
        the same command to the end and compare."""
        self.runs += 1
        out, k = self.root / f"killed{self.runs}", case["k"]
        while True:
            if case["what"] == "train":
                killed = forked(lambda: self.main(train_args(self.corpus, out)), k)
            else:
                killed = forked(lambda: _tune(out, k), None)
            if killed == -signal.SIGKILL or k == 1:
                break
            shutil.rmtree(out, ignore_errors=True)
            out.with_suffix(".db").unlink(missing_ok=True)
            k //= 2
        check(killed == -signal.SIGKILL, f"{case} ran to the end at call 1", OTHER)
        if case["what"] == "train":
            status = forked(lambda: self.main(train_args(self.corpus, out)), None)
        else:
            status = forked(lambda: _tune(out, None), None)
        check(status == 0, f"the rerun after a kill at {case} failed with status {status}", LOST)
        if case["what"] == "train":
            state = torch.load(out / "checkpoint.pt", weights_only=True)
            check(all(torch.equal(v, self.straight["model"][k]) for k, v in state["model"].items()),
                  "the resumed run ends with other weights", LOST)
        else:
            tuned = _tune(out, None)
            check(len(tuned.trials) == TUNE_TRIALS and all(math.isfinite(r["value"]) for r in tuned.trials),
                  "the resumed study is not whole", LOST)


TUNE_TRIALS = 5


class Scored:
    """Total variation on the toy, as a tuning metric that sends SIGKILL to its process at its ``kill_at``-th call."""

    def __init__(self, kill_at: int | None):
        from snrpaths.tuning import TotalVariation

        self.kill_at, self.calls, self.score = kill_at, 0, TotalVariation().scorer(TOY, None)

    def __call__(self, tokens: torch.Tensor) -> float:
        self.calls += 1
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.score(tokens)


def _tune(out: pathlib.Path, kill_at: int | None):
    return tune("mdm", TOY, 3, Scored(kill_at), trials=TUNE_TRIALS, n=50, seed=0, storage=out.with_suffix(".db"))


def kill_case(rng: random.Random) -> dict:
    what = rng.choice(["train", "tune"])
    return {"what": what, "k": rng.randint(1, 220 if what == "train" else TUNE_TRIALS)}  # a 6-step run: ~200 calls


# -- the campaign ---------------------------------------------------------------------------------------------------


def surfaces(root: pathlib.Path, quick: bool) -> list[tuple[str, Callable, Callable, Callable | None, int]]:
    """(name, draw(rng), probe(case), oracle(case) or None, how many inputs)."""
    n = 200 if quick else 10_000
    files = Files(root / "files")
    store = root / "storages"
    store.mkdir()
    rows = [
        ("path expressions", text_case, probe_text, None, n),
        ("SNR fields (ramp, hybrid)", ramp_case, probe_ramp, None, n),
        ("path values built directly", value_case, probe_value, None, n),
        ("prompts (dtypes, ids)", prompt_case, probe_prompt, prompt_valid, n),
        ("seeds and indices", integers_case, probe_integers, integers_valid, n),
        ("damaged files", damage_case, lambda c: probe_damage(files, c), None, n),
        ("disk failures", disk_case, lambda c: probe_disk(files, c), None, n),
        ("tuner runs (1-6 metric values each)", tuner_case, probe_tuner, None, n),
        ("tuner storage files", storage_case, lambda case: probe_storage(store, case), None,
         8 if quick else 1000),
    ]
    if hasattr(os, "fork"):
        kills = Kills(root / "kills")
        rows.append(("kills (SIGKILL, then rerun)", kill_case, kills.probe, None, 2 if quick else 200))
    return rows


def run(quick: bool, seed: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, draw, probe, oracle, n) in enumerate(surfaces(pathlib.Path(tmp), quick)):
            rng = random.Random(seed * 1000 + index)
            counts, examples, start = dict.fromkeys(OUTCOMES, 0), {}, time.perf_counter()
            for _ in range(n):
                case = draw(rng)
                outcome, note = classify(probe, case, None if oracle is None else oracle(case))
                counts[outcome] += 1
                if outcome not in (OK, LIBRARY) and len(examples.setdefault(outcome, [])) < 3:
                    examples[outcome].append(f"{case!r:.200} -> {note}")
            row = {"surface": name, "tried": n, **counts, "examples": examples,
                   "seconds": round(time.perf_counter() - start, 1)}
            print(f"{name:>30}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({row['seconds']} s)",
                  flush=True)
            for outcome, lines in examples.items():
                for line in lines:
                    print(f"{'':>32}{outcome}: {line}")
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    head = "| surface | tried | ok | library errors | valid refused | other exceptions | silent wrong | data lost |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['surface']} | {r['tried']:,} | {r[OK]:,} | {r[LIBRARY]:,} | {r[REFUSED]:,} | "
                     f"{r[OTHER]:,} | {r[WRONG]:,} | {r[LOST]:,} |")
    return "\n".join(lines)


def plot(rows: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4), constrained_layout=True)
    left = np.zeros(len(rows))
    for i, outcome in enumerate(OUTCOMES):
        share = np.array([r[outcome] / r["tried"] for r in rows])
        ax.barh([r["surface"] for r in rows], share, left=left, color=f"C{i}", label=outcome)
        left += share
    ax.invert_yaxis()
    ax.set_xlabel("share of the inputs tried")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    ax.set_title("What became of every input: accepted and right, or refused with a library error", fontsize=9)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench robustness", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 inputs a surface (fewer for the slow ones)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared machine
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = run(args.quick, args.seed)
    text = f"Robustness campaign, seed {args.seed}: what became of every input\n\n" + table(rows)
    print(text)
    stem = "robustness_quick" if args.quick else "robustness"
    write(args.out, stem, rows, text, lambda path: plot(rows, path))


if __name__ == "__main__":
    main()
