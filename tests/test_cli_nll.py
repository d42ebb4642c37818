"""``snrpaths nll``: bits per token of the shipped checkpoints, through the real command line."""

import re
import subprocess
import sys

import pytest


def run(*argv):
    # the timeout is a hang guard only: CI machines are shared, so no test depends on how long a run takes
    return subprocess.run([sys.executable, "-m", "snrpaths", "nll", *argv], capture_output=True, text=True, timeout=1800,
                          check=False)


@pytest.mark.parametrize("argv", [
    ("--estimator", "elbo", "--windows", "2", "--samples", "4"),
    ("--estimator", "roar-steps", "--windows", "2", "--samples", "4", "--checkpoint", "tiny-shakespeare-mdlm"),
    ("--estimator", "path-integral", "--windows", "1", "--samples", "2", "--path", "joint"),
])
def test_nll_prints_bits_per_token_with_an_error_bar(argv):
    out = run(*argv)
    assert out.returncode == 0, out.stderr
    found = re.search(r": ([0-9.]+) ± ([0-9.na]+) bits per token \((\d+) denoiser calls, each on every window\)",
                      out.stdout)
    assert found is not None, out.stdout
    assert float(found.group(1)) > 0


def test_nll_path_integral_with_a_finite_endpoint():
    """``--gamma-max 40`` stops the curve at the checkpoint's training cap: a finite number (to infinite SNR it is
    about 2e5 bits per token), with the endpoint's calls counted: 2 trajectories x (4 nodes + 128 ROAR states)."""
    out = run("--estimator", "path-integral", "--windows", "1", "--samples", "2", "--nodes", "4", "--gamma-max", "40")
    assert out.returncode == 0, out.stderr
    assert "gamma_max=40.0, endpoint='roar'" in out.stdout and "(264 denoiser calls," in out.stdout, out.stdout
    bits = float(re.search(r": ([0-9.]+) ± ", out.stdout).group(1))
    assert 0 < bits < 100, out.stdout


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
    (("--estimator", "roar", "--gamma-max", "40"), "--gamma-max applies to --estimator path-integral only"),
    (("--estimator", "path-integral", "--endpoint", "marginals"), "--endpoint marginals needs --gamma-max"),
    (("--estimator", "path-integral", "--gamma-max", "-1"), "--gamma-max must be a positive number or None (got -1.0)"),
    (("--estimator", "path-integral", "--gamma-max", "40", "--endpoint", "chain"), "invalid choice: 'chain'"),
    (("--estimator", "path-integral", "--nodes", "0"), "--nodes must be a positive integer"),
])
def test_nll_bad_input_is_one_line(argv, message):
    out = run(*argv)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
