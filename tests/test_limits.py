"""Bounded work (issue 16): samplers and estimators refuse, before any call, requests above snrpaths.limits, naming
the limit and how to raise it; raising it lets the same request run."""

import pytest
import torch

from snrpaths import Path, limits, nll, sample
from snrpaths.backends.toy import ExactToy
from snrpaths.errors import LimitError, SNRPathError
from snrpaths.testing.denoisers import Counting

TOY = ExactToy.markov(3, 4, seed=3)
TOKENS = torch.tensor([[0, 1, 2, 0], [1, 1, 1, 1]])


def test_limit_errors_are_the_library_errors():
    assert issubclass(LimitError, SNRPathError)


def test_sample_refuses_too_many_logits_per_call(monkeypatch):
    monkeypatch.setattr(limits, "MAX_LOGITS", 4 * 4 * 3 - 1)
    counting = Counting(TOY)
    with pytest.raises(LimitError, match=r"4 x 4 x 3 = 48 logits, above snrpaths.limits.MAX_LOGITS = 47 .* lower "
                                         r"batch, or raise snrpaths.limits.MAX_LOGITS"):
        sample(Path.ar(), counting, batch=4)
    assert counting.calls == 0
    assert sample(Path.ar(), counting, batch=3).tokens.shape == (3, 4)
    monkeypatch.setattr(limits, "MAX_LOGITS", 48)
    assert sample(Path.ar(), counting, batch=4).tokens.shape == (4, 4)


def test_sample_refuses_too_much_work(monkeypatch):
    monkeypatch.setattr(limits, "MAX_WORK", 8 * 2 * 4 - 1)  # mdm(8): 8 steps x 2 rows x 4 positions
    with pytest.raises(LimitError, match=r"8 steps x 2 rows x 4 positions = 64 position evaluations, above "
                                         r"snrpaths.limits.MAX_WORK = 63"):
        sample(Path.mdm(8), TOY, batch=2, trace=True)
    assert sample(Path.mdm(7), TOY, batch=2).tokens.shape == (2, 4)


def test_the_default_limits_refuse_a_huge_batch_at_once():
    with pytest.raises(LimitError, match="MAX_LOGITS"):
        sample(Path.ar(), TOY, batch=10**9)


def test_compile_refuses_too_many_steps(monkeypatch):
    monkeypatch.setattr(limits, "MAX_STEPS", 20)
    with pytest.raises(LimitError, match=r"reveal\(16, schedule='linear'\): the program would have 24 steps, above "
                                         r"snrpaths.limits.MAX_STEPS = 20; raise snrpaths.limits.MAX_STEPS"):
        (Path.ramp(8) >> Path.mdm(16)).compile(4)
    with pytest.raises(LimitError, match=r"30 positions, above snrpaths.limits.MAX_STEPS = 20"):
        Path.mdm(2).compile(30)
    assert (Path.ramp(4) >> Path.mdm(16)).compile(4).nfe == 20


def test_the_default_step_limit_refuses_a_billion_steps_before_building_them():
    with pytest.raises(LimitError, match="1,000,000,000 steps, above snrpaths.limits.MAX_STEPS"):
        Path.mdm(10**9).compile(4)
    with pytest.raises(LimitError, match="positions, above snrpaths.limits.MAX_STEPS"):
        Path.ar().compile(10**12)


@pytest.mark.parametrize("estimate, rows", [
    (lambda **kw: nll.roar(TOY, TOKENS, n_orders=3, **kw), 2 * 3 * 4),
    (lambda **kw: nll.roar(TOY, TOKENS, orders=[(0, 1, 2, 3)] * 3, **kw), 2 * 3 * 4),
    (lambda **kw: nll.roar_steps(TOY, TOKENS, n_steps=24, **kw), 2 * 24),
    (lambda **kw: nll.mdm_elbo(TOY, TOKENS, n_samples=24, **kw), 2 * 24),
    (lambda **kw: nll.path_integral(TOY, TOKENS, "joint", n_samples=2, n_nodes=6, **kw), 2 * 2 * 6),
])
def test_estimators_refuse_before_any_call(estimate, rows, monkeypatch):
    counting = Counting(TOY)
    monkeypatch.setattr(limits, "MAX_WORK", rows * 4 - 1)
    with pytest.raises(LimitError, match=rf"= {rows * 4} position evaluations, above snrpaths.limits.MAX_WORK"):
        estimate()
    monkeypatch.setattr(limits, "MAX_WORK", rows * 4)
    monkeypatch.setattr(limits, "MAX_LOGITS", 5 * 4 * 3 - 1)
    with pytest.raises(LimitError, match=r"5 x 4 x 3 = 60 logits, above .* lower batch_size"):
        estimate(batch_size=5)
    assert counting.calls == 0
    assert estimate(batch_size=4).nll.shape == (2,)


def test_path_integral_refuses_a_radau_rule_it_cannot_build():
    with pytest.raises(LimitError, match=r"n_nodes=1,000,000 is above snrpaths.limits.MAX_NODES = 1,024"):
        nll.path_integral(TOY, TOKENS, n_nodes=10**6)


def test_all_orders_is_bounded():
    assert len(nll.all_orders(4)) == 24
    with pytest.raises(LimitError, match=r"all_orders\(20\): 20! orders"):
        nll.all_orders(20)

