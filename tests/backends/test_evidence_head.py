"""The evidence head and the calibrated converter (DESIGN.md section 4b).

    log p(s_i = v | z) = z_i . x_v + log p(s_i = v | z_{-i}) + const_i          (exact, any joint)

Error budget: every comparison here is float64 arithmetic on identical inputs through different orders of
summation over at most V^L = 27 states and V + 1 = 4 slots, so agreement is to ~1e-12; the tolerances are 1e-9.
"""

from __future__ import annotations

import json
import math
import types

import attrs
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import SNRPathError, SNRState
from snrpaths.backends import Converter, ConverterConfig, DiTConfig, DSLDenoiser, ExactToy, load, save
from snrpaths.geometry import TokenTable

F64 = torch.float64
V, L, D = 3, 3, 4


def gen(seed):
    return torch.Generator().manual_seed(seed)


class LeaveOneOutOracle(torch.nn.Module):
    """A backbone that outputs the exact leave-one-out posterior ``log p(s_i | z_{-i})`` of a joint ``P``.

    Its input table is the identity, so with ``beta = 1`` and ``b = 0`` a finite position's input is
    ``q_i = softmax([z_i . x_v]_v, 0)`` and ``log q_iv - log q_i[MASK] = z_i . x_v``: the evidence of every position,
    recovered exactly from the soft embedding. Endpoint inputs are exact one-hot rows (a clean token or ``[MASK]``).
    """

    def __init__(self, log_joint: torch.Tensor):
        super().__init__()
        self.log_joint = log_joint  # (V,) * L
        self.config = types.SimpleNamespace(vocab_size=V, seq_len=L)
        self.vocab_embed = types.SimpleNamespace(embedding=torch.eye(V + 1, dtype=F64))

    def forward(self, h: torch.Tensor, dropout=None) -> torch.Tensor:
        endpoint = h.max(-1).values == 1  # (B, L): softmax weights of finite evidence are never exactly one-hot
        log_w = torch.where(endpoint[..., None], h[..., :V].log(), h[..., :V].log() - h[..., V:].log())
        log_w = torch.where(endpoint[..., None] & (h[..., V:] == 1), 0.0, log_w)  # [MASK]: no evidence
        out = torch.empty(h.shape[0], L, V, dtype=F64)
        for i in range(L):
            joint = self.log_joint.expand(h.shape[0], *self.log_joint.shape)
            for j in range(L):
                if j != i:
                    shape = [h.shape[0]] + [1] * L
                    shape[1 + j] = V
                    joint = joint + log_w[:, j].reshape(shape)
            other = [1 + j for j in range(L) if j != i]
            out[:, i] = torch.logsumexp(joint, dim=other)
        return out


def oracle_denoiser(toy: ExactToy, head: str) -> DSLDenoiser:
    conv = Converter(V, ConverterConfig(anchor_dim=D, head=head)).to(F64)
    with torch.no_grad():
        conv.anchor_weight.copy_(toy.table.anchors)
        conv.log_beta.zero_()
        conv.bias.zero_()
    return DSLDenoiser(LeaveOneOutOracle(toy.log_joint), conv)


def mixed_state(toy, seed, B=5):
    g = gen(seed)
    tokens = torch.randint(0, V, (B, L), generator=g)
    gamma = torch.rand(B, L, generator=g, dtype=F64) * 6
    pick = torch.randint(0, 4, (B, L), generator=g)
    gamma = torch.where(pick == 0, 0.0, torch.where(pick == 1, math.inf, gamma))
    return SNRState.from_tokens(tokens, gamma, toy.table, g)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["random", "markov"]))
def test_a_leave_one_out_oracle_with_the_evidence_head_is_the_exact_posterior(seed, kind):
    toy = getattr(ExactToy, kind)(V, L, seed=seed, table=TokenTable.random(V, D, seed))
    state = mixed_state(toy, seed)
    free = ~torch.isinf(state.gamma)
    want = toy.logits(state).log_softmax(-1)[free]
    got = oracle_denoiser(toy, "evidence").logits(state).log_softmax(-1)[free]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


def test_the_same_oracle_without_the_head_misses_the_own_evidence():
    toy = ExactToy.markov(V, L, seed=3, table=TokenTable.random(V, D, 3))
    state = mixed_state(toy, 3)
    finite = (state.gamma > 0) & ~torch.isinf(state.gamma)
    assert finite.any()
    want = toy.logits(state).log_softmax(-1)[finite]
    got = oracle_denoiser(toy, "plain").logits(state).log_softmax(-1)[finite]
    assert (got - want).abs().max() > 0.1


def tiny(head: str, seed=0) -> DSLDenoiser:
    backbone = DiTConfig(vocab_size=11, seq_len=6, hidden=16, cond_dim=8, n_blocks=1, n_heads=2)
    den = DSLDenoiser.build(backbone, ConverterConfig(anchor_dim=5, head=head), seed=seed)
    with torch.no_grad():  # the output layer starts at zero: give the backbone something to say
        for p in den.backbone.output_layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen(seed + 1)))
    return den.eval()


def twin(den: DSLDenoiser, head: str) -> DSLDenoiser:
    other = tiny(head)
    other.load_state_dict(den.state_dict())
    return other.eval()


def test_endpoint_logits_are_bitwise_those_without_the_head():
    den = tiny("evidence")
    plain = twin(den, "plain")
    g = gen(5)
    tokens = torch.randint(0, 11, (4, 6), generator=g)
    ends = torch.where(torch.rand(4, 6, generator=g) < 0.5, 0.0, math.inf)
    state = SNRState.from_tokens(tokens, ends, den.table, g)
    assert torch.equal(den.logits(state), plain.logits(state))
    mixed = SNRState.from_tokens(tokens, torch.where(torch.rand(4, 6, generator=g) < 0.5, ends, 2.0), den.table, g)
    endpoint = (mixed.gamma == 0) | torch.isinf(mixed.gamma)
    assert endpoint.any() and not endpoint.all()
    a, b = den.logits(mixed), plain.logits(mixed)
    assert torch.equal(a[endpoint], b[endpoint])
    # At the finite positions the head adds exactly z_i . x_v.
    want = b + mixed.z @ den.table.anchors.T.float()
    torch.testing.assert_close(a[~endpoint], want[~endpoint], rtol=0, atol=1e-5)
    # forward (the trainer's entry point) gives the same logits
    torch.testing.assert_close(den(mixed.z, mixed.gamma, tokens), a, rtol=0, atol=0)


def test_the_head_works_with_the_sparse_converter_and_under_autograd():
    den = tiny("evidence")
    sparse = DSLDenoiser(den.backbone, Converter(11, attrs.evolve(den.converter.config, sparse_k=2, sparse_tol=1.0)))
    sparse.converter.load_state_dict(den.converter.state_dict())
    g = gen(6)
    tokens = torch.randint(0, 11, (3, 6), generator=g)
    state = SNRState.from_tokens(tokens, torch.full((3, 6), 30.0), den.table, g)
    a, b = den.logits(state), sparse.eval().logits(state)
    head = state.z @ den.table.anchors.T.float()
    # the sparse mixture changes h by at most max_v ||E_v|| per position, never the head's term
    assert (a - b).abs().max() < (head.abs().max() * 1e-3 + 10)
    den.train()
    den(state.z.clone().requires_grad_(), state.gamma, tokens).logsumexp(-1).sum().backward()
    assert den.converter.anchor_weight.grad is not None and den.converter.anchor_weight.grad.abs().sum() > 0


def test_the_calibrated_converter_is_the_context_free_posterior():
    conv = Converter(V, ConverterConfig(anchor_dim=D, mask_prob=0.9)).to(F64)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    conv.calibrate(prior)
    assert conv.beta.item() == 1.0
    E = torch.eye(V + 1, dtype=F64)  # then h = q
    z = 3 * torch.randn(7, D, generator=gen(0), dtype=F64)
    q = conv.mix(z, E)
    rule = (z @ conv.anchors.T + prior.log()).softmax(-1)
    torch.testing.assert_close(q[:, :V] / (1 - q[:, V:]), rule, rtol=0, atol=1e-12)
    torch.testing.assert_close(conv.mix(torch.zeros(1, D, dtype=F64), E)[0, V], torch.tensor(0.9, dtype=F64))
    conv.calibrate(prior, mask_prob=0.5)
    torch.testing.assert_close(conv.mix(torch.zeros(1, D, dtype=F64), E)[0, V], torch.tensor(0.5, dtype=F64))


@pytest.mark.parametrize("prior", [torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.5, 0.6, 0.1]), torch.ones(4) / 4,
                                   torch.tensor([math.nan, 0.5, 0.5]), [0.2, 0.3, 0.5]])
def test_bad_priors_are_refused(prior):
    conv = Converter(V, ConverterConfig(anchor_dim=D))
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    with pytest.raises(SNRPathError, match="'prior' must"):
        conv.calibrate(prior)
    assert all(torch.equal(before[k], v) for k, v in conv.state_dict().items())


def test_beta_stays_positive_under_any_update():
    conv = Converter(V, ConverterConfig(anchor_dim=D))
    with torch.no_grad():
        conv.log_beta.sub_(100.0)  # a huge step down in log space: beta is tiny, never negative
    assert conv.beta.item() > 0


def test_a_plain_checkpoint_of_the_earlier_layout_loads_with_the_same_logits(tmp_path):
    """Saved before the head existed: no 'head' in its converter section, and 'converter.beta' in its weights."""
    den = tiny("plain")
    with torch.no_grad():
        den.converter.log_beta.fill_(math.log(0.37))
    save(den, tmp_path / "old")
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["sha256"]  # written before the hashes, too
    for key in ("head", "sparse_k", "sparse_tol"):
        del config["converter"][key]
    config_path.write_text(json.dumps(config))
    weights = safetensors.torch.load_file(tmp_path / "old" / "model.safetensors")
    weights["converter.beta"] = weights.pop("converter.log_beta").exp()
    safetensors.torch.save_file(weights, tmp_path / "old" / "model.safetensors")

    old = load(tmp_path / "old")
    assert old.converter.config.head == "plain"
    assert old.converter.beta.item() == pytest.approx(0.37, rel=1e-6)
    g = gen(9)
    state = SNRState.from_tokens(torch.randint(0, 11, (2, 6), generator=g), torch.full((2, 6), 3.0), den.table, g)
    # float32: beta = exp(log(0.37)) round-trips to within an ulp, which moves logits of size ~5 by ~1e-6
    torch.testing.assert_close(old.logits(state), den.logits(state), rtol=1e-5, atol=1e-5)
    # and a resumed state dict of the earlier layout loads into a model directly
    fresh = tiny("plain", seed=1)
    fresh.load_state_dict({**{k: v for k, v in den.state_dict().items() if k != "converter.log_beta"},
                           "converter.beta": torch.tensor(0.37)})
    assert fresh.converter.beta.item() == pytest.approx(0.37, rel=1e-6)


def test_new_models_and_mdlm_imports_default_to_the_evidence_head(tmp_path):
    assert ConverterConfig().head == "evidence"
    den = tiny("evidence")
    save(den, tmp_path / "new")
    assert load(tmp_path / "new").converter.config.head == "evidence"
    with pytest.raises(SNRPathError, match=r"'head' must be one of \('evidence', 'plain'\) \(got 'soft'\)"):
        ConverterConfig(head="soft")


def test_a_non_positive_stored_beta_is_refused(tmp_path):
    den = tiny("plain")
    save(den, tmp_path / "bad")
    weights = safetensors.torch.load_file(tmp_path / "bad" / "model.safetensors")
    weights["converter.beta"] = torch.tensor(-0.5)
    del weights["converter.log_beta"]
    safetensors.torch.save_file(weights, tmp_path / "bad" / "model.safetensors")
    config = json.loads((tmp_path / "bad" / "config.json").read_text())
    del config["sha256"]  # an earlier layout: no hashes (with them, the changed weights are found damaged first)
    (tmp_path / "bad" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SNRPathError, match="converter.beta' must be positive"):
        load(tmp_path / "bad")
