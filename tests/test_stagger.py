"""Staggered ramps (issue 17 part 4): ``ramp(T, lag=l)`` moves each position on the ramp's schedule at its own clock.

The route is checked against a plain-Python reference of the formula in :meth:`snrpaths.Path.ramp` (``u_i = clip(u
(1 + lag (n - 1)) - lag r_i, 0, 1)``, ``r_i`` the rank among the stage's free unrevealed positions of the row), to a
relative 1e-9: the runner evaluates the same formula in a rearranged, exactly-integer form, so the two differ only
by float64 rounding (about 1e-16 in ``u``, times the schedule's slope). Each check is shown to fail on a deliberately
wrong reference or input. The conformance suite (tests/test_runner.py), the path-integral tests (tests/test_nll.py)
and the plane plot (tests/test_plot.py) run staggered ramps too.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from snrpaths import Path, parse_path, sample
from snrpaths.backends.toy import ExactToy
from snrpaths.testing import strategies as sst

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ExactToy.markov(3, 5, seed=0)


def reference_route(ramp, stage, fixed, count_fixed=False):
    """``[T + 1, L]`` SNRs of one row through the ramp alone, from the docstring's formula in plain Python:
    ``stage`` the positions the ramp runs on, ``fixed`` the row's prompt positions (skipped: no place in the queue,
    unless ``count_fixed``, the deliberately wrong variant)."""
    queue = [p for p in stage if count_fixed or p not in fixed]
    n, rows = len(queue), [[0.0] * TOY.seq_len]
    for k in range(1, ramp.steps + 1):
        row = [0.0] * TOY.seq_len
        for rank, p in enumerate(queue):
            if p not in fixed:
                u = k / ramp.steps * (1 + ramp.lag * (n - 1)) - ramp.lag * rank
                row[p] = ramp.level(min(1.0, max(0.0, u)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def assert_route(trace_gamma, ramp, stage, prompt_row, **kw):
    """The traced ``[T + 1, L]`` SNRs of one row equal the reference on the stage's free positions (its prompt
    positions: inf throughout)."""
    fixed = {p for p in range(TOY.seq_len) if int(prompt_row[p]) >= 0}
    expected = reference_route(ramp, stage, fixed, **kw)
    free = [p for p in stage if p not in fixed]
    assert torch.isinf(trace_gamma[:, sorted(fixed)]).all(), "a prompt position moved"
    torch.testing.assert_close(trace_gamma[:, free], expected[:, free], rtol=1e-9, atol=1e-12)


@given(steps=st.integers(1, 6), lag=st.sampled_from([0.0, 0.25, 0.3, 0.5, 1.0]),
       prompt=sst.prompts(TOY.vocab_size, TOY.seq_len), seed=sst.seeds())
def test_each_position_follows_the_schedule_at_its_own_clock(steps, lag, prompt, seed):
    """Every row's route is the formula, with ranks among that row's free positions (rows with different prompts
    differ); it is monotone and every free position is at ``gamma_max`` after the last step."""
    ramp = Path.ramp(steps, lag=lag, gamma_max=4.0)
    prompt = prompt.expand(3, -1) if prompt.ndim == 1 else prompt
    gamma = sample(ramp >> Path.switch("commit"), TOY, seed=seed, prompt=prompt, trace=True).trace.gamma
    for b in range(prompt.shape[0]):
        assert_route(gamma[:steps + 1, b], ramp, range(TOY.seq_len), prompt[b])
    ramped = gamma[:steps + 1]
    assert bool((ramped[1:] >= ramped[:-1]).all()), "monotone per position"
    free = prompt == -1
    torch.testing.assert_close(ramped[-1][free], torch.full_like(ramped[-1][free], 4.0))


def test_prompt_positions_take_no_place_in_the_queue():
    """The reference that counts prompt positions in the queue (their slots idle) is refused: the check above can
    tell where prompt positions are skipped."""
    ramp, prompt = Path.ramp(6, lag=1.0, gamma_max=4.0), torch.tensor([1, -1, 2, -1, -1])
    gamma = sample(ramp >> Path.switch("commit"), TOY, seed=0, prompt=prompt, trace=True).trace.gamma[:7, 0]
    assert_route(gamma, ramp, range(5), prompt)
    with pytest.raises(AssertionError):
        assert_route(gamma, ramp, range(5), prompt, count_fixed=True)


def moving(path, prompt=None):
    """``[S]``: the positions whose SNR changed at each step of row 0, as sorted tuples."""
    gamma = sample(path, TOY, seed=0, prompt=prompt, trace=True).trace.gamma[:, 0]
    return [tuple((gamma[k + 1] != gamma[k]).nonzero().flatten().tolist()) for k in range(gamma.shape[0] - 1)]


def test_lag_one_ramps_one_position_at_a_time_and_lag_zero_all_together():
    """At ``lag = 1`` with ``T = m n`` each position rises alone over ``m`` steps, left to right; any lag below 1
    overlaps neighbours (0.9 is refused by the same check), and 0 moves every position at every step."""
    assert moving(parse_path("ramp(10, lag=1.0) >> switch('commit')"))[:10] == [(p,) for p in range(5) for _ in "mm"]
    assert any(len(m) > 1 for m in moving(parse_path("ramp(10, lag=0.9) >> switch('commit')"))[:10])
    assert moving(parse_path("ramp(3) >> switch('commit')"))[:3] == [tuple(range(5))] * 3


def test_lag_zero_is_the_joint_ramp():
    """``lag = 0`` is the joint ramp's value and Program; the per-position mechanism reproduces the joint levels
    ``gamma(k / T)`` exactly, and a tiny lag draws the same samples for a seed (it is the joint ramp's limit)."""
    joint = Path.ramp(4, gamma_max=4.0) >> Path.mdm(3)
    zero = Path.ramp(4, gamma_max=4.0, lag=0) >> Path.mdm(3)
    assert zero == joint and repr(zero) == "ramp(4, gamma_max=4.0) >> mdm(3)"
    assert zero.compile(5) == joint.compile(5)
    gamma = sample(zero, TOY, batch=4, seed=2, trace=True).trace.gamma
    ramp = Path.ramp(4, gamma_max=4.0)
    levels = torch.tensor([0.0] + [ramp.schedule.gamma(k / 4, 4.0, ramp.kappa, ramp.gamma_min) for k in range(1, 5)],
                          dtype=torch.float64)
    # gamma + (level - gamma) may round off level by an ulp, as it did before ramps were staggered
    torch.testing.assert_close(gamma[:5], levels[:, None, None].expand(-1, 4, 5), rtol=1e-15, atol=0)
    tiny = Path.ramp(4, gamma_max=4.0, lag=1e-12) >> Path.mdm(3)
    assert torch.equal(sample(tiny, TOY, batch=64, seed=2).tokens, sample(joint, TOY, batch=64, seed=2).tokens)
    assert not torch.equal(sample(tiny, TOY, batch=64, seed=3).tokens, sample(joint, TOY, batch=64, seed=2).tokens)


def test_inside_blocks_and_on_the_queue_is_the_stage():
    """``blocks`` and ``on`` stagger over their own positions: in ``blocks(2, ...)`` of 5 positions the first block
    (0..2) queues 0, 1, 2 and the second 3, 4; a prompt position inside a block leaves the queue to the others."""
    steps = moving(parse_path("blocks(2, ramp(3, lag=1.0) >> switch('commit'))"))
    assert steps == [(0,), (1,), (2,), (0, 1, 2), (3,), (3, 4), (4,), (3, 4)]  # 2 positions, 3 steps: overlap
    prompt = torch.tensor([-1, 0, -1, -1, -1])
    steps = moving(parse_path("blocks(2, ramp(2, lag=1.0) >> switch('commit'))"), prompt=prompt)
    assert steps == [(0,), (2,), (0, 2), (3,), (4,), (3, 4)]
    side = parse_path("on(slice(0, 2), ar()) | on(slice(2, 5), ramp(3, lag=1.0) >> switch('commit'))")
    gamma = sample(side, TOY, seed=0, trace=True).trace.gamma
    ramp = side.parts[1].path.parts[0]
    assert_route(gamma[:4, 0, :], ramp, range(2, 5), torch.full((5,), -1))
    assert torch.isinf(gamma[2, 0, :2]).all(), "the AR branch ran beside the ramp"


@pytest.mark.parametrize("lag, error, message", [
    (-0.25, "SNRPathError", r"'lag' must lie in \[0.0, 1.0\] \(got -0.25\)"),
    (1.5, "SNRPathError", r"'lag' must lie in \[0.0, 1.0\] \(got 1.5\)"),
    (float("nan"), "SNRPathError", r"'lag' must lie in \[0.0, 1.0\] \(got nan\)"),
    (float("inf"), "SNRPathError", r"'lag' must lie in \[0.0, 1.0\] \(got inf\)"),
    ("0.5", "SNRTypeError", r"'lag' must be a number in \[0.0, 1.0\] \(got '0.5'\)"),
    (True, "SNRTypeError", r"'lag' must be a number in \[0.0, 1.0\] \(got True\)"),
    (None, "SNRTypeError", r"'lag' must be a number in \[0.0, 1.0\] \(got None\)"),
])
def test_bad_lags_fail_at_construction(lag, error, message):
    """Every way in names the value and the valid range: the constructor, the value class, the hybrid, the parser."""
    import snrpaths
    from snrpaths.path import Ramp

    kind = getattr(snrpaths, error)
    for make in (lambda: Path.ramp(4, lag=lag), lambda: Ramp(steps=4, lag=lag), lambda: Path.hybrid(2, 2, lag=lag)):
        with pytest.raises(kind, match=message):
            make()
    if lag in (-0.25, 1.5):  # the path language has no literal for NaN or inf
        with pytest.raises(snrpaths.PathSyntaxError, match=message):
            parse_path(f"ramp(4, lag={lag!r})")


def test_repr_and_parse_round_trip():
    for path in (Path.ramp(16, lag=0.5), Path.ramp(8, lag=1, gamma_max=4.0) >> Path.switch("commit"),
                 Path.hybrid(8, 8, lag=0.3), Path.blocks(2, Path.ramp(4, lag=0.25) >> Path.mdm(2))):
        assert parse_path(repr(path)) == path and repr(parse_path(repr(path))) == repr(path)
    assert repr(Path.ramp(16, lag=0.5)) == "ramp(16, lag=0.5)" and repr(Path.ramp(16, lag=0.0)) == "ramp(16)"
    assert repr(Path.hybrid(8, 8, lag=0.3)) == "hybrid(8, 8, lag=0.3)"
    assert Path.hybrid(8, 8, lag=0.3).body == Path.ramp(8, lag=0.3) >> Path.switch() >> Path.mdm(8)
