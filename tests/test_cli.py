"""The command line speaks one language: every option has a help line that states its default, no docstring
markup reaches a terminal, ``--version`` answers, a path error on any subcommand is the library's message with the
caret picture (never a traceback), and errors name the flag the user typed."""

import argparse

import pytest

from snrpaths import __version__
from snrpaths.cli import _parser, main
from snrpaths.errors import shown_positions


def _options(parser, name="snrpaths"):
    yield name, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield name, parser, action


def test_every_option_has_a_help_line_that_states_its_default():
    missing, silent = [], []
    for name, _, action in _options(_parser()):
        if action is None:
            continue
        flag = f"{name} {'/'.join(action.option_strings) or action.dest}"
        if not action.help:
            missing.append(flag)
        elif action.option_strings and not action.required and action.default not in (None, False) \
                and "default" not in action.help:
            silent.append(flag)
    assert not missing, f"options without help: {missing}"
    assert not silent, f"options whose help does not state the default: {silent}"


def test_no_restructuredtext_reaches_the_terminal():
    texts = [(name, text) for name, parser, action in _options(_parser())
             for text in ((parser.description, parser.epilog) if action is None else (action.help,)) if text]
    assert texts and not [(name, t) for name, t in texts if "``" in t or ":func:" in t or ":class:" in t]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"snrpaths {__version__}"


@pytest.mark.parametrize("argv", [["toy"], ["sample"], ["plot", "order", "--out", "never.png"],
                                  ["nll", "--estimator", "path-integral"]])
@pytest.mark.parametrize("text, message", [("hybrid(8)", "missing a required argument: 'T_mdm'"),
                                           ("ramp(16, foo=1)", "unexpected keyword argument 'foo'"),
                                           ("mdm(8", "expected ')'")])
def test_a_path_error_on_any_subcommand_is_the_message_and_its_caret(argv, text, message, capsys, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--path", text])
    err = capsys.readouterr().err
    first, *picture = err.rstrip("\n").split("\n")
    assert exit_.value.code == 2 and first.startswith(f"snrpaths: error: --path {text!r}: ") and message in first
    assert picture == [f"  {text}", picture[-1]] and picture[-1].strip() == "^" and "Traceback" not in err
    assert not (tmp_path / "never.png").exists()


@pytest.mark.parametrize("argv, flag", [(["plot", "order", "--path", "ar()", "--runs", "0"], None),
                                        (["plot", "gamma-plane", "--path", "ar()", "--runs", "0"], "--runs"),
                                        (["toy", "--vocab", "0"], "--vocab"), (["toy", "--length", "0"], "--length"),
                                        (["train", "--batch", "0"], "--batch"),
                                        (["train", "--hidden", "0", "--steps", "1"], "--hidden")])
def test_errors_name_the_flag_the_user_typed(argv, flag, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path / ("run" if argv[0] == "train" else "x.png"))] if argv[0] != "toy"
             else argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    if flag is None:  # an option the subcommand does not have: argparse names it
        assert "unrecognized arguments: --runs 0" in err
    else:
        assert err.startswith(f"snrpaths: error: {flag} must be a positive integer (got 0)")


def test_long_position_lists_end_with_an_ellipsis_and_the_true_range():
    assert shown_positions([3, 1, 2]) == "[3, 1, 2]"
    assert shown_positions(range(5, 133)) == "[5, 6, 7, 8, 9, 10, 11, 12, ...] (128 positions in 5..132)"
