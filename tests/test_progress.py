"""The estimate a long run says up front, and bars that count the unit its result reports (no wall clock: a fake
clock, and counting denoisers)."""

import pytest
import torch

from snrpaths import parse_path, sample
from snrpaths import progress
from snrpaths.backends import ExactToy
from snrpaths.nll import mdm_elbo, path_integral, roar, roar_steps
from snrpaths.progress import Meter, calibrated, duration, estimate_line


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (40, "40 s"), (89.4, "89 s"), (120, "2 min"),
                                           (5399, "90 min"), (5400, "1.5 h")])
def test_durations_are_rounded_for_a_glance(seconds, text):
    assert duration(seconds) == text


def test_the_estimate_is_the_timed_units_time_times_the_units_of_the_run():
    clock, lines = Clock(), []
    meter = Meter(2048, "call", "roar", enabled=True, clock=clock, write=lines.append, file=open("/dev/null", "w"))
    clock.now = 5.0  # the first call pays the warm-up: not timed
    meter.update(1)
    clock.now = 5.06  # the second took 60 ms
    meter.update(1)
    clock.now = 10.0
    meter.update(100)  # no second line
    meter.close()
    assert lines == ["roar: about 2 min (2048 calls at ~60 ms each)"] == [meter.estimate]
    assert lines[0] == estimate_line("roar", 2048, "call", 0.06)


def test_a_resumed_run_estimates_the_rest_and_short_work_says_nothing():
    clock, lines = Clock(), []
    meter = Meter(1000, "step", "train", enabled=True, initial=400, clock=clock, write=lines.append,
                  file=open("/dev/null", "w"))
    for now, units in ((30.0, 1), (34.0, 4)):  # after the warm-up, 1 s a step; 600 steps left
        clock.now = now
        meter.update(units)
    assert lines == ["train: about 10 min (600 steps at ~1 s each)"]
    quiet = Meter(10, "trial", "tune", enabled=True, clock=clock, write=lines.append, file=open("/dev/null", "w"))
    for _ in range(3):
        clock.now += 0.5
        quiet.update(1)  # 5 s in all: below progress.QUIET_BELOW_S
    assert quiet.estimate is None and len(lines) == 1 and progress.QUIET_BELOW_S > 5
    hidden = Meter(10_000, "call", "x", enabled=False, clock=clock, write=lines.append)
    for _ in range(3):
        clock.now += 1
        hidden.update(1)
    assert hidden.estimate is None and len(lines) == 1


@pytest.mark.parametrize("seconds, text", [(0.0042, "4.2 ms"), (0.29, "290 ms"), (1.23, "1.2 s"), (42, "42 s"),
                                           (200, "3 min")])
def test_a_unit_time_has_two_digits_at_most(seconds, text):
    assert progress.per_unit(seconds) == text


def test_calibrated_chunks_start_with_a_warm_up_and_a_timed_unit_and_cover_everything_once():
    assert [(s.start, s.stop) for s in calibrated(10, 4)] == [(0, 1), (1, 2), (2, 6), (6, 10)]
    assert [(s.start, s.stop) for s in calibrated(1, 4)] == [(0, 1)]
    assert list(calibrated(0, 4)) == []


class Counting:
    """Wraps a denoiser; counts the rows it is asked for."""

    def __init__(self, inner):
        self.inner, self.rows, self.calls = inner, 0, 0
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        self.rows += state.gamma.shape[0]
        self.calls += 1
        return self.inner.logits(state)


@pytest.fixture
def bars(monkeypatch):
    """Every Meter made, with the units it was updated by."""
    made = []

    class Recording(Meter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.units = 0.0
            made.append(self)

        def update(self, units=1):
            self.units += units
            super().update(units)

    for module in ("snrpaths.nll._common", "snrpaths.runner"):
        monkeypatch.setattr(f"{module}.Meter", Recording)
    return made


@pytest.mark.parametrize("estimator", [lambda d, t: roar(d, t, n_orders=3, batch_size=7, progress=True),
                                       lambda d, t: roar_steps(d, t, n_steps=5, batch_size=4, progress=True),
                                       lambda d, t: mdm_elbo(d, t, n_samples=6, batch_size=100, progress=True),
                                       lambda d, t: path_integral(d, t, "joint", n_samples=2, n_nodes=4,
                                                                  batch_size=9, progress=True)])
def test_nll_bars_count_the_calls_per_sequence_the_result_reports(estimator, bars):
    toy = ExactToy.markov(3, 4, seed=0)
    den = Counting(toy)
    tokens = toy.sample(5, torch.Generator().manual_seed(1))
    estimate = estimator(den, tokens)
    (bar,) = bars
    assert bar.total == pytest.approx(bar.units) and bar.units == pytest.approx(den.rows / 5)
    assert estimate.n_calls == pytest.approx(bar.units, abs=1)


class Tempered(Counting):
    """Inconsistent conditionals (the toy's log-probabilities halved): every order gives its own value."""

    def logits(self, state):
        return 0.5 * super().logits(state).log_softmax(-1)


def test_roar_gives_each_row_its_value_whatever_the_batch_size():
    toy = ExactToy.random(3, 4, seed=2)
    tokens = toy.sample(6, torch.Generator().manual_seed(0))
    one, all_ = (roar(Tempered(toy), tokens, n_orders=4, batch_size=size) for size in (1, 4096))
    assert one.samples.std(dim=1).min() > 0  # the orders differ, so a row scored for another order would show
    torch.testing.assert_close(one.samples, all_.samples, rtol=1e-12, atol=1e-12)


def test_the_sampling_bar_counts_the_calls_result_nfe_reports(bars):
    toy = ExactToy.markov(2, 6, seed=0)
    result = sample(parse_path("hybrid(3, 3)"), toy, batch=4, progress=True)
    (bar,) = bars
    assert bar.units == result.nfe and bar.total == parse_path("hybrid(3, 3)").compile(6).nfe


def test_an_announced_estimate_replaces_the_meters_own():
    clock, lines = Clock(), []
    meter = Meter(100, "sample", "compare", enabled=True, clock=clock, write=lines.append, file=open("/dev/null", "w"))
    meter.announce("compare: about 2 min (its own calibration)")
    for now in (10.0, 20.0, 30.0):
        clock.now = now
        meter.update(10)
    assert lines == ["compare: about 2 min (its own calibration)"] == [meter.estimate]
