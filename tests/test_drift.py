"""Guarded drift (the ramp's ``temperature``, ``top_k``, ``top_p``, ``noise``, ``solver``) and ``renoise(gamma)``.

Statistical budgets: sample means and variances of the channel use 5 standard deviations (false alarm < 1e-6 each,
as in tests/test_channel.py), a Kolmogorov-Smirnov distance the 0.1% point ``1.95 / sqrt(n)``; total variation of an
n-sample empirical law ``tv_tolerance`` (Jensen bound on E[TV] plus McDiarmid at delta = 1e-6, as in
tests/test_runner.py). Seeds are fixed.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import Path, SNRPathError, SNRTypeError, TokenTable, corrupt, localize, parse_path, sample
from snrpaths.backends.hmm import ExactHMM
from snrpaths.backends.toy import ExactToy
from snrpaths.channel import renoise
from snrpaths.compile import RampCorrectOp, RampOp, RenoiseOp
from snrpaths.draw import probabilities
from snrpaths.schedules import RAMP_SCHEDULES
from snrpaths.state import SNRState
from snrpaths.testing.denoisers import Counting
from snrpaths.testing.stats import empirical_tv, ks_normal, tv_tolerance

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ExactToy.markov(3, 4, seed=3)
HMM = ExactHMM.random(3, 3, 4, seed=3, successors=2, emissions=2)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- the defaults are today's ramp, bit for bit ---------------------------------------------------------------------

#: Samples drawn by the runner before the drift guards existed (commit 4275395): batch 5, seq_len 4, the tokens of
#: the five rows in a row, then the nfe. A tiny DiT (float32) covers the mean form in a narrower dtype.
BEFORE = {
    "ramp(4) >> switch('commit')": {
        "toy": ("22222210221222222000", "12222222222222222222", 5),
        "hmm": ("21211111201101122110", "11110012211121112112", 5),
        "dit": ("20322032224144130204", "14041122103314340112", 5)},
    "ramp(3, form='sample') >> mdm(3)": {
        "toy": ("22222002112222221002", "12202222222221212222", 6),
        "hmm": ("01212011001121122011", "21211121111121112102", 6),
        "dit": ("20223004003342130023", "14313241144340331302", 6)},
    "ramp(3, lag=0.5, schedule='loglinear', gamma_max=9.0) >> mdm(2)": {
        "toy": ("22222222221212221222", "22222222222222222222", 5),
        "hmm": ("21112111211111111111", "11110012011121122111", 5),
        "dit": ("10312232203144130004", "22013332401312342202", 5)},
    "hybrid(3, 2)": {
        "toy": ("22222210222212222222", "22222222222222122222", 5),
        "hmm": ("21212111201111122110", "11110011011121112112", 5),
        "dit": ("20222230204144110200", "24043322403314331113", 5)},
    "hybrid(2, 3, form='sample', switch='mask')": {
        "toy": ("22221222222222121022", "22202222222222221222", 5),
        "hmm": ("11110111212121112021", "01111121212121110111", 5),
        "dit": ("21330302234334013041", "12202243434233340121", 5)},
    "(on(slice(0, 2), ramp(3, lag=1.0)) | on(slice(2, 4), mdm(3))) >> mdm(2)": {
        "toy": ("22222222222222222222", "22001222221222102102", 5),
        "hmm": ("01112122211101122121", "11111111211221112112", 5),
        "dit": ("20123244332314240243", "10103333110411201004", 5)},
}


@pytest.mark.parametrize("text", BEFORE)
def test_defaults_draw_the_samples_of_the_ramp_before_the_guards(text, make_denoiser):
    dens = {"toy": TOY, "hmm": HMM, "dit": make_denoiser(vocab_size=5, seq_len=4, seed=1)}
    for name, (*tokens, nfe) in BEFORE[text].items():
        for seed, expected in zip((0, 7), tokens):
            result = sample(parse_path(text), dens[name], batch=5, seed=seed)
            assert "".join(map(str, result.tokens.flatten().tolist())) == expected and result.nfe == nfe, \
                (name, seed)


def test_spelled_out_defaults_and_inactive_truncation_are_the_default_ramp_bit_for_bit():
    """Every guard at its default is the plain ramp (equal values, equal repr); a top-k of at least V, a nucleus
    of 1 and temperature 1 leave the evidence bit-identical, for both forms."""
    spelled = Path.ramp(4, temperature=1.0, top_k=None, top_p=1.0, noise=1.0, solver="euler")
    assert spelled == Path.ramp(4) and repr(spelled) == "ramp(4)"
    assert Path.hybrid(2, 2, ramp_temperature=1.0, ramp_top_k=None, ramp_top_p=1.0, noise=1.0) == Path.hybrid(2, 2)
    for form in ("mean", "sample"):
        runs = [sample((Path.ramp(4, form=form, top_k=k) >> Path.switch("commit")).compile(4).prefix(4), HMM,
                       batch=6, seed=2).state.z for k in (None, HMM.vocab_size, 512)]
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


# -- fields: validated, printed, parsed -----------------------------------------------------------------------------


def test_guards_and_renoise_print_and_parse():
    cases = {
        "ramp(8, temperature=0.5, top_k=512, top_p=0.9, noise=0.1, solver='heun')":
            Path.ramp(8, temperature=0.5, top_k=512, top_p=0.9, noise=0.1, solver="heun"),
        "ramp(8) >> renoise(4.0) >> ramp(8, noise=0.005, solver='heun') >> switch('commit')":
            Path.ramp(8) >> Path.renoise(4.0) >> Path.ramp(8, noise=0.005, solver="heun") >> Path.switch("commit"),
        "hybrid(8, 8, ramp_temperature=0.5, ramp_top_k=512, noise=0.1, solver='heun')":
            Path.hybrid(8, 8, ramp_temperature=0.5, ramp_top_k=512, noise=0.1, solver="heun"),
        "on(slice(0, 2), renoise(1.0)) | on(slice(2, 4), ramp(2))":
            Path.on(slice(0, 2), Path.renoise(1.0)) | Path.on(slice(2, 4), Path.ramp(2)),
    }
    for text, path in cases.items():
        assert repr(path) == text and parse_path(text) == path and hash(parse_path(text)) == hash(path)
    assert Path.renoise(4) == Path.renoise(4.0) and repr(Path.renoise(4)) == "renoise(4.0)"
    assert Path.hybrid(3, 2, ramp_top_p=0.5).body == Path.ramp(3, top_p=0.5) >> Path.switch() >> Path.mdm(2)
    assert Path.hybrid(3, 2, top_p=0.5).body == Path.ramp(3) >> Path.switch() >> Path.mdm(2, top_p=0.5)
    graph = parse_path("ramp(2) >> renoise(1.0) >> ramp(2)").graph()
    assert [graph.nodes[n]["kind"] for n in (0, 1, 2)] == ["ramp", "renoise", "ramp"]
    assert graph.nodes[1]["label"] == "renoise(1.0)"


@pytest.mark.parametrize("make, error, message", [
    (lambda: Path.ramp(4, top_p=0.0), SNRPathError, r"'top_p' must lie in \(0.0, 1.0\] \(got 0.0\)"),
    (lambda: Path.ramp(4, top_p=1.5), SNRPathError, r"'top_p' must lie in \(0.0, 1.0\]"),
    (lambda: Path.ramp(4, top_k=0), SNRPathError, "'top_k' must be a positive integer or None"),
    (lambda: Path.ramp(4, top_k=2.0), SNRTypeError, "'top_k' must be a positive integer or None"),
    (lambda: Path.ramp(4, temperature=-0.5), SNRPathError, r"'temperature' must lie in \[0.0, inf\)"),
    (lambda: Path.ramp(4, temperature=math.nan), SNRPathError, "'temperature'"),
    (lambda: Path.ramp(4, noise=-0.1), SNRPathError, r"'noise' must lie in \[0.0, inf\) \(got -0.1\)"),
    (lambda: Path.ramp(4, noise=math.inf), SNRPathError, r"'noise' must lie in \[0.0, inf\)"),
    (lambda: Path.ramp(4, noise="low"), SNRTypeError, "'noise'"),
    (lambda: Path.ramp(4, solver="rk4"), SNRPathError, r"'solver' must be one of \('euler', 'heun'\)"),
    (lambda: Path.hybrid(2, 2, ramp_top_k=0), SNRPathError, "'ramp_top_k' must be a positive integer or None"),
    (lambda: Path.hybrid(2, 2, ramp_temperature=-1), SNRPathError, r"'ramp_temperature' must lie in \[0.0, inf\)"),
    (lambda: Path.hybrid(2, 2, ramp_top_p=0), SNRPathError, r"'ramp_top_p' must lie in \(0.0, 1.0\]"),
    (lambda: Path.hybrid(2, 2, solver="heum"), SNRPathError, "'solver' must be one of"),
    (lambda: Path.renoise(0.0), SNRPathError, r"'gamma' must be a number in \(0, 2\*\*64\].* \(got 0.0\)"),
    (lambda: Path.renoise(-1), SNRPathError, r"'gamma' must be a number in \(0, 2\*\*64\]"),
    (lambda: Path.renoise(math.inf), SNRPathError, r"'gamma' must be a number in \(0, 2\*\*64\]"),
    (lambda: Path.renoise(math.nan), SNRPathError, "'gamma'"),
    (lambda: Path.renoise("4"), SNRTypeError, "'gamma'"),
    (lambda: Path.renoise(), SNRTypeError, r"renoise\(gamma\)"),
    (lambda: parse_path("renoise(4.0, 2.0)"), SNRPathError, "renoise"),
])
def test_bad_fields_fail_at_construction_naming_the_field(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- compiled: calls counted, ops plain ------------------------------------------------------------------------------


def test_heun_counts_two_calls_per_step_and_renoise_none():
    program = parse_path("ramp(3, solver='heun') >> renoise(2.0) >> ramp(2) >> switch('commit')").compile(4)
    assert program.nfe == 2 * 3 + 0 + 2 + 1
    assert [type(s.ops[0]) for s in program.steps[:7]] == [RampOp, RampCorrectOp] * 3 + [RenoiseOp]
    assert not program.steps[6].call and program.steps[6].ops[0] == RenoiseOp((0, 1, 2, 3), 2.0)
    assert Path.hybrid(3, 2, solver="heun").compile(4).nfe == 8
    side_by_side = (Path.on(slice(0, 2), Path.ramp(2, solver="heun")) | Path.on(slice(2, 4), Path.mdm(3))) >> Path.mdm(1)
    assert side_by_side.compile(4).nfe == 4 + 1  # the branches share calls
    with pytest.raises(SNRPathError, match="solver='heun'"):
        RampCorrectOp((0,), Path.ramp(2), 1)


@pytest.mark.parametrize("text", [
    "ramp(3, solver='heun') >> switch('commit')", "ramp(3, solver='heun', form='sample') >> renoise(2.0) >> mdm(3)",
    "hybrid(2, 2, solver='heun', noise=0.5, ramp_top_k=2)", "ramp(2, lag=0.5, solver='heun') >> switch('commit')",
])
def test_the_runner_makes_the_calls_the_program_counts(text):
    """Every row needs every call (no prompt): the denoiser is called exactly ``program.nfe`` times, and row i run
    alone costs what the batch reports for it (the per-row call cache sees the predicted state as a change)."""
    program, counting = parse_path(text).compile(4), Counting(HMM)
    result = sample(program, counting, batch=4, seed=3)
    assert counting.calls == result.nfe == program.nfe
    for i in range(4):
        alone = sample(program, HMM, batch=1, seed=3, row_offset=i)
        assert alone.nfe == int(result.calls[i]) and torch.equal(alone.tokens[0], result.tokens[i])


def test_the_corrector_call_reads_the_predicted_state():
    program, counting = (Path.ramp(2, solver="heun") >> Path.switch("commit")).compile(4), Counting(TOY)
    sample(program, counting, batch=3, seed=1)
    for k in range(1, 5):  # call k reads the state after k steps: predictor, corrector, predictor, corrector
        after = sample(program.prefix(k), TOY, batch=3, seed=1).state
        assert torch.equal(counting.states[k].z, after.z) and torch.equal(counting.states[k].gamma, after.gamma)


# -- the drift: formulas -----------------------------------------------------------------------------------------------


def _mean_target(state, temperature=1.0, top_p=1.0, top_k=None):
    return probabilities(TOY.logits(state), temperature, top_p, top_k) @ TOY.table.anchors


def test_one_heun_step_is_the_average_of_two_drifts_with_one_eps():
    """From [MASK] (z_0 = 0, gamma_0 = 0) with ``dgamma = gamma(1/T)``: the predictor is ``dgamma m(0) + noise
    sqrt(dgamma) eps`` and the corrected state ``z~ + dgamma (m(z~) - m(0)) / 2`` (so the same eps); with noise 0,
    ``dgamma (m(0) + m(z~)) / 2``."""
    for noise in (0.0, 0.3):
        path = Path.ramp(3, solver="heun", noise=noise, temperature=0.5)
        program = (path >> Path.switch("commit")).compile(4)
        start = SNRState.masked(2, 4, TOY.table)
        dgamma = path.level(1 / 3)
        predicted = sample(program.prefix(1), TOY, batch=2, seed=4).state
        corrected = sample(program.prefix(2), TOY, batch=2, seed=4).state
        m0, m1 = _mean_target(start, 0.5), _mean_target(predicted, 0.5)
        assert torch.equal(predicted.gamma, corrected.gamma) and bool((predicted.gamma == dgamma).all())
        torch.testing.assert_close(corrected.z, predicted.z + dgamma * (m1 - m0) / 2, rtol=0, atol=1e-12)
        if noise == 0:
            torch.testing.assert_close(predicted.z, dgamma * m0.expand_as(predicted.z), rtol=0, atol=1e-12)
            torch.testing.assert_close(corrected.z, dgamma * (m0 + m1) / 2, rtol=0, atol=1e-12)


def test_a_sampled_heun_step_averages_two_drawn_anchors():
    """Form 'sample': ``2 (z_{k+1} - z~) / dgamma = x_{s2} - x_{s1}``, a difference of two anchors at every position."""
    path = Path.ramp(2, solver="heun", form="sample")
    program = (path >> Path.switch("commit")).compile(4)
    predicted = sample(program.prefix(1), TOY, batch=8, seed=5).state
    corrected = sample(program.prefix(2), TOY, batch=8, seed=5).state
    diff = 2 * (corrected.z - predicted.z) / path.level(1 / 2)  # [B, L, d]
    anchors = TOY.table.anchors
    pairs = (anchors[:, None] - anchors[None]).reshape(-1, anchors.shape[-1])  # [V * V, d]
    nearest = (diff[..., None, :] - pairs).norm(dim=-1).amin(-1)
    assert float(nearest.max()) < 1e-12


def test_noise_scales_the_brownian_term_and_zero_is_deterministic():
    """One Euler step from [MASK] is ``dgamma m(0) + noise sqrt(dgamma) eps`` with eps the same for every noise."""
    program = lambda noise: (Path.ramp(2, noise=noise) >> Path.switch("commit")).compile(4).prefix(1)  # noqa: E731
    z = {c: sample(program(c), TOY, batch=3, seed=6).state.z for c in (0.0, 0.3, 1.0)}
    torch.testing.assert_close(z[0.3] - z[0.0], 0.3 * (z[1.0] - z[0.0]), rtol=0, atol=1e-12)
    full = (Path.ramp(4, noise=0.0) >> Path.switch("commit")).compile(4).prefix(4)
    assert torch.equal(sample(full, TOY, batch=3, seed=0).state.z, sample(full, TOY, batch=3, seed=9).state.z)


@pytest.mark.parametrize("guards, weights", [
    ({"temperature": 0.0}, "argmax"), ({"top_k": 1}, "argmax"), ({"top_p": 1e-9}, "argmax"),
    ({"temperature": 0.5}, "sharpened"), ({"top_k": 2}, "top2"),
])
def test_the_drift_averages_the_guarded_posterior(guards, weights):
    """One noiseless step from [MASK] moves z to ``dgamma sum_v q(v) x_v`` with q the guarded prior marginal."""
    path = Path.ramp(2, noise=0.0, **guards)
    z = sample((path >> Path.switch("commit")).compile(4).prefix(1), TOY, batch=1, seed=0).state.z[0]
    p = TOY.marginals().to(torch.float64)  # [L, V]: what the denoiser says at [MASK]
    if weights == "argmax":
        q = torch.nn.functional.one_hot(p.argmax(-1), TOY.vocab_size).to(torch.float64)
    elif weights == "sharpened":
        q = p**2 / (p**2).sum(-1, keepdim=True)
    else:
        q = torch.where(p >= p.sort(-1, descending=True).values[:, 1:2], p, 0.0)
        q = q / q.sum(-1, keepdim=True)
    torch.testing.assert_close(z, path.level(1 / 2) * q @ TOY.table.anchors, rtol=0, atol=1e-12)


# -- where a ramp starts ----------------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(schedule=st.sampled_from(tuple(RAMP_SCHEDULES)), gamma_max=st.floats(0.5, 500), kappa=st.floats(0.5, 10),
       gamma_min=st.floats(0.001, 0.5), u=st.floats(0.01, 1.0))
def test_clock_inverts_the_schedule(schedule, gamma_max, kappa, gamma_min, u):
    ramp = Path.ramp(4, gamma_max=gamma_max, schedule=schedule, kappa=kappa, gamma_min=gamma_min)
    assert ramp.clock(0.0) == 0.0 and ramp.clock(math.inf) == 1.0 and ramp.clock(10 * gamma_max) == 1.0
    g = ramp.level(u)
    assert math.isclose(ramp.level(ramp.clock(g)), g, rel_tol=1e-9)
    tensor = ramp.clock(torch.tensor([0.0, g, math.inf], dtype=torch.float64))
    assert tensor[0] == 0.0 and tensor[2] == 1.0 and math.isclose(float(tensor[1]), ramp.clock(g), rel_tol=1e-12)


def test_a_ramp_after_renoise_rises_from_the_lowered_snr_to_gamma_max():
    path = Path.ramp(4) >> Path.renoise(4.0) >> Path.ramp(4, schedule="loglinear", gamma_max=100.0)
    gamma = sample(path >> Path.switch("commit"), TOY, batch=2, seed=0, trace=True).trace.gamma[:, :, 0]  # [S+1, B]
    assert bool((gamma[5] == 4.0).all()) and gamma[4].tolist() == pytest.approx([40.0, 40.0], rel=1e-12)
    second = Path.ramp(4, schedule="loglinear", gamma_max=100.0)
    u0 = second.clock(4.0)
    expected = [second.level(u0 + (1 - u0) * k / 4) for k in range(1, 5)]
    torch.testing.assert_close(gamma[6:10], torch.tensor(expected, dtype=torch.float64)[:, None].expand(4, 2),
                               rtol=1e-12, atol=0)
    assert bool((gamma[6:10].diff(dim=0) > 0).all()) and float(gamma[9, 0]) == pytest.approx(100.0, rel=1e-12)


def test_a_ramp_never_lowers_an_snr_and_continues_one_that_stopped_early():
    low_then_default = sample(Path.ramp(3, gamma_max=4.0) >> Path.ramp(3) >> Path.switch("commit"), TOY, batch=2,
                              seed=0, trace=True).trace.gamma[:, 0, 0]
    assert bool((low_then_default[1:7].diff() > 0).all()), "the second ramp moves on every step, from 4 to 40"
    high_then_low = sample(Path.ramp(3) >> Path.ramp(3, gamma_max=4.0) >> Path.switch("commit"), TOY, batch=2,
                           seed=0, trace=True).trace.gamma[:, 0, 0]
    assert bool((high_then_low[3:7] == high_then_low[3]).all()) and float(high_then_low[3]) == pytest.approx(40.0)


# -- renoise: the exact forward channel --------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma, gamma_next", [(40.0, 4.0), (3.0, 2.9), (2.0, 0.01)])
def test_renoise_maps_the_channel_at_gamma_to_the_channel_at_gamma_next(gamma, gamma_next):
    """Given s: z' has mean gamma' x_s, variance gamma' per coordinate, covariance gamma' with z (the localization
    process is a Brownian motion with drift: Cov(z_g, z_g') = min(g, g')), and is normal."""
    table, n = TokenTable.random(3, 4, seed=1), 40_000
    tokens = torch.full((n, 1), 2, dtype=torch.int64)
    g, g_next = torch.full((n, 1), gamma, dtype=torch.float64), torch.full((n, 1), gamma_next, dtype=torch.float64)
    z = corrupt(tokens, g, table, gen(0))
    lowered = renoise(z, g, g_next, gen(1))[:, 0]  # [n, d]
    x = table.anchors[2]
    assert float((lowered.mean(0) - gamma_next * x).abs().max()) < 5 * math.sqrt(gamma_next / n)
    assert float((lowered.var(0) - gamma_next).abs().max()) < 5 * gamma_next * math.sqrt(2 / n)
    centred = (z[:, 0] - gamma * x) * (lowered - gamma_next * x)  # mean gamma', sd sqrt(gamma gamma' + gamma'^2)
    assert float((centred.mean(0) - gamma_next).abs().max()) < 5 * math.sqrt((gamma * gamma_next + gamma_next**2) / n)
    assert ks_normal(lowered[:, 0], gamma_next * float(x[0]), math.sqrt(gamma_next)) < 1.95 / math.sqrt(n)
    if gamma_next < gamma / 2:  # the variance check sees a channel that forgets the fresh noise (var gamma'^2/gamma)
        wrong = z[:, 0] * gamma_next / gamma
        assert float((wrong.var(0) - gamma_next).abs().max()) > 5 * gamma_next * math.sqrt(2 / n)


def test_renoise_leaves_what_it_does_not_lower_exactly_unchanged():
    z = torch.randn(1, 5, 3, dtype=torch.float64, generator=gen())
    z[0, 0] = z[0, 1] = 0
    gamma = torch.tensor([[0.0, math.inf, 1.0, 4.0, 9.0]], dtype=torch.float64)
    out = renoise(z, gamma, torch.full_like(gamma, 4.0).minimum(gamma), gen())
    assert torch.equal(out[0, :4], z[0, :4]) and not torch.equal(out[0, 4], z[0, 4])


def test_the_renoise_stage_lowers_only_finite_free_positions_above_its_level():
    """Clean, prompt and already-low positions keep their SNR and evidence; the rest drop to gamma. [MASK] too."""
    path = (Path.on(slice(0, 1), Path.ar()) | Path.on(slice(1, 2), Path.ramp(2, gamma_max=2.0))
            | Path.on(slice(2, 4), Path.ramp(2)))
    program = (path >> Path.renoise(3.0) >> Path.switch("commit")).compile(4)
    prompt = torch.tensor([-1, -1, 1, -1])
    before = sample(program.prefix(2), TOY, batch=3, seed=2, prompt=prompt).state
    after = sample(program.prefix(3), TOY, batch=3, seed=2, prompt=prompt).state
    moved = torch.tensor([False, False, False, True])  # clean (ar), at 2 (below 3), prompt, at 40
    assert bool(before.gamma[:, 1].lt(3.0).all()) and bool((after.gamma[:, 3] == 3.0).all())
    assert torch.equal(after.gamma[:, ~moved], before.gamma[:, ~moved])
    assert torch.equal(after.z[:, ~moved], before.z[:, ~moved]) and not torch.equal(after.z[:, 3], before.z[:, 3])
    assert torch.equal(after.tokens, before.tokens)
    masked = sample(parse_path("renoise(1.0) >> mdm(2)").compile(4).prefix(1), TOY, batch=2, seed=0).state
    assert bool((masked.gamma == 0).all()) and bool((masked.z == 0).all())


# -- renoise: the law of the sample is unchanged ------------------------------------------------------------------------

N = 20_000


def assert_samples_p(toy, tokens):
    tv, tol = empirical_tv(toy.probs, tokens), tv_tolerance(toy.probs, tokens.shape[0])
    assert tv <= tol, f"TV {tv:.4f} exceeds the budget {tol:.4f}"


PRODUCT = ExactToy.product(3, 3, seed=4, concentration=0.5)
PREDICTOR_CORRECTOR = "ramp(3, form='sample') >> renoise({g}) >> ramp(2, form='sample') >> switch('commit')"


@pytest.mark.parametrize("g", [0.3, 4.0])
def test_renoise_inside_an_exact_ramp_keeps_the_law_p(g):
    """On a product joint each position's posterior marginal is its joint posterior, so the sample form draws from the
    exact joint posterior and a ramp samples P at any number of steps (DESIGN 5b); a renoise between two such ramps
    keeps (s, z) in the channel's law, so the path still samples P exactly: the budget is sampling error only."""
    assert_samples_p(PRODUCT, sample(parse_path(PREDICTOR_CORRECTOR.format(g=g)), PRODUCT, batch=N, seed=1).tokens)


def test_the_exactness_check_catches_a_channel_without_fresh_noise(monkeypatch):
    """The same path with ``z' = (gamma'/gamma) z`` (the bridge's noise left out) is over-confident after the drop:
    its law leaves the budget, so the test above can fail."""
    import snrpaths.runner

    def without_fresh_noise(z, gamma, gamma_next, streams):
        streams.skip()
        return torch.where(torch.isfinite(gamma) & (gamma > 0), gamma_next / gamma, 1.0)[..., None] * z

    monkeypatch.setattr(snrpaths.runner, "renoise", without_fresh_noise)
    with pytest.raises(AssertionError, match="exceeds the budget"):
        test_renoise_inside_an_exact_ramp_keeps_the_law_p(0.3)


CHAIN = ExactToy.markov(3, 3, seed=0)


@pytest.mark.parametrize("toy", [CHAIN, ExactToy.random(2, 3, seed=5)], ids=["chain", "dirichlet"])
def test_renoise_between_joint_posterior_localization_steps_keeps_the_law_p(toy):
    """On correlated joints, localization with targets drawn from the exact joint posterior (``sample_posterior``)
    samples P at any number of steps (DESIGN 5b); renoising from 40 down to 1 midway and localizing again keeps it."""
    g = gen(3)
    state = SNRState.masked(N, toy.seq_len, toy.table)
    for level, lowered in ((0.5, None), (40.0, 1.0), (8.0, None), (400.0, None)):
        gamma = torch.full_like(state.gamma, level)
        z = localize(state.z, state.gamma, gamma, toy.table.embed(toy.sample_posterior(state, g)), g)
        if lowered is not None:
            z, gamma = renoise(z, gamma, torch.full_like(gamma, lowered), g), torch.full_like(gamma, lowered)
        state = SNRState(gamma=gamma, z=z, tokens=state.tokens, fixed=state.fixed, confidence=state.confidence)
    assert_samples_p(toy, toy.sample_posterior(state, g))
