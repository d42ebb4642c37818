"""``snrpaths nll``: bits per token of the shipped checkpoints, through the real command line."""

import re
import subprocess
import sys

import pytest


def run(*argv):
    return subprocess.run([sys.executable, "-m", "snrpaths", "nll", *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv", [
    ("--estimator", "elbo", "--windows", "2", "--samples", "4"),
    ("--estimator", "roar-steps", "--windows", "2", "--samples", "4", "--checkpoint", "tiny-shakespeare-mdlm"),
    ("--estimator", "path-integral", "--windows", "1", "--samples", "2", "--path", "joint"),
])
def test_nll_prints_bits_per_token_with_an_error_bar(argv):
    out = run(*argv)
    assert out.returncode == 0, out.stderr
    found = re.search(r": ([0-9.]+) ± ([0-9.na]+) bits per token \((\d+) denoiser calls\)", out.stdout)
    assert found is not None, out.stdout
    assert float(found.group(1)) > 0


def test_nll_on_a_text_file(tmp_path):
    text = tmp_path / "held_out.txt"
    text.write_text("To be, or not to be, that is the question:\n" * 12)
    out = run("--data", str(text), "--estimator", "elbo", "--windows", "3", "--samples", "2")
    assert out.returncode == 0, out.stderr
    assert "(3 windows of 128 tokens)" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (("--windows", "0"), "--windows must be a positive integer"),
    (("--data", "/nonexistent/folder"), "does not exist"),
    (("--estimator", "path-integral", "--path", "mdm(4, remask='cap')"), "not a monotone curve"),
    (("--estimator", "path-integral", "--path", "mdm(4,"), "--path 'mdm(4,'"),
    (("--checkpoint", "no-such-model"), "no-such-model"),
])
def test_nll_bad_input_is_one_line(argv, message):
    out = run(*argv)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
