"""``Interpolated``: an exact denoiser and a model combined per position, against the formulas on exact toys.

Error budget: every law is formed in float64 from normalised log-probabilities of magnitude below ~1e3 (evidence up
to gamma = 100, so no probability the formulas need underflows); a log-softmax or a log-add-exp rounds each entry by a
few ulps of that magnitude, about 1e-13, so probabilities are compared to 1e-12 and log-probabilities (where both
laws are nonzero) to 1e-9.
"""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from snrpaths import Path, parse_path, sample
from snrpaths.backends import ExactHMM, ExactToy, Interpolated
from snrpaths.errors import CapabilityError, SNRPathError, SNRTypeError
from snrpaths.state import SNRState
from snrpaths.testing import strategies
from snrpaths.testing.denoisers import EndpointOnly, Tempered

EXACT = ExactToy.markov(3, 4, seed=1, concentration=0.3)
MODEL = ExactToy.random(3, 4, seed=2, table=EXACT.table)  # another joint on the same anchors


def _state(data, exact=EXACT, batch=3):
    gamma = data.draw(strategies.snr_configs(batch, exact.seq_len, max_log10=2.0))
    tokens = exact.sample(batch, torch.Generator().manual_seed(data.draw(strategies.seeds())))
    return SNRState.from_tokens(tokens, gamma, exact.table, torch.Generator().manual_seed(0))


def _log_probs(denoiser, state):
    return denoiser.logits(state).double().log_softmax(-1)


@pytest.mark.parametrize("mode", ["geometric", "mixture"])
@given(data=st.data())
def test_weight_0_is_the_exact_denoiser_and_weight_1_the_model_bit_for_bit(mode, data):
    state = _state(data)
    assert torch.equal(Interpolated(EXACT, MODEL, 0, mode).logits(state), EXACT.logits(state))
    assert torch.equal(Interpolated(EXACT, MODEL, 1.0, mode).logits(state), MODEL.logits(state))


def test_weight_0_samples_and_scores_as_the_exact_denoiser():
    at_0 = Interpolated(EXACT, MODEL, 0.0)
    assert at_0.exact_posterior is True
    path = parse_path("hybrid(3, 3)")
    assert torch.equal(sample(path, at_0, batch=8, seed=1).tokens, sample(path, EXACT, batch=8, seed=1).tokens)
    tokens = EXACT.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(at_0.log_prob(tokens), EXACT.log_prob(tokens))  # the exact denoiser's own methods, forwarded
    assert torch.equal(at_0.states, EXACT.states)


@pytest.mark.parametrize("name", ["log_prob", "sample_posterior", "joint_log_posterior", "marginals"])
def test_exact_only_methods_raise_above_weight_0(name):
    mid = Interpolated(EXACT, MODEL, 0.25)
    assert mid.exact_posterior is False
    with pytest.raises(AttributeError, match=f"has no '{name}': at weight 0.25 its logits are no exact posterior"):
        getattr(mid, name)
    assert not hasattr(mid, "_private")


@given(data=st.data(), weight=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
def test_mixture_is_the_convex_combination(data, weight):
    state = _state(data)
    got = Interpolated(EXACT, MODEL, weight, "mixture").logits(state).exp()
    expected = (1 - weight) * _log_probs(EXACT, state).exp() + weight * _log_probs(MODEL, state).exp()
    assert (got - expected).abs().max() < 1e-12


@given(data=st.data(), weight=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
def test_geometric_is_the_normalised_weighted_product(data, weight):
    """``log p_w - ((1 - w) log p_e + w log p_m)`` is one constant per position over the tokens both allow, ``p_w`` is
    0 where either is 0, and ``p_w`` sums to 1 (an exact toy's posterior has zeros: clean positions, and joints with
    zero-probability sequences)."""
    exact = data.draw(strategies.exact_denoisers(seq_lens=st.integers(1, 3)))
    model = Tempered(ExactToy.random(exact.vocab_size, exact.seq_len, seed=3, table=exact.table), 0.7)
    state = _state(data, exact)
    got = Interpolated(exact, model, weight).logits(state)
    e, m = _log_probs(exact, state), _log_probs(model, state)
    assert (got.exp().sum(-1) - 1).abs().max() < 1e-12
    both = torch.isfinite(e) & torch.isfinite(m)
    assert torch.equal(torch.isfinite(got), both)
    gap = got - ((1 - weight) * e + weight * m)
    spread = torch.where(both, gap, -math.inf).amax(-1) - torch.where(both, gap, math.inf).amin(-1)  # [B, L]
    assert spread.max() < 1e-9


def test_an_hmm_and_a_context_free_model_interpolate_at_length_64():
    """The CLI's default pair: the HMM and an HMM of one state with its token law; the geometric midpoint lies
    between them in KL from the exact posterior."""
    hmm = ExactHMM.random(4, 4, 64, seed=0, successors=2, emissions=2, stationary=True)
    rule = ExactHMM([1.0], [[1.0]], (hmm.initial @ hmm.emission)[None], 64, hmm.table)
    state = SNRState.from_tokens(hmm.sample(4, torch.Generator().manual_seed(0)), torch.full((4, 64), 2.0),
                                 hmm.table, torch.Generator().manual_seed(1))
    e = _log_probs(hmm, state)

    def kl(den):
        q = _log_probs(den, state)
        return float(torch.where(torch.isneginf(e), 0.0, e.exp() * (e - q)).sum(-1).mean())

    assert 0 < kl(Interpolated(hmm, rule, 0.5)) < kl(rule)


def test_capabilities_follow_the_model():
    endpoint = Interpolated(EXACT, EndpointOnly(MODEL), 0.5)
    assert endpoint.reads_finite_snr is False
    with pytest.raises(CapabilityError, match="endpoint-only"):
        sample(Path.hybrid(2, 2), endpoint, batch=2, seed=0)
    assert Interpolated(EXACT, MODEL, 0.5).reads_finite_snr is True
    assert "weight=0.5, mode='mixture'" in repr(Interpolated(EXACT, MODEL, 0.5, "mixture"))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(weight=1.5), SNRPathError, "'weight' must lie in [0.0, 1.0] (got 1.5)"),
    (dict(weight=-0.1), SNRPathError, "'weight' must lie in"),
    (dict(weight=math.nan), SNRPathError, "'weight' must lie in"),
    (dict(weight="0.5"), SNRTypeError, "'weight' must be a number"),
    (dict(mode="arithmetic"), SNRPathError, "'mode' must be one of ('geometric', 'mixture')"),
    (dict(model=ExactToy.markov(3, 5, seed=2)), SNRPathError, "the model has seq_len = 5; the exact denoiser has 4"),
    (dict(model=ExactToy.markov(2, 4, seed=2)), SNRPathError, "the model has vocab_size = 2"),
    (dict(model=ExactToy.markov(3, 4, seed=9)), SNRPathError, "the model's anchors differ from the exact denoiser's"),
    (dict(model="a model"), SNRTypeError, "'model' must implement the Denoiser protocol"),
    (dict(exact=None), SNRTypeError, "'exact' must implement the Denoiser protocol"),
])
def test_bad_arguments_are_refused_clearly(kwargs, error, message):
    args = dict(exact=EXACT, model=MODEL, weight=0.5) | kwargs
    with pytest.raises(error) as err:
        Interpolated(**args)
    assert message in str(err.value)
