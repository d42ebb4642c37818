"""The exact HMM denoiser against an independent oracle, and at lengths no oracle can enumerate.

Oracle: ``ExactToy`` on the HMM's joint, the joint itself built here by summing over hidden states in linear space
(no log-space code of ``snrpaths.backends.hmm``). Error budget (float64, eps = 1.1e-16): every HMM quantity is a chain of
at most ``L (K + V)`` log-sum-exps of nonnegative terms (no cancellation), the toy's a sum over ``V^L <= 81``
normalised joint entries, so probabilities agree to ``1e-12`` absolute; log-probabilities of tokens with posterior
mass above ``1e-6`` to ``1e-9`` (the toy's absolute error ``~1e-16`` on a sum becomes ``1e-10`` relative there; the
toy reads masses below ``1e-308`` as 0, the HMM keeps their logs, so only HMM ``-inf`` implies toy ``-inf``); ``log P``
to ``1e-10``. Sampling budgets are ``tv_tolerance`` (Jensen plus McDiarmid at delta = 1e-6) as in test_toy.py.
Each ``assert_*`` helper is also run on a deliberately broken input, so no property passes vacuously.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import Denoiser, SNRPathError, SNRState, ShapeError, TokenTable
from snrpaths.backends import ExactHMM
from snrpaths.backends.hmm import stationary_law
from snrpaths.backends.toy import ExactToy, enumerate_sequences
from snrpaths.streams import Streams
from snrpaths.testing import strategies as sst
from snrpaths.testing.stats import empirical_law, tv_tolerance

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def enumerated_joint(hmm):
    """``P(s)`` as a ``(V,) * L`` tensor by the sum over hidden paths, in linear space, axis by axis."""
    joint = hmm.initial[:, None] * hmm.emission  # [K, V]: P(h_0, s_0), the hidden state first
    for _ in range(hmm.seq_len - 1):
        # P(h_i, s_<=i) = sum_h' P(h', s_<i) T[h', h_i] B[h_i, s_i], hidden axis kept first
        joint = torch.einsum("j...,jk,kv->k...v", joint, hmm.transition, hmm.emission)
    return joint.sum(0)


def oracle(hmm):
    return ExactToy(enumerated_joint(hmm), hmm.table)


def mixed_state(hmm, tokens, gamma, seed):
    return SNRState.from_tokens(tokens, gamma, hmm.table, gen(seed))


# -- (a) against the enumerated joint --------------------------------------------------------------------------


def assert_posteriors_agree(hmm, toy, state):
    mine, truth = hmm.logits(state), toy.logits(state)
    assert torch.allclose(mine.exp(), truth.exp(), rtol=0, atol=1e-12), (mine.exp() - truth.exp()).abs().max()
    assert bool(torch.isneginf(truth)[torch.isneginf(mine)].all()), "the HMM rules out a token the joint allows"
    big = truth.exp() > 1e-6
    assert torch.allclose(mine[big], truth[big], rtol=0, atol=1e-9), (mine[big] - truth[big]).abs().max()


@given(hmm=sst.hmms(), data=st.data())
def test_posterior_equals_the_enumerated_joints(hmm, data):
    """Mixed states (masked, finite up to 1e3, clean), evidence from samples and from arbitrary (possibly impossible)
    tokens, so contradicting evidence and impossible clean contexts (the uniform-prior fallback) are covered."""
    toy = oracle(hmm)
    gamma = data.draw(sst.snr_configs(4, hmm.seq_len, max_log10=3.0))
    seed = data.draw(sst.seeds())
    tokens = torch.cat([hmm.sample(2, gen(seed)), torch.randint(0, hmm.vocab_size, (2, hmm.seq_len), generator=gen(seed))])
    assert_posteriors_agree(hmm, toy, mixed_state(hmm, tokens, gamma, seed + 1))


def test_posterior_check_fails_against_another_joint():
    hmm = ExactHMM.random(3, 3, 3, seed=0)
    other = ExactHMM.random(3, 3, 3, seed=1, table=hmm.table)
    gamma = torch.tensor([[0.0, 2.0, math.inf]], dtype=torch.float64).expand(4, -1)
    state = mixed_state(hmm, hmm.sample(4, gen(0)), gamma, 1)
    with pytest.raises(AssertionError):
        assert_posteriors_agree(hmm, oracle(other), state)


@given(hmm=sst.hmms())
def test_log_prob_marginals_and_probs_equal_the_enumerated_joints(hmm):
    truth = enumerated_joint(hmm).flatten()
    mine = hmm.log_prob(enumerate_sequences(hmm.vocab_size, hmm.seq_len))
    assert torch.equal(torch.isneginf(mine), truth == 0), "-inf exactly where P(s) = 0"
    ok = truth > 0
    assert torch.allclose(mine[ok], truth[ok].log(), rtol=0, atol=1e-10)
    assert torch.allclose(hmm.probs.flatten(), truth, rtol=0, atol=1e-12)
    assert torch.allclose(hmm.marginals(), oracle(hmm).marginals(), rtol=0, atol=1e-12)


@settings(max_examples=10)
@given(hmm=sst.hmms())
def test_impossible_pairs_are_the_zeros_of_the_enumerated_pair_marginals(hmm):
    """``impossible_pairs`` is exactly ``P(s_i, s_{i+1}) = 0`` of the enumerated joint, at every position."""
    joint = enumerated_joint(hmm).reshape((hmm.vocab_size,) * hmm.seq_len)
    sequences = enumerate_sequences(hmm.vocab_size, hmm.seq_len)
    mine = hmm.impossible_pairs(sequences)
    assert mine.shape == (len(sequences), hmm.seq_len - 1)
    for i in range(hmm.seq_len - 1):
        others = [d for d in range(hmm.seq_len) if d not in (i, i + 1)]
        pair = joint.sum(others) if others else joint  # [V, V]
        assert torch.equal(mine[:, i], pair[sequences[:, i], sequences[:, i + 1]] == 0), i


def assert_samples_law(samples, probs, vocab_size):
    """``[n, L]`` samples against a ``[V^L]`` law (sequences in C order)."""
    law = empirical_law(samples, vocab_size)
    tv, tol = 0.5 * float((law - probs).abs().sum()), tv_tolerance(probs, samples.shape[0])
    assert tv <= tol, f"TV {tv:.4f} exceeds the budget {tol:.4f}"


N = 20_000


@settings(max_examples=6)
@given(hmm=sst.hmms(n_states=st.integers(2, 3), seq_lens=st.integers(2, 3)), seed=sst.seeds())
def test_joint_posterior_samples_follow_the_enumerated_posterior(hmm, seed):
    """One mixed state repeated N times: FFBS draws whole sequences from ``p(s | z)`` (``tv_tolerance`` budget)."""
    toy = oracle(hmm)
    gamma = torch.tensor([[0.0, 1.5, math.inf][: hmm.seq_len]], dtype=torch.float64)
    one = mixed_state(hmm, hmm.sample(1, gen(seed)), gamma, seed + 1)
    state = SNRState(*(getattr(one, f).expand(N, *getattr(one, f).shape[1:]) for f in
                       ("gamma", "z", "tokens", "fixed", "confidence")))
    assert_samples_law(hmm.sample_posterior(state, gen(seed + 2)), toy.joint_log_posterior(one).exp()[0], hmm.vocab_size)
    assert_samples_law(hmm.sample(N, gen(seed + 3)), toy.probs.flatten(), hmm.vocab_size)


def test_sampling_check_fails_for_per_position_draws():
    """Tokens drawn independently from the posterior marginals ignore the joint: the same check fails."""
    hmm = ExactHMM.random(3, 3, 3, seed=2, successors=1, emissions=2)
    independent = torch.stack([torch.multinomial(m, N, replacement=True, generator=gen(0)) for m in hmm.marginals()], 1)
    with pytest.raises(AssertionError):
        assert_samples_law(independent, hmm.probs.flatten(), hmm.vocab_size)


@settings(max_examples=10)
@given(hmm=sst.hmms(seq_lens=st.integers(2, 3)))
def test_entropy_rate_estimate_covers_the_exact_entropy(hmm):
    """The estimate is a mean of exact ``-log P(s) / L`` over n exact samples: within 5 of its true standard errors
    (``sd_P(log P) / (L sqrt(n))``, from the enumerated joint: the sample's own can be 0 when rare sequences are
    unseen) of ``H / L``; and its reported standard error is the sample's."""
    n = 1024
    mean, se = hmm.entropy_rate(n=n, seed=0)
    toy = oracle(hmm)
    exact, zero = toy.entropy_rate()
    p = toy.probs.flatten()
    log_p = torch.where(p > 0, p.log(), 0.0)
    sd = float((p * log_p**2).sum() - (p * log_p).sum() ** 2).__abs__() ** 0.5 / hmm.seq_len
    assert zero == 0.0 and abs(mean - exact) <= 5 * sd / math.sqrt(n) + 1e-12, (mean, exact, sd)
    nll = -hmm.log_prob(hmm.sample(n, gen(0))) / hmm.seq_len
    assert se == pytest.approx(float(nll.std()) / math.sqrt(n), rel=1e-9, abs=1e-15)


# -- (b) the identity of DESIGN 4b ------------------------------------------------------------------------------


def assert_own_evidence_enters_only_as_a_weight(hmm, state, i, redraw_at):
    """``log p(s_i = v | z) - z_i · x_v``, normalised, does not depend on ``z_i``: redraw the evidence at position
    ``redraw_at`` and compare at position ``i``. Budget 1e-9 (the log-sum-exps of the module docstring at L = 64)."""
    z = state.z.clone()
    z[:, redraw_at] = 3.0 * torch.randn(z[:, redraw_at].shape, generator=gen(9), dtype=z.dtype)
    moved = SNRState(state.gamma, z, state.tokens, state.fixed, state.confidence)

    def context(s):
        log_p = hmm.logits(s)[:, i] - s.z[:, i] @ hmm.table.anchors.T
        return log_p - log_p.logsumexp(-1, keepdim=True)

    before, after = context(state), context(moved)
    assert torch.equal(torch.isneginf(before), torch.isneginf(after))
    ok = torch.isfinite(before)
    assert torch.allclose(before[ok], after[ok], rtol=0, atol=1e-9), (before[ok] - after[ok]).abs().max()


def test_own_evidence_enters_only_as_a_weight():
    hmm = ExactHMM.random(8, 6, 64, seed=3, successors=3, emissions=3)
    gamma = torch.full((3, 64), 5.0, dtype=torch.float64)
    gamma[:, ::7], gamma[:, 3::11] = 0.0, math.inf
    state = mixed_state(hmm, hmm.sample(3, gen(0)), gamma, 1)
    for i in (1, 30, 63):
        assert_own_evidence_enters_only_as_a_weight(hmm, state, i, redraw_at=i)
    with pytest.raises(AssertionError):  # a neighbour's evidence does move it
        assert_own_evidence_enters_only_as_a_weight(hmm, state, 30, redraw_at=31)


# -- (c) impossible sequences ---------------------------------------------------------------------------------------

ALTERNATING = dict(initial=[1.0, 0.0], transition=[[0.0, 1.0], [1.0, 0.0]], emission=[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])


def test_impossible_sequences_have_log_prob_minus_inf_and_are_never_drawn():
    """State 0 emits 0 or 1, state 1 emits 2, and they alternate from state 0: ``P(s) = 0`` unless s = (0|1) 2 (0|1) 2."""
    hmm = ExactHMM.from_arrays(**ALTERNATING, seq_len=4)
    lp = hmm.log_prob(torch.tensor([[0, 2, 1, 2], [2, 0, 1, 2], [0, 0, 0, 0]]))
    assert lp[0] == pytest.approx(2 * math.log(0.5), abs=1e-15) and bool(torch.isneginf(lp[1:]).all())
    assert bool(torch.isfinite(hmm.log_prob(hmm.sample(2000, gen(0)))).all())
    rnd = ExactHMM.random(6, 5, 12, seed=4, successors=2, emissions=2)
    tokens = rnd.sample(500, gen(1))
    assert bool(torch.isfinite(rnd.log_prob(tokens)).all())
    assert bool(torch.isneginf(rnd.log_prob(torch.randint(0, 5, (500, 12), generator=gen(2)))).any())
    gamma = torch.full((500, 12), 3.0, dtype=torch.float64)
    gamma[:, ::4] = math.inf
    posterior = rnd.sample_posterior(mixed_state(rnd, tokens, gamma, 3), gen(4))
    assert bool(torch.isfinite(rnd.log_prob(posterior)).all())
    assert torch.equal(posterior[:, ::4], tokens[:, ::4]), "clean tokens are kept"


def test_an_impossible_clean_context_falls_back_to_the_uniform_prior():
    """Clean (0, 0): state 0 cannot follow itself. As ExactToy does, the row gets the uniform-prior posterior."""
    hmm = ExactHMM.from_arrays(**ALTERNATING, seq_len=3)
    gamma = torch.tensor([[math.inf, math.inf, 2.0]], dtype=torch.float64)
    state = mixed_state(hmm, torch.tensor([[0, 0, 1]]), gamma, 0)
    expected = torch.log_softmax(state.z[0, 2] @ hmm.table.anchors.T, -1)
    assert torch.allclose(hmm.logits(state)[0, 2], expected, atol=1e-12)
    assert hmm.sample_posterior(state, gen(0))[0, :2].tolist() == [0, 0]


# -- (d) long sequences at large SNR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq_len", [256, 1024])
def test_long_sequences_at_large_snr_stay_finite_and_normalised(seq_len):
    """Masked, clean and finite positions with gamma up to 1e6, evidence from samples and from arbitrary tokens (the
    model rules many of them out: evidence of ``|z·x| ~ 1e6`` against it). Every unrevealed position keeps a finite
    normalised law (log-sum-exp 0 to 1e-12), and at gamma = 1e6 a sample's own token holds all the mass."""
    hmm = ExactHMM.random(16, 12, seq_len, seed=5, successors=3, emissions=3)
    tokens = torch.cat([hmm.sample(2, gen(0)), torch.randint(0, 12, (1, seq_len), generator=gen(1))])
    levels = torch.tensor([0.0, 1.0, 40.0, 1e4, 1e6, math.inf], dtype=torch.float64)
    gamma = levels[torch.randint(0, 6, (3, seq_len), generator=gen(2))]
    logits = hmm.logits(mixed_state(hmm, tokens, gamma, 3))
    assert not bool(torch.isnan(logits).any() | torch.isposinf(logits).any())
    assert bool(torch.isfinite(logits.amax(-1)).all())
    assert float(logits.logsumexp(-1).abs().max()) < 1e-12
    sure = gamma[:2] == 1e6
    p_true = logits[:2].exp().gather(-1, tokens[:2, :, None])[..., 0]
    assert bool((p_true[sure] > 1 - 1e-9).all())


def test_long_sequences_are_exact_where_checkable():
    """With the identity as emission matrix the HMM is a visible Markov chain: ``log P`` is the chain's sum of log
    transitions, and with one position masked among clean neighbours its law is ``T[a, v] T[v, b] / (T^2)[a, b]``.
    L = 1024, budgets 1e-9 (a sum of 1023 logs) and 1e-12."""
    t = ExactHMM.random(5, 5, 1, seed=6, successors=3).transition
    markov = ExactHMM.from_arrays(torch.full((5,), 0.2), t, torch.eye(5), seq_len=1024)
    tokens = markov.sample(3, gen(0))
    truth = markov.initial[tokens[:, 0]].log() + t[tokens[:, :-1], tokens[:, 1:]].log().sum(1)
    assert torch.allclose(markov.log_prob(tokens), truth, rtol=0, atol=1e-9)
    gamma = torch.full(tokens.shape, math.inf, dtype=torch.float64)
    gamma[:, 500] = 0.0
    law = markov.logits(mixed_state(markov, tokens, gamma, 1))[:, 500].exp()
    a, b = tokens[:, 499], tokens[:, 501]
    expected = t[a] * t[:, b].T / (t @ t)[a, b][:, None]
    assert torch.allclose(law, expected, rtol=0, atol=1e-12)


# -- (e) seeds, the protocol -------------------------------------------------------------------------------------------


def test_seeds_reproduce():
    a, b, c = ExactHMM.random(4, 3, 5, seed=7), ExactHMM.random(4, 3, 5, seed=7), ExactHMM.random(4, 3, 5, seed=8)
    assert torch.equal(a.transition, b.transition) and torch.equal(a.table.anchors, b.table.anchors)
    assert not torch.equal(a.transition, c.transition)
    assert torch.equal(a.sample(50, gen(1)), a.sample(50, gen(1)))
    assert not torch.equal(a.sample(50, gen(1)), a.sample(50, gen(2)))
    state = mixed_state(a, a.sample(50, gen(3)), torch.full((50, 5), 2.0, dtype=torch.float64), 4)
    assert torch.equal(a.sample_posterior(state, gen(5)), a.sample_posterior(state, gen(5)))
    assert a.entropy_rate(n=64, seed=1) == a.entropy_rate(n=64, seed=1)


def test_posterior_samples_from_streams_are_per_row():
    """With per-row streams (what the runner would pass) row i's sequence does not depend on the other rows, and the
    law is the enumerated posterior (``tv_tolerance`` budget), for the HMM and the enumerating toy alike."""
    hmm = ExactHMM.random(3, 3, 3, seed=2, successors=2, emissions=2)
    toy = oracle(hmm)
    state = mixed_state(hmm, hmm.sample(6, gen(0)), torch.tensor([[0.0, 1.5, math.inf]] * 6, dtype=torch.float64), 1)

    def rows(index):
        return SNRState(*(getattr(state, f)[index] for f in ("gamma", "z", "tokens", "fixed", "confidence")))

    for model in (hmm, toy):
        all_rows = model.sample_posterior(state, Streams(9, torch.arange(6)))
        assert torch.equal(model.sample_posterior(rows(slice(2, 4)), Streams(9, [2, 3])), all_rows[2:4])
    law = toy.joint_log_posterior(rows(slice(0, 1))).exp()[0]
    assert_samples_law(hmm.sample_posterior(rows(torch.zeros(N, dtype=torch.long)), Streams(4, torch.arange(N))), law,
                       hmm.vocab_size)


def test_it_is_an_exact_denoiser():
    hmm = ExactHMM.random(3, 4, 6)
    assert isinstance(hmm, Denoiser) and hmm.exact_posterior
    assert repr(hmm) == "ExactHMM(K=3, V=4, L=6, d=8)"
    bent = ExactHMM.random(3, 2, 6, table=TokenTable.with_norms(torch.tensor([[1.0, 0.0], [0.0, 2.0]])))
    assert not bent.exact_posterior


# -- (f) one long run from the stationary law: training data with no fixed corpus --------------------------------------

#: A slowly mixing chain (second eigenvalue 0.6) whose initial law matters for a few positions; pi = (3/4, 1/4).
SLOW = dict(transition=[[0.9, 0.1], [0.3, 0.7]], emission=[[0.8, 0.2, 0.0], [0.0, 0.3, 0.7]])


@given(n_states=st.integers(1, 9), successors=st.integers(1, 9), seed=sst.seeds())
def test_random_stationary_chains_are_irreducible_and_start_at_their_stationary_law(n_states, successors, seed):
    hmm = ExactHMM.random(n_states, 3, 4, seed=seed, successors=min(successors, n_states), stationary=True)
    pi = hmm.initial
    assert torch.allclose(pi @ hmm.transition, pi, rtol=0, atol=1e-12) and bool((pi > 0).all())
    assert float(pi.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(hmm.marginals(), (pi @ hmm.emission).expand(4, -1), rtol=0, atol=1e-12), "P(s_i) = pi B"


def test_stationary_law_of_periodic_and_reducible_chains():
    assert torch.allclose(stationary_law(torch.tensor([[0.0, 1.0], [1.0, 0.0]])), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(stationary_law(torch.tensor(SLOW["transition"])), torch.tensor([0.75, 0.25], dtype=torch.float64))
    with pytest.raises(SNRPathError, match="reducible: state 1 cannot be reached from state 0"):
        stationary_law(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    with pytest.raises(SNRPathError, match="reducible"):
        ExactHMM.from_arrays([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]], SLOW["emission"], seq_len=3).with_stationary_initial()


def window_law(hmm, start, length):
    """The enumerated law of ``s_start .. s_{start+length-1}`` under ``hmm`` (the other positions summed out)."""
    joint = enumerated_joint(hmm)
    outside = [i for i in range(hmm.seq_len) if not start <= i < start + length]
    return joint.sum(outside) if outside else joint


@pytest.mark.parametrize("start", [0, 1, 3])
def test_every_window_of_a_stationary_chain_has_the_law_of_the_short_hmm(start):
    """Exact, by enumeration: a window of 3 positions of the 6-position HMM is the 3-position HMM, when pi is
    stationary. With another initial law it is not (so the check can fail)."""
    stationary = ExactHMM.from_arrays([0.0, 1.0], **SLOW, seq_len=6).with_stationary_initial()
    short = ExactHMM.from_arrays(stationary.initial, **SLOW, seq_len=3)
    assert torch.allclose(window_law(stationary, start, 3), enumerated_joint(short), rtol=0, atol=1e-12)
    other = ExactHMM.from_arrays([0.0, 1.0], **SLOW, seq_len=6)
    short_other = ExactHMM.from_arrays([0.0, 1.0], **SLOW, seq_len=3)
    gap = (window_law(other, start, 3) - enumerated_joint(short_other)).abs().sum() / 2
    assert gap < 1e-12 if start == 0 else gap > 0.05, float(gap)  # the first window is the short HMM for any pi


def test_windows_of_one_long_run_follow_the_hmm():
    """Windows 40 tokens apart of one run (the chain forgets its state as 0.6^t: 1e-9 after 40 steps, so they are as
    good as independent; ``tv_tolerance`` budget). A run of the chain started elsewhere than at pi has windows with
    the stationary law, not its own P: the same check fails."""
    hmm = ExactHMM.from_arrays([0.0, 1.0], **SLOW, seq_len=3)
    for model, holds in ((hmm.with_stationary_initial(), True), (hmm, False)):
        windows = model.sample_run(40 * N, gen(0)).view(N, 40)[:, :3]
        if holds:
            assert_samples_law(windows, model.probs.flatten(), model.vocab_size)
        else:
            with pytest.raises(AssertionError):
                assert_samples_law(windows, model.probs.flatten(), model.vocab_size)


def test_long_runs_stay_in_the_support_and_reproduce():
    """Every one of 20,000 overlapping windows of a run of a sparse HMM is possible (log P finite); the same run
    shuffled is not."""
    hmm = ExactHMM.random(16, 16, 64, seed=1, successors=4, emissions=4, stationary=True)
    run = hmm.sample_run(20_063, gen(0))
    windows = run.unfold(0, 64, 1)
    assert windows.shape == (20_000, 64) and bool(torch.isfinite(hmm.log_prob(windows)).all())
    shuffled = run[torch.randperm(len(run), generator=gen(1))].unfold(0, 64, 1)
    assert bool(torch.isneginf(hmm.log_prob(shuffled)).any())
    assert torch.equal(hmm.sample_run(1000, gen(2)), hmm.sample_run(1000, gen(2)))
    assert not torch.equal(hmm.sample_run(1000, gen(2)), hmm.sample_run(1000, gen(3)))
    with pytest.raises(SNRPathError, match="'n' must be a positive integer"):
        hmm.sample_run(0, gen(0))


# -- (g) bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, error, message", [
    (dict(initial=[0.5, 0.6]), SNRPathError, r"'initial' must sum to 1 \(got 1.1\)"),
    (dict(transition=[[0.0, 1.0], [1.2, -0.2]]), SNRPathError, r"'transition' must be nonnegative \(entry \[1, 1\]"),
    (dict(emission=[[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]), SNRPathError, r"row 1 sums to 0\): state 1 emits nothing"),
    (dict(transition=[[0.5, 0.4], [1.0, 0.0]]), SNRPathError, r"every row of 'transition' must sum to 1 \(row 0 sums to 0.9"),
    (dict(transition=[[1.0, 0.0, 0.0]] * 3), ShapeError, r"'transition' must have shape \[2, 2\] for K = 2 states"),
    (dict(emission=[0.5, 0.5]), ShapeError, r"'emission' must have 2 nonempty axes"),
    (dict(initial=[float("nan"), 1.0]), SNRPathError, "'initial' contains NaN"),
    (dict(seq_len=0), SNRPathError, "'seq_len' must be a positive integer"),
    (dict(table=TokenTable.random(4, 2)), ShapeError, "4 anchors but 'emission' has V = 3"),
])
def test_bad_tables_are_named(change, error, message):
    with pytest.raises(error, match=message):
        ExactHMM.from_arrays(**(ALTERNATING | dict(seq_len=4) | change))


def test_bad_arguments_are_named_before_any_work():
    with pytest.raises(SNRPathError, match="'successors' must be at most 3"):
        ExactHMM.random(3, 4, 5, successors=4)
    with pytest.raises(SNRPathError, match="'concentration'"):
        ExactHMM.random(3, 4, 5, concentration=0.0)
    with pytest.raises(SNRPathError, match="'stationary' must be True or False"):
        ExactHMM.random(3, 4, 5, stationary="yes")
    hmm = ExactHMM.random(3, 4, 5)
    with pytest.raises(ShapeError, match="L = 6 positions; this denoiser models L = 5"):
        hmm.logits(SNRState.masked(1, 6, hmm.table))
    with pytest.raises(ShapeError, match="d = 3"):
        hmm.sample_posterior(SNRState.masked(1, 5, TokenTable.random(4, 3)), gen(0))
    with pytest.raises(ShapeError, match="sequence length 5"):
        hmm.log_prob(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 3\]"):
        hmm.log_prob(torch.full((1, 5), 4))
    with pytest.raises(SNRPathError, match="too large to enumerate"):
        ExactHMM.random(3, 4, 64).probs
