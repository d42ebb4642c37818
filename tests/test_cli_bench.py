"""``snrpaths bench``: every study is reachable by name, and bad names or budgets fail before any work."""

import importlib

import pytest
from snrpaths.benchmarks import STUDIES

from snrpaths.cli import main


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_has_a_main(name):
    assert callable(importlib.import_module(f"snrpaths.benchmarks.{STUDIES[name][0]}").main)


@pytest.mark.parametrize("argv, message", [
    (["bench", "nope"], "'study' must be one of ('toy-quality', "),
    (["bench", "text-quality", "--samplers", "mdlm", "greedy"], "'sampler' must be one of ('mdlm', "),
    (["bench", "text-quality", "--metrics", "mauve", "bleu"], "'metric' must be one of ('mauve', 'gen-bpc', 'gen-ppl', 'entropy')"),
    (["bench", "text-quality", "--budgets", "16", "32"], "roar() spends L = 128 calls: add 128 to --budgets"),
    (["bench", "text-quality", "--budgets", "0", "128"], "--budgets must be positive step counts"),
    (["bench", "text-quality", "--n", "1"], "--n must be at least 2"),
])
def test_bad_names_and_budgets_fail_before_work(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path)] if argv[1] != "nope" else argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bench_help_lists_the_studies(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES)
