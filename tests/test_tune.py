"""The path tuner: deterministic for a seed, never worse than the family's default on the validation metric, every
trial within the budget, resumable from its storage, and every bad input refused before any sampling."""

import importlib.util

import pytest
import torch
from snrpaths.backends import ExactHMM
from snrpaths.backends.toy import ExactToy

from snrpaths import SNRPathError, parse_path, tune
from snrpaths.tuning import FAMILIES, METRICS


@pytest.fixture(scope="module")
def toy():
    return ExactToy.markov(3, 3, seed=0, concentration=0.5)


def _run(toy, family="hybrid", **kw):
    return tune(family, toy, **{"nfe": 6, "metric": "tv", "trials": 6, "seed": 3, "n": 600} | kw)


def test_two_runs_with_one_seed_give_the_same_trials_and_best_path(toy):
    first, second = _run(toy), _run(toy)
    assert first.trials == second.trials and first.best == second.best and len(first.trials) == 6
    assert _run(toy, seed=4).trials != first.trials


@pytest.mark.parametrize("family", FAMILIES)
def test_the_default_is_trial_0_and_the_best_is_never_worse_and_no_trial_exceeds_the_budget(toy, family):
    tuned = _run(toy, family)
    default = FAMILIES[family].build(6, FAMILIES[family].default(6))
    assert tuned.trials[0]["path"] == repr(default) == repr(tuned.default)
    assert tuned.default_value == tuned.trials[0]["value"]
    assert tuned.value == min(row["value"] for row in tuned.trials) <= tuned.default_value
    assert all(row["nfe"] <= row["nfe_static"] <= 6 for row in tuned.trials)
    assert parse_path(repr(tuned.best)) == tuned.best
    assert tuned.trials[tuned.best_trial]["path"] == repr(tuned.best)


def test_every_trial_samples_with_the_same_seed_so_the_default_scores_as_it_does_alone(toy):
    from snrpaths import sample
    from snrpaths.testing.stats import empirical_tv

    tuned = _run(toy)
    alone = sample(tuned.default, toy, batch=600, seed=3)
    assert tuned.default_value == pytest.approx(empirical_tv(toy.probs, alone.tokens), abs=1e-12)


def test_a_rerun_on_the_same_storage_only_runs_the_missing_trials(toy, tmp_path):
    calls = []

    def metric(tokens):
        calls.append(len(tokens))
        return float(tokens.float().mean())

    storage = tmp_path / "trials.db"
    first = _run(toy, metric=metric, trials=3, storage=storage)
    assert len(calls) == 3
    resumed = _run(toy, metric=metric, trials=5, storage=storage)
    assert len(calls) == 5 and len(resumed.trials) == 5
    assert resumed.trials[:3] == first.trials
    assert len({row["path"] for row in resumed.trials}) == 5  # the resumed sampler does not repeat the first run's


def test_a_repeated_path_is_scored_once(toy):
    calls = []

    def metric(tokens):
        calls.append(1)
        return float(tokens.float().mean())

    tuned = _run(toy, "mdm", metric=metric, trials=8)
    assert len(calls) == len({row["path"] for row in tuned.trials}) < 8  # 2 clocks x 5 policies, eta aside


def test_the_hmm_metric_judges_by_the_exact_model():
    hmm = ExactHMM.random(3, 3, 6, seed=0)
    tuned = tune("mdm", hmm, nfe=4, metric="hmm", trials=2, seed=0, n=64)
    assert all(row["value"] >= 0 for row in tuned.trials)


def test_tv_against_validation_samples_instead_of_the_truth(toy):
    data = toy.sample(5000, torch.Generator().manual_seed(1))
    tuned = _run(toy, data=data, trials=2)
    assert tuned.default_value != _run(toy, trials=2).default_value


def test_the_table_and_the_figure(toy, tmp_path):
    tuned = _run(toy, trials=3)
    assert "**best**" in tuned.table() and tuned.table().count("\n") == 2 + 3 - 1
    assert tuned.plot(tmp_path / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"family": "remdm"}, "'family' must be one of ('hybrid', 'mdm', 'threshold') (got 'remdm')"),
    ({"metric": "mauve"}, "'metric' must be one of ('tv', 'hmm', 'bits'"),
    ({"nfe": 1}, "the 'hybrid' family needs a budget of at least 2 calls (got nfe=1)"),
    ({"nfe": 0, "family": "mdm"}, "'nfe' must be a positive integer (got 0)"),
    ({"trials": 0}, "'trials' must be a positive integer (got 0)"),
    ({"seed": -1}, "'seed' must be an integer in [0, 2**64 - 1] (got -1)"),
    ({"storage": "/no/such/folder/t.db"}, "the folder '/no/such/folder' does not exist"),
    ({"metric": "bits"}, "metric 'bits'"),
    ({"data": torch.zeros(4, 2, dtype=torch.long)}, "'data' must hold sequences of length 3"),
    ({"metric": len, "data": torch.zeros(4, 3, dtype=torch.long)}, "a callable metric reads its own data"),
])
def test_bad_input_fails_before_any_sampling(toy, kwargs, message, monkeypatch):
    def no_sampling(*args, **kw):
        raise AssertionError("sampled before the check")

    monkeypatch.setattr("snrpaths.tuning.sample", no_sampling)
    args = {"family": "hybrid", "denoiser": toy, "nfe": 6, "metric": "tv", "trials": 2} | kwargs
    with pytest.raises(SNRPathError) as err:
        tune(args.pop("family"), args.pop("denoiser"), **args)
    assert message in str(err.value)


def test_a_metric_the_denoiser_cannot_serve_is_refused():
    hmm = ExactHMM.random(3, 3, 6, seed=0)
    with pytest.raises(SNRPathError, match="metric 'tv' needs an enumerable joint"):
        tune("mdm", hmm, nfe=4, metric="tv")


def test_a_continuous_family_is_refused_for_an_endpoint_only_denoiser(toy, monkeypatch):
    from snrpaths import CapabilityError
    from snrpaths.testing.denoisers import EndpointOnly

    monkeypatch.setattr("snrpaths.tuning.sample", lambda *a, **kw: pytest.fail("sampled before the check"))
    with pytest.raises(CapabilityError, match=r"stage `hybrid\(3, 3\): ramp\(3\)`, needs a denoiser that reads"):
        tune("hybrid", EndpointOnly(toy), nfe=6, trials=2)


def test_a_missing_optuna_names_the_extra(toy, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(SNRPathError, match=r"pip install 'snrpaths\[tune\]'"):
        _run(toy)


def test_every_metric_and_family_is_registered_under_its_own_name():
    assert all(name == value.name for registry in (FAMILIES, METRICS) for name, value in registry.items())


def test_the_command_line_tunes_a_toy_resumes_from_its_storage_and_writes_the_figure(tmp_path, capsys):
    from snrpaths.cli import main

    argv = ["tune", "--family", "mdm", "--nfe", "4", "--length", "3", "--n", "300", "--storage",
            str(tmp_path / "t.db"), "--no-progress"]
    assert main([*argv, "--trials", "2", "--out", str(tmp_path / "t.png")]) == 0
    first = capsys.readouterr().out
    assert "|     0 | `mdm(4)`" in first and "best:" in first and (tmp_path / "t.png").is_file()
    assert main([*argv, "--trials", "3"]) == 0
    def cells(out):  # the table's padding follows its widest cell, so compare cells
        return [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| ") and "`" in line]

    rows = cells(capsys.readouterr().out)
    assert len(rows) == 3 and rows[:2] == cells(first)


@pytest.mark.parametrize(("argv", "message"), [
    (["--nfe", "0"], "--nfe must be a positive integer (got 0)"),
    (["--nfe", "1"], "the 'hybrid' family needs a budget of at least 2 calls (got nfe=1)"),
    (["--metric", "bits"], "--metric bits judges text: give a --checkpoint"),
    (["--trials", "0"], "--trials must be a positive integer (got 0)"),
    (["--length", "0"], "--length must be a positive integer (got 0)"),
])
def test_command_line_errors_name_the_flag(argv, message, capsys):
    from snrpaths.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--no-progress", *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"snrpaths: error: {message}") and "Traceback" not in err
