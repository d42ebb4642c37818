"""The README's two set-up commands: CI runs the second one verbatim; the first one's main job works."""

import json
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
    """The first command's main job: the shipped DSL checkpoint with the default path, on 2 samples."""
    assert readme_commands()[0].endswith("snrpaths sample")
    out = subprocess.run([sys.executable, "-m", "snrpaths", "sample", "--n", "2", "--out", str(tmp_path / "s.jsonl")],
                         capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("--- sample") == 2 and "ramp(16) >> mdm(32, remask='confidence')" in out.stdout
    records = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["config"]["checkpoint"] for r in records] == ["tiny-shakespeare-dsl"] * 2
    words = " ".join(r["text"] for r in records).split()
    # a trained model writes words, mostly common ones: far from the ~1% an untrained one reaches
    assert sum(w.strip(".,;:!?'").lower() in COMMON for w in words) >= 0.2 * len(words), words


COMMON = set("the and i to of a you my that in is not it me with be your his this for he have thy thou but what so "
             "him as will all no do shall we are by our her lord if or on good now sir o at".split())


def test_cli_errors_are_one_line_without_traceback():
    out = subprocess.run([sys.executable, "-m", "snrpaths", "toy", "--path", "mdm(32, remask='confdence')"],
                         capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert out.returncode == 2
    assert out.stderr.startswith("snrpaths: error: --path") and "'remask' must be one of" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_quoted_samples_are_what_sample_gives():
    """The README's sample of ``tiny-shakespeare-dsl`` with ``mdm(48)`` (the cheapest of the three quoted) is row 0 of
    ``sample(..., seed=0)``, which is also what ``snrpaths sample --seed 0`` prints as sample 0, with its calls."""
    import torch

    from snrpaths import parse_path, sample
    from snrpaths.backends.text import load_with_tokenizer

    quoted = re.search(r"^`tiny-shakespeare-dsl`, `mdm\(48\)` \((\d+) calls\):\n\n```text\n(.*?)\n```$",
                       (ROOT / "README.md").read_text(), flags=re.M | re.S)
    assert quoted, "the README quotes a sample of tiny-shakespeare-dsl with mdm(48)"
    model, tokenizer = load_with_tokenizer("tiny-shakespeare-dsl")
    with torch.no_grad():
        result = sample(parse_path("mdm(48)"), model, seed=0)
    assert tokenizer.decode(result.tokens[0]) == quoted.group(2) and result.nfe == int(quoted.group(1))
