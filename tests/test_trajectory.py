"""The per-call error along a path (``snrpaths.diagnostics.trajectory``), its figure and ``snrpaths check
--trajectory``, against exact ground truth.

Error budget: an exact denoiser scored against itself computes the same float64 logits twice on the same state, so
every KL is exactly 0 (no tolerance). A tempered exact denoiser's KL is recomputed here independently (numpy, on the
states the run handed the denoiser, recorded by ``Counting``): the two differ only by float64 summation order, a few
ulps of numbers below 10 bits, so 1e-12 is a loose bound.
"""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from snrpaths import Path, SNRPathError, parse_path, plot, sample
from snrpaths.backends import ExactHMM, ExactToy
from snrpaths.cli import main
from snrpaths.diagnostics import Trajectory, trajectory
from snrpaths.errors import CapabilityError, SNRTypeError, ShapeError
from snrpaths.testing import strategies
from snrpaths.testing.denoisers import Counting, Tempered

TOY = ExactToy.markov(3, 5, seed=1)
HMM = ExactHMM.random(3, 3, 6, seed=2, successors=2, emissions=2, stationary=True)
PATHS = ("mdm(5)", "hybrid(3, 3)", "ramp(4) >> switch('commit')", "ramp(3) >> mdm(3, remask='confidence')")


def _prompt(exact, batch):
    """Rows 0 and 1 with positions 0 and 2 fixed, the rest free."""
    prompt = torch.full((batch, exact.seq_len), -1)
    prompt[:2, 0], prompt[:2, 2] = 1, 0
    return prompt


@pytest.mark.parametrize("exact", [TOY, HMM], ids=["toy", "hmm"])
@pytest.mark.parametrize("text", PATHS)
@pytest.mark.parametrize("prompted", [False, True])
def test_an_exact_denoiser_against_itself_is_zero_at_every_call(exact, text, prompted):
    prompt = _prompt(exact, 6) if prompted else None
    traj = trajectory(parse_path(text), exact, exact, batch=6, seed=3, prompt=prompt)
    assert len(traj.rows) == traj.result.nfe > 0
    assert [r.call for r in traj.rows] == list(range(1, traj.result.nfe + 1))
    assert all(r.kl.mean == 0 and r.kl.se == 0 and r.positions > 0 for r in traj.rows), traj
    # the run is sample()'s, bit for bit, and prompt positions are never counted
    assert torch.equal(traj.result.tokens, sample(parse_path(text), exact, batch=6, seed=3, prompt=prompt).tokens)
    if prompted and text.startswith(("hybrid", "ramp")):  # a ramp's first call goes to every row
        assert traj.rows[0].positions == 6 * exact.seq_len - 4


@settings(max_examples=15)
@given(st.data())
def test_exact_against_itself_is_zero_on_any_path_and_prompt(data):
    exact = data.draw(strategies.exact_denoisers(seq_lens=st.integers(2, 4)))
    path = data.draw(strategies.paths(max_steps=3, seq_len=exact.seq_len))
    prompt = data.draw(st.one_of(st.none(), strategies.prompts(exact.vocab_size, exact.seq_len)))
    batch = 3 if prompt is None or prompt.ndim == 1 else prompt.shape[0]
    try:
        traj = trajectory(path, exact, exact, batch=batch, seed=0, prompt=prompt)
    except SNRPathError as err:  # the one path kind whose calls cannot be attributed (see its own test)
        assert "called the denoiser twice" in str(err)
        return
    assert len(traj.rows) == traj.result.nfe
    assert all(r.kl.mean == 0 for r in traj.rows if r.positions), traj


def _independent(states, temperature, steps_positions):
    """Per call, (mean, s.e.) across rows of each row's mean KL(p || p^(1/T) normalised) in bits over its counted
    positions, from the recorded states alone (numpy)."""
    out = []
    for state, acted in zip(states, steps_positions):
        p = torch.softmax(TOY.logits(state), -1).numpy()
        q = torch.softmax(TOY.logits(state) / temperature, -1).numpy()
        safe = p > 0  # 0 log 0 = 0
        kl = (p * np.log(np.where(safe, p, 1.0) / np.where(safe, q, 1.0))).sum(-1) / math.log(2)  # [n, L]
        counted = ~state.clean.numpy() & acted
        per_row = np.array([kl[b][counted[b]].mean() for b in range(len(kl)) if counted[b].any()])
        se = per_row.std(ddof=1) / math.sqrt(len(per_row)) if len(per_row) > 1 else math.nan
        out.append((per_row.mean(), se))
    return out


@pytest.mark.parametrize("text, acted", [
    ("hybrid(3, 3)", None),
    ("on((0, 1), mdm(2)) >> mdm(2)", [[True, True, False, False, False]] * 2 + [[True] * 5] * 2),
])
def test_a_tempered_denoiser_gives_the_kl_computed_independently(text, acted):
    counting = Counting(Tempered(TOY, 2.0))
    traj = trajectory(parse_path(text), counting, TOY, batch=40, seed=1)
    acted = np.array(acted if acted is not None else [[True] * 5] * counting.calls)
    expected = _independent(counting.states, 2.0, acted)
    assert len(traj.rows) == counting.calls == len(expected)
    for row, (mean, se) in zip(traj.rows, expected):
        assert row.kl.mean > 1e-3
        assert abs(row.kl.mean - mean) < 1e-12 and abs(row.kl.se - se) < 1e-12
    if text.startswith("on"):  # the first stage's calls count positions 0 and 1 only
        assert traj.rows[0].positions == 2 * traj.rows[0].rows


def test_the_rows_are_the_calls_of_the_runners_cache():
    """A call goes only to rows that changed: mdm rows whose coin flips revealed nothing are not called again."""
    counting = Counting(TOY)
    traj = trajectory(Path.mdm(5), counting, TOY, batch=64, seed=0)
    assert [r.rows for r in traj.rows] == [s.batch for s in counting.states]
    assert any(r.rows < 64 for r in traj.rows[1:])
    assert [r.stage for r in traj.rows] == ["mdm(5)"] * 5 and all(r.gamma == 0 for r in traj.rows)
    hybrid = trajectory(Path.hybrid(2, 2, gamma_max=40.0), TOY, TOY, batch=4, seed=0)
    assert [r.stage for r in hybrid.rows] == ["hybrid(2, 2): ramp(2)"] * 2 + ["hybrid(2, 2): mdm(2)"] * 2
    assert hybrid.rows[0].gamma == 0 and 0 < hybrid.rows[1].gamma < 40 and hybrid.rows[2].gamma == pytest.approx(40)


def test_a_step_that_calls_twice_is_refused_after_its_run():
    path = parse_path("on((0, 1, 2), reveal(3, order='confidence', schedule='linear')) | "
                      "on((3, 4), ramp(3) >> switch('commit'))")
    prompt = torch.full((4, 5), -1)
    prompt[:2, :3] = 0  # these rows have nothing to reveal: the ramp's call for them comes second
    with pytest.raises(SNRPathError, match="called the denoiser twice"):
        trajectory(path, TOY, TOY, batch=4, seed=0, prompt=prompt)


def test_the_value_prints_and_serialises():
    traj = trajectory(Path.hybrid(2, 2), Tempered(TOY, 0.5), TOY, batch=2, seed=0)
    assert isinstance(traj, Trajectory)
    text = str(traj)
    assert "hybrid(2, 2): ramp(2)" in text and text.count("\n| ") == 1 + len(traj.rows)
    data = json.loads(traj.to_json())
    assert data["nfe"] == traj.result.nfe and [r["call"] for r in data["rows"]] == [1, 2, 3, 4]
    assert data["rows"][0]["kl_mean"] == traj.rows[0].kl.mean
    one = trajectory(Path.mdm(5), Tempered(TOY, 0.5), TOY, batch=1, seed=0)
    assert json.loads(one.to_json())["rows"][0]["kl_se"] is None  # one row: no standard error


class _RulesOutToken0:
    """The toy's logits with token 0 impossible: infinitely far from a posterior that allows it."""

    def __init__(self, inner):
        self.inner, self.vocab_size, self.seq_len, self.table = inner, inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        out = self.inner.logits(state).clone()
        out[..., 0] = -math.inf
        return out


def test_an_infinite_kl_is_kept_and_written_as_a_string():
    traj = trajectory(Path.mdm(2), _RulesOutToken0(TOY), TOY, batch=3, seed=0)
    assert traj.rows[0].kl.mean == math.inf
    assert json.loads(traj.to_json())["rows"][0]["kl_mean"] == "inf"


@pytest.mark.parametrize("change, error, message", [
    (dict(reference=Tempered(TOY, 2.0)), CapabilityError, "must be an exact denoiser"),
    (dict(reference=ExactToy.markov(3, 4, seed=1)), SNRPathError, "the reference has seq_len = 4"),
    (dict(reference=ExactToy.markov(2, 5, seed=1)), SNRPathError, "the reference has vocab_size = 2"),
    (dict(reference=ExactToy.markov(3, 5, seed=7)), SNRPathError, "anchors differ"),
    (dict(reference=object()), SNRTypeError, "'reference' must implement the Denoiser protocol"),
    (dict(seq_len=4), ShapeError, "'seq_len' is 4"),
    (dict(batch=0), SNRPathError, "'batch' must be a positive integer"),
    (dict(seed=-1), SNRPathError, "'seed'"),
    (dict(path="mdm(5)"), SNRTypeError, "must be a Path or a Program"),
    (dict(path=Path.mdm(4).compile(4)), ShapeError, "compiled for seq_len=4"),
    (dict(prompt=torch.zeros(3, dtype=torch.int64)), ShapeError, "the prompt has length 3"),
])
def test_bad_input_is_refused_before_any_call(change, error, message):
    counting = Counting(TOY)
    args = dict(path=Path.mdm(5), reference=TOY, batch=2, seed=0) | change
    with pytest.raises(error, match=message):
        trajectory(args.pop("path"), counting, args.pop("reference"), **args)
    assert counting.calls == 0


def test_the_figure_shades_each_stage_and_overlays_several():
    traj = trajectory(Path.hybrid(2, 2), Tempered(TOY, 0.5), TOY, batch=4, seed=0)
    fig = plot.trajectory(traj)
    kl_ax, gamma_ax = fig.axes
    assert len(kl_ax.patches) == 2 and {t.get_text() for t in kl_ax.texts} == {"hybrid(2, 2): ramp(2)",
                                                                                  "hybrid(2, 2): mdm(2)"}
    mdm = trajectory(Path.mdm(4), Tempered(TOY, 0.5), TOY, batch=4, seed=0)
    both = plot.trajectory({"hybrid": traj, "mdm": mdm}, logy=True)
    assert [t.get_text() for t in both.axes[0].get_legend().get_texts()] == ["hybrid", "mdm"]
    with pytest.raises(SNRTypeError, match="expected a Trajectory"):
        plot.trajectory([traj])
    with pytest.raises(SNRTypeError, match="'b' is a str"):
        plot.trajectory({"a": traj, "b": "mdm(4)"})


HMM_FLAGS = ["--hmm-states", "3", "--hmm-vocab", "3", "--hmm-length", "6", "--batch", "8"]


def test_check_trajectory_prints_the_table_and_writes_json_and_plot(tmp_path, capsys):
    out, image = tmp_path / "t.json", tmp_path / "t.png"
    assert main(["check", "--trajectory", "hybrid(2, 2)", *HMM_FLAGS, "--weight", "0", "--out", str(out),
                 "--plot", str(image)]) == 0
    printed = capsys.readouterr().out
    assert "the context-free rule at weight 0 (geometric)" in printed and "K = 3, V = 3, L = 6" in printed
    record = json.loads(out.read_text())
    assert record["weight"] == 0 and [r["kl_mean"] for r in record["rows"]] == [0.0] * 4  # the exact posterior
    assert image.stat().st_size > 0
    main(["check", "--trajectory", "hybrid(2, 2)", *HMM_FLAGS, "--weight", "1", "--mode", "mixture", "--out",
          str(out)])
    assert max(r["kl_mean"] for r in json.loads(out.read_text())["rows"]) > 1e-5  # the rule ignores the context


@pytest.mark.parametrize("args, message", [
    (["--trajectory", "hybrid(2, 2"], "--trajectory 'hybrid(2, 2'"),
    (["--trajectory", "mdm(4)", "--weight", "1.5"], "--weight must lie in [0.0, 1.0]"),
    (["--trajectory", "mdm(4)", "--mode", "sum"], "--mode must be one of ('geometric', 'mixture')"),
    (["--trajectory", "mdm(4)", "--batch", "0"], "--batch must be a positive integer"),
    (["--trajectory", "mdm(4)", "--plot", "t.gif"], "must end in .png, .svg or .pdf"),
])
def test_check_trajectory_refuses_bad_flags_in_one_error(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["check", *HMM_FLAGS, *args])
    lines = capsys.readouterr().err.strip().splitlines()
    # one error line (a path's syntax error adds the expression with a caret under it)
    assert exit_.value.code == 2 and message in lines[0] and len(lines) == (3 if "hybrid" in message else 1), lines
