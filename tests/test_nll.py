"""Likelihood estimators against the exact toy joints (issue 4).

Each property is an ``assert_*`` helper used twice: on valid input it must hold, on a deliberately broken input it
must raise AssertionError, so no test here can pass vacuously. Monte Carlo checks use ``|estimate - truth| <=
k stderr + bias budget`` with ``k = 5``, or 6 for the path integral's Ito control, whose per-trajectory law has rare
outliers (see ``SIGMAS``). Seeds are fixed (and hypothesis runs derandomized under the ``ci`` profile).

Quadrature budget of ``path_integral``: on one piece along which a position with prior log-odds ``a`` against a
rival at distance ``Delta`` moves, the exact 1-D integrand (computed on a fine grid) integrated by the 32-node Radau
rule in ``w = gamma / (gamma + kappa)`` was off by at most 3e-5 nats for ``|a| <= 12`` and ``Delta / Delta_min <= 6.7``
(the token tables here keep ``Delta_min >= 0.3``, and ``Delta <= 2``), and by at most 3e-2 at 16 nodes. Sequences are
drawn from the joint, so ``-log p(s_i | ...) <= 12`` except with negligible probability; ``QUAD_BUDGET = 1e-3`` covers
``L <= 3`` pieces of 3e-5 with a 10x margin. A curve stopped at ``gamma_max`` has pieces ending at finite SNR: the
same check (exact value from the identity ``1/2 int_0^G E = E_z log p(s | z_G) - log P(s)``, pieces starting at 0,
1% or 30% of ``G``, ``Delta_min = 0.3``) gave at most 4e-7 nats for ``G <= 40`` and 6.4e-5 for ``G = 400`` at 32
nodes, so QUAD_BUDGET covers those too; the endpoint term involves no quadrature.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from snrpaths.backends.toy import ExactToy

from snrpaths import ShapeError, SNRPathError, SNRTypeError, TokenTable, parse_path
from snrpaths.nll import (
    Piecewise,
    SamplerCurve,
    Sequential,
    all_orders,
    mdm_elbo,
    path_integral,
    roar,
    roar_steps,
    truncate,
)
from snrpaths.testing import strategies as sst
from snrpaths.testing.denoisers import Tempered

QUAD_BUDGET = 1e-3
N_NODES = 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread is faster, and much faster on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Incoherent:
    """Conditionals that come from no joint: ``p``'s when position 0 is clean, ``q``'s otherwise."""

    def __init__(self, p, q):
        self.p, self.q = p, q
        self.vocab_size, self.seq_len, self.table = p.vocab_size, p.seq_len, p.table

    def logits(self, state):
        return torch.where(state.clean[:, :1, None], self.p.logits(state), self.q.logits(state))


class NoCalls:
    """A denoiser that fails the test if it is ever called: bad input must be named before any work."""

    def __init__(self, inner):
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        raise AssertionError("the denoiser was called before the bad input was named")


def assert_estimates(est, truth, budget, sigmas=5.0):
    """Every sequence's estimate is within ``sigmas stderr + budget`` of the truth (both in nats)."""
    err = (est.nll - truth).abs()
    tol = sigmas * est.stderr + budget
    assert bool((err <= tol).all()), f"{est.estimator}: errors {err.tolist()} exceed the budget {tol.tolist()}"


# -- path integral: -log P(s) on every path ------------------------------------------------------------------------


#: Multiples of the standard error allowed per control. The law of one trajectory is skewed with rare outliers
#: (a trajectory whose noise keeps the posterior on a wrong token to large SNR, where nodes are sparse), so with
#: 48 trajectories |z| over 2,000 hypothesis checks had 99.9% quantile 4.8 and maximum 5.2-6.3 for "ito", and 3.3
#: and 3.6 for "stein": 6 and 5 sigmas leave the false-alarm rate near 1e-4 per sequence.
SIGMAS = {"ito": 6.0, "stein": 5.0}


@given(toy=sst.exact_denoisers(seq_lens=st.integers(1, 3)),
       data=st.data(), control=st.sampled_from(sorted(SIGMAS)), seed=sst.seeds())
def test_path_integral_is_minus_log_p_on_every_path(toy, data, control, seed):
    """``1/2 int_C E . dgamma = -log P(s)`` for the Bayes denoiser on joint, sequential, random-order and random
    piecewise curves, for random joints, tables and sequences drawn from the joint: the estimate is path independent.

    Budget: ``SIGMAS[control]`` stderr (48 trajectories) + QUAD_BUDGET (module docstring). A trajectory's standard
    deviation is 0.1-0.5 nats with either control, so this checks to ~0.1-0.3 nats, while the broken-norm check
    below is off by 3-7 nats. (``control="none"`` is the same quadrature without the mean-zero term; its mean is
    checked in ``test_controls_are_centred``.)
    """
    path = data.draw(sst.nll_curves(toy.seq_len))
    tokens = toy.sample(2, gen(seed))
    est = path_integral(toy, tokens, path, n_samples=48, seed=seed, n_nodes=N_NODES, control=control)
    knots = path.knots(toy.seq_len, gen(0))
    assert est.n_calls == 48 * N_NODES * int((knots[1:] != knots[:-1]).any(1).sum())  # nodes on moving pieces only
    assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS[control])


@pytest.mark.parametrize("text", ["ar()", "roar()", "mdm(3)", "ramp(4, gamma_max=4.0) >> switch('commit')",
                                  "hybrid(2, 2, gamma_max=4.0)", "ramp(4, lag=0.5, gamma_max=4.0) >> switch('commit')",
                                  "ramp(6, lag=1.0, gamma_max=4.0) >> switch('commit')", "hybrid(3, 2, lag=0.3)"])
def test_path_integral_along_sampler_paths(text):
    """A sampler's own SNR route (drawn per trajectory) is a valid curve: the same ``-log P(s)``. Budget as above,
    with the default control, which is the Stein control for an exact toy. A staggered ramp (``lag > 0``) has more
    pieces (``T + 1``, each position moving on a few of them, at most 7 x 3 = 21 position-pieces here), each within
    the module's per-piece 3e-5, so QUAD_BUDGET still covers its quadrature; its ``lag = 0`` row is the joint
    ramp's (the same value)."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(2, gen(0))
    est = path_integral(toy, tokens, parse_path(text), n_samples=48, seed=1, n_nodes=N_NODES)
    assert "control='stein'" in est.estimator
    assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS["stein"])


@pytest.mark.parametrize("text, message", [("mdm(3, remask='cap')", "remasks"), ("hybrid(2, 2, switch='mask')", "remasks"),
                                           ("reveal(count=1, order='confidence')", "ranked by the denoiser")])
def test_routes_without_a_path_integral_are_refused(text, message):
    toy = ExactToy.markov(3, 3, seed=4)
    with pytest.raises(SNRPathError, match=message):
        path_integral(toy, toy.sample(1, gen(0)), parse_path(text), n_samples=2)


def assert_control_centred(denoiser, tokens, control, path, **kw):
    """The control variate has mean zero: with common noise (same seed, same endpoint orders), ``Y_control - Y_none``
    per trajectory is the control itself, and its mean is within 5 stderr of 0. Budget: 5 stderr (512 trajectories;
    the difference has the standard deviation of ``Y_none``, ~2.5 nats, so stderr ~0.11); no bias."""
    base = path_integral(denoiser, tokens, path, n_samples=512, seed=7, n_nodes=16, control="none", **kw)
    other = path_integral(denoiser, tokens, path, n_samples=512, seed=7, n_nodes=16, control=control, **kw)
    diff = other.samples - base.samples
    mean, se = diff.mean(1), diff.std(1) / math.sqrt(diff.shape[1])
    assert bool((mean.abs() <= 5 * se).all()), f"control {control!r} has mean {mean.tolist()} (stderr {se.tolist()})"


def test_controls_are_centred():
    """The Ito control has mean zero for ANY denoiser (a tempered toy is the posterior of no joint): it changes the
    variance, never the value, also on a curve stopped at ``gamma_max`` (whose last increment runs to the end
    point). The Stein control is centred only for exact posteriors: on the tempered toy its mean is 1-2 nats (10+
    stderr) off, as its docstring warns."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(2, gen(0))
    for den in (toy, Tempered(toy, 1.5)):
        for path in ("joint", "sequential"):
            assert_control_centred(den, tokens, "ito", path)
    assert_control_centred(Tempered(toy, 1.5), tokens, "ito", "joint", gamma_max=4.0)
    assert_control_centred(toy, tokens, "stein", "joint")
    assert_control_centred(toy, tokens, "stein", "sequential", gamma_max=4.0)
    with pytest.raises(AssertionError):
        assert_control_centred(Tempered(toy, 1.5), tokens, "stein", "joint")


def test_default_control_is_tight_on_a_markov_chain():
    """Both controls with the default node count, checked more tightly: 128 trajectories give the Ito control a
    standard error of 0.02-0.05 nats, the Stein control 0.007-0.01 (without a control it would be ~0.2, which the
    last line catches). Budget: SIGMAS stderr + QUAD_BUDGET."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(3, gen(0))
    for path in ("joint", "sequential", "random-order"):
        for control in ("ito", "stein"):
            est = path_integral(toy, tokens, path, n_samples=128, seed=1, control=control)
            assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS[control])
            assert float(est.stderr.max()) < 0.08


def unequal_norm_toys():
    """``(good, bad)``: a Markov toy on orthogonal anchors of norms 1, 1.5, 0.7 (its posterior accounts for them), and
    the same joint whose posterior ignores the norms (``TokenTable.with_norms``)."""
    anchors = torch.eye(3, 4, dtype=torch.float64) * torch.tensor([[1.0], [1.5], [0.7]], dtype=torch.float64)
    good = ExactToy.markov(3, 3, seed=1, table=TokenTable.from_embeddings(anchors))
    return good, ExactToy(good.probs, TokenTable.with_norms(anchors))


def assert_fails_without_unit_norm(path, n_samples):
    good, bad = unequal_norm_toys()
    tokens = good.sample(3, gen(1))
    truth = -good.log_prob(tokens)
    assert_estimates(path_integral(good, tokens, path, n_samples=n_samples, seed=2), truth, QUAD_BUDGET, SIGMAS["ito"])
    with pytest.raises(AssertionError):
        assert_estimates(path_integral(bad, tokens, path, n_samples=n_samples, seed=2), truth, QUAD_BUDGET,
                         SIGMAS["ito"])


@pytest.mark.parametrize("path", ["joint", "sequential"])
def test_path_integral_check_fails_without_unit_norm(path):
    """The same check fails when the posterior ignores unequal anchor norms (``TokenTable.with_norms``): the
    ``-gamma/2 ||x||^2`` term no longer cancels, the toy's gamma-free posterior is wrong, and the integral is not
    ``-log P(s)``. Orthogonal anchors of norms 1, 1.5, 0.7 keep the integral finite (the true token still wins at
    large SNR); the errors are 3-7 nats, 6-15 standard errors (budgets as in the test above)."""
    assert_fails_without_unit_norm(path, n_samples=128)


def test_staggered_route_check_fails_without_unit_norm():
    """A staggered ramp's route fails the same check the same way (errors of 3-5 nats). Its route draws nothing, so
    its knots, taken once, are the curve (a sampler curve would rerun the sampler for each of the 128 trajectories)."""
    path = parse_path("ramp(3, lag=0.5, gamma_max=4.0) >> switch('commit')")
    assert_fails_without_unit_norm(Piecewise.from_gammas(SamplerCurve(path).knots(3)), n_samples=128)


def test_auto_control_follows_the_declared_capability():
    """``control="auto"`` (the default) runs the Stein control exactly when the denoiser declares
    ``exact_posterior = True``: an exact toy (the same samples as ``control="stein"``), and the Ito control for a
    tempered toy, a toy whose anchors lack unit norm (its posterior is not Bayes for the channel), and wrappers that
    declare nothing. The estimator's name says which ran."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(2, gen(0))

    def run(den, **kw):
        return path_integral(den, tokens, "joint", n_samples=4, seed=3, n_nodes=8, **kw)

    auto = run(toy)
    assert "control='stein'" in auto.estimator and torch.equal(auto.samples, run(toy, control="stein").samples)
    unnormed = ExactToy(toy.probs, TokenTable.with_norms(toy.table.anchors * 1.5))
    for den in (Tempered(toy, 1.5), Incoherent(toy, toy), unnormed):
        est = run(den)
        assert "control='ito'" in est.estimator and torch.equal(est.samples, run(den, control="ito").samples)


# -- path integral to a finite gamma_max: the endpoint term ------------------------------------------------------


#: The finite end points tried: 1 and 4 are small enough that the endpoint term carries most of ``-log P(s)``.
GAMMA_MAX = (1.0, 4.0, 40.0, 400.0)


@given(toy=sst.toy_joints(seq_lens=st.integers(1, 3), kinds=("random", "markov", "product", "parity")),
       data=st.data(), control=st.sampled_from(sorted(SIGMAS)), gamma_max=st.sampled_from(GAMMA_MAX),
       seed=sst.seeds())
def test_finite_endpoint_is_minus_log_p_on_every_path(toy, data, control, gamma_max, seed):
    """``1/2 int_0^{gamma*} E . dgamma + E_z[-log p(s | z_{gamma*})] = -log P(s)`` (DESIGN 5b) with the chain-rule
    (``"roar"``) endpoint, on joint, sequential, random-order and random piecewise curves capped at ``gamma_max``.

    Budget: ``SIGMAS[control]`` stderr (32 trajectories) + QUAD_BUDGET (module docstring: 4e-7 to 6.4e-5 per
    finite piece). Over 3,000 sequence checks like these (1,500 hypothesis draws, 32 trajectories) ``|z|`` had
    99.9% quantile 3.9 and maximum 4.0 for either control. A trajectory's standard deviation is 0.002-0.01 nats at
    ``gamma_max = 1`` and 0.05-0.15 at 40: the shared noise makes the endpoint term cancel the integral's.
    ``n_calls`` counts the ``L`` endpoint states of each trajectory.
    """
    path = data.draw(sst.nll_curves(toy.seq_len))
    tokens = toy.sample(2, gen(seed))
    est = path_integral(toy, tokens, path, n_samples=32, seed=seed, n_nodes=N_NODES, control=control,
                        gamma_max=gamma_max)
    knots = truncate(path.knots(toy.seq_len, gen(0)), gamma_max)
    assert est.n_calls == 32 * (N_NODES * int((knots[1:] != knots[:-1]).any(1).sum()) + toy.seq_len)
    assert f"gamma_max={gamma_max!r}, endpoint='roar'" in est.estimator
    assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS[control])


def test_endpoint_term_shares_the_noise():
    """The endpoint's ``z`` is the integral's Brownian path at ``gamma_max``, so Ito's formula cancels the two
    pathwise: at ``gamma_max = 1`` one trajectory's standard deviation is 0.05-0.06 nats with the Ito control (0.01
    with Stein's) against 1.0-1.15 for the endpoint term alone and 1.2-1.5 without a control (measured, 256
    trajectories). Budget: 0.2 nats, 4x the measured value and 5x below what independent endpoint noise would give."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(3, gen(0))
    for control in ("ito", "stein"):
        est = path_integral(toy, tokens, "joint", n_samples=64, seed=1, n_nodes=16, control=control, gamma_max=1.0)
        assert float(est.samples.std(1).max()) < 0.2, est.samples.std(1).tolist()


@pytest.mark.parametrize("text", ["mdm(3)", "hybrid(2, 2, gamma_max=4.0)"])
def test_finite_endpoint_along_sampler_paths(text):
    """A sampler route's reveals become rises to ``gamma_max`` (here below and at the hybrid ramp's own 4): still
    ``-log P(s)``. Budget as above."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(2, gen(0))
    for gamma_max in (1.0, 4.0):
        est = path_integral(toy, tokens, parse_path(text), n_samples=32, seed=1, n_nodes=N_NODES, gamma_max=gamma_max)
        assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS["stein"])


@settings(max_examples=8)
@given(toy=sst.toy_joints(seq_lens=st.integers(1, 3), kinds=("product",)), gamma_max=st.sampled_from(GAMMA_MAX),
       seed=sst.seeds())
def test_marginals_endpoint_is_exact_for_a_product_joint(toy, gamma_max, seed):
    """For independent positions ``p(s | z) = prod_i p(s_i | z)``, so the one-call endpoint is exact. Budget as in
    the chain-rule test (Stein control, 5 stderr, 32 trajectories)."""
    tokens = toy.sample(2, gen(seed))
    est = path_integral(toy, tokens, "joint", n_samples=32, seed=seed, n_nodes=N_NODES, gamma_max=gamma_max,
                        endpoint="marginals")
    assert est.n_calls == 32 * (N_NODES + 1)
    assert_estimates(est, -toy.log_prob(tokens), QUAD_BUDGET, SIGMAS["stein"])


def test_marginals_endpoint_is_biased_for_a_markov_chain():
    """With dependent positions the product of marginals is not ``p(s | z)``: at ``gamma_max = 1`` the error is
    ``E_z[log p(s | z) - sum_i log p(s_i | z)]``, 0.2-0.4 nats here, 7-15 standard errors, and the check fails,
    while the chain-rule endpoint passes on the same sequences (budget as above)."""
    toy = ExactToy.markov(3, 3, seed=4)
    tokens = toy.sample(3, gen(0))
    truth = -toy.log_prob(tokens)
    kw = {"n_samples": 64, "seed": 1, "n_nodes": 16, "gamma_max": 1.0}
    assert_estimates(path_integral(toy, tokens, "joint", endpoint="roar", **kw), truth, QUAD_BUDGET, SIGMAS["stein"])
    with pytest.raises(AssertionError):
        assert_estimates(path_integral(toy, tokens, "joint", endpoint="marginals", **kw), truth, QUAD_BUDGET,
                         SIGMAS["stein"])


def test_finite_endpoint_bad_input_is_named_before_any_work():
    never = NoCalls(ExactToy.markov(3, 3, seed=0))
    ok = torch.tensor([[0, 1, 2]])
    positive = "'gamma_max' must be a positive number or None"
    for kw, error, message in [
        ({"gamma_max": 0.0}, SNRPathError, rf"{positive} \(got 0.0\)"),
        ({"gamma_max": -4}, SNRPathError, rf"{positive} \(got -4\)"),
        ({"gamma_max": math.nan}, SNRPathError, rf"{positive} \(got nan\)"),
        ({"gamma_max": "40"}, SNRTypeError, rf"{positive} \(got '40'\)"),
        ({"gamma_max": True}, SNRTypeError, rf"{positive} \(got True\)"),
        ({"endpoint": "roar"}, SNRPathError,
         r"'endpoint' applies only with a finite 'gamma_max' \(got endpoint='roar' with gamma_max=None\)"),
        ({"gamma_max": math.inf, "endpoint": "marginals"}, SNRPathError, r"endpoint='marginals' with gamma_max=inf"),
        ({"gamma_max": 4.0, "endpoint": "chain"}, SNRPathError,
         r"'endpoint' must be one of \('roar', 'marginals'\) \(got 'chain'\)"),
        ({"gamma_max": 1e300}, SNRPathError, r"'gamma_max' = 1e\+300 is infinite in float64"),
        ({"control": "stien", "gamma_max": 4.0}, SNRPathError, r"'control' must be one of \('auto', 'ito'"),
    ]:
        with pytest.raises(error, match=message):
            path_integral(never, ok, n_samples=2, **kw)


# -- ROAR: exact for every order of one joint ---------------------------------------------------------------------


def assert_order_free(denoiser, tokens, truth):
    """Every order gives the same value, and it is ``-log P(s)``. Budget: float64 round-off (1e-9 nats)."""
    est = roar(denoiser, tokens, orders=all_orders(denoiser.seq_len))
    spread = (est.samples.max(1).values - est.samples.min(1).values).max()
    assert float(spread) <= 1e-9, f"orders disagree by {float(spread):.3g} nats"
    assert float((est.samples - truth[:, None]).abs().max()) <= 1e-9


@given(toy=sst.exact_denoisers(seq_lens=st.integers(1, 4)), seed=sst.seeds())
def test_roar_is_exact_for_every_order(toy, seed):
    tokens = toy.sample(3, gen(seed))
    assert_order_free(toy, tokens, -toy.log_prob(tokens))
    est = roar(toy, tokens, n_orders=5, seed=seed)
    assert est.n_calls == 5 * toy.seq_len and float(est.stderr.max()) < 1e-9


def test_roar_orders_differ_for_conditionals_of_no_joint():
    """Conditionals mixed from two joints depend on the order: the check above fails, by more than 0.01 nats."""
    p, q = ExactToy.markov(3, 3, seed=0), ExactToy.random(3, 3, seed=1, table=ExactToy.markov(3, 3, seed=0).table)
    bad = Incoherent(p, q)
    tokens = p.sample(3, gen(0))
    with pytest.raises(AssertionError, match="orders disagree"):
        assert_order_free(bad, tokens, -p.log_prob(tokens))
    samples = roar(bad, tokens, orders=all_orders(3)).samples
    assert float((samples.max(1).values - samples.min(1).values).min()) > 0.01


def other_joint(toy):
    """The exact denoiser of the product of ``toy``'s marginals: Bayes for a joint, but not for ``toy``'s."""
    return ExactToy.from_marginals(toy.marginals(), table=toy.table)


def test_random_step_roar_is_unbiased():
    """``L/(L-k) sum_{i not in A} -log p(s_i | s_A)`` has mean ``-log P(s)``. Budget: 5 stderr (conservative under
    the stratified k); no bias. The denoiser of another joint (uniform, for parity) estimates ``-log Q(s) = 4 log 2``
    instead of ``3 log 2`` and fails."""
    for toy in (ExactToy.markov(3, 4, seed=2), ExactToy.parity(4)):
        tokens = toy.sample(3, gen(0))
        assert_estimates(roar_steps(toy, tokens, n_steps=512, seed=0), -toy.log_prob(tokens), 0.0)
    with pytest.raises(AssertionError):
        assert_estimates(roar_steps(other_joint(toy), tokens, n_steps=512, seed=0), -toy.log_prob(tokens), 0.0)


def test_mdm_elbo_is_tight_for_a_joint():
    """The continuous-time MDM bound is tight for exact conditionals up to MDLM's ``eps`` cut-off.

    Budget: the estimator's mean is ``1/(1-eps) int_{eps(1-eps)}^{1-eps} g(m)/m dm`` with ``int_0^1 g(m)/m dm =
    -log P(s)`` and ``0 <= g(m)/m <= L c_max`` (``c_max`` the largest ``-log p(s_i | s_A)``), so the bias is at most
    ``(eps (-log P(s)) + 2 eps L c_max) / (1 - eps) <= 3 eps L c_max / (1 - eps)``; plus 5 (conservative) stderr. The
    law of one draw is right-skewed (rare masks at small t weigh 1/t), so most runs land a little below the truth.
    The denoiser of another joint is off by log 2 = 0.69 nats (10 stderr) and fails.
    """
    eps = 1e-3
    for toy in (ExactToy.markov(3, 4, seed=2), ExactToy.parity(4)):
        tokens = toy.sample(3, gen(0))
        truth = -toy.log_prob(tokens)
        c_max = roar(toy, tokens, orders=all_orders(4)).samples.max()  # a sum of L terms bounds each of them
        budget = 3 * eps * 4 * float(c_max) / (1 - eps)
        assert_estimates(mdm_elbo(toy, tokens, n_samples=1024, seed=0, eps=eps), truth, budget)
    with pytest.raises(AssertionError):
        assert_estimates(mdm_elbo(other_joint(toy), tokens, n_samples=1024, seed=0, eps=eps), truth, budget)


# -- mismatched prior: the gap is D(P || Q) ------------------------------------------------------------------------


def assert_mismatch_gap(p, denoiser, q_probs):
    """``E_{s ~ P}[path integral under the Q-posterior] = H(P) + D(P || Q) >= H(P)`` (Verdu 2010).

    The expectation over ``s`` is exact (all ``V^L`` sequences weighted by ``P``); the Monte Carlo error of the
    weighted sum is ``sqrt(sum_s P(s)^2 stderr(s)^2)``. Budget: ``SIGMAS["ito"]`` of those + QUAD_BUDGET.
    """
    seqs = p.states
    weight = p.probs.flatten()
    est = path_integral(denoiser, seqs, "joint", n_samples=32, seed=3, n_nodes=N_NODES)
    mean = float((weight * est.nll).sum())
    se = float((weight.square() * est.stderr.square()).sum().sqrt())
    q = q_probs.flatten()
    kl = float((weight * (weight / q).log()).sum())
    tol = SIGMAS["ito"] * se + QUAD_BUDGET
    assert mean >= p.entropy() - tol, f"{mean:.4f} is below H(P) = {p.entropy():.4f}"
    assert abs(mean - p.entropy() - kl) <= tol, f"gap {mean - p.entropy():.4f} vs D(P||Q) = {kl:.4f} (tol {tol:.4f})"


@settings(max_examples=10)
@given(p=sst.toy_joints(seq_lens=st.integers(1, 3), kinds=("random", "markov")), seed=sst.seeds())
def test_mismatched_prior_gap_is_kl(p, seed):
    q = ExactToy.random(p.vocab_size, p.seq_len, seed=seed, concentration=3.0, table=p.table)
    assert_mismatch_gap(p, q, q.probs)


def test_mismatch_gap_check_fails_for_a_miscalibrated_denoiser():
    """A Q-posterior at temperature 4 is no Bayes posterior: its gap is not D(P || Q) (1.5 nats off, 7 stderr)."""
    p = ExactToy.markov(3, 2, seed=0)
    q = ExactToy.random(3, 2, seed=1, concentration=3.0, table=p.table)
    assert_mismatch_gap(p, q, q.probs)
    with pytest.raises(AssertionError):
        assert_mismatch_gap(p, Tempered(q, 4.0), q.probs)


# -- results, seeds, batching --------------------------------------------------------------------------------------


def test_results_do_not_depend_on_batch_size_and_follow_the_seed():
    """Same draws whatever the batching (endpoint orders included); equal to round-off only, because the toy's own
    batched matmuls round differently at different batch sizes (1e-16 in its log-probabilities)."""
    toy = ExactToy.markov(3, 3, seed=0)
    tokens = toy.sample(2, gen(0))
    for run in (lambda **kw: path_integral(toy, tokens, "random-order", n_samples=4, n_nodes=4, **kw),
                lambda **kw: path_integral(toy, tokens, "random-order", n_samples=4, n_nodes=4, gamma_max=4.0, **kw),
                lambda **kw: roar(toy, tokens, n_orders=3, **kw), lambda **kw: roar_steps(toy, tokens, n_steps=8, **kw),
                lambda **kw: mdm_elbo(toy, tokens, n_samples=8, **kw)):
        a, b, c = run(seed=5, batch_size=7), run(seed=5, batch_size=4096), run(seed=6)
        assert float((a.samples - b.samples).abs().max()) <= 1e-12 and a.n_calls == b.n_calls
        assert a.estimator == "roar" or not torch.equal(a.samples, c.samples)
    est = path_integral(toy, tokens[0], "joint", n_samples=4, n_nodes=8)
    assert torch.equal(est.samples, path_integral(toy, tokens[0], "joint", n_samples=4, n_nodes=8,
                                                  gamma_max=math.inf).samples)  # inf is no truncation
    assert est.nll.shape == (1,) and est.n_calls == 32
    assert torch.allclose(est.bits_per_token, est.nll / (3 * math.log(2)))
    value, se = est.mean_bits_per_token()
    assert math.isclose(value, float(est.bits_per_token[0])) and math.isclose(se, float(est.bits_per_token_stderr[0]))


# -- bad input -----------------------------------------------------------------------------------------------------


def test_bad_input_is_named_before_any_work():
    toy = ExactToy.markov(3, 3, seed=0)
    ok = torch.tensor([[0, 1, 2]])
    inf = math.inf
    with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 2\]"):
        path_integral(toy, torch.tensor([[0, 1, 3]]))
    with pytest.raises(ShapeError, match="length 4.*seq_len is 3"):
        roar(toy, torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(SNRPathError, match="monotone: position 1"):
        Piecewise([[0, 0, 0], [1, 2, 0], [1, 1, 0], [inf, inf, inf]])
    with pytest.raises(SNRPathError, match="must end with every position clean"):
        Piecewise([[0, 0, 0], [1, 2, inf]])
    with pytest.raises(SNRPathError, match="must start with every position at SNR 0"):
        Piecewise([[0, 1, 0], [inf, inf, inf]])
    with pytest.raises(SNRPathError, match="L = 2 positions; the denoiser's seq_len is 3"):
        path_integral(toy, ok, Piecewise([[0, 0], [inf, inf]]))
    with pytest.raises(SNRPathError, match="seq_len is 3"):
        path_integral(toy, ok, Sequential((1, 0)))
    with pytest.raises(SNRPathError, match="permutation"):
        Sequential((0, 0, 1))
    with pytest.raises(SNRPathError, match=r"'path' must be one of \('joint'"):
        path_integral(toy, ok, "jiont")
    with pytest.raises(SNRTypeError, match="'path' must be"):
        path_integral(toy, ok, 3)
    with pytest.raises(SNRPathError, match=r"'control' must be one of \('auto', 'ito', 'stein', 'none'\)"):
        path_integral(toy, ok, control="milstein")
    with pytest.raises(SNRPathError, match="'n_samples' must be an integer >= 1"):
        path_integral(toy, ok, n_samples=0)
    with pytest.raises(SNRPathError, match="not both"):
        roar(toy, ok, n_orders=2, orders=[(0, 1, 2)])
    with pytest.raises(SNRPathError, match=r"permutation of range\(3\)"):
        roar(toy, ok, orders=[(0, 1)])
    with pytest.raises(SNRPathError, match="'eps' must be"):
        mdm_elbo(toy, ok, eps=1.0)
    with pytest.raises(SNRTypeError, match="Denoiser protocol"):
        roar_steps(object(), ok)
    with pytest.raises(SNRPathError, match="coincide"):
        path_integral(ExactToy.markov(3, 2, table=TokenTable.from_embeddings(torch.tensor([[1.0], [1.0], [-1.0]]))),
                      torch.tensor([[0, 1]]))


def test_estimators_refuse_integer_logits():
    """Denoiser outputs must be floating point (issue 16): integer logits were read as log-probabilities."""
    toy = ExactToy.markov(3, 4, seed=3)

    class IntLogits:
        vocab_size, seq_len, table = toy.vocab_size, toy.seq_len, toy.table

        def logits(self, state):
            return toy.logits(state).clamp(-50).round().to(torch.int64)

    from snrpaths.nll import mdm_elbo

    with pytest.raises(ShapeError, match="dtype torch.int64; logits must be floating point"):
        mdm_elbo(IntLogits(), torch.tensor([[0, 1, 2, 0]]), n_samples=2)
