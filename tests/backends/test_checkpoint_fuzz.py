"""Loaders check before they allocate: malformed checkpoints of every form (truncated or corrupted safetensors, mutated
config values, malformed Lightning and pytorch_model.bin state dicts) raise the library's errors only, naming the file
and the entry, and no module larger than the limit is ever built."""

import json
import tempfile
import tracemalloc
from pathlib import Path

import attrs
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snrpaths import SNRPathError
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, load, save
from snrpaths.backends import checkpoint as checkpoint_module
from snrpaths.backends.checkpoint import MAX_BYTES, parameter_count
from snrpaths.errors import SNRTypeError

V, L = 11, 8
TINY = DiTConfig(vocab_size=V, seq_len=L, hidden=16, cond_dim=8, n_blocks=1, n_heads=2, freq_dim=16)
LIMIT = 2**20  # bytes: the tiny model holds 20 kB


def tiny():
    return DSLDenoiser.build(TINY, ConverterConfig(anchor_dim=4), tokenizer={"kind": "char", "chars": "abcdefghijk"})


@pytest.fixture
def spies(monkeypatch):
    """Every DiT and Converter the loader builds, checked against LIMIT as it is built (meta or not)."""
    built = []
    real_dit, real_converter = checkpoint_module.DiT, checkpoint_module.Converter

    def dit(config):
        assert 4 * parameter_count(config) <= LIMIT, config
        built.append(config)
        return real_dit(config)

    def converter(vocab_size, config=ConverterConfig(), seed=0):
        assert 4 * vocab_size * config.anchor_dim <= LIMIT, (vocab_size, config)
        built.append(config)
        return real_converter(vocab_size, config, seed)

    monkeypatch.setattr(checkpoint_module, "DiT", dit)
    monkeypatch.setattr(checkpoint_module, "Converter", converter)
    return built


def unhashed_config(folder):
    """The config of a saved folder without its hashes, as another tool (or a hand edit) would write it: the tests of
    the loader's own checks edit it and write it back."""
    config = json.loads((folder / "config.json").read_text())
    del config["sha256"]
    return config


def strip_hashes(folder):
    (folder / "config.json").write_text(json.dumps(unhashed_config(folder)))
    return folder


def only_library_errors(path, **kwargs):
    """Load; a returned model is fine, and so is the library's error; anything else escapes and fails the test."""
    try:
        load(path, max_bytes=LIMIT, **kwargs)
    except SNRPathError as e:
        assert str(e)


@pytest.mark.parametrize("sizes", [dict(), dict(mlp_ratio=2, freq_dim=15, n_blocks=3), dict(hidden=24, n_heads=3)])
@pytest.mark.parametrize("learn", [True, False])
def test_parameter_count_is_the_state_dict_size(sizes, learn):
    config = attrs.evolve(TINY, **sizes)
    den = DSLDenoiser.build(config, ConverterConfig(anchor_dim=5, learn_anchors=learn))
    assert parameter_count(config, 5) == sum(t.numel() for t in den.state_dict().values())
    assert parameter_count(config) == sum(t.numel() for t in den.backbone.state_dict().values())


def test_a_small_file_declaring_a_huge_model_is_refused_before_anything_is_built(tmp_path, spies):
    folder = save(tiny(), tmp_path / "ck")
    config = unhashed_config(folder)
    config["backbone"].update(vocab_size=10**7, hidden=10**4, n_heads=100)  # 4 x 10^11 bytes of embeddings alone
    (folder / "config.json").write_text(json.dumps(config))
    tracemalloc.start()
    try:
        with pytest.raises(SNRPathError, match=r"config.json describes a model of .* above the limit of 8 GiB; .*"
                                               r"max_bytes"):
            load(folder)
        assert tracemalloc.get_traced_memory()[1] < 2**24
    finally:
        tracemalloc.stop()
    assert spies == []  # not even on the meta device
    assert MAX_BYTES == 8 * 2**30
    config["backbone"].update(vocab_size=V, hidden=16, n_heads=2, n_blocks=10**6)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SNRPathError, match="declares 1000000 blocks; snrpaths builds at most 1024"):
        load(folder, max_bytes=2**62)
    assert spies == []


def test_raising_the_limit_lets_the_weights_check_speak(tmp_path, monkeypatch):
    """With the limit raised, the same config builds on the meta device only (nothing allocated) and the header check
    refuses the weights before any is read."""
    folder = save(tiny(), tmp_path / "ck")
    config = unhashed_config(folder)
    config["backbone"].update(vocab_size=10**6, hidden=64, n_heads=2)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SNRPathError, match=r"(?s)model.safetensors does not fit .* backbone.vocab_embed.embedding is "
                                           r"\[12, 16\], expected \[1000001, 64\]"):
        load(folder, max_bytes=2**40)


@pytest.mark.parametrize("section, field, value, error, message", [
    ("backbone", "hidden", "128", SNRTypeError, r"'backbone': 'hidden' must be an integer \(got '128'\)"),
    ("backbone", "n_heads", 2.0, SNRTypeError, r"'backbone': 'n_heads' must be an integer \(got 2.0\)"),
    ("backbone", "n_heads", 0, SNRPathError, r"'backbone': 'n_heads' must be a positive integer \(got 0\)"),
    ("backbone", "hidden", -16, SNRPathError, r"'hidden' must be a positive integer \(got -16\)"),
    ("backbone", "dropout", "0.1", SNRTypeError, r"'dropout' must be a number"),
    ("backbone", "dropout", True, SNRTypeError, r"'dropout' must be a number \(got True\)"),
    ("backbone", "rope_base", float("inf"), SNRPathError, r"'rope_base' must be a finite number"),
    ("backbone", "rope_base", float("nan"), SNRPathError, r"'rope_base' must be a finite number"),
    ("backbone", "seq_len", None, SNRTypeError, r"'seq_len' must be an integer \(got None\)"),
    ("converter", "learn_anchors", "yes", SNRTypeError, r"'converter': 'learn_anchors' must be true or false"),
    ("converter", "anchor_dim", [4], SNRTypeError, r"'anchor_dim' must be an integer \(got \[4\]\)"),
    ("converter", "head", 1, SNRTypeError, r"'head' must be a string"),
    ("converter", "mask_prob", 1.5, SNRPathError, r"'mask_prob' must lie in \(0.0, 1.0\)"),
    ("backbone", None, [1, 2], SNRTypeError, r"config.json 'backbone' must be a JSON object \(got list\)"),
    ("tokenizer", None, "chars", SNRTypeError, r"'tokenizer' must be a JSON object or null"),
    ("version", None, True, SNRPathError, r"format version True"),
])
def test_config_values_are_type_and_range_checked_naming_file_and_entry(tmp_path, spies, section, field, value,
                                                                         error, message):
    folder = save(tiny(), tmp_path / "ck")
    config = unhashed_config(folder)
    if field is None:
        config[section] = value
    else:
        config[section][field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(error, match=message) as info:
        load(folder)
    assert str(folder / "config.json") in str(info.value)
    assert spies == []


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"format": "snrpaths.dsl", "version": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"format": "snrpaths.dsl", "vers', "not valid JSON"),
    (b"\xff\xfe\x00{".decode("latin-1"), "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    (" " * (2**20 + 1), "1,048,577 bytes"),
])
def test_malformed_json_is_the_library_error(tmp_path, text, message):
    folder = save(tiny(), tmp_path / "ck")
    (folder / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(SNRPathError, match=message):
        load(folder)


def test_mdlm_config_values_of_the_wrong_type(tmp_path, spies):
    den = tiny()
    folder = tmp_path / "m"
    folder.mkdir()
    fields = dict(model_type="mdlm", vocab_size=str(V + 1), model_length=L, hidden_dim=16, cond_dim=8, n_blocks=1,
                  n_heads=2)
    (folder / "config.json").write_text(json.dumps(fields))
    safetensors.torch.save_file({k: v.contiguous() for k, v in den.state_dict().items() if k.startswith("backbone.")},
                                folder / "model.safetensors")
    with pytest.raises(SNRTypeError, match=r"config.json: 'vocab_size' must be an integer \(got '12'\)"):
        load(folder)
    (folder / "config.json").write_text(json.dumps({**fields, "vocab_size": V + 1, "n_heads": 0}))
    with pytest.raises(SNRPathError, match="'n_heads' must be a positive integer"):
        load(folder)
    (folder / "config.json").write_text(json.dumps({**fields, "vocab_size": V + 1, "hidden_dim": 10**5}))
    with pytest.raises(SNRPathError, match="above the limit"):
        load(folder)
    assert spies == []


def test_a_truncated_safetensors_file_names_the_file(tmp_path):
    folder = strip_hashes(save(tiny(), tmp_path / "ck"))
    data = (folder / "model.safetensors").read_bytes()
    for n in (0, 7, 100, len(data) - 1):
        (folder / "model.safetensors").write_bytes(data[:n])
        with pytest.raises(SNRPathError, match=r"model.safetensors is not a readable safetensors file"):
            load(folder)


def test_a_safetensors_entry_of_the_wrong_dtype_is_refused_before_it_is_read(tmp_path):
    den = tiny()
    folder = strip_hashes(save(den, tmp_path / "ck"))
    tensors = {k: v.contiguous() for k, v in den.state_dict().items()}
    tensors["converter.bias"] = tensors["converter.bias"].long()
    tensors["extra"] = torch.zeros(1)
    safetensors.torch.save_file(tensors, folder / "model.safetensors")
    with pytest.raises(SNRPathError, match=r"unexpected \(1\): extra\n.*converter.bias is I64 \[12\], expected "
                                           r"floating \[12\]"):
        load(folder)


def lightning_state(den):
    return {**{k: v for k, v in den.state_dict().items() if k.startswith("backbone.")}, "noise.empty": torch.zeros(())}


@pytest.mark.parametrize("change, error, message", [
    (lambda s: s.update({"backbone.blocks.0.norm1.weight": [1.0] * 16}), SNRTypeError,
     r"not tensors: backbone.blocks.0.norm1.weight \(list\)"),
    (lambda s: s.update({"backbone.vocab_embed.embedding": None}), SNRTypeError,
     r"backbone.vocab_embed.embedding \(NoneType\)"),
    (lambda s: s.update({7: torch.zeros(1)}), SNRTypeError, r"keys that are not strings: \[7\]"),
    (lambda s: s.update({("backbone", 1): torch.zeros(1)}), SNRTypeError, "keys that are not strings"),
    (lambda s: s.update({"backbone.rotary_emb.inv_freq": torch.zeros(0)}), SNRPathError,
     r"backbone.rotary_emb.inv_freq must be a non-empty 1-D tensor to size the model \(got \[0\]\)"),
    (lambda s: s.update({"backbone.vocab_embed.embedding": torch.zeros(12, 0)}), SNRPathError,
     r"backbone.vocab_embed.embedding must be a non-empty 2-D tensor"),
    (lambda s: s.update({"backbone.vocab_embed.embedding": torch.zeros(12, 16, 1)}), SNRPathError,
     r"backbone.vocab_embed.embedding must be a non-empty 2-D tensor"),
    (lambda s: s.update({"backbone.vocab_embed.embedding": torch.zeros(1, 16)}), SNRPathError,
     r"'vocab_size' must be a positive integer \(got 0\)"),
    (lambda s: s.update({"backbone.blocks.999999.norm1.weight": torch.zeros(16)}), SNRPathError,
     "declares 1000000 blocks"),
    (lambda s: s.update({"backbone.vocab_embed.embedding": torch.zeros(10**6, 16)}), SNRPathError,
     "above the limit"),
    (lambda s: s.update({"backbone.blocks.0.attn_out.weight": torch.zeros(16, 16, dtype=torch.int64)}),
     SNRPathError, r"attn_out.weight is int64 \[16, 16\], expected floating \[16, 16\]"),
])
def test_malformed_lightning_state_dicts(tmp_path, spies, change, error, message):
    state = lightning_state(tiny())
    change(state)
    torch.save({"state_dict": state}, tmp_path / "a.ckpt")
    with pytest.raises(error, match=message) as info:
        load(tmp_path / "a.ckpt", seq_len=L, max_bytes=LIMIT)
    assert "a.ckpt" in str(info.value)


def test_malformed_lightning_files(tmp_path):
    torch.save({"state_dict": lightning_state(tiny())}, tmp_path / "a.ckpt")
    data = (tmp_path / "a.ckpt").read_bytes()
    for n in (0, 10, len(data) // 2, len(data) - 10):
        (tmp_path / "t.ckpt").write_bytes(data[:n])
        with pytest.raises(SNRPathError, match="cannot load .*t.ckpt safely"):
            load(tmp_path / "t.ckpt", seq_len=L)
    for bad in ([1, 2], {"state_dict": [torch.zeros(1)]}, {"state_dict": {}}):
        torch.save(bad, tmp_path / "b.ckpt")
        with pytest.raises(SNRPathError, match="b.ckpt"):
            load(tmp_path / "b.ckpt", seq_len=L)


# -- fuzzing ------------------------------------------------------------------------------------------------------

#: ``spies`` is not reset between examples, and need not be: it checks each build as it happens.
SPIES_OK = [HealthCheck.function_scoped_fixture]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from([0, -1, 1, 2, 3, 10**4, 10**7, 2**31, 2**63, 0.5, 1e-300, 1e300]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    den = tiny()
    save(den, root / "ours")
    torch.save({"state_dict": lightning_state(den), "ema": {"shadow_params": list(den.backbone.parameters())}},
               root / "a.ckpt")
    return root, den


def corrupted(artefacts, write):
    """A copy of our folder in a fresh temporary folder, changed by ``write(folder)``."""
    root, _ = artefacts
    tmp = Path(tempfile.mkdtemp(dir=root))
    folder = tmp / "ck"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((root / "ours" / name).read_bytes())
    strip_hashes(folder)  # the loader's own checks, not the hash, must meet the damage
    write(folder)
    return folder


@settings(max_examples=40, deadline=None, suppress_health_check=SPIES_OK)
@given(data=st.data())
def test_fuzz_safetensors_truncations_and_byte_flips(artefacts, spies, data):
    raw = (artefacts[0] / "ours" / "model.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(raw[:8], "little")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:  # mostly in the header, where a flipped byte changes names, shapes, dtypes or offsets
        flips = data.draw(st.lists(st.tuples(st.one_of(st.integers(0, header_end), st.integers(0, len(raw) - 1)),
                                             st.integers(1, 255)), min_size=1, max_size=6), label="flips")
        raw = bytearray(raw)
        for at, xor in flips:
            raw[at] ^= xor
        raw = bytes(raw)
    only_library_errors(corrupted(artefacts, lambda f: (f / "model.safetensors").write_bytes(raw)))


FIELDS = ([("backbone", a.name) for a in attrs.fields(DiTConfig)]
          + [("converter", a.name) for a in attrs.fields(ConverterConfig)]
          + [("version", None), ("tokenizer", None), ("backbone", None), ("converter", None)])


@settings(max_examples=60, deadline=None, suppress_health_check=SPIES_OK)
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(JSON, st.just("DELETE"))), min_size=1,
                        max_size=3))
def test_fuzz_config_values(artefacts, spies, changes):
    def write(folder):
        config = json.loads((folder / "config.json").read_text())
        for (section, field), value in changes:
            target, key = (config, section) if field is None else (config.get(section), field)
            if not isinstance(target, dict):
                continue
            if value == "DELETE":
                target.pop(key, None)
            else:
                target[key] = value
        (folder / "config.json").write_text(json.dumps(config))

    only_library_errors(corrupted(artefacts, write))


@settings(max_examples=40, deadline=None)
@given(text=st.one_of(st.text(max_size=50), st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
                      st.integers(1, 5000).map(lambda n: "[" * n), JSON.map(json.dumps)))
def test_fuzz_config_text(artefacts, text):
    only_library_errors(corrupted(artefacts, lambda f: (f / "config.json").write_bytes(text.encode("utf-8"))))


TENSORS = st.sampled_from([torch.zeros(0), torch.zeros(1), torch.zeros(16), torch.zeros(12, 16), torch.zeros(3, 3, 3),
                           torch.zeros(16, dtype=torch.int64), torch.zeros(10**5, 16), torch.zeros(12, 0)])
VALUES = st.one_of(TENSORS, st.none(), st.integers(), st.text(max_size=5), st.lists(st.floats(), max_size=3))
KEYS = st.one_of(st.sampled_from(sorted(lightning_state(tiny()))), st.sampled_from(
    ["backbone.blocks.7.norm1.weight", "backbone.blocks.123456789.x", "backbone.x", "backbone.blocks." + "9" * 30]),
    st.integers(), st.tuples(st.text(max_size=3)))


@settings(max_examples=50, deadline=None, suppress_health_check=SPIES_OK)
@given(changes=st.lists(st.tuples(KEYS, st.one_of(VALUES, st.just("DELETE"))), min_size=1, max_size=4),
       shadow=st.sampled_from(["keep", "drop", "short", "junk"]), form=st.sampled_from(["ckpt", "bin"]))
def test_fuzz_lightning_and_bin_state_dicts(artefacts, spies, changes, shadow, form):
    root, den = artefacts
    state = lightning_state(den)
    for key, value in changes:
        if isinstance(value, str) and value == "DELETE":
            state.pop(key, None)
        else:
            state[key] = value
    tmp = Path(tempfile.mkdtemp(dir=root))
    if form == "bin":  # an MDLM Hugging Face folder with pytorch_model.bin
        fields = dict(model_type="mdlm", vocab_size=V + 1, model_length=L, hidden_dim=16, cond_dim=8, n_blocks=1,
                      n_heads=2)
        (tmp / "config.json").write_text(json.dumps(fields))
        state.pop("noise.empty", None)
        torch.save(state, tmp / "pytorch_model.bin")
        only_library_errors(tmp)
        return
    params = list(den.backbone.parameters())
    ckpt = {"state_dict": state, "ema": {"shadow_params": {"keep": params, "short": params[:3], "junk": "x"}.get(shadow)}}
    if shadow == "drop":
        del ckpt["ema"]
    torch.save(ckpt, tmp / "a.ckpt")
    only_library_errors(tmp / "a.ckpt", seq_len=L)


def test_the_unchanged_artefacts_load(artefacts, spies):
    root, den = artefacts
    assert torch.equal(load(root / "ours", max_bytes=LIMIT).backbone.vocab_embed.embedding,
                       den.backbone.vocab_embed.embedding)
    load(root / "a.ckpt", seq_len=L, max_bytes=LIMIT)
    assert len(spies) == 5  # ours: DiT and converter on meta; Lightning: DiT twice on meta, the fresh converter
