"""Every parser of the command line, the bench studies' included: its usage line names the command as typed, and
every option says what it does."""

import argparse
import importlib

import pytest

from snrpaths.benchmarks import STUDIES
from snrpaths.cli import _parser


def subparsers(parser: argparse.ArgumentParser):
    """``parser`` and every parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from subparsers(sub)


class Built(Exception):
    """Raised in place of parsing: the parser a study's main built."""

    def __init__(self, parser):
        self.parser = parser


def study_parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    def stop(self, *args, **kwargs):
        raise Built(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop)
    with pytest.raises(Built) as built:
        importlib.import_module(f"snrpaths.benchmarks.{STUDIES[name][0]}").main([])
    return built.value.parser


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]


def test_every_command_shows_its_own_usage_and_documents_every_option():
    parsers = list(subparsers(_parser()))
    assert len(parsers) > 10
    for parser in parsers:
        assert parser.prog.startswith("snrpaths"), parser.prog
        assert parser.format_usage().startswith(f"usage: {parser.prog} "), parser.format_usage()
        assert undocumented(parser) == [], parser.prog
    progs = {p.prog for p in parsers}
    assert {"snrpaths toy", "snrpaths plot gamma-plane", "snrpaths bench", "snrpaths nll"} <= progs


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_bench_study_shows_its_own_usage_and_documents_every_option(name, monkeypatch):
    parser = study_parser(name, monkeypatch)
    assert parser.prog == f"snrpaths bench {name}"
    assert undocumented(parser) == []


def _work(*args, **kwargs):
    raise AssertionError("work started before the output was checked")


#: Every output flag of the command line: (argv before the flag, the flag, the file or folder name, what does the
#: command's first work, patched to fail).
OUTPUTS = [
    (["sample", "--path", "mdm(4)"], "--out", "s.jsonl", "snrpaths.backends.text.load_with_tokenizer"),
    (["nll"], "--out", "n.json", "snrpaths.backends.text.load_with_tokenizer"),
    (["check"], "--out", "c.json", "snrpaths.backends.text.load_with_tokenizer"),
    (["check"], "--plot", "c.png", "snrpaths.backends.text.load_with_tokenizer"),
    (["tune"], "--out", "t.png", "snrpaths.cli_tune._model"),
    (["tune", "--toy", "markov"], "--storage", "t.db", "snrpaths.tuning._finished"),
    (["plot", "gamma-plane", "--path", "ar()"], "--out", "p.png", "snrpaths.cli._plot_toy"),
    (["plot", "order", "--path", "ar()"], "--out", "o.png", "snrpaths.cli._plot_toy"),
    (["train"], "--out", "run", "snrpaths.cli_model.load_corpus"),
    (["train", "--out", "{tmp}/run"], "--export", "model", "snrpaths.cli_model.load_corpus"),
    (["bench", "toy-quality"], "--out", "results", "snrpaths.cli_bench.importlib"),
    (["compare", "mdm(4)", "--judge", "toy:markov"], "--out", "c.json", "snrpaths.cli_compare.compare"),
    (["compare", "mdm(4)", "--judge", "toy:markov"], "--plot", "c.png", "snrpaths.cli_compare.compare"),
]


@pytest.mark.parametrize("before, flag, name, work", OUTPUTS, ids=[f"{o[0][0]} {o[1]}" for o in OUTPUTS])
def test_every_output_needs_its_folder_and_is_checked_before_any_work(before, flag, name, work, tmp_path, capsys,
                                                                      monkeypatch):
    """One rule: snrpaths makes the file or folder named, never a folder above it; a missing one is one line
    naming it, before any work."""
    from snrpaths.cli import main

    monkeypatch.setattr(work, _work)
    missing = tmp_path / "no" / "such"
    with pytest.raises(SystemExit) as exit_:
        main([*(a.replace("{tmp}", str(tmp_path)) for a in before), flag, str(missing / name)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert f"the folder {str(missing)!r} does not exist" in err and flag in err, err
    assert not (tmp_path / "no").exists()
