"""The README's two set-up commands: CI runs the second one verbatim; the first one's main job works."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"^    (python3 -m venv .*)$", (ROOT / "README.md").read_text(), flags=re.M)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    commands = readme_commands()
    assert len(commands) == 2, commands
    test_command = commands[1].split("&& ", 3)[-1]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_main_job_runs(tmp_path):
    """The first command's main job, on small settings (the full one runs in about a minute)."""
    assert readme_commands()[0].endswith("snrpaths toy")
    out = subprocess.run([sys.executable, "-m", "snrpaths", "toy", "--n", "300", "--length", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ramp(16) >> mdm(32, remask='confidence')" in out.stdout and "TV to P" in out.stdout


def test_cli_errors_are_one_line_without_traceback():
    out = subprocess.run([sys.executable, "-m", "snrpaths", "toy", "--path", "mdm(32, remask='confdence')"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "snrpaths: error: 'policy' must be one of" in out.stderr and "Traceback" not in out.stderr
