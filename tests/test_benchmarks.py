"""The ``--quick`` mode of each study runs end to end and leaves its JSON, Markdown table and plot; the shared
round-robin timer runs its jobs in the order and with the seeds it promises.

(``dit_throughput.py`` builds a 172 M-parameter model even in quick mode, about a minute on 2 cores; here it runs
its whole code path at toy sizes.)"""

import json
import pathlib
import subprocess
import sys

import pytest
import torch
from snrpaths.benchmarks._timing import round_robin

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"


TOY_DIT = ["--vocab", "300", "--hidden", "64", "--heads", "4", "--cond-dim", "32", "--n-blocks", "1", "--seq-len",
           "32", "--anchor-dim", "8", "--sparse-k", "16"]


@pytest.mark.parametrize(("study", "extra"), [("toy_quality", []), ("nll_estimators", []), ("runner_overhead", []),
                                              ("text_quality", []), ("speed", []), ("shipped_checkpoints", []),
                                              ("dit_throughput", TOY_DIT), ("hmm_study", []),
                                              ("hybrid_sweep", []), ("adaptive_calls", []),
                                              ("path_tuning", []), ("continuous", []), ("robustness", []),
                                              ("block_cache", []), ("gpu", [])])
def test_quick_mode_writes_table_json_and_plot(study, extra, tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / f"{study}.py"), "--quick", "--out", str(tmp_path), *extra],
                         check=False, capture_output=True, text=True, timeout=1800, cwd=tmp_path)  # a hang guard only
    assert out.returncode == 0, out.stderr[-3000:]
    stem = tmp_path / f"{study}_quick"
    assert json.loads(stem.with_suffix(".json").read_text())
    table = stem.with_suffix(".md").read_text()
    assert "|---" in table and table.strip() in out.stdout
    assert stem.with_suffix(".png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{study}_quick{s}" for s in (".json", ".md", ".png"))


def test_round_robin_interleaves_jobs_with_promised_seeds_and_drops_warmup():
    calls = []
    jobs = {"a": lambda s: calls.append(("a", s)) or 3, "b": lambda s: calls.append(("b", s)) or "not a count"}
    times = round_robin(jobs, repeats=2, seed=10, warmup=1, log=False)
    assert calls == [("a", 11), ("b", 11), ("a", 12), ("b", 12), ("a", 13), ("b", 13)]
    assert times["a"]["nfe"] == [3, 3] and times["b"]["nfe"] == [None, None]
    assert all(len(t["seconds"]) == 2 and min(t["seconds"]) >= 0 for t in times.values())


def test_record_resumes_after_a_torn_last_line_and_drops_rows_of_other_settings(tmp_path):
    from snrpaths.benchmarks._results import Record

    partial = tmp_path / ".study.partial.jsonl"
    partial.write_text('{"key": "a", "n": 4, "x": 1}\n{"key": "b", "n": 5, "x": 2}\n{"key": "c", "n": 4, "x"')
    record = Record(partial, accept=lambda row: row["n"] == 4)
    assert record.done == {"a": {"n": 4, "x": 1}}  # b: other settings; c: cut by the interruption
    assert record.get("a", lambda: 1 / 0) == {"n": 4, "x": 1}  # read back, not recomputed
    record.get("b", lambda: {"n": 4, "x": 3})
    assert Record(partial, accept=lambda row: row["n"] == 4).done == {"a": {"n": 4, "x": 1}, "b": {"n": 4, "x": 3}}


def test_gpu_rows_a_model_cannot_run_are_reported_with_the_reason(monkeypatch, tmp_path):
    """Adding a row is one line of ROWS; a row one model cannot run (a ramp, for an endpoint-only masked LM) is listed
    with its reason, the other model's cell timed."""
    from snrpaths.benchmarks import gpu

    monkeypatch.setattr(gpu, "ROWS", (gpu.Row("plain", "mdm({T})"), gpu.Row("ramp", "ramp({T}) >> mdm({T})")))
    gpu.main(["--quick", "--batches", "1", "--steps", "2", "--out", str(tmp_path)])
    cells = {(c["model"], c["row"]): c for c in json.loads((tmp_path / "gpu_quick.json").read_text())["cells"]}
    ramp, plain = cells["DiT (tiny)", "ramp"], cells["DiT (tiny)", "plain"]
    assert ramp["nfe"] == [4] and ramp["tokens_per_s"] > 0 and plain["tokens_vs_plain"] == 1.0
    assert ramp["tokens_vs_plain"] == ramp["tokens_per_s"] / plain["tokens_per_s"]
    assert ramp["calls_vs_plain"] == ramp["calls_per_s"] / plain["calls_per_s"]
    assert "CapabilityError" in cells["masked LM (tiny BERT)", "ramp"]["skipped"]
    assert "tokens_vs_plain" not in cells["masked LM (tiny BERT)", "ramp"]
    assert "n/a: CapabilityError" in (tmp_path / "gpu_quick.md").read_text()
    assert gpu.copy_bandwidth(torch.device("cpu"), mib=8, repeats=2) > 0
    for name, peak in (("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H100 PCIe", 2.0e12), ("NVIDIA H200", 4.8e12)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert gpu.bandwidth(torch.device("cuda"))[0] == peak
