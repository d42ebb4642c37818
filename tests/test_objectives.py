"""The objectives: the states they draw, that one optimizer step on a fixed batch lowers the loss, mixtures, and
the expressions that print and parse them. PathStates has its own file (tests/test_path_states.py)."""

import json
import math

import attrs

import pytest
import torch
from hypothesis import given

from snrpaths import Path, SNRPathError, SNRTypeError
from snrpaths.objectives import (DSL, MDLM, OBJECTIVES, Covering, Mixture, PathStates, loss, parse_objective, per_row,
                                 roar_validation)
from snrpaths.testing.stats import ks_normal
from snrpaths.testing.strategies import paths

B, L, V, D = 64, 12, 7, 8


def tokens(seed=0, batch=B):
    """Skewed unigram draws (P(v) proportional to 2^-v): something a first step can learn."""
    probs = 2.0 ** -torch.arange(V, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, batch * L, replacement=True, generator=g).view(batch, L)


def draw(objective, seed=0, batch=B):
    return objective.draw(tokens(seed, batch), torch.Generator().manual_seed(seed + 100), D)


@pytest.mark.parametrize("objective", [
    MDLM(), DSL(), DSL(per_token=True), Covering(), PathStates("hybrid(2, 3)"), PathStates("ar()"),
    PathStates("ramp(4, lag=0.5) >> mdm(3, remask='cap', eta=0.1)"), Mixture((DSL(), 1), (PathStates("mdm(3)"), 1)),
], ids=repr)
def test_one_step_lowers_the_loss_on_a_fixed_batch(objective, make_denoiser):
    model = make_denoiser(V, L)
    model.train()
    corruption = draw(objective)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = loss(model, corruption)
    before.backward()
    optimizer.step()
    after = loss(model, corruption)
    assert math.isfinite(before.item()) and after.item() < before.item() - 1e-3, (before.item(), after.item())


def test_a_fresh_model_scores_exactly_log_v(make_denoiser):
    """The DiT's head is zero-initialised: uniform backbone predictions, so with the plain head every objective's row
    term is known exactly: log V for ROAR rows and continuous rows, and log V times the masked fraction over t for
    MDLM. (The evidence head would add z_i . x_v on the continuous rows: DESIGN 4b, tested in
    tests/backends/test_evidence_head.py.)"""
    model = make_denoiser(V, L).eval()
    model.converter.config = attrs.evolve(model.converter.config, head="plain")
    c = draw(DSL(per_token=True))
    torch.testing.assert_close(per_row(model, c), torch.full((B,), math.log(V)))
    m = draw(MDLM())
    torch.testing.assert_close(per_row(model, m), m.weight.sum(1) * math.log(V))


def test_mdlm_states_are_endpoints_with_antithetic_times():
    c = draw(MDLM(eps=1e-3))
    assert set(c.gamma.unique().tolist()) <= {0.0, math.inf}
    masked = c.gamma == 0
    assert torch.equal(c.weight > 0, masked)
    t = (masked / c.weight.clamp_min(1e-30) / L).amax(1)  # weight = 1 / (t L) on masked positions
    rows = masked.any(1)
    # antithetic: the B times fall one in each stratum [eps + (1-eps) k/B, eps + (1-eps)(k+1)/B)
    strata = ((t[rows] - 1e-3) / (1 - 1e-3) * B).floor().long()
    assert len(set(strata.tolist())) == int(rows.sum())
    assert float(c.eps.abs().sum()) == 0.0


def test_dsl_endpoint_rows_are_exact_roar_states():
    objective = DSL(roar_fraction=0.25)
    c = draw(objective)
    roar = ~torch.isfinite(c.gamma).all(1) | (c.gamma == 0).any(1)
    assert int(roar.sum()) == round(0.25 * B)
    g = c.gamma[roar]
    assert bool(((g == 0) | torch.isinf(g)).all())  # exactly 0 or inf, nothing in between
    assert bool(((g == 0).sum(1) >= 1).all())  # k <= L - 1 clean: something is left to predict
    w = c.weight[roar]
    assert torch.equal(w > 0, g == 0)  # loss on the masked positions only ...
    torch.testing.assert_close(w.sum(1), torch.ones(len(w)))  # ... as a mean over them


def test_dsl_continuous_rows_follow_the_capped_log_normal():
    """log gamma ~ N(1.4, 0.55^2), one value per row. Kolmogorov-Smirnov at n = 4000 rows with the critical value
    1.95 / sqrt(n) (false rejection 0.1%); the cap at 40 sits 4.2 sigma out, so it is reached with probability 1.6e-5
    and does not move the statistic. The same check rejects draws with mu = 1.5."""
    n = 4000
    c = draw(DSL(roar_fraction=0.0), batch=n)
    assert bool(torch.isfinite(c.gamma).all()) and float(c.gamma.min()) > 0 and float(c.gamma.max()) <= 40
    assert bool((c.gamma == c.gamma[:, :1]).all())  # one SNR per sequence
    torch.testing.assert_close(c.weight.sum(1), torch.ones(n))
    critical = 1.95 / math.sqrt(n)
    assert ks_normal(c.gamma[:, 0].log(), 1.4, 0.55) < critical
    shifted = draw(DSL(roar_fraction=0.0, mu=1.5), batch=n)
    assert ks_normal(shifted.gamma[:, 0].log(), 1.4, 0.55) > critical


def test_dsl_cap_and_per_token_draws():
    c = draw(DSL(roar_fraction=0.0, mu=math.log(40), sigma=1.0, per_token=True))
    assert float(c.gamma.max()) == 40.0 and float((c.gamma == 40).float().mean()) > 0.3  # half the mass is capped
    assert bool((c.gamma.std(1) > 0).all())  # per-token: values differ along a row


def test_roar_validation_rows_are_endpoint_states():
    c = roar_validation(tokens(), torch.Generator().manual_seed(0), D)
    assert bool(((c.gamma == 0) | torch.isinf(c.gamma)).all())
    torch.testing.assert_close(c.weight.sum(1), torch.ones(B))
    clean = torch.isinf(c.gamma).sum(1)
    assert int(clean.min()) >= 0 and int(clean.max()) <= L - 1


@pytest.mark.parametrize("bad", [dict(roar_fraction=1.5), dict(sigma=-1), dict(gamma_max=math.inf), dict(mu="x")])
def test_bad_settings_are_refused(bad):
    with pytest.raises(SNRPathError):
        DSL(**bad)
    with pytest.raises(SNRPathError, match="'eps'"):
        MDLM(eps=0)


# -- the covering distribution -----------------------------------------------------------------------------------


def test_covering_rows_are_clean_positions_beside_one_shared_state():
    """Per row: k ~ U{0..L-1} positions clean, the others one state, [MASK] on a quarter of the rows (exactly), else
    one SNR, log-uniform on [0.1, 100]: Kolmogorov-Smirnov of its normal scores over the 3,000 finite rows (critical
    1.95 / sqrt(n)); the same check rejects the range [0.2, 100]."""
    n = 4000
    c = draw(Covering(), batch=n)
    clean = torch.isinf(c.gamma)
    assert set(clean.sum(1).tolist()) == set(range(L))  # every k in 0..L-1 occurs, never L
    low, high = torch.where(clean, math.inf, c.gamma).amin(1), torch.where(clean, -math.inf, c.gamma).amax(1)
    assert torch.equal(low, high)  # one state per row
    assert int((low == 0).sum()) == round(0.25 * n)
    finite = low[low > 0].double()
    assert float(finite.min()) >= 0.1 * (1 - 1e-6) and float(finite.max()) <= 100.0
    torch.testing.assert_close(c.weight, (~clean) / (~clean).sum(1, keepdim=True))

    def scores(lo):
        u = (finite.log() - math.log(lo)) / (math.log(100.0) - math.log(lo))
        return torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))

    critical = 1.95 / math.sqrt(len(finite))
    assert ks_normal(scores(0.1), 0.0, 1.0) < critical
    assert ks_normal(scores(0.2), 0.0, 1.0) > critical


def test_covering_settings_shape_its_states():
    c = draw(Covering(mask_fraction=1.0))
    assert bool(((c.gamma == 0) | torch.isinf(c.gamma)).all())  # all [MASK]: the ROAR states
    c = draw(Covering(mask_fraction=0.0, gamma_min=3.0, gamma_max=3.0))
    assert bool(((c.gamma == 3.0) | torch.isinf(c.gamma)).all())


@pytest.mark.parametrize(("bad", "error", "message"), [
    (dict(gamma_min=5.0, gamma_max=1.0), SNRPathError, r"'gamma_min' must lie in \(0.0, 1.0\] \(got 5.0\)"),
    (dict(mask_fraction=1.5), SNRPathError, "'mask_fraction' must lie in"),
    (dict(gamma_max=math.inf), SNRPathError, "'gamma_max' must be a finite number > 0"),
    (dict(gamma_min="x"), SNRTypeError, "'gamma_min' must be"),
])
def test_bad_covering_settings_are_refused(bad, error, message):
    with pytest.raises(error, match=message):
        Covering(**bad)


# -- mixtures ----------------------------------------------------------------------------------------------------


def test_a_mixture_splits_each_batch_by_weight_reproducibly():
    mixture = Mixture((MDLM(), 3), (DSL(roar_fraction=0.0), 1))  # the DSL rows are the ones with finite SNRs
    assert mixture.counts(8) == [6, 2] and mixture.counts(1) == [1, 0] and mixture.counts(64) == [48, 16]
    assert Mixture((MDLM(), 1), (DSL(), 1), (Covering(), 1)).counts(8) == [3, 3, 2]
    a, b, other = draw(mixture, batch=8, seed=1), draw(mixture, batch=8, seed=1), draw(mixture, batch=8, seed=2)
    finite = lambda c: ((c.gamma > 0) & torch.isfinite(c.gamma)).all(1)
    assert int(finite(a).sum()) == 2 and bool(((a.gamma[~finite(a)] == 0) | torch.isinf(a.gamma[~finite(a)])).all())
    for name in ("gamma", "eps", "weight"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.gamma, other.gamma)
    assert torch.equal(a.tokens, tokens(1, 8))  # each row keeps its own data


@pytest.mark.parametrize(("parts", "error", "message"), [
    ((), SNRTypeError, "'parts' must be one or more"),
    (((DSL(), 0),), SNRPathError, "'weight' must be a finite number > 0"),
    (((DSL(),),), SNRTypeError, "an \\(objective, weight\\) pair"),
    ((("dsl", 1),), SNRTypeError, "an \\(objective, weight\\) pair"),
])
def test_bad_mixtures_are_refused(parts, error, message):
    with pytest.raises(error, match=message):
        Mixture(*parts)


# -- expressions -------------------------------------------------------------------------------------------------

OBJECTIVE_VALUES = [MDLM(), MDLM(eps=0.01), DSL(roar_fraction=0.5, per_token=True), Covering(gamma_min=0.5),
                    PathStates("hybrid(16, 16)"), PathStates(Path.ramp(4, lag=0.5) >> Path.mdm(4, remask="cap")),
                    Mixture((DSL(), 3), (PathStates("ar()"), 1)), Mixture((Mixture((MDLM(), 1),), 2))]


@pytest.mark.parametrize("objective", OBJECTIVE_VALUES, ids=repr)
def test_every_objective_prints_the_expression_that_builds_it(objective):
    assert parse_objective(repr(objective)) == objective
    assert OBJECTIVES[objective.name] is type(objective)
    assert json.loads(json.dumps(objective.settings()))["name"] == type(objective).__name__


def test_reprs_leave_defaults_out():
    assert [repr(DSL()), repr(Covering(gamma_max=50)), repr(PathStates("hybrid(16, 16)"))] == [
        "DSL()", "Covering(gamma_max=50.0)", "PathStates('hybrid(16, 16)')"]
    assert repr(Mixture((DSL(), 3), (PathStates("ar()"), 1))) == "Mixture((DSL(), 3.0), (PathStates('ar()'), 1.0))"
    assert parse_objective("dsl") == DSL() and parse_objective("mdlm(eps=0.01)") == MDLM(eps=0.01)
    # the settings a checkpoint records are those of before the registry existed: old runs resume
    assert DSL().settings() == {"name": "DSL", **attrs.asdict(DSL())}


@given(path=paths(max_steps=4, seq_len=4))
def test_a_path_objective_round_trips_any_path(path):
    assert parse_objective(repr(PathStates(path))) == PathStates(path)


@pytest.mark.parametrize(("text", "error", "message"), [
    ("DSL(1, 2, 3, 4, 5, 6)", SNRTypeError, "DSL\\(1, 2, 3, 4, 5, 6\\): .*positional"),
    ("PathStates('mdm(4)', teacher=ExactHMM(3))", SNRPathError, "'ExactHMM' is not an objective .* in Python"),
    ("DSL(**settings)", SNRPathError, "no \\* or \\*\\*"),
    ("dsl(", SNRPathError, "cannot read the objective 'dsl\\('"),
    ("DSL(mu=-inf)", SNRPathError, "'-inf': an objective expression holds numbers"),
    ("DSL(mu=inf)", SNRPathError, "'inf' is not an objective"),
    ("DSL(mu=-2)", None, None),
    (42, SNRTypeError, "must be a string"),
])
def test_bad_expressions_are_refused(text, error, message):
    if error is None:
        assert parse_objective(text) == DSL(mu=-2)
        return
    with pytest.raises(error, match=message):
        parse_objective(text)
