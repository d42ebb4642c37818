"""The ``--quick`` mode of each study runs end to end and leaves its JSON, Markdown table and plot.

(``dit_throughput.py`` builds a 172 M-parameter model even in quick mode, about a minute on 2 cores; it is left to
its own command.)"""

import json
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("study", ["toy_quality", "nll_estimators", "runner_overhead", "text_quality", "speed"])
def test_quick_mode_writes_table_json_and_plot(study, tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / f"{study}.py"), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    stem = tmp_path / f"{study}_quick"
    assert json.loads(stem.with_suffix(".json").read_text())
    table = stem.with_suffix(".md").read_text()
    assert "|---" in table and table.strip() in out.stdout
    assert stem.with_suffix(".png").read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{study}_quick{s}" for s in (".json", ".md", ".png"))
