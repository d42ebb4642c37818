"""Property tests of the exact toy denoiser: the ground truth every other test of snrpaths leans on.

Each property is a helper ``assert_*`` used twice: once on valid input (it must hold) and once on a deliberately
broken input (it must raise AssertionError), so none of these tests can pass vacuously.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import SNRPathError, SNRState, ShapeError, TokenTable
from snrpaths.backends.toy import ExactToy, MAX_STATES
from snrpaths.channel import localize
from snrpaths.testing import strategies as sst
from snrpaths.testing.stats import empirical_tv, tv_tolerance


def gen(seed):
    return torch.Generator().manual_seed(seed)


# -- an independent oracle: Bayes' rule with the channel's Gaussian density, no algebra applied -------------------


def channel_bayes_marginals(toy, state, gamma):
    """``p(s_i | z)`` from ``P(s) prod_i N(z_i; gamma_i x_{s_i}, gamma_i I)`` by brute force over all sequences.

    Positions with ``gamma = 0`` carry no likelihood; ``gamma = inf`` positions pin their token. ``gamma`` may
    differ from the SNR that produced ``state.z``: that is how SNR invariance is probed.
    """
    x = toy.table.anchors.to(torch.float64)
    logw = toy.log_joint.flatten().expand(state.batch, -1).clone()  # [B, N]
    for i in range(toy.seq_len):
        xs = x[toy.states[:, i]]  # [N, d]
        g = gamma[:, i : i + 1]  # [B, 1]
        finite = torch.isfinite(g) & (g > 0)
        g_safe = torch.where(finite, g, torch.ones_like(g))
        diff = state.z[:, i, None, :] - g_safe[..., None] * xs[None]  # [B, N, d]
        loglik = -(diff**2).sum(-1) / (2 * g_safe)  # the -d/2 log(2 pi gamma) term is the same for every s
        pinned = torch.where(toy.states[None, :, i] == state.tokens[:, i : i + 1], 0.0, -math.inf)
        logw = logw + torch.where(finite, loglik, torch.where(torch.isinf(g), pinned, torch.zeros_like(loglik)))
    post = torch.softmax(logw, -1)
    return torch.stack(
        [torch.zeros(state.batch, toy.vocab_size, dtype=torch.float64).index_add_(1, toy.states[:, i], post)
         for i in range(toy.seq_len)], 1)


def assert_snr_invariant(toy, tokens, gamma, rescale):
    """Bayes at the true gamma, Bayes at a rescaled gamma with the SAME z, and the toy's gamma-free logits agree."""
    state = SNRState.from_tokens(tokens, gamma, toy.table, gen(1))
    other = torch.where(torch.isfinite(gamma) & (gamma > 0), gamma * rescale, gamma)
    at_true = channel_bayes_marginals(toy, state, gamma)
    at_other = channel_bayes_marginals(toy, state, other)
    mine = toy.logits(state).exp()
    assert torch.allclose(at_true, at_other, atol=1e-9), (at_true - at_other).abs().max()
    assert torch.allclose(at_true, mine, atol=1e-9), (at_true - mine).abs().max()


@given(toy=sst.toy_joints(), data=st.data())
def test_posterior_is_independent_of_gamma(toy, data):
    """Unit norm makes -gamma/2 ||x||^2 constant: the posterior depends on z only. Budget: float64 round-off (1e-9)."""
    gamma = data.draw(sst.snr_configs(3, toy.seq_len, max_log10=1.5))
    rescale = data.draw(st.floats(0.1, 10.0))
    tokens = toy.sample(3, gen(data.draw(sst.seeds())))
    assert_snr_invariant(toy, tokens, gamma, rescale)


def test_posterior_depends_on_gamma_when_norms_differ():
    """The same property fails for anchors of unequal norm: the norm term no longer cancels."""
    toy = ExactToy.random(3, 2, seed=0, table=TokenTable.with_norms(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-0.5, -0.5]])))
    gamma = torch.tensor([[2.0, 0.7], [5.0, math.inf]], dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_snr_invariant(toy, toy.sample(2, gen(0)), gamma, rescale=3.0)


def assert_own_evidence_factors_out(toy, tokens, gamma, position, new_gamma, seed):
    """DESIGN.md 4b: ``log p(s_i = v | z) - z_i . x_v``, normalised over ``v``, is ``log p(s_i | z_{-i})``: it does
    not move when ``z_i`` is redrawn, at another SNR. The posterior is the channel's Bayes rule (Gaussian density,
    norms included), so the check is about the channel, not about the toy's own formula."""
    before = SNRState.from_tokens(tokens, gamma, toy.table, gen(seed))
    gamma2 = gamma.clone()
    gamma2[:, position] = new_gamma
    redrawn = SNRState.from_tokens(tokens, gamma2, toy.table, gen(seed + 1))
    z = torch.cat([before.z[:, :position], redrawn.z[:, position : position + 1], before.z[:, position + 1 :]], 1)
    after = SNRState(gamma2, z, before.tokens, before.fixed, before.confidence)
    x = toy.table.anchors.to(torch.float64)
    loo = []
    for state, g in ((before, gamma), (after, gamma2)):
        own = state.z[:, position].to(torch.float64) @ x.T  # [B, V]
        log_post = channel_bayes_marginals(toy, state, g)[:, position].log()
        loo.append((log_post - own).log_softmax(-1))
    assert torch.allclose(loo[0], loo[1], atol=1e-9), (loo[0] - loo[1]).abs().max()


@given(toy=sst.toy_joints(), data=st.data())
def test_the_own_evidence_enters_the_posterior_analytically(toy, data):
    """Budget: float64 round-off of a softmax over at most 2^17 states (1e-9); |z . x| stays below ~100 here."""
    gamma = data.draw(sst.snr_configs(3, toy.seq_len, max_log10=1.5))
    position = data.draw(st.integers(0, toy.seq_len - 1))
    gamma[:, position] = data.draw(st.floats(0.01, 20.0))
    tokens = toy.sample(3, gen(data.draw(sst.seeds())))
    assert_own_evidence_factors_out(toy, tokens, gamma, position, data.draw(st.floats(0.01, 20.0)), seed=2)


def test_the_own_evidence_does_not_factor_out_when_norms_differ():
    """With anchors of unequal norm the likelihood keeps ``-gamma_i ||x_v||^2 / 2``: redrawing at another SNR moves
    what is left."""
    toy = ExactToy.random(3, 2, seed=0, table=TokenTable.with_norms(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-0.5, -0.5]])))
    gamma = torch.tensor([[2.0, 0.7], [5.0, 3.0]], dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_own_evidence_factors_out(toy, toy.sample(2, gen(0)), gamma, 0, 9.0, seed=2)


# -- endpoints -----------------------------------------------------------------------------------------------------


def assert_prior_marginals(toy, state):
    """With no evidence, the posterior marginals are the prior's, computed here by summing the joint table."""
    p = toy.probs.flatten()
    prior = torch.stack([torch.zeros(toy.vocab_size, dtype=torch.float64).index_add_(0, toy.states[:, i], p)
                         for i in range(toy.seq_len)])
    assert torch.allclose(toy.logits(state).exp(), prior.expand(state.batch, -1, -1), atol=1e-12)


@given(toy=sst.toy_joints())
def test_gamma_zero_gives_prior_marginals(toy):
    assert_prior_marginals(toy, SNRState.masked(2, toy.seq_len, toy.table))


def test_prior_marginals_check_fails_with_evidence():
    toy = ExactToy.markov(3, 3, seed=0)
    gamma = torch.full((2, 3), 2.0, dtype=torch.float64)
    with pytest.raises(AssertionError):
        assert_prior_marginals(toy, SNRState.from_tokens(toy.sample(2, gen(0)), gamma, toy.table, gen(1)))


def assert_concentrates(toy, state, truth):
    """At gamma = 1e6 the true token holds all but 1e-9 of the mass and no log-probability is NaN or +inf.

    Budget: a wrong token u has log-odds ``-gamma Delta^2 / 2 + sqrt(gamma) Delta N(0,1) + log P ratio``; with
    ``Delta >= 0.3`` (the strategies' floor) that is below -4e4 + 6e3 + 40, far under log(1e-9).
    """
    logp = toy.logits(state)
    assert not bool(torch.isnan(logp).any() | torch.isposinf(logp).any()), "overflow at large SNR"
    p_true = logp.exp().gather(-1, truth[..., None]).squeeze(-1)
    assert bool((p_true > 1 - 1e-9).all()), p_true.min()


@given(toy=sst.toy_joints(kinds=("random", "markov", "product")), seed=sst.seeds())
def test_large_gamma_concentrates_on_the_true_token(toy, seed):
    tokens = toy.sample(4, gen(seed))
    state = SNRState.from_tokens(tokens, torch.full(tokens.shape, 1e6, dtype=torch.float64), toy.table, gen(seed + 1))
    assert_concentrates(toy, state, tokens)


def test_concentration_check_fails_against_the_wrong_tokens():
    toy = ExactToy.random(3, 2, seed=0)
    tokens = torch.tensor([[0, 1], [2, 2]])
    state = SNRState.from_tokens(tokens, torch.full((2, 2), 1e6, dtype=torch.float64), toy.table, gen(0))
    with pytest.raises(AssertionError):
        assert_concentrates(toy, state, (tokens + 1) % 3)


def test_clean_positions_are_conditioned_on_exactly():
    toy = ExactToy.markov(3, 3, seed=2)
    state = SNRState.from_prompt(torch.tensor([1, -1, 2]), toy.table)
    p = toy.probs[1, :, 2]
    got = toy.logits(state).exp()[0]
    assert torch.allclose(got[1], p / p.sum(), atol=1e-12)
    assert torch.allclose(got[0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)


def test_impossible_clean_context_falls_back_to_the_uniform_prior():
    """(0, 1) has probability 0 under the two-bit toy: the posterior is the eps -> 0 limit of the smoothed joint,
    i.e. the uniform-prior posterior."""
    two_bit = ExactToy.two_bit()
    logp = two_bit.logits(SNRState.from_prompt(torch.tensor([0, 1]), two_bit.table))
    assert torch.allclose(logp.exp()[0], torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    probs = torch.zeros(2, 2, 2, dtype=torch.float64)
    probs[0, 0, 0] = probs[1, 1, 1] = 0.5  # all zeros or all ones
    toy = ExactToy(probs)
    gamma = torch.tensor([[math.inf, 2.0, math.inf]], dtype=torch.float64)
    state = SNRState.from_tokens(torch.tensor([[0, 1, 1]]), gamma, toy.table, gen(0))
    uniform = ExactToy(torch.full((2, 2, 2), 1 / 8), toy.table)
    assert torch.allclose(toy.logits(state)[0, 1], uniform.logits(state)[0, 1], atol=1e-12)
    consistent = SNRState.from_tokens(torch.tensor([[1, 0, 1]]), gamma, toy.table, gen(0))
    assert torch.allclose(toy.logits(consistent).exp()[0, 1], torch.tensor([0.0, 1.0], dtype=torch.float64))


# -- the joint -----------------------------------------------------------------------------------------------------


@given(toy=sst.toy_joints(), seed=sst.seeds())
def test_log_prob_and_entropy_match_the_table(toy, seed):
    tokens = toy.sample(5, gen(seed))
    flat = toy.probs.flatten()
    for row, lp in zip(tokens, toy.log_prob(tokens)):
        assert math.isclose(float(lp), math.log(float(toy.probs[tuple(row)])), rel_tol=1e-12)
    assert math.isclose(toy.entropy(), float(-(flat[flat > 0] * flat[flat > 0].log()).sum()), rel_tol=1e-12)


def test_two_bit_toy_boundary_is_the_sum_of_evidence():
    """Posterior odds of (1,1) against (0,0) are exp(2 (z1 + z2)): a locally inconsistent pair is pulled back."""
    toy = ExactToy.two_bit()
    z = torch.tensor([[[-0.4], [1.0]]], dtype=torch.float64)  # position 1 leans to 0, the sum to (1, 1)
    state = SNRState(gamma=torch.ones(1, 2, dtype=torch.float64), z=z, tokens=torch.full((1, 2), -1),
                     fixed=torch.zeros(1, 2, dtype=torch.bool), confidence=torch.zeros(1, 2, dtype=torch.float64))
    post = toy.joint_log_posterior(state).exp()[0]  # sequences 00, 01, 10, 11
    assert math.isclose(float(post[3] / post[0]), math.exp(2 * 0.6), rel_tol=1e-12)
    assert float(post[1] + post[2]) == 0.0
    assert bool((toy.logits(state).exp()[0, :, 1] > 0.5).all())


# -- stochastic localization with the exact joint posterior reproduces P ------------------------------------------


def sl_sample(toy, n, steps, gamma_max, seed, draw):
    """Run ``steps`` localization steps from gamma = 0 to ``gamma_max`` on the schedule
    ``gamma = kappa (r / (1 - r))^2`` (r uniform), each with target ``x_s`` for ``s = draw(state, g)``; then draw the
    final tokens with the same rule."""
    g = gen(seed)
    kappa = 8 / toy.table.min_distance() ** 2
    r_max = 1 / (1 + math.sqrt(kappa / gamma_max))
    levels = [kappa * (r / (1 - r)) ** 2 for r in torch.linspace(0, r_max, steps + 1).tolist()]
    state = SNRState.masked(n, toy.seq_len, toy.table)
    for lo, hi in zip(levels[:-1], levels[1:]):
        target = toy.table.embed(draw(state, g))
        z = localize(state.z, state.gamma, torch.full_like(state.gamma, hi), target, g)
        state = SNRState(gamma=torch.full_like(state.gamma, hi), z=z, tokens=state.tokens, fixed=state.fixed,
                         confidence=state.confidence)
    return draw(state, g)


def assert_reproduces_p(toy, samples):
    tv, tol = empirical_tv(toy.probs, samples), tv_tolerance(toy.probs, samples.shape[0])
    assert tv <= tol, f"TV {tv:.4f} exceeds the budget {tol:.4f}"


N_SL = 20_000


@settings(max_examples=6)
@given(toy=sst.toy_joints(vocab_sizes=st.integers(2, 3), seq_lens=st.integers(2, 3), kinds=sst.TOY_KINDS),
       steps=st.sampled_from([1, 2, 8]), seed=sst.seeds())
def test_sampled_token_localization_with_the_joint_posterior_reproduces_p(toy, steps, seed):
    assert_reproduces_p(toy, sl_sample(toy, N_SL, steps, 400.0, seed, toy.sample_posterior))


def test_two_bit_localization_is_exact():
    toy = ExactToy.two_bit()
    assert_reproduces_p(toy, sl_sample(toy, N_SL, 2, 400.0, 0, toy.sample_posterior))


def test_localization_with_per_position_draws_fails_the_same_check():
    """Drawing each position from its own marginal ignores the joint (TV about 0.32 at one step on this chain)."""
    toy = ExactToy.markov(3, 3, seed=0)

    def independent(state, g):
        from snrpaths.draw import categorical

        return categorical(toy.logits(state).exp(), g)

    with pytest.raises(AssertionError):
        assert_reproduces_p(toy, sl_sample(toy, N_SL, 1, 400.0, 0, independent))


# -- bad input -----------------------------------------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(SNRPathError, match="too large to enumerate"):
        ExactToy.random(10, 6)
    with pytest.raises(SNRPathError, match="sum to 1"):
        ExactToy(torch.full((2, 2), 0.3))
    with pytest.raises(ShapeError, match=r"\(V,\) \* L"):
        ExactToy(torch.full((2, 3), 1 / 6))
    with pytest.raises(ShapeError, match="4 anchors"):
        ExactToy.random(3, 2, table=TokenTable.random(4, 2))
    toy = ExactToy.markov(3, 3)
    with pytest.raises(ShapeError, match="L = 4"):
        toy.logits(SNRState.masked(1, 4, toy.table))
    with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 2\]"):
        toy.log_prob(torch.tensor([[0, 1, 3]]))
    assert MAX_STATES >= 10**5
