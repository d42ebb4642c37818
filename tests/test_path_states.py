"""PathStates: the states a path visits, teacher-forced (checked against the runner itself with an oracle denoiser)
and on-policy (a teacher's targets on the policy's own states), and what it refuses."""

import math

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from snrpaths import Path, SNRPathError, SNRTypeError, TokenTable, parse_path, sample
from snrpaths.compile import RevealOp, Step
from snrpaths.objectives import Corruption, PathStates, call_states, changeable, loss
from snrpaths.testing.stats import ks_normal
from snrpaths.testing.strategies import paths, sampler_paths, seeds

pytestmark = pytest.mark.usefixtures("one_thread")

V, L, D = 5, 6, 4
TABLE = TokenTable.random(V, D, seed=3)
S = torch.tensor([3, 1, 4, 1, 0, 2])  # the data outcome of the oracle runs


class Oracle:
    """All mass on ``s``: sampling a path with it visits exactly the states the path is in when ``s`` is its outcome
    (its posterior mean is ``x_s``, so every ramp increment is the forward channel's)."""

    vocab_size, table = V, TABLE

    def __init__(self, s=S):
        self.s, self.seq_len = s, len(s)

    def logits(self, state):
        hit = F.one_hot(self.s, V).bool()
        return torch.where(hit, 0.0, -math.inf).to(torch.float64).expand(state.batch, self.seq_len, V)


def draw(path, batch=64, seed=0):
    tokens = S.expand(batch, L)
    return PathStates(path).draw(tokens, torch.Generator().manual_seed(seed), D)


def ranked(program):
    return any(isinstance(op, RevealOp) and op.uses_evidence for step in program.steps for op in step.ops)


@settings(max_examples=30)
@given(path=paths(max_steps=4, seq_len=4), seed=seeds())
def test_call_states_are_the_runner_s_states_at_the_data_outcome(path, seed):
    """For a path whose choices do not read the model, the SNRs at call c are, row by row and bit for bit, those of
    the runner's own run of ``program.prefix(step of c)`` with the oracle of the same seed."""
    program = path.compile(4)
    assume(not ranked(program))
    assume(all(op.ramp.noise == 1.0 for step in program.steps for op in step.ops if hasattr(op, "ramp")))
    oracle = Oracle(S[:4])
    states = call_states(program, 5, seed)
    assert states.steps == tuple(k for k, step in enumerate(program.steps) if step.call)
    for c, k in enumerate(states.steps):
        assert torch.equal(states.gamma[c], sample(program.prefix(k), oracle, batch=5, seed=seed).state.gamma), k
        assert torch.equal(states.changeable[c], changeable(program.steps[k], states.gamma[c]))


@pytest.mark.parametrize(("path", "k"), [
    ("ramp(4, lag=0.5) >> mdm(2)", 2), ("ramp(4, lag=0.5, form='sample') >> mdm(2)", 2),  # several SNRs at once
    ("ramp(4, solver='heun', temperature=0.5, top_k=2) >> mdm(2)", 3),  # a corrector, then a predictor
    ("ramp(3) >> renoise(1.0) >> ramp(3, lag=0.5) >> mdm(2)", 5),  # re-noised, then one step up again
])
def test_an_oracle_run_holds_forward_channel_evidence(path, k):
    """Why the evidence is drawn afresh: along a staggered ramp (mean or sampled target, Heun steps, guards, after a
    renoise) the oracle run's evidence at SNR gamma is ``gamma x_s + sqrt(gamma) eps`` with standard normal eps.
    Kolmogorov-Smirnov over the noise coordinates of 128 rows (critical value 1.95 / sqrt(n), false rejection 0.1%);
    and its SNRs are call_states', bit for bit."""
    program = parse_path(path).compile(L)
    state = sample(program.prefix(k), Oracle(), batch=128, seed=1).state
    finite = (state.gamma > 0) & torch.isfinite(state.gamma)
    assert bool(finite.any())
    g = state.gamma[..., None]
    noise = ((state.z - g * TABLE.anchors[S]) / g.sqrt())[finite]
    assert ks_normal(noise, 0.0, 1.0) < 1.95 / math.sqrt(noise.numel())
    states = call_states(program, 128, seed=1)
    if k in states.steps:
        assert torch.equal(states.gamma[states.steps.index(k)], state.gamma)


def test_an_mdm_call_has_the_clock_s_fraction_clean():
    """At call c of mdm(4) each position is clean with probability alpha = c / 4, independently: 2,000 rows of 6
    positions, 5 standard errors."""
    states = call_states(parse_path("mdm(4)").compile(L), 2000, seed=7)
    for c in range(4):
        clean = torch.isinf(states.gamma[c]).double().mean()
        p = c / 4
        assert abs(float(clean) - p) <= 5 * math.sqrt(p * (1 - p) / (2000 * L)) + 1e-12, (c, float(clean))


def endpoint(path):
    return path.compile(L).finite_snr_call() is None


@pytest.mark.parametrize("path", ["mdm(4)", "ar()", "roar()", "mdm(5, remask='cap', eta=0.5)",
                                  "mdm(5, remask='confidence')", "mdm(6, remask='loop')", "blocks(2, mdm(2))",
                                  "reveal(3, order='confidence', schedule='cosine')"])
def test_an_endpoint_path_draws_only_endpoint_states(path):
    c = draw(parse_path(path))
    assert bool(((c.gamma == 0) | torch.isinf(c.gamma)).all())
    assert not bool(((c.weight > 0) & (c.gamma != 0)).any())  # only masked positions can be revealed
    if "ar()" not in path and "blocks" not in path:  # random orders: any masked position may be next
        assert torch.equal(c.weight > 0, c.gamma == 0)
    torch.testing.assert_close(c.weight.sum(1), torch.ones(len(c.weight)))


@settings(max_examples=25)
@given(path=sampler_paths(max_steps=6), seed=seeds())
def test_any_endpoint_path_draws_gamma_in_0_and_inf(path, seed):
    assume(endpoint(path))
    c = draw(path, batch=16, seed=seed)
    assert bool(((c.gamma == 0) | torch.isinf(c.gamma)).all())
    assert bool((c.weight.sum(1) - 1).abs().max() < 1e-6)


def test_the_call_is_uniform_and_the_ramp_s_snrs_on_its_schedule():
    """ramp(4) >> switch('commit') has 5 calls: the joint ramp's 4 (SNR level((k - 1) / 4) for every position, 0 at
    the first) and the commit's (every position at gamma_max). Each is drawn with probability 1/5: 4,000 rows, 5
    standard errors."""
    path = parse_path("ramp(4) >> switch('commit')")
    c = draw(path, batch=4000, seed=2)
    ramp = path.parts[0]
    levels = [0.0] + [ramp.level(k / 4) for k in range(1, 5)]
    assert bool((c.gamma == c.gamma[:, :1]).all())  # joint: one SNR per row
    drawn = c.gamma[:, 0]
    for level in levels:
        share = float((drawn == torch.tensor(level, dtype=torch.float32)).double().mean())
        assert abs(share - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 4000), (level, share)
    assert bool((c.weight > 0).all())  # a ramp's call moves every unrevealed position


@pytest.mark.parametrize("lag", [0.5, 1.0])
def test_a_staggered_ramp_draws_snrs_on_its_clocks(lag):
    """With a stagger, position r of n rises on its own clock ``u_r = clip((k + lag (k (n - 1) - r T)) / T, 0, 1)``
    after step k of T: every finite SNR drawn from ``ramp(4, lag) >> mdm(2)`` is ``level(u_r)`` at its position."""
    path = parse_path(f"ramp(4, lag={lag}) >> mdm(2)")
    c = draw(path, batch=512, seed=4)
    ramp, T = path.parts[0], 4
    k = torch.arange(1, T + 1, dtype=torch.float64)[:, None]
    r = torch.arange(L, dtype=torch.float64)
    allowed = ramp.level(((k + lag * (k * (L - 1) - r * T)) / T).clamp(0, 1)).float()  # [T, L]
    finite = (c.gamma > 0) & torch.isfinite(c.gamma)
    assert bool(finite.any())
    for b, i in finite.nonzero().tolist():
        assert bool((allowed[:, i] == c.gamma[b, i]).any()), (b, i, float(c.gamma[b, i]))


def test_the_loss_is_on_the_positions_the_call_can_move():
    # hybrid with the finite part kept: at an mdm call every unrevealed position (finite or masked) can be revealed
    c = draw(parse_path("hybrid(2, 3)"), batch=256)
    assert torch.equal(c.weight > 0, ~torch.isinf(c.gamma))
    assert bool(((c.gamma == 0) | torch.isinf(c.gamma) | (c.gamma > 0)).all())
    # a fixed order reveals exactly its next position: ar() scores that one, with every earlier one clean
    c = draw(Path.ar(), batch=256)
    assert bool((c.weight.sum(1) == 1).all()) and bool(((c.weight == 0) | (c.weight == 1)).all())
    next_ = c.weight.argmax(1)
    clean = torch.isinf(c.gamma)
    index = torch.arange(L)
    assert torch.equal(clean, index < next_[:, None])
    # a fixed order on a clock: the next round(alpha_s L) - n_clean positions, left to right
    c = draw(parse_path("reveal(3, order='left-to-right', schedule='linear')"), batch=64)
    clean = torch.isinf(c.gamma)
    assert set(clean.sum(1).tolist()) <= {0, 2, 4} and torch.equal(clean, index < clean.sum(1, keepdim=True))
    assert torch.equal(c.weight > 0, (index >= clean.sum(1, keepdim=True)) & (index < clean.sum(1, keepdim=True) + 2))
    # side by side: each span's own positions
    c = draw(parse_path("on(slice(0, 3), ar()) | on(slice(3, 6), mdm(3))"), batch=256)
    left, right = c.weight[:, :3] > 0, c.weight[:, 3:] > 0
    assert bool((left.sum(1) <= 1).all()) and torch.equal(right, c.gamma[:, 3:] == 0)


def test_draws_are_reproducible_from_the_generator():
    a, b, other = draw(parse_path("hybrid(3, 3)"), seed=5), draw(parse_path("hybrid(3, 3)"), seed=5), \
        draw(parse_path("hybrid(3, 3)"), seed=6)
    for name in ("gamma", "eps", "weight"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.gamma, other.gamma)


def test_a_large_batch_runs_in_chunks_that_change_nothing(monkeypatch):
    import snrpaths.objectives as objectives

    program = parse_path("ramp(3, lag=0.5) >> mdm(3, remask='rescale', eta=0.5)").compile(L)
    whole = call_states(program, 40, seed=9)
    monkeypatch.setattr(objectives, "_TRACE_ENTRIES", 7 * (len(program.steps) + 1) * L)  # chunks of 7 rows
    chunked = call_states(program, 40, seed=9)
    assert torch.equal(whole.gamma, chunked.gamma) and torch.equal(whole.changeable, chunked.changeable)


@attrs.frozen
class UnknownOp:
    positions: tuple


def test_a_ramp_whose_noise_is_not_the_channel_s_is_refused_teacher_forced(make_taught):
    """A ramp with a scaled noise term leaves an oracle's evidence off the forward channel: its data-outcome states
    are refused, naming the stage; on-policy runs take it (the runner runs it for real)."""
    path = "ramp(2, noise=0.5) >> mdm(2)"
    with pytest.raises(SNRPathError, match=r"`ramp\(2, noise=0.5\)` from the data: with noise != 1"):
        draw(parse_path(path))
    hmm, model = make_taught(V, L, D)
    c = PathStates(path, policy="model", teacher=hmm).draw(S.expand(4, L), torch.Generator().manual_seed(0), D,
                                                            model=model)
    assert c.soft and len(c.gamma) == 4


def test_a_stage_it_cannot_simulate_is_refused_by_name():
    program = parse_path("mdm(2)").compile(L)
    odd = attrs.evolve(program, steps=program.steps + (Step(True, (UnknownOp((0,)),), "warp(3)"),))
    with pytest.raises(SNRPathError, match=r"cannot draw the states of `warp\(3\)` .*UnknownOp"):
        call_states(odd, 4, seed=0)


# -- with a teacher --------------------------------------------------------------------------------------------------


def test_a_teacher_s_targets_are_its_posterior_on_the_drawn_state(make_taught):
    hmm, model = make_taught(V, L, D)
    objective = PathStates("hybrid(2, 2)", teacher=hmm)
    objective.check(model, save_every=1)
    tokens = hmm.sample(32, torch.Generator().manual_seed(0))
    c = objective.draw(tokens, torch.Generator().manual_seed(1), D)
    assert c.soft and c.eps is None
    from snrpaths.state import SNRState

    state = SNRState(c.gamma.double(), c.z.double(), torch.where(torch.isinf(c.gamma), tokens, -1),
                     torch.zeros_like(tokens, dtype=torch.bool), torch.zeros_like(c.gamma))
    posterior = hmm.logits(state).exp()
    moving = c.weight > 0
    torch.testing.assert_close(c.target[moving], posterior[moving].float())
    assert bool((c.target[~moving] == 0).all())
    # the evidence of a drawn state is the forward channel's around the data (noise of unit variance)
    finite = (c.gamma > 0) & torch.isfinite(c.gamma)
    g = c.gamma.double()[..., None]
    noise = ((c.z.double() - g * hmm.table.anchors[tokens]) / g.sqrt())[finite]
    assert abs(float(noise.var()) - 1) < 0.2


def test_on_policy_states_are_the_states_the_policy_was_called_on(make_taught):
    from snrpaths.testing.denoisers import Counting

    hmm, model = make_taught(V, L, D)
    policy = Counting(hmm)  # an exact policy: its visited states are the path's states at its own samples
    objective = PathStates("hybrid(2, 2)", policy=policy, teacher=hmm)
    c = objective.draw(torch.zeros(16, L, dtype=torch.long), torch.Generator().manual_seed(0), D)
    visited = torch.cat([s.gamma for s in policy.states]).float()
    # each drawn row is one of the visited states (the pool holds every row of every call)
    assert all(bool((visited == row).all(1).any()) for row in c.gamma)
    assert policy.calls == 4 and len(visited) >= 16
    torch.testing.assert_close(c.weight.sum(1), torch.ones(16))
    # fewer rollouts than rows: each rolled-out row gives several states (with replacement when too few were visited)
    policy = Counting(hmm)
    c = PathStates("hybrid(2, 2)", policy=policy, teacher=hmm, rollouts=2).draw(
        torch.zeros(16, L, dtype=torch.long), torch.Generator().manual_seed(0), D)
    assert policy.states[0].batch == 2 and len(c.gamma) == 16
    visited = torch.cat([s.gamma for s in policy.states]).float()
    assert all(bool((visited == row).all(1).any()) for row in c.gamma)


def test_on_policy_with_the_model_refreshes_its_copy_every_n_steps(make_taught):
    hmm, model = make_taught(V, L, D)
    objective = PathStates("hybrid(2, 2)", policy="model", teacher=hmm, refresh=2)
    tokens = torch.zeros(4, L, dtype=torch.long)
    objective.draw(tokens, torch.Generator().manual_seed(0), D, model=model, step=0)
    first = objective._copies["policy"]
    assert first is not model and not any(p.requires_grad for p in first.parameters())
    objective.draw(tokens, torch.Generator().manual_seed(0), D, model=model, step=1)
    assert objective._copies["policy"] is first
    objective.draw(tokens, torch.Generator().manual_seed(0), D, model=model, step=2)
    assert objective._copies["policy"] is not first
    fresh = PathStates("hybrid(2, 2)", policy="model", teacher=hmm, refresh=2)
    with pytest.raises(SNRPathError, match="the policy of step 3 is the model at step 2"):
        fresh.draw(tokens, torch.Generator().manual_seed(0), D, model=model, step=3)
    with pytest.raises(SNRPathError, match="rolls out the model being trained"):
        fresh.draw(tokens, torch.Generator().manual_seed(0), D)


def test_what_a_teacher_needs_is_checked(make_taught):
    from snrpaths.backends import ExactHMM

    hmm, model = make_taught(V, L, D)
    with pytest.raises(SNRPathError, match="with no data sequence to score: give teacher="):
        PathStates("mdm(4)", policy="model")
    with pytest.raises(SNRPathError, match="'refresh' applies to policy='model'"):
        PathStates("mdm(4)", refresh=2)
    with pytest.raises(SNRPathError, match="'rollouts' applies to on-policy states"):
        PathStates("mdm(4)", rollouts=2)
    with pytest.raises(SNRPathError, match="'rollouts' must be a positive integer"):
        PathStates("mdm(4)", policy="model", teacher=hmm, rollouts=0)
    with pytest.raises(SNRPathError, match="'policy' must be 'model'"):
        PathStates("mdm(4)", policy="self", teacher=hmm)
    with pytest.raises(SNRTypeError, match="'teacher' must be a Denoiser"):
        PathStates("mdm(4)", teacher="hmm")
    with pytest.raises(SNRTypeError, match="'path' must be a Path or a path expression"):
        PathStates(4)
    with pytest.raises(SNRPathError, match="'path' 'mdm\\(4': expected"):
        PathStates("mdm(4")
    other = ExactHMM.random(3, V, L, seed=1, dim=D, table=TokenTable.random(V, D, seed=99))
    with pytest.raises(SNRPathError, match="the PathStates teacher's anchors differ from the model's"):
        PathStates("mdm(4)", teacher=other).check(model, 1)
    with pytest.raises(SNRPathError, match="the PathStates teacher has seq_len = 7; the model has 6"):
        PathStates("mdm(4)", teacher=ExactHMM.random(3, V, 7, seed=1, dim=D)).check(model, 1)
    _, learning = make_taught(vocab_size=V, seq_len=L, anchor_dim=D, frozen=False)
    with pytest.raises(SNRPathError, match="frozen anchors equal to the teacher's"):
        PathStates("mdm(4)", teacher=hmm).check(learning, 1)
    with pytest.raises(SNRPathError, match=r"'refresh' \(3\) must divide the run's save_every \(4\)"):
        PathStates("mdm(4)", policy="model", teacher=hmm, refresh=3).check(model, 4)
    with pytest.raises(SNRPathError, match="positions \\[6\\] are out of range"):
        PathStates("on((6,), ar()) | on(slice(0, 6), mdm(2))").check(model, 1)


def test_soft_and_hard_rows_mix_in_one_loss(make_taught):
    """A one-hot target scores exactly what the token's cross-entropy scores."""
    hmm, model = make_taught(V, L, D)
    hard = PathStates("hybrid(2, 2)").draw(hmm.sample(8, torch.Generator().manual_seed(0)),
                                           torch.Generator().manual_seed(1), D)
    soft = hard.scored_softly(model.converter.anchors, V)
    torch.testing.assert_close(loss(model, soft), loss(model, hard))
    both = Corruption.cat([soft, soft])
    torch.testing.assert_close(loss(model, both), loss(model, hard))
    with pytest.raises(SNRPathError, match="cannot join soft and data-scoring"):
        Corruption.cat([soft, hard])


@pytest.mark.parametrize("objective", ["teacher-forced", "on-policy"])
def test_a_few_steps_with_a_teacher_lower_the_loss(make_taught, objective):
    hmm, model = make_taught(V, L, D)
    policy = dict(policy="model") if objective == "on-policy" else {}
    corruption = PathStates("hybrid(3, 3)", teacher=hmm, **policy).draw(
        hmm.sample(32, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1), D, model=model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = loss(model, corruption)
    for _ in range(3):
        optimizer.zero_grad()
        loss(model, corruption).backward()
        optimizer.step()
    after = loss(model, corruption)
    assert math.isfinite(before.item()) and after.item() < before.item() - 1e-3, (before.item(), after.item())
