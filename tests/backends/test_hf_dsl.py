"""A DSL converter in front of a masked LM (snrpaths.backends.hf_dsl), on a tiny random BERT written by ``save_random``
with the authors' DSL-LLaDA converter keys added by hand (the layout, not our writer), sharded into two safetensors
files and an index.

What is checked: the folder loads as a finite-SNR denoiser and samples ``ramp(8) >> mdm(8)``; the channel's anchors
are the stored ``noise_embed`` rows of the samplable ids; every missing key, wrong shape and bad index is an error
naming it; a folder without the keys loads exactly as before; ``q`` and ``h`` against a float64 computation; clean
positions feed exactly the one-hot row and ``gamma = 0`` the softmax of the bias; prompt positions keep the model's
word embeddings; a fresh converter on an all-clean state is the plain model bit for bit; the trainer fine-tunes the
converter (and the backbone only when asked) and its export loads back; saving round-trips, single file or sharded."""

import json
import math
import re

import attrs
import pytest
import safetensors.torch
import torch
from hypothesis import given, settings, strategies as st

from snrpaths import SNRPathError, SNRState, SNRTypeError, ShapeError, parse_path, sample
from snrpaths.backends.hf import MaskedLM, save_random
from snrpaths.backends.hf_dsl import (AUTHORS, BETA, BIAS, INDEX, NOISE, OFFSET, SINGLE, WEIGHT, DSLMaskedLM,
                                      MaskedLMConverter, save_pretrained)
from snrpaths.geometry import TokenTable
from snrpaths.objectives import DSL
from snrpaths.train import TrainConfig, checkpoint_model, train

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a cat dog sat on mat ran big small red and .".split()
D, L = 6, 6
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def authors_converter(V, H, seed=0):
    """The converter's tensors as the authors' port initialises them (random weights for the linear map, so that
    nothing below holds by accident of a word-embedding initialisation)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(V, D, generator=g)
    bias = torch.zeros(V + 1)
    bias[-1] = math.log(V)
    return {NOISE: noise / noise.norm(dim=1, keepdim=True), BIAS: bias, BETA: torch.tensor(1.7),
            WEIGHT: torch.randn(H, V + 1, generator=g) * 0.5, OFFSET: torch.randn(H, generator=g) * 0.1}


def write_authors_layout(folder, tensors):
    """The backbone's weights in shard 1, the converter's in shard 2, and the index; no ``model.safetensors``."""
    backbone = safetensors.torch.load_file(folder / SINGLE)
    (folder / SINGLE).unlink()
    safetensors.torch.save_file(backbone, folder / SHARDS[0], {"format": "pt"})
    safetensors.torch.save_file(tensors, folder / SHARDS[1], {"format": "pt"})
    weight_map = {**dict.fromkeys(backbone, SHARDS[0]), **dict.fromkeys(tensors, SHARDS[1])}
    (folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory):
    return save_random(tmp_path_factory.mktemp("plain"), WORDS, hidden=16, layers=1, heads=2, seed=1)


@pytest.fixture(scope="module")
def stored(plain_folder):
    V = len(WORDS) + 5
    return authors_converter(V, 16)


@pytest.fixture
def folder(tmp_path, plain_folder, stored):
    """A fresh copy per test, so a test may damage it."""
    for file in plain_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    return write_authors_layout(tmp_path, stored)


@pytest.fixture(scope="module")
def den(tmp_path_factory, plain_folder, stored):
    folder = tmp_path_factory.mktemp("authors")
    for file in plain_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    return MaskedLM.from_pretrained(write_authors_layout(folder, stored), seq_len=L)


def test_the_authors_layout_loads_as_a_finite_snr_denoiser_and_samples_a_hybrid(den, stored):
    assert isinstance(den, DSLMaskedLM) and den.reads_finite_snr is True
    keys = den.converter.key_anchors  # the stored rows, normalised again in float32: a few ulps from the file's
    assert torch.equal(den.table.anchors, keys[list(den.samplable)]), "the channel's anchors are the converter's"
    assert torch.allclose(keys, stored[NOISE], rtol=0, atol=1e-6)
    assert torch.allclose(den.converter.beta, stored[BETA]) and torch.equal(den.converter.bias, stored[BIAS])
    path = parse_path("ramp(8) >> mdm(8)")
    out = sample(path, den, batch=3, seed=0)
    assert out.tokens.shape == (3, L) and bool(((out.tokens >= 0) & (out.tokens < den.vocab_size)).all())
    assert torch.equal(out.tokens, sample(path, den, batch=3, seed=0).tokens)
    assert out.nfe <= 16


@pytest.mark.parametrize("key", [NOISE, BIAS, BETA, WEIGHT, OFFSET])
def test_a_missing_key_is_named(folder, key):
    tensors = safetensors.torch.load_file(folder / SHARDS[1])
    del tensors[key]
    safetensors.torch.save_file(tensors, folder / SHARDS[1])
    index = json.loads((folder / INDEX).read_text())
    del index["weight_map"][key]
    (folder / INDEX).write_text(json.dumps(index))
    with pytest.raises(SNRPathError, match=f"not {key!r}"):
        MaskedLM.from_pretrained(folder, seq_len=L)


@pytest.mark.parametrize("key, bad, expected", [(BIAS, torch.zeros(18), r"\[19\]"),
                                                (WEIGHT, torch.zeros(16, 18), r"\[16, 19\]"),
                                                (OFFSET, torch.zeros(15), r"\[16\]"),
                                                (NOISE, torch.zeros(17, D), r"\[18, d\]"),
                                                (BETA, torch.ones(2), r"\[\] \(a scalar\)")])
def test_a_wrong_shape_names_the_key_the_shapes_and_the_file(folder, key, bad, expected):
    tensors = safetensors.torch.load_file(folder / SHARDS[1])
    tensors[key] = bad
    safetensors.torch.save_file(tensors, folder / SHARDS[1])
    shape = re.escape(str(list(bad.shape)))
    with pytest.raises(ShapeError, match=f"{key!r} in .*{SHARDS[1]}.* has shape {shape}; expected {expected}"):
        MaskedLM.from_pretrained(folder, seq_len=L)


def test_a_bad_index_is_named(folder):
    (folder / INDEX).write_text("{not json")
    with pytest.raises(SNRPathError, match="model.safetensors.index.json.*is not a safetensors index"):
        MaskedLM.from_pretrained(folder, seq_len=L)
    (folder / INDEX).write_text(json.dumps({"weight_map": {NOISE: "gone.safetensors", **{k: SHARDS[1] for k in (
        BIAS, BETA, WEIGHT, OFFSET)}}}))
    with pytest.raises(SNRPathError, match="puts 'noise_embed.weight' in .*gone.safetensors.*missing"):
        DSLMaskedLM.from_pretrained(folder, seq_len=L)


def test_a_weights_file_that_is_not_safetensors_is_named(plain_folder, tmp_path):
    for file in plain_folder.iterdir():
        (tmp_path / file.name).write_bytes(file.read_bytes())
    (tmp_path / SINGLE).write_bytes(b"not safetensors")
    with pytest.raises(SNRPathError, match="cannot read the weights file .*model.safetensors"):
        MaskedLM.from_pretrained(tmp_path, seq_len=L)


def test_bad_values_are_refused(folder, stored):
    tensors = dict(stored)
    tensors[NOISE] = stored[NOISE] * 1.5
    write_bad = lambda t: safetensors.torch.save_file(t, folder / SHARDS[1])  # noqa: E731
    write_bad(tensors)
    with pytest.raises(SNRPathError, match="rows must be unit vectors .*norm 1.5"):
        MaskedLM.from_pretrained(folder, seq_len=L)
    write_bad({**stored, BETA: torch.tensor(-1.0)})
    with pytest.raises(SNRPathError, match="'converter.beta' must be positive"):
        MaskedLM.from_pretrained(folder, seq_len=L)
    with pytest.raises(SNRPathError, match="learn_anchors=False"):
        MaskedLMConverter(4, 3, attrs.evolve(AUTHORS, learn_anchors=True))


def test_without_the_keys_a_folder_loads_endpoint_only_exactly_as_before(plain_folder):
    import transformers

    den = MaskedLM.from_pretrained(plain_folder, seq_len=L)
    assert type(den) is MaskedLM and den.reads_finite_snr is False
    model = transformers.AutoModelForMaskedLM.from_pretrained(plain_folder, local_files_only=True)
    direct = MaskedLM(model, mask_id=den.mask_id, seq_len=L, prefix=den.prefix, suffix=den.suffix,
                      tokenizer=den.tokenizer)
    assert torch.equal(den.table.anchors, TokenTable.random(den.vocab_size, 32, 0).anchors)
    state = SNRState.from_prompt(torch.tensor([[0, -1, 5, -1, -1, 2]]), den.table)
    assert torch.equal(den.logits(state), direct.logits(state))


def reference(den, z, gamma, ids):
    """``h`` ``(n, H)`` in float64 from the module docstring's formula: ``q = softmax(beta <z, K> + b)`` (one-hot
    where clean, ``z = 0`` where gamma is 0), ``h = W q + c``."""
    c = den.converter
    K = torch.cat([c.key_anchors.double(), torch.zeros(1, D, dtype=torch.float64)])
    logits = float(c.beta) * (z.double() * (gamma > 0).unsqueeze(-1)) @ K.T + c.bias.double()
    q = torch.where(torch.isinf(gamma).unsqueeze(-1), torch.nn.functional.one_hot(ids, c.vocab_size + 1).double(),
                    torch.softmax(logits, -1))
    W, b = c.backbone_embedding.weight.double(), c.backbone_embedding.bias.double()
    return q @ W.T + b, q


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), log_gamma=st.floats(-3.0, 3.5), sparse=st.booleans())
def test_q_and_h_match_a_float64_computation(den, seed, log_gamma, sparse):
    """Error budget: the float32 logits carry ~6e-8 of their size (|beta z . K| <= beta (gamma + 4 sqrt(gamma d)) <
    150 here), ~1e-5, so q is off by ~1e-5 relatively and h = sum_v q_v (W_v + c) by < 2e-5 max|W| + 1e-6 (the
    product's own rounding over V + 1 = 19 terms); the sparse gather adds at most sparse_tol max_v ||W_v + c||
    (converter.py). Measured: at most 3e-7 dense."""
    g = torch.Generator().manual_seed(seed)
    B, V = 3, den.converter.vocab_size
    gamma = torch.full((B, L), math.exp(log_gamma))
    gamma[0, :2] = 0.0
    gamma[1, 3:] = math.inf
    ids = torch.randint(0, V, (B, L), generator=g)
    z = torch.where((gamma > 0) & ~torch.isinf(gamma), 1.0, 0.0).unsqueeze(-1) * (
        gamma.unsqueeze(-1).clamp(max=1e9) * den.converter.key_anchors[ids]
        + gamma.clamp(max=1e9).sqrt().unsqueeze(-1) * torch.randn(B, L, D, generator=g))
    converter = den.converter
    if sparse:
        converter = MaskedLMConverter(V, 16, attrs.evolve(converter.config, sparse_k=4, sparse_tol=1e-3))
        converter.load_state_dict(den.converter.state_dict())
        converter.samplable = den.converter.samplable
    with torch.no_grad():
        h = converter(z, gamma, ids).h.double()
        want, q = reference(den, z, gamma, ids)
        W, c = converter.backbone_embedding.weight.double(), converter.backbone_embedding.bias.double()
        at_zero = torch.softmax(converter.bias.double(), -1) @ W.T + c
    rows = (W.T + c).norm(dim=1).max()
    tol = 2e-5 * float(W.abs().max()) + 1e-6 + (1e-3 * float(rows) if sparse else 0.0)
    assert float((h - want).abs().max()) <= tol
    assert torch.allclose(h[0, :2], at_zero.expand(2, -1), atol=tol), "gamma = 0 is fed the softmax of the bias"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(0.0, 1e6))
def test_clean_positions_feed_exactly_the_one_hot_row(den, seed, scale):
    """Whatever ``z`` holds there and whatever the other positions are, a clean position gets ``W e_s + c`` bit for
    bit (the Linear applied to the one-hot of its token); it is the limit of a finite position as gamma grows."""
    g = torch.Generator().manual_seed(seed)
    B, V = 2, den.converter.vocab_size
    gamma = torch.where(torch.rand(B, L, generator=g) < 0.5, math.inf, torch.rand(B, L, generator=g) * 10)
    ids = torch.randint(0, V, (B, L), generator=g)
    z = torch.randn(B, L, D, generator=g) * scale
    with torch.no_grad():
        h = den.converter(z, gamma, ids).h
        onehot = torch.nn.functional.one_hot(ids, V + 1).float()
        row = den.converter.backbone_embedding(onehot)
    clean = torch.isinf(gamma)
    assert torch.equal(h[clean], row[clean])
    far = den.converter(1e4 * den.converter.key_anchors[ids], torch.full((B, L), 1e4), ids).h
    assert torch.allclose(far, row, atol=1e-4), "the one-hot row is the gamma -> inf limit"


def test_prompt_positions_keep_the_models_word_embeddings(den):
    """With a prompt, fixed positions are fed ``words(s)``, the others the converter: the logits are the model's on
    exactly those embeddings; the same tokens clean but not fixed are fed the converter's one-hot rows instead."""
    prompt = torch.tensor([[3, -1, -1, 7, -1, -1]])
    state = SNRState.from_prompt(prompt, den.table)
    ids = torch.tensor([[den.samplable[3], 0, 0, den.samplable[7], 0, 0]])
    words = den.model.get_input_embeddings()
    with torch.no_grad():
        h = den.converter(state.z, state.gamma, ids).h
        h = torch.where(state.fixed.unsqueeze(-1), words(ids), h)
        framed = torch.cat([words(torch.tensor([den.prefix])), h, words(torch.tensor([den.suffix]))], 1)
        own = den.model(inputs_embeds=framed).logits[:, 1:1 + L][..., list(den.samplable)]
    assert torch.equal(den.logits(state), own)
    unfixed = attrs.evolve(state, fixed=torch.zeros_like(state.fixed))
    assert not torch.equal(den.logits(unfixed), own)


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_a_fresh_converter_on_an_all_clean_state_is_the_plain_model(plain_folder, tmp_path, arch):
    """A fresh converter's rows are the model's word embeddings, so where every position is clean the logits are the
    plain MaskedLM's bit for bit. At [MASK] positions they are not (gamma = 0 is fed the softmax of the bias)."""
    if arch != "bert":
        plain_folder = save_random(tmp_path, WORDS, arch=arch, hidden=16, layers=1, heads=2, seed=1)
    den = DSLMaskedLM.from_pretrained(plain_folder, seq_len=L, config=attrs.evolve(AUTHORS, anchor_dim=D))
    plain = MaskedLM.from_pretrained(plain_folder, seq_len=L)
    assert type(den) is DSLMaskedLM
    tokens = torch.tensor([[0, 4, 2, 9, 1, 3], [5, 5, 6, 0, 12, 8]])
    clean = SNRState.from_tokens(tokens, torch.full((2, L), math.inf), den.table, torch.Generator())
    assert torch.equal(den.logits(clean), plain.logits(attrs.evolve(clean, z=torch.zeros(2, L, 32))))
    masked = SNRState.masked(2, L, den.table)
    assert not torch.allclose(den.logits(masked), plain.logits(SNRState.masked(2, L, plain.table)))


def test_bad_inputs_are_refused_before_any_call(den, plain_folder, folder):
    state = SNRState.masked(1, L, den.table)
    with pytest.raises(ShapeError, match="'z' and 'tokens' must have shapes"):
        den.logits(attrs.evolve(state, z=torch.zeros(1, L, D + 1)))
    with pytest.raises(SNRPathError, match="outside the sampler's"):
        den(torch.zeros(1, L, D), torch.full((1, L), math.inf), torch.full((1, L), den.vocab_size))
    with pytest.raises(SNRPathError, match="holds a converter; 'config' is for a fresh one"):
        DSLMaskedLM.from_pretrained(folder, seq_len=L, config=AUTHORS)
    with pytest.raises(SNRTypeError, match="MaskedLMConverter"):
        DSLMaskedLM(den.model, den.converter.backbone_embedding, mask_id=den.mask_id, seq_len=L)
    with pytest.raises(ShapeError, match="the converter maps 5 ids"):
        DSLMaskedLM(den.model, MaskedLMConverter(5, 16, attrs.evolve(AUTHORS, anchor_dim=D)), mask_id=den.mask_id,
                    seq_len=L)


@pytest.mark.parametrize("shard", [None, 2000])
def test_saving_round_trips_in_the_authors_layout(den, tmp_path, shard):
    save_pretrained(den, tmp_path, max_shard_size=shard)
    assert (tmp_path / (SINGLE if shard is None else INDEX)).is_file()
    back = MaskedLM.from_pretrained(tmp_path, seq_len=L)
    for name, tensor in den.state_dict().items():
        assert torch.allclose(tensor, back.state_dict()[name], rtol=1e-6, atol=0), name
    state = SNRState.from_tokens(torch.zeros(2, L, dtype=torch.int64), torch.full((2, L), 2.0), den.table,
                                 torch.Generator().manual_seed(0))
    assert torch.allclose(den.logits(state), back.logits(state), atol=1e-5)


@pytest.mark.parametrize("train_backbone", [False, True])
def test_the_trainer_fine_tunes_the_converter_and_the_backbone_only_when_asked(plain_folder, tmp_path,
                                                                               train_backbone):
    den = DSLMaskedLM.from_pretrained(plain_folder, seq_len=L, train_backbone=train_backbone,
                                      config=attrs.evolve(AUTHORS, anchor_dim=D, head="evidence"))
    before = {k: v.clone() for k, v in den.state_dict().items()}
    stream = torch.randint(0, den.vocab_size, (400,), generator=torch.Generator().manual_seed(0))
    config = TrainConfig(steps=3, batch=4, lr=1e-2, warmup=0, eval_every=3, eval_rows=4, save_every=3, seed=0)
    result = train(den, DSL(), stream, stream[:100], config, tmp_path, progress=False)
    after = result.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert {"converter.log_beta", "converter.bias", "converter.backbone_embedding.weight"} <= moved
    assert "converter.anchor_weight" not in moved, "noise_embed is frozen"
    assert any(k.startswith("model.") for k in moved) == train_backbone
    loaded = MaskedLM.from_pretrained(tmp_path / "model", seq_len=L)
    assert isinstance(loaded, DSLMaskedLM) and loaded.converter.config.head == "evidence"
    for name, tensor in after.items():
        assert torch.allclose(tensor, loaded.state_dict()[name], rtol=1e-6, atol=0), name
    rebuilt = checkpoint_model(tmp_path, DSLMaskedLM)
    rebuilt.load_state_dict(after)
    assert rebuilt.train_backbone == train_backbone and rebuilt.samplable == den.samplable


def test_logits_have_no_dropout_in_training_mode_and_leave_the_mode_as_it_was(den):
    state = SNRState.from_tokens(torch.zeros(2, L, dtype=torch.int64), torch.full((2, L), 3.0), den.table,
                                 torch.Generator().manual_seed(0))
    want = den.logits(state)
    den.train()
    try:
        assert den.model.config.hidden_dropout_prob > 0 and torch.equal(den.logits(state), want)
        assert den.training and den.model.training
    finally:
        den.eval()


def test_stream_ids_keep_the_samplable_tokens_and_count_the_others(den):
    from snrpaths.backends.hf_dsl import stream_ids

    ids, left_out = stream_ids(den, "the cat zebra sat [SEP] on")
    assert den.decode(ids) == ["the cat sat on"] and left_out == 2  # zebra is [UNK]; [SEP] is special
    with pytest.raises(SNRTypeError, match="'text' must be a string"):
        stream_ids(den, ["the"])
