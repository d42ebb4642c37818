"""Results print as short rounded summaries with their intervals, and tables stay aligned whatever they hold."""

import math

import pytest
import torch

from snrpaths import Path, parse_path, sample
from snrpaths.backends import ExactToy
from snrpaths.cli import main
from snrpaths.nll import roar
from snrpaths.quality import exact_quality
from snrpaths.reprs import Z95, format_estimate, markdown_table


@pytest.mark.parametrize("mean, half, text", [
    (3.214312, 0.05764, "3.214 ± 0.058"), (0.0123, 0.00042, "0.01230 ± 0.00042"), (1234.5, 57.6, "1234 ± 58"),
    (98765.0, 4321.0, "98800 ± 4300"), (-0.5, 0.25, "-0.50 ± 0.25"), (2.0, math.nan, "2"), (2.0, None, "2"),
    (0.961626506563138195, 3.6e-17, "0.9616 ± 0"), (0.0, 0.0, "0 ± 0"), (1.5, math.inf, "1.5 ± inf"),
    (math.nan, 0.1, "nan")])
def test_an_estimate_rounds_its_mean_to_its_intervals_second_digit(mean, half, text):
    assert format_estimate(mean, half) == text


def columns(table: str) -> list[list[int]]:
    return [[k for k, c in enumerate(line) if c == "|"] for line in table.splitlines()]


def test_a_table_keeps_its_columns_aligned_for_any_cell():
    long = repr(Path.ramp(16) >> Path.mdm(32, remask="confidence", schedule="cosine"))
    assert len(long) > 48
    table = markdown_table(("sampler", "path", "TV"), [("yours", long, 0.1234), ("AR", "ar()", 1.0)], "llr")
    bars = columns(table)
    assert all(b == bars[0] for b in bars) and len(set(map(len, table.splitlines()))) == 1
    assert table.splitlines()[1].endswith("-:|") and long in table
    with pytest.raises(ValueError, match="one of 'l' or 'r' per column"):
        markdown_table(("a", "b"), [], "l")


def test_the_toy_table_stays_aligned_for_a_long_path(capsys):
    path = "ramp(4, schedule='loglinear') >> mdm(4, remask='cap', eta=0.1, schedule='cosine')"
    assert main(["toy", "--path", path, "--n", "200"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    bars = columns("\n".join(table))
    assert len(table) == 7 and all(b == bars[0] for b in bars) and repr(parse_path(path)) in table[2]


def test_results_print_short_with_their_intervals():
    toy = ExactToy.markov(3, 4, seed=0)
    result = sample(Path.mdm(4), toy, batch=500, seed=0)
    quality = exact_quality(toy, result.tokens)
    text = repr(quality)
    assert len(text) < 160 and "± 95%" in text
    assert f"nll {format_estimate(quality.nll, Z95 * quality.nll_se)}," in text
    low, high = int(result.calls.min()), int(result.calls.max())
    assert repr(result) == f"Result(500 samples x 4 tokens, 4 calls (per sample {low} to {high}))" and low < high
    estimate = roar(toy, result.tokens[:8], n_orders=4)
    assert repr(estimate).startswith("NLLEstimate(roar: ") and "± 0 bits per token, 8 sequences of 4, 16 calls" \
        in repr(estimate)
    assert "tensor" not in repr(estimate) + repr(result)
    assert torch.is_tensor(estimate.samples)  # the numbers stay in the fields


def test_a_training_result_prints_its_numbers_not_its_model(tmp_path):
    from snrpaths.train import TrainResult

    result = TrainResult(torch.nn.Linear(3, 3), 1500, (2.3141, 0.0213), 51234.4, tmp_path)
    assert repr(result) == (f"TrainResult(step 1500, validation 2.314 ± 0.042 bits/char, 51234 tokens/s, in "
                            f"{tmp_path}; ± 95%)")
    assert "no validation" in repr(TrainResult(torch.nn.Linear(3, 3), 0, None, 0.0, tmp_path))
