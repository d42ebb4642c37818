"""``snrpaths train`` killed with SIGKILL at every file-system step of a checkpoint, and again while it recovers: the
same command, rerun, resumes and ends with the uninterrupted run's files, bit for bit.

Each run is a forked child of the test process, which ran the command once itself first (no interpreter start-up or
first-call costs per run). The kill is deterministic: the child counts its calls of the functions that change or flush
files (``os.replace``, ``os.rename``, ``os.fsync``, ``os.unlink``, ``os.mkdir``, ``os.rmdir``, ``shutil.rmtree``) and
sends itself SIGKILL just before the chosen one. Its ``fsync`` calls are counted but not made: they guard against a
power loss, which a SIGKILL is not (the kernel keeps what was written), and they would make the test slow.
"""

import json
import os
import shutil
import signal
import sys
import traceback

import pytest
import torch

import snrpaths.cli  # noqa: F401  (imported before forking, so children start at once)
import snrpaths.train
from snrpaths.integrity import good_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child per run")

EVENTS = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "unlink"), (os, "mkdir"), (os, "rmdir"),
          (shutil, "rmtree")]
STEPS = 40  # more than two per killed run below, so the chain of kills never reaches the end
FSYNC, MKDIR = os.fsync, os.mkdir


def args(corpus, out, steps=STEPS):
    return ["train", "--corpus", str(corpus), "--valid-every", "2", "--seq-len", "16", "--hidden", "16", "--blocks",
            "1", "--heads", "2", "--cond-dim", "8", "--anchor-dim", "4", "--steps", str(steps), "--batch", "4",
            "--eval-every", "7", "--eval-rows", "4", "--save-every", "1", "--objective", "dsl", "--dropout", "0.1",
            "--no-progress", "--out", str(out)]


def child(argv, kill_at=None, armed_by_save=0, counts=None) -> int:
    """Run ``snrpaths <argv>`` in a forked process; SIGKILL it before its ``kill_at``-th counted call, counting from
    the start of its ``armed_by_save``-th checkpoint (0: from the start). Returns the exit status, -9 when killed.
    ``counts``: a file the child writes its number of counted calls per checkpoint to, if it finishes."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    code = 70
    try:
        torch.set_num_threads(1)
        state = {"armed": armed_by_save == 0, "n": 0, "saves": 0, "per_save": [0]}

        def counted(real):
            def call(*a, **k):
                if real is MKDIR and os.path.isdir(a[0]):
                    return real(*a, **k)  # raises FileExistsError and changes nothing: not a moment of its own
                state["per_save"][-1] += 1
                if state["armed"]:
                    state["n"] += 1
                    if state["n"] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                return None if real is FSYNC else real(*a, **k)
            return call

        for module, name in EVENTS:
            setattr(module, name, counted(getattr(module, name)))
        real_save = snrpaths.train._save

        def save(*a, **k):
            state["saves"] += 1
            state["per_save"].append(0)
            state["armed"] = state["armed"] or state["saves"] == armed_by_save
            return real_save(*a, **k)

        snrpaths.train._save = save
        from snrpaths.cli import main

        code = main(argv)
        if counts is not None:
            with open(counts, "w") as f:
                json.dump(state["per_save"], f)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def snapshot(out):
    """Everything a run leaves that must not depend on how often it was killed."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    log = [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}
           for line in (out / "log.jsonl").read_text().splitlines()]
    files = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    return state, log, files


def assert_same(a, b):
    (sa, la, fa), (sb, lb, fb) = a, b
    assert sa["step"] == sb["step"] == STEPS and sa["ema_updates"] == sb["ema_updates"]
    for key in ("model", "ema"):
        for name, tensor in sa[key].items():
            assert torch.equal(tensor, sb[key][name]), f"{key}.{name}"
    for i, slots in sa["optimizer"]["state"].items():
        for name, value in slots.items():
            assert torch.equal(value, sb["optimizer"]["state"][i][name]), f"optimizer.{i}.{name}"
    assert torch.equal(sa["generator"], sb["generator"])
    assert all(torch.equal(x["cpu"], y["cpu"]) for x, y in zip(sa["rng"], sb["rng"], strict=True))
    assert la == lb  # the same validations at the same steps, each once
    assert fa == fb  # model/: the same weights and config, byte for byte


@pytest.fixture(scope="module")
def reference(tmp_path_factory, write_corpus):
    root = tmp_path_factory.mktemp("crash")
    corpus = write_corpus(root / "corpus", [4, 5])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # once here, so every child starts with torch's kernels and snrpaths' modules ready
        assert snrpaths.cli.main(args(corpus, root / "warm-up", steps=2)) == 0
    finally:
        torch.set_num_threads(threads)
    assert child(args(corpus, root / "straight"), counts=root / "counts.json") == 0
    per_save = json.loads((root / "counts.json").read_text())  # [before the first checkpoint, first, second, ...]
    return root, snapshot(root / "straight"), per_save[2]


def test_a_run_killed_at_every_step_of_its_checkpoints_resumes_to_the_same_weights(reference):
    """One run folder, killed over and over. First inside its first checkpoint (no model/ to swap out yet), then the
    chain: each run commits one checkpoint and dies at the next call of its second (which swaps out an existing
    model/), walking every call of a checkpoint; every other time a rerun then dies at its first file-system call,
    which is in the recovery of what the kill left when there is any. The last rerun finishes: same files as the
    uninterrupted run, nothing left over."""
    root, straight, per_checkpoint = reference
    assert 25 <= per_checkpoint < STEPS - 2
    out = root / "killed"
    for j in (1, 4, 8, 12):  # the first checkpoint's commit is its last calls: these die before it
        assert child(args(root / "corpus", out), kill_at=j, armed_by_save=1) == -signal.SIGKILL, j
        assert not (out / "checkpoint.pt").exists()
    for j in range(1, per_checkpoint + 1):
        assert child(args(root / "corpus", out), kill_at=j, armed_by_save=2) == -signal.SIGKILL, j
        if j % 2:
            assert child(args(root / "corpus", out), kill_at=1) == -signal.SIGKILL, j
    # each run of the chain committed one checkpoint (two when the kill followed the commit)
    assert per_checkpoint < torch.load(out / "checkpoint.pt", weights_only=True)["step"] < STEPS
    assert child(args(root / "corpus", out)) == 0
    assert_same(straight, snapshot(out))
    assert good_checkpoint(out / "checkpoint.pt") == out / "checkpoint.pt"  # its hash is in the manifest
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt", "log.jsonl", "manifest.json",
                                                     "model"]
