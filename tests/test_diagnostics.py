"""The evidence diagnostic against exact ground truth.

Error budget: on 200 windows of a Markov toy with strong dependences (concentration 0.3), the exact posterior's
paired advantage over the context-free rule is 0.1-0.9 bits at gamma in {0.5, 2, 8} with a standard error of
0.01-0.05, so the two-standard-error verdicts hold with margins of 4-25 s.e.; an evidence-blind denoiser at
gamma = 32, where the rule is ~1e-4 bits, is above it by ~0.7 bits, about 20 s.e. KL(p || p) is exactly 0 in float64
up to round-off (1e-12).
"""

import math

import pytest
import torch

from snrpaths import SNRPathError
from snrpaths.backends import ExactToy
from snrpaths.diagnostics import BELOW, READS, evidence_curve, unigram_prior
from snrpaths.testing.denoisers import Blind, Counting, Tempered

TOY = ExactToy.markov(3, 4, seed=1, concentration=0.3)
WINDOWS = TOY.sample(200, torch.Generator().manual_seed(0))
PRIOR = unigram_prior(WINDOWS, 3)


def test_the_exact_posterior_reads_its_evidence_in_both_layouts():
    curve = evidence_curve(TOY, WINDOWS, (0.5, 2.0, 8.0), prior=PRIOR, reference=TOY)
    assert [(r.layout, r.gamma) for r in curve.rows] == [(a, g) for a in ("all", "half") for g in (0.5, 2.0, 8.0)]
    assert set(curve.verdicts().values()) == {READS}
    for r in curve.rows:
        assert abs(r.kl.mean) < 1e-12 and r.model.mean < r.rule.mean
        assert r.diff.mean == pytest.approx(r.model.mean - r.rule.mean, abs=1e-12)


def test_a_denoiser_that_ignores_its_evidence_is_flagged():
    curve = evidence_curve(Blind(TOY), WINDOWS, (32.0,), prior=PRIOR, reference=TOY)
    assert set(curve.verdicts().values()) == {BELOW}
    assert all(r.kl.mean > 0.3 for r in curve.rows)
    # an over-confident (tempered) posterior is no longer exact: its KL to the truth is positive
    assert evidence_curve(Tempered(TOY, 0.5), WINDOWS, (2.0,), prior=PRIOR, reference=TOY).rows[0].kl.mean > 1e-3


def test_cross_entropies_are_those_written_out_by_hand():
    """One window, one SNR, the 'all' layout: the model's and the rule's CE recomputed from the same draw of z."""
    counting = Counting(TOY)
    curve = evidence_curve(counting, WINDOWS[:2], (3.0,), prior=PRIOR, layouts="all", seed=5)
    state = counting.states[0]
    x = TOY.table.anchors.double()
    model = TOY.logits(state).log_softmax(-1)
    rule = (state.z.double() @ x.T + PRIOR.log()).log_softmax(-1)
    pick = WINDOWS[:2, :, None]
    want_model = -model.gather(-1, pick).mean((1, 2)) / math.log(2)
    want_rule = -rule.gather(-1, pick).mean((1, 2)) / math.log(2)
    row = curve.rows[0]
    assert row.model.mean == pytest.approx(float(want_model.mean()), abs=1e-12)
    assert row.rule.mean == pytest.approx(float(want_rule.mean()), abs=1e-12)
    assert row.model.se == pytest.approx(float(want_model.std() / math.sqrt(2)), abs=1e-12)


def test_the_half_layout_puts_half_the_positions_at_gamma_and_scores_only_those():
    counting = Counting(TOY)
    curve = evidence_curve(counting, WINDOWS[:8], (2.0,), prior=PRIOR, layouts=("half",))
    state = counting.states[0]
    finite = (state.gamma == 2.0)
    assert finite.sum(1).tolist() == [2] * 8 and bool((torch.isinf(state.gamma) | finite).all())
    assert torch.equal(state.tokens[~finite], WINDOWS[:8][~finite])  # the others are clean, holding the data
    assert curve.rows[0].scored == 2


def test_the_same_seed_gives_the_same_numbers():
    a = evidence_curve(TOY, WINDOWS[:20], (1.0,), prior=PRIOR, seed=3)
    b = evidence_curve(TOY, WINDOWS[:20], (1.0,), prior=PRIOR, seed=3)
    c = evidence_curve(TOY, WINDOWS[:20], (1.0,), prior=PRIOR, seed=4)
    assert a == b and a != c
    assert a.to_dict()["rows"][0]["verdict"] == a.rows[0].verdict and "| all    |     1 |" in a.table()


BAD = [
    (dict(gammas=()), "'gammas' is empty"),
    (dict(gammas=(1.0, -2.0)), r"'gammas' must be positive and finite \(got -2.0\)"),
    (dict(gammas=(math.nan,)), "'gammas' must be positive and finite"),
    (dict(gammas=(0.0,)), "'gammas' must be positive and finite"),
    (dict(gammas=(math.inf,)), "'gammas' must be positive and finite"),
    (dict(gammas=("4",)), r"'gammas' must be positive and finite \(got '4'\)"),
    (dict(tokens=WINDOWS + 3), r"'tokens' holds token ids in \[3, 5\]; valid ids are in \[0, 2\]"),
    (dict(tokens=WINDOWS[:, :3]), "windows have L = 3; the denoiser is built for seq_len = 4"),
    (dict(tokens=WINDOWS.double()), "'tokens' must hold integer token ids"),
    (dict(tokens=WINDOWS[0]), r"'tokens' must have shape \[B, L\]"),
    (dict(tokens=WINDOWS[:1]), r"'tokens' must have N >= 2 windows"),
    (dict(prior=torch.ones(4) / 4), r"'prior' must be a floating tensor of shape \[3\]"),
    (dict(prior=torch.tensor([0.5, 0.6, 0.1], dtype=torch.float64)), "summing to 1"),
    (dict(prior=torch.tensor([math.nan, 0.5, 0.5], dtype=torch.float64)), "summing to 1"),
    (dict(layouts=("all", "some")), r"'layouts' must be one of \('all', 'half'\) \(got 'some'\)"),
    (dict(reference=ExactToy.markov(3, 5, seed=1)), "the reference has seq_len = 5"),
    (dict(reference=ExactToy.markov(3, 4, seed=1, dim=6)), "anchors differ"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_input_is_refused_before_any_call(change, message):
    counting = Counting(TOY)
    kwargs = dict(tokens=WINDOWS[:4], gammas=(1.0,), prior=PRIOR) | change
    tokens, gammas = kwargs.pop("tokens"), kwargs.pop("gammas")
    with pytest.raises(SNRPathError, match=message):
        evidence_curve(counting, tokens, gammas, **kwargs)
    assert counting.calls == 0
