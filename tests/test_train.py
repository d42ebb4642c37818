"""The trainer: exact resume after an interruption, EMA swapping, schedules, validation and settings checks."""

import json
import math

import attrs
import pytest
import torch

from snrpaths import SNRPathError, SNRTypeError
from snrpaths.objectives import DSL, MDLM, Mixture, PathStates
from snrpaths.data import fixed_windows
from snrpaths.train import EMA, TrainConfig, evaluate, param_groups, train

V, L = 7, 12
STREAM = torch.randint(0, V, (4000,), generator=torch.Generator().manual_seed(0))
CONFIG = TrainConfig(steps=6, batch=8, lr=3e-3, warmup=2, eval_every=3, eval_rows=16, save_every=2, seed=3)


class Interrupt(Exception):
    pass


def run(make_denoiser, out, config=CONFIG, objective=DSL(), **kwargs):
    model = make_denoiser(V, L, dropout=0.1)  # dropout on: its generator must be restored on resume too
    return train(model, objective, STREAM, STREAM[:600], config, out, progress=False, **kwargs)


def stop_at(step):
    def callback(done, metrics):
        if done == step:
            raise Interrupt  # like Ctrl-C after step 3: the last checkpoint is step 2, step 3 is lost
    return callback


@pytest.mark.parametrize("objective", [MDLM(), DSL(per_token=True), PathStates("hybrid(2, 2)"),
                                       Mixture((DSL(), 1), (PathStates("ramp(2, lag=0.5) >> mdm(2)"), 1))],
                         ids=["mdlm", "dsl", "path-states", "mixture"])
def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(make_denoiser, tmp_path, objective):
    straight = run(make_denoiser, tmp_path / "a", objective=objective)
    with pytest.raises(Interrupt):
        run(make_denoiser, tmp_path / "b", objective=objective, callback=stop_at(3))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = run(make_denoiser, tmp_path / "b", objective=objective)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert straight.valid_bpc == resumed.valid_bpc


def assert_same_weights(a, b):
    """The checkpoints of the run folders ``a`` and ``b`` hold the same weights and EMA weights, bit for bit."""
    a, b = (torch.load(folder / "checkpoint.pt", weights_only=True) for folder in (a, b))
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"


@pytest.mark.parametrize("refresh", [1, 2])
def test_an_on_policy_run_resumes_to_the_same_weights(make_taught, tmp_path, refresh):
    """The same with the model rolling out its own states (PathStates on-policy, an exact HMM as teacher): the run
    killed after step 3 resumes from its step-2 checkpoint, takes its policy copy there, and ends where the
    uninterrupted run ends."""
    hmm, _ = make_taught(V, L)
    stream = hmm.sample_run(3000, torch.Generator().manual_seed(0))

    def run_on_policy(out, **kwargs):
        objective = PathStates("hybrid(2, 2)", policy="model", teacher=hmm, refresh=refresh, rollouts=4)
        return train(make_taught(V, L, dropout=0.1)[1], objective, stream, stream[:600], CONFIG, out, progress=False,
                     **kwargs)

    straight = run_on_policy(tmp_path / "a")
    with pytest.raises(Interrupt):
        run_on_policy(tmp_path / "b", callback=stop_at(3))
    resumed = run_on_policy(tmp_path / "b")
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert straight.valid_bpc == resumed.valid_bpc


def test_resuming_with_other_settings_is_refused(make_denoiser, tmp_path):
    run(make_denoiser, tmp_path, config=TrainConfig(steps=2, batch=8, eval_every=2, eval_rows=8, save_every=2))
    with pytest.raises(SNRPathError, match="other settings.*train.lr"):
        run(make_denoiser, tmp_path, config=TrainConfig(steps=4, batch=8, lr=0.1, eval_every=2, eval_rows=8))


def test_run_folder_holds_a_loadable_ema_model_and_a_log(make_denoiser, tmp_path):
    from snrpaths.backends import load

    result = run(make_denoiser, tmp_path)
    loaded = load(tmp_path / "model")
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [3, 6]
    assert all(line["tokens_per_s"] > 0 and line["valid_bpc_se"] > 0 for line in lines)


def test_ema_is_swapped_in_and_back(make_denoiser):
    model = make_denoiser(V, L)
    ema = EMA(model, decay=0.5)  # the first update's warm-up decay is min(0.5, 1/10) = 0.1
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # shadow = 0.1 live + 0.9 (live + 1)
    with pytest.raises(RuntimeError), ema.swapped(model):
        name = "backbone.output_layer.linear.bias"
        torch.testing.assert_close(model.state_dict()[name], live[name] + 0.9)
        raise RuntimeError  # the live weights come back even when the block fails
    torch.testing.assert_close(model.state_dict()[name], live[name] + 1.0)


def test_a_fresh_model_validates_at_exactly_log2_v_bits(make_denoiser):
    """A zero-initialised head predicts uniformly: every ROAR term is ln V, so bpc = log2 V with no spread."""
    model = make_denoiser(V, L)
    bpc, se = evaluate(model, None, fixed_windows(STREAM, 40, L))
    assert bpc == pytest.approx(math.log2(V), abs=1e-6) and se < 1e-6


def test_learning_rate_schedule_and_weight_decay_groups(make_denoiser):
    c = TrainConfig(steps=110, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert c.lr_at(0) == pytest.approx(0.1) and c.lr_at(9) == pytest.approx(1.0)
    assert c.lr_at(60) == pytest.approx(0.55) and c.lr_at(110) == pytest.approx(0.1)
    model = make_denoiser(V, L)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, plain, gate = param_groups(model, 0.01, converter_lr_mult=7.0)
    assert "converter.anchor_weight" in {names[id(p)] for p in plain["params"]}
    assert all(p.ndim >= 2 for p in decayed["params"]) and decayed["weight_decay"] == 0.01
    # the converter's scalars have their own learning rate, and no decay
    assert {names[id(p)] for p in gate["params"]} == {"converter.log_beta", "converter.bias"}
    assert (gate["lr_mult"], gate["weight_decay"], plain["lr_mult"], decayed["lr_mult"]) == (7.0, 0.0, 1.0, 1.0)
    assert sum(len(g["params"]) for g in (decayed, plain, gate)) == len(list(model.parameters()))


def test_a_dsl_run_starts_from_the_calibrated_converter(make_denoiser, tmp_path):
    """One step at lr 0 leaves the calibration as it was made: beta = 1, b_v = log p(v) of the training stream."""
    from snrpaths.train import unigram_prior

    config = TrainConfig(steps=1, batch=8, lr=0.0, warmup=0, eval_every=1, eval_rows=8, save_every=1, ema=0.0)
    model = run(make_denoiser, tmp_path / "dsl", config=config).model
    prior = unigram_prior(STREAM, V)
    assert model.converter.beta.item() == pytest.approx(1.0)
    torch.testing.assert_close(model.converter.bias[:V].double(), prior.log(), rtol=0, atol=1e-6)
    kept = run(make_denoiser, tmp_path / "kept", config=attrs.evolve(config, calibrate=False)).model
    assert kept.converter.beta.item() == pytest.approx(make_denoiser(V, L).converter.beta.item())
    mdlm = run(make_denoiser, tmp_path / "mdlm", config=config, objective=MDLM()).model
    assert mdlm.converter.beta.item() == pytest.approx(make_denoiser(V, L).converter.beta.item())


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=-1.0), dict(ema=1.5), dict(batch=2.5)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(SNRPathError):
        TrainConfig(**bad)


def test_a_model_that_is_not_trainable_is_refused_before_anything_runs(make_denoiser, tmp_path, monkeypatch):
    from snrpaths.backends import ExactToy
    from snrpaths.backends.converter import Converter

    with pytest.raises(SNRTypeError, match=r"'model' must implement the Trainable protocol .*; ExactToy lacks __call__, "
                                           "converter, describe, eval, from_description, load_state_dict"):
        train(ExactToy.markov(3, 4), MDLM(), STREAM, STREAM, CONFIG, tmp_path / "toy", progress=False)
    with pytest.raises(SNRTypeError, match=r"Linear lacks converter, describe, "
                                                        "from_description, logits, save, seq_len, table, vocab_size$"):
        train(torch.nn.Linear(2, 2), MDLM(), STREAM, STREAM, CONFIG, tmp_path / "linear", progress=False)
    model = make_denoiser(V, L)
    monkeypatch.delattr(Converter, "calibrate")
    with pytest.raises(SNRTypeError, match="'model.converter' must implement the EvidenceConverter protocol .*; "
                                           "Converter lacks calibrate$"):
        train(model, DSL(), STREAM, STREAM, CONFIG, tmp_path / "uncalibrated", progress=False)
    assert not list(tmp_path.iterdir())


def test_tokens_outside_the_vocabulary_are_refused(make_denoiser, tmp_path):
    model = make_denoiser(V, L)
    with pytest.raises(SNRPathError, match="tokenizer does not match"):
        train(model, MDLM(), STREAM + V, STREAM, CONFIG, tmp_path, progress=False)


def test_each_process_takes_its_own_equal_share_of_the_global_batch():
    from snrpaths.train import Processes

    shares = [torch.arange(8)[Processes(rank=r, world=2).rows(8)].tolist() for r in range(2)]
    assert shares == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(SNRPathError, match="divisible"):
        Processes(rank=0, world=3).rows(8)


def misaligned(model):
    """``model`` with every parameter moved 4 bytes off the allocator's alignment, as tensors read from a file are."""
    with torch.no_grad():
        for p in model.parameters():
            moved = torch.empty(p.numel() + 1, dtype=p.dtype)[1:].view(p.shape)
            moved.copy_(p)
            p.data = moved
    return model


def test_a_run_from_weights_at_odd_addresses_resumes_to_the_same_weights(make_denoiser, tmp_path):
    """A fine-tune starts from weights loaded from a file, where they sit at the file's offsets; its resumption
    builds the model afresh. CPU matrix kernels may round differently at other alignments, so the trainer moves the
    weights into fresh memory first: both runs end with the same weights, bit for bit."""
    config = attrs.evolve(CONFIG, steps=4, eval_every=4)
    straight = train(misaligned(make_denoiser(V, 16, dropout=0.1, hidden=64)), MDLM(), STREAM, STREAM[:600], config,
                     tmp_path / "a", progress=False)
    with pytest.raises(Interrupt):
        train(misaligned(make_denoiser(V, 16, dropout=0.1, hidden=64)), MDLM(), STREAM, STREAM[:600], config,
              tmp_path / "b", progress=False, callback=stop_at(3))
    resumed = train(make_denoiser(V, 16, dropout=0.1, hidden=64), MDLM(), STREAM, STREAM[:600], config,
                    tmp_path / "b", progress=False)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_an_objective_that_cannot_train_the_model_is_refused_before_anything_runs(make_denoiser, tmp_path):
    model = make_denoiser(V, L)
    refused = r"'objective' must be one of snrpaths.objectives.OBJECTIVES .* \(got 'dsl'\)"
    with pytest.raises(SNRTypeError, match=refused):
        train(model, "dsl", STREAM, STREAM, CONFIG, tmp_path / "name", progress=False)
    with pytest.raises(SNRPathError, match="positions \\[12\\] are out of range for seq_len=12"):
        train(model, PathStates("on((12,), ar()) | on(slice(0, 12), mdm(2))"), STREAM, STREAM, CONFIG,
              tmp_path / "path", progress=False)
    assert not list(tmp_path.iterdir())
