"""Clocks and remasking policies at their edges (issue 16): no policy remasks on a clock's last step."""

import math

import pytest

from snrpaths.schedules import ALPHA_SCHEDULES, Cap, Confidence, Loop, Rescale, sigma_max


def test_sigma_max_is_zero_when_the_step_ends_clean():
    """``(1 - alpha_s) / alpha_t`` is 0/0 on a one-step clock; it read as 1, remasking all a previous stage revealed."""
    assert sigma_max(0.0, 1.0) == 0.0
    assert sigma_max(0.75, 1.0) == 0.0
    assert sigma_max(0.0, 0.25) == 1.0 and sigma_max(0.5, 0.75) == 0.5


@pytest.mark.parametrize("policy", [Cap(eta=1.0), Rescale(eta=1.0), Confidence(), Loop(eta=1.0),
                                    Loop(eta=1.0, t_off=1e-12), Loop(eta=0.3, t_on=0.9, t_off=1e-300)])
@pytest.mark.parametrize("steps", [1, 2, 8, 1000])
def test_no_policy_remasks_on_the_last_step(policy, steps):
    for clock in ALPHA_SCHEDULES.values():
        t, s = 1 / steps, 0.0
        a_t, a_s = policy.alpha(clock, t), policy.alpha(clock, s)
        assert a_s == 1.0 and policy.sigma(t, s, a_t, a_s) == 0.0


def test_the_loop_window_forgives_round_off_but_not_a_whole_step():
    loop = Loop(eta=0.1, t_on=0.55, t_off=0.05)
    assert loop.sigma(0.55, 0.5, 0.9, 0.9) == 0.1  # the first step inside the window
    assert loop.sigma(0.1, 0.05 * (1 - 1e-12), 0.9, 0.9) == 0.1  # s = t_off up to round-off
    assert loop.sigma(0.05, 0.0, 0.9, 1.0) == 0.0  # the step after t_off
    assert loop.sigma(0.6, 0.55, 0.8, 0.9) == 0.0  # the step before t_on
    tiny = Loop(t_off=1e-12)
    assert tiny.sigma(0.125, 0.0, 0.9, 1.0) == 0.0 and tiny.sigma(0.5, 1e-12, 0.9, 0.9) == tiny.eta
    assert math.isclose(Loop(alpha_on=0.1, t_off=0.05).alpha(ALPHA_SCHEDULES["linear"], 0.05), 0.1)
