"""Paths head to head (``snrpaths.compare``, ``snrpaths compare``): equal paths differ by exactly 0 under common random
numbers, a clearly worse path is told apart, the exact toy judge reports :func:`snrpaths.quality.exact_quality` of
the very samples (and the two-bit toy's known invalid rate), a path the judge's denoiser cannot run is refused before
any call, and names, brace lists, JSON, the command line, ``toy --path`` and the studies' ``--samplers`` agree."""

import json
import math

import pytest
import torch

from snrpaths import CapabilityError, Comparison, Judge, SNRPathError, compare, limits, parse_path, sample
from snrpaths.errors import LimitError
from snrpaths.backends.toy import ExactToy
from snrpaths.cli import main
from snrpaths.comparison import Interval, make_judge, t_quantile
from snrpaths.quality import exact_quality
from snrpaths.samplers import expand, resolve, sampler


class Counting:
    """A denoiser that counts its calls; ``endpoint=True`` declares it endpoint-only (a masked LM's capability)."""

    def __init__(self, inner, endpoint=False):
        self.inner, self.calls = inner, 0
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.reads_finite_snr = not endpoint

    def logits(self, state):
        self.calls += 1
        return self.inner.logits(state)


def test_equal_paths_differ_by_exactly_zero():
    # sampling is a function of (program, denoiser, seed, batch): the same seed gives the same samples, so every
    # per-seed difference is 0 and so is its interval
    result = compare(["mdm(2)", "mdm(2)"], "toy:markov", samples=300, seeds=3)
    for metric in ("gap", "invalid"):
        assert result.rows[1].values[metric] == result.rows[0].values[metric]
        diff = result.difference(1, metric)
        assert (diff.mean, diff.low, diff.high) == (0, 0, 0) and 0 in diff
    assert result.interval(0, "gap").high > result.interval(0, "gap").low  # the seeds do differ


def test_a_clearly_worse_path_is_told_apart():
    # two-bit toy: mdm(1) reveals both positions at once from their marginals, half its samples are impossible;
    # ar() samples the joint exactly
    result = compare(["ar()", "mdm(1)"], "toy:two-bit", samples=400, seeds=3)
    diff = result.difference(1, "invalid")
    assert diff.low > 0.3 and 0 not in diff
    assert result.rows[0].values["invalid"] == (0.0, 0.0, 0.0)
    assert [r.nfe_planned for r in result.rows] == [2, 1] and result.rows[1].nfe_used == (1, 1, 1)


def test_the_exact_judge_reports_exact_quality_of_the_same_samples():
    toy = ExactToy.two_bit()
    n = 2000
    result = compare(["mdm(1)"], Judge.exact(toy, "two-bit"), samples=n, seeds=2, seed=7)
    for k, s in enumerate(result.seeds):
        quality = exact_quality(toy, sample(parse_path("mdm(1)"), toy, batch=n, seed=s).tokens, toy.entropy_rate())
        assert result.rows[0].values["invalid"][k] == quality.invalid
        assert result.rows[0].values["gap"][k] == quality.gap
        # ground truth: mdm(1) draws the two bits independently, P(invalid) = 1/2; 5 binomial sds
        assert abs(quality.invalid - 0.5) < 5 * math.sqrt(0.25 / n)


def test_a_path_the_judge_cannot_run_is_refused_before_any_call():
    toy = ExactToy.markov(3, 4, seed=0)
    endpoint = Counting(toy, endpoint=True)
    with pytest.raises(CapabilityError, match=r"ramp\(3\).*endpoint-only"):
        compare(["mdm(2)", "ramp(3) >> switch('commit')"], Judge.exact(toy, "t", denoiser=endpoint), seeds=2)
    counting = Counting(toy)
    for paths, message in ((["mdm(2)", "on([0, 1, 2, 3, 4, 5], ar())"], r"out of range for seq_len=4"),
                           (["mdm(2)", "blocks(8, mdm(1))"], r"blocks\(8, mdm\(1\)\) cannot run on this judge"),
                           (["mdm(2)", "mdm(T)"], "not a path expression"),
                           (["mdm(2)", "ramp({T})"], "stands for a study's budget")):
        with pytest.raises(SNRPathError, match=message):
            compare(paths, Judge.exact(toy, "t", denoiser=counting), seeds=2)
    with pytest.raises(CapabilityError, match=r"cache='dual'.*cannot cache"):
        compare(["mdm(2)", "blocks(2, mdm(1), cache='dual')"], Judge.exact(toy, "t", denoiser=counting), seeds=2)
    assert endpoint.calls == counting.calls == 0


def test_a_path_past_the_size_limits_is_refused_before_the_first_path_runs(monkeypatch):
    toy = ExactToy.markov(3, 4, seed=0)
    counting = Counting(toy)
    # mdm(2) on 8 rows is 2 x 8 x 4 = 64 position evaluations, within the limit; mdm(4) is 128, past it
    monkeypatch.setattr(limits, "MAX_WORK", 64)
    with pytest.raises(LimitError, match=r"mdm\(4\).*MAX_WORK"):
        compare(["mdm(2)", "mdm(4)"], Judge.exact(toy, "t", denoiser=counting), samples=8, seeds=2)
    assert counting.calls == 0


@pytest.mark.parametrize("judge, options, message", [
    ("toy:nope", {}, "must be one of"), ("toy", {}, "needs a toy's name"), ("nope", {}, "unknown judge 'nope'"),
    ("toy:markov", {"states": 3}, "takes no option 'states'"), ("hmm:x", {}, "takes nothing after ':'")])
def test_bad_judges_are_refused_naming_them(judge, options, message):
    with pytest.raises(SNRPathError, match=message):
        make_judge(judge, **options)


def test_seeds_must_allow_an_interval_and_judges_must_measure_something():
    with pytest.raises(SNRPathError, match="seeds"):
        compare(["ar()"], "toy:two-bit", seeds=1)
    with pytest.raises(SNRPathError, match="past the largest seed"):
        compare(["ar()"], "toy:two-bit", seed=2**64 - 2, seeds=3)
    with pytest.raises(SNRPathError, match="'metrics' must be a non-empty"):
        Judge("x", ExactToy.two_bit(), (), lambda tokens: {})


def test_brace_lists_and_names_expand():
    assert expand("mdm({4, 8,16})") == ["mdm(4)", "mdm(8)", "mdm(16)"]
    assert expand("hybrid({2,4}, {4,8})") == ["hybrid(2, 4)", "hybrid(2, 8)", "hybrid(4, 4)", "hybrid(4, 8)"]
    assert expand("ramp({T})") == ["ramp({T})"]
    assert resolve("MDLM", 8) == parse_path("mdm(8)") and resolve("ReMDM-conf@4", 8) == parse_path(
        "mdm(4, remask='confidence')") and resolve("AR", 8) == parse_path("ar()")
    result = compare(["mdm({1,2})", "ar()"], "toy:two-bit", samples=50, seeds=2)
    assert [(repr(r.path), r.family) for r in result.rows] == [
        ("mdm(1)", "mdm({1,2})"), ("mdm(2)", "mdm({1,2})"), ("ar()", "ar()")]


def test_json_round_trip_and_readable_values(tmp_path):
    result = compare(["ar()", "mdm({1,2})"], "toy:two-bit", samples=50, seeds=2)
    data = json.loads(open(result.save(tmp_path / "c.json")).read())
    assert Comparison.from_dict(data) == result and Comparison.from_dict(data).to_dict() == data
    assert data["rows"][0]["differences"] is None and set(data["rows"][1]["differences"]) == {"gap", "invalid"}
    assert set(data["rows"][1]["intervals"]["invalid"]) == {"mean", "low", "high"}
    assert repr(Interval(0.123456, 0.1, 0.2)) == "0.123 [0.1, 0.2]"
    assert repr(result).startswith("Comparison(toy:two-bit") and len(repr(result)) < 300
    assert repr(result.rows[0]) == "Row(ar(), calls 2 / 2, gap=0 [0, 0], invalid=0 [0, 0])"


def test_the_t_quantile_matches_student():
    stats = pytest.importorskip("scipy.stats")
    for df in (*range(1, 40), 60, 120, 1000):
        assert t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)


def test_the_hmm_judge_measures_invalid_pairs():
    result = compare(["mdm(2)", "ar()"], "hmm", judge_options={"states": 4, "vocab": 4, "length": 6},
                     samples=64, seeds=2)
    assert [m.name for m in result.metrics] == ["gap", "invalid", "invalid_pairs"]
    assert result.rows[1].values["invalid"] == (0.0, 0.0)  # ar() with the exact posterior never errs


def test_the_command_line_end_to_end(tmp_path, capsys):
    out, figure = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert main(["compare", "ar()", "mdm({1,2})", "--judge", "toy:two-bit", "--samples", "100", "--seeds", "2",
                 "--out", str(out), "--plot", str(figure), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| mdm(1) " in text and "Δ invalid" in text and "calls used / planned" in text
    assert [r["path"] for r in json.loads(out.read_text())["rows"]] == ["ar()", "mdm(1)", "mdm(2)"]
    assert figure.stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--out", "missing/x.json"], "--out"), (["--plot", "x.txt"], "--plot"), (["--judge", "toy:nope"], "toy"),
    (["--length", "0"], "--length")])
def test_the_command_line_refuses_before_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(["compare", "ar()", "mdm(1)", "--judge", "toy:markov", "--no-progress", *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_toy_runs_every_path_given(capsys):
    assert main(["toy", "--path", "mdm(2)", "--path", "ramp(3) >> switch('commit')", "--n", "200"]) == 0
    text = capsys.readouterr().out
    assert "| path 1 " in text and "| path 2 " in text and "ramp(3) >> switch('commit')" in text
    assert "MDLM, same budget" not in text and "AR (exact)" in text


def test_a_study_takes_path_expressions(tmp_path, capsys):
    from snrpaths.benchmarks import toy_quality

    toy_quality.main(["--quick", "--n", "100", "--toys", "two-bit", "--out", str(tmp_path),
                      "--samplers", "ramp({T}) >> switch('commit')", "AR"])
    rows = json.loads((tmp_path / "toy_quality_quick_subset.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert {r["path"] for r in rows if r["sampler"] != "AR"} == {
        "ramp(2) >> switch('commit')", "ramp(8) >> switch('commit')", "ramp(32) >> switch('commit')"}
    with pytest.raises(SNRPathError, match="is not a path expression"):
        toy_quality.main(["--quick", "--samplers", "ramp(7) >> nope()", "--out", str(tmp_path)])
    assert sampler("ramp(7) >> switch('commit')")(32) == "ramp(7) >> switch('commit')"


def test_text_quality_refuses_a_bad_expression_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["bench", "text-quality", "--samplers", "mdlm", "ramp({T}) >> nope()", "--out", str(tmp_path)])
    assert exit.value.code == 2 and "is not a path expression" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_model_judged_by_itself_reports_its_own_roar_nll():
    from snrpaths.cli_judges import SELF_NLL_STEPS, self_judge
    from snrpaths.nll import roar_steps

    toy = ExactToy.markov(3, 4, seed=0)
    result = compare(["ar()"], self_judge("toy", toy), samples=50, seeds=2)
    tokens = sample(parse_path("ar()"), toy, batch=50, seed=1).tokens
    bits = float(roar_steps(toy, tokens, n_steps=SELF_NLL_STEPS, seed=0).nll.mean()) / (4 * math.log(2))
    assert result.rows[0].values["self-nll"][1] == pytest.approx(bits, rel=1e-12)


def test_the_estimate_counts_every_planned_call_and_every_scoring():
    from snrpaths.comparison import _entries, _estimate
    entries = _entries(["mdm(2)", "mdm(4)"], ExactToy.markov(3, 4, seed=0))
    # the first run made 2 calls in 2 s and scored in 5 s: 3 seeds x (2 + 4) calls at 1 s, plus 6 runs x 5 s
    line = _estimate(entries, samples=10, seeds=3, nfe=2, sampling=2.0, scoring=5.0)
    assert line == ("compare: about 48 s (18 denoiser calls at ~1 s each, 6 scorings at ~5 s each): 2 paths x 3 seeds "
                    "x 10 samples")
