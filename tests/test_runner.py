"""The runner: one conformance suite over every built-in sampler and composed paths, and exactness on toys.

Statistical budgets: total variation of an n-sample empirical law uses ``tv_tolerance`` (Jensen bound on E[TV]
plus McDiarmid at delta = 1e-6, see tests/backends/test_toy.py); frequencies use 5 binomial standard deviations
(two-sided false alarm 6e-7). Seeds are fixed.
"""

import math

import pytest
import torch

from snrpaths import Path, SNRPathError, ShapeError, parse_path, sample
from snrpaths.backends.hmm import ExactHMM
from snrpaths.backends.toy import ExactToy
from snrpaths.testing.conformance import SAMPLERS, check_sampler
from snrpaths.testing.denoisers import Counting
from snrpaths.testing.stats import empirical_tv, tv_tolerance

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ExactToy.markov(3, 4, seed=3)
#: the same suite on an HMM with structural zeros (so parallel reveals can draw impossible sequences)
HMM = ExactHMM.random(3, 3, 4, seed=3, successors=2, emissions=2)


@pytest.mark.parametrize("stop", [None, 0], ids=["", "stop"])
@pytest.mark.parametrize("den", [TOY, HMM], ids=["toy", "hmm"])
@pytest.mark.parametrize("text", SAMPLERS)
def test_conformance(text, den, stop):
    check_sampler(text, den, torch.tensor([-1, 2, -1, -1]), stop=stop)


# -- same seed, same samples, however batched -------------------------------------------------------------------

INVARIANT = ["mdm(4)", "mdm(5, schedule='cosine')", "ramp(3) >> mdm(3)", "hybrid(2, 3, switch='commit', form='sample')",
             "hybrid(2, 3, switch='mask')", "mdm(5, remask='confidence')", "mdm(6, remask='loop', eta=0.3)",
             "mdm(5, remask='rescale', eta=0.5)", "ar()", "roar()", "reveal(count=2, order='confidence')",
             "reveal(4, order='confidence', threshold=0.8)", "reveal(4, threshold=0.6)",
             "reveal(order='entropy', count=1, entropy_bound=0.5)", "blocks(2, mdm(3))",
             "blocks(2, reveal(2, order='confidence', threshold=0.7))", "ramp(3, lag=0.5) >> mdm(3)",
             "ramp(2, solver='heun', form='sample', top_k=2) >> renoise(2.0) >> mdm(3)",
             "hybrid(2, 2, solver='heun', noise=0.5, ramp_temperature=0.5, ramp_top_p=0.8)"]


@pytest.mark.parametrize("den", [TOY, HMM], ids=["toy", "hmm"])
@pytest.mark.parametrize("text", INVARIANT)
def test_row_i_does_not_depend_on_the_batch(text, den):
    """Row i of batch B (B in 1, 3, 8) is one sample: same tokens, same final evidence, same per-row calls; run alone
    (batch 1, ``row_offset=i``) its ``nfe`` is the calls the batch reports for it, and shards put together give the
    batch."""
    program = parse_path(text).compile(den.seq_len)
    runs = {b: sample(program, den, batch=b, seed=11) for b in (1, 3, 8)}
    full = runs[8]
    for b, run in runs.items():
        assert torch.equal(run.tokens, full.tokens[:b]), b
        assert torch.equal(run.state.z, full.state.z[:b]) and torch.equal(run.state.gamma, full.state.gamma[:b])
        assert torch.equal(run.calls, full.calls[:b]), (run.calls, full.calls)
    for i in range(8):
        alone = sample(program, den, batch=1, seed=11, row_offset=i)
        assert torch.equal(alone.tokens[0], full.tokens[i]) and alone.nfe == int(full.calls[i]), i
    shards = [sample(program, den, batch=5, seed=11), sample(program, den, batch=3, seed=11, row_offset=5)]
    assert torch.equal(torch.cat([r.tokens for r in shards]), full.tokens)
    assert torch.equal(sample(program, den, batch=7, seed=11, row_offset=1).tokens, full.tokens[1:])


def test_row_i_with_its_own_prompt_does_not_depend_on_the_other_rows():
    """Rows with different prompts; row 0's prompt fixes the ramp's positions, so alone it never calls the denoiser
    during the ramp and must skip the draws the batch makes there (without the skip it drifts: 3 of seeds 0-3)."""
    program = parse_path("on(slice(0, 2), ramp(2)) >> mdm(3)").compile(TOY.seq_len)
    prompt = torch.tensor([[0, 1, -1, -1], [-1, -1, -1, -1], [2, -1, -1, -1]])
    for seed in range(4):
        batch = sample(program, TOY, batch=3, seed=seed, prompt=prompt)
        for i in range(3):
            alone = sample(program, TOY, batch=1, seed=seed, prompt=prompt[i:i + 1], row_offset=i)
            assert torch.equal(alone.tokens[0], batch.tokens[i]) and alone.nfe == int(batch.calls[i]), (seed, i)


def test_row_offset_is_a_non_negative_integer():
    for bad in (-1, 1.5, None):
        with pytest.raises(SNRPathError, match="'row_offset' must be a non-negative integer"):
            sample(Path.ar(), TOY, row_offset=bad)


# -- exactness ---------------------------------------------------------------------------------------------------

N = 20_000
CHAIN = ExactToy.markov(3, 3, seed=0)
HIDDEN = ExactHMM.random(3, 3, 3, seed=0, successors=2, emissions=2)


def assert_samples_p(toy, tokens):
    tv, tol = empirical_tv(toy.probs, tokens), tv_tolerance(toy.probs, tokens.shape[0])
    assert tv <= tol, f"TV {tv:.4f} exceeds the budget {tol:.4f}"


EXACT = pytest.mark.parametrize("den", [CHAIN, HIDDEN], ids=["chain", "hmm"])


@EXACT
@pytest.mark.parametrize("text", ["ar()", "roar()", "reveal(3, schedule='linear', exact=True)",
                                  "reveal(6, schedule='cosine', exact=True)", "reveal(order=(2, 0, 1), count=1)"])
def test_one_position_per_step_samples_p_exactly(text, den):
    """Chain rule: revealing one position at a time from exact conditionals draws from P, in any order. MDLM's
    clock with T >= L and exact counts reveals at most one position per step, so it equals ROAR."""
    assert_samples_p(den, sample(parse_path(text), den, batch=N, seed=1).tokens)


@EXACT
def test_the_exactness_check_catches_parallel_reveals(den):
    """Two positions per step drawn independently from their marginals are not exact on a correlated chain."""
    with pytest.raises(AssertionError):
        assert_samples_p(den, sample(Path.reveal(count=3), den, batch=N, seed=1).tokens)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_mdlm_on_the_two_bit_toy_puts_mass_1_over_2k_off_support(steps):
    """Each position is revealed at a uniform step; when both land on the same step (prob 1/K) they are drawn
    independently and disagree half the time: P(01 or 10) = 1 / (2K), the TV of MDLM on this toy."""
    toy = ExactToy.two_bit()
    tokens = sample(Path.mdm(steps), toy, batch=N, seed=2).tokens
    off = float((tokens[:, 0] != tokens[:, 1]).double().mean())
    p = 1 / (2 * steps)
    assert abs(off - p) < 5 * math.sqrt(p * (1 - p) / N)


class Flat:
    """Uniform logits: reveal and remask coin flips do not read the logits, so any denoiser serves here."""

    def __init__(self, vocab_size, seq_len):
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.table = ExactToy.product(vocab_size, 1).table

    def logits(self, state):
        return torch.zeros(state.batch, self.seq_len, self.vocab_size, dtype=torch.float64)


def _step_frequencies(text, k, batch=4000):
    """Frequencies at step k: remasked among positions clean before it, revealed among those masked before it."""
    trace = sample(parse_path(text), Flat(2, 12), batch=batch, seed=5, trace=True).trace
    before, after = trace.gamma[k], trace.gamma[k + 1]
    clean, masked = torch.isinf(before), before == 0
    remasked = (clean & (after == 0)).sum() / clean.sum()
    revealed = (masked & torch.isinf(after)).sum() / masked.sum()
    return float(remasked), float(revealed), int(clean.sum()), int(masked.sum())


def _binomial_ok(freq, p, n):
    return abs(freq - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


@pytest.mark.parametrize("policy, eta, k", [("cap", 0.05, 4), ("rescale", 0.5, 3), ("cap", 0.9, 2)])
def test_remdm_step_frequencies_match_the_formulas(policy, eta, k):
    T = 8
    a_t, a_s = 1 - (T - k) / T, 1 - (T - k - 1) / T
    s_max = min(1.0, (1 - a_s) / a_t)
    sigma = min(eta, s_max) if policy == "cap" else eta * s_max
    reveal = (a_s - (1 - sigma) * a_t) / (1 - a_t)
    remasked, revealed, n_clean, n_masked = _step_frequencies(f"mdm({T}, remask='{policy}', eta={eta})", k)
    assert _binomial_ok(remasked, sigma, n_clean), (remasked, sigma)
    assert _binomial_ok(revealed, reveal, n_masked), (revealed, reveal)


def test_remdm_loop_holds_alpha_while_remasking():
    """Inside the loop (t in [t_off, t_on]) alpha stays alpha_on: remask eta, reveal eta alpha_on / (1 - alpha_on)."""
    T, k = 20, 10  # t = 0.5 -> 0.45, inside [0.05, 0.55]
    remasked, revealed, n_clean, n_masked = _step_frequencies(
        f"mdm({T}, remask='loop', eta=0.1, alpha_on=0.6)", k)
    assert _binomial_ok(remasked, 0.1, n_clean)
    assert _binomial_ok(revealed, 0.1 * 0.6 / 0.4, n_masked)


def test_confidence_remasking_spends_sigma_max_per_row_on_the_least_confident():
    """sigma_l = softmax(-psi)_l sigma_max: the expected number remasked per row is sigma_max."""
    T, k, batch = 8, 5, 3000
    toy = ExactToy.product(3, 5, seed=1, concentration=0.3)
    trace = sample(Path.mdm(T, remask="confidence"), toy, batch=batch, seed=5, trace=True).trace
    a_t, a_s = k / T, (k + 1) / T
    before, after = trace.gamma[k], trace.gamma[k + 1]
    remasked = torch.isinf(before) & (after == 0)
    per_row = remasked.sum(1).double()
    assert abs(float(per_row.mean()) - min(1, (1 - a_s) / a_t)) < 5 * float(per_row.std()) / math.sqrt(batch)
    clean = torch.isinf(before)
    conf_before = _confidence_before(toy, T, k, batch)
    low = clean & (conf_before < conf_before[clean].median())
    high = clean & (conf_before > conf_before[clean].median())
    assert (remasked & low).sum() / low.sum() > (remasked & high).sum() / high.sum()


def _confidence_before(toy, T, k, batch):
    """Confidence of each clean token at step k, by rerunning the same seeded sampler for the first k steps."""
    prefix = Path.remask("confidence") & Path.reveal(T, schedule="linear")
    head = prefix.compile(toy.seq_len).prefix(k)  # a partial program: its run may end with unrevealed positions
    return sample(head, toy, batch=batch, seed=5).state.confidence


def test_empty_steps_cost_no_call():
    """Coin flips are drawn before the call, so a step that reveals nothing is skipped: with batch 1 and a linear
    clock every position is revealed at a uniform step, and E[calls] = K (1 - (1 - 1/K)^L)."""
    K, L, runs = 16, 4, 300
    toy = ExactToy.product(2, L, seed=0)
    calls = torch.tensor([sample(Path.mdm(K), toy, batch=1, seed=s).nfe for s in range(runs)], dtype=torch.float64)
    expected = K * (1 - (1 - 1 / K) ** L)
    assert abs(float(calls.mean()) - expected) < 5 * float(calls.std()) / math.sqrt(runs)


# -- bad input -----------------------------------------------------------------------------------------------------


class Broken:
    def __init__(self, inner, corrupt):
        self.inner, self.corrupt = inner, corrupt
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.calls = 0

    def logits(self, state):
        self.calls += 1
        out = self.inner.logits(state)
        return self.corrupt(out) if self.calls == 3 else out


def test_nan_logits_are_reported_at_their_step():
    nan = Broken(TOY, lambda x: x.masked_fill(torch.ones_like(x, dtype=torch.bool), float("nan")))
    with pytest.raises(SNRPathError, match=r"at step 2 \(ar\(\)\) the denoiser returned NaN"):
        sample(Path.ar(), nan, batch=2)
    shape = Broken(TOY, lambda x: x[..., :2])
    with pytest.raises(ShapeError, match=r"at step 2 \(ar\(\)\) .* shape \[2, 4, 2\]; expected \[2, 4, 3\]"):
        sample(Path.ar(), shape, batch=2)


def _set(x: torch.Tensor, where: tuple, value: float) -> torch.Tensor:
    x = x.clone()
    x[where] = value
    return x


@pytest.mark.parametrize("corrupt, refused", [
    (lambda x: torch.full_like(x, 1e308), False),  # finite, but their sum overflows: the shortcut defers, they pass
    (lambda x: _set(x, (slice(None), 3, 0), -math.inf), False),  # an impossible token beside possible ones
    (lambda x: _set(x, (slice(None), 0, slice(None)), math.nan), False),  # NaN at a clean position is never read
    (lambda x: _set(x, (slice(None), 3, 0), math.inf), True),
    (lambda x: _set(x, (slice(None), 3, slice(None)), -math.inf), True),  # nothing to draw at position 3
])
def test_the_logits_check_refuses_only_what_cannot_be_drawn(corrupt, refused):
    """The check's common case is one sum of every logit, finite only if each is; when it is not, the maxima decide:
    at ar()'s step 2, positions 0 and 1 are clean and 2 and 3 are not."""
    broken = Broken(TOY, corrupt)
    if refused:
        with pytest.raises(SNRPathError, match=r"at step 2 \(ar\(\)\) the denoiser returned NaN or infinite logits "
                                               r"at 2 unrevealed"):
            sample(Path.ar(), broken, batch=2)
    else:
        tokens = sample(Path.ar(), broken, batch=2).tokens
        assert ((tokens >= 0) & (tokens < TOY.vocab_size)).all()


def test_bad_sample_arguments():
    with pytest.raises(ShapeError, match="compiled for seq_len=5"):
        sample(Path.ar().compile(5), TOY)
    with pytest.raises(ShapeError, match="prompt has length 3"):
        sample(Path.ar(), TOY, prompt=torch.tensor([0, -1, -1]))
    with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 2\]"):
        sample(Path.ar(), TOY, prompt=torch.tensor([0, 5, -1, -1]))
    with pytest.raises(SNRPathError, match="'batch' must be a positive integer"):
        sample(Path.ar(), TOY, batch=0)
    with pytest.raises(TypeError, match="Denoiser protocol"):
        sample(Path.ar(), object())


@pytest.mark.parametrize("text", ["hybrid(2, 2)", "mdm(3, remask='confidence')", "ar()"])
def test_a_prompt_that_fixes_everything_costs_no_call(text):
    result = sample(parse_path(text), Counting(TOY), batch=2, prompt=torch.tensor([0, 1, 2, 0]))
    assert result.nfe == 0 and result.tokens.tolist() == [[0, 1, 2, 0]] * 2


def test_a_path_expression_samples_as_its_path():
    from snrpaths.parse import PathSyntaxError

    toy = ExactToy.markov(3, 5, seed=0)
    text, value = (sample(p, toy, batch=6, seed=2) for p in ("hybrid(2, 3)", Path.hybrid(2, 3)))
    assert torch.equal(text.tokens, value.tokens) and text.nfe == value.nfe
    with pytest.raises(PathSyntaxError):
        sample("hybrid(2, 3", toy)
    with pytest.raises(SNRPathError, match="a path expression or a Program"):
        sample(3, toy)
