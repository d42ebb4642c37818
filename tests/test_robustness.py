"""Nothing silent (issue 27): every wrong input refused, every damaged file detected, every disk failure explained.

The issue's reproducers, each now a clear library error or the right result; a bounded hypothesis fuzz of every
surface of ``benchmarks/robustness.py`` (whose full campaign runs 10,000 inputs a surface); and kill tests: SIGKILL
and Ctrl-C during tuning, a damaged checkpoint after training, each followed by the same command again.

A read-only folder is ``chmod 555``; where the tests run as root, whom permissions do not stop, the writes into it are
refused as the kernel would refuse them (``read_only`` below).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snrpaths.files
from snrpaths import Path, SNRPathError, parse_path, sample, tune
from snrpaths.backends import ExactToy, load, save
from snrpaths.benchmarks import robustness as campaign
from snrpaths.cli import main
from snrpaths.errors import DenoiserError
from snrpaths.geometry import TokenTable
from snrpaths.integrity import good_checkpoint
from snrpaths.nll import roar
from snrpaths.path import On, Parallel, Then

TOY = campaign.TOY


def fails(argv, capsys) -> str:
    """Run the CLI; it must end with exit status 2 and one ``snrpaths: error:`` line, which is returned."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("snrpaths: error: ") and "\n" not in err and "Traceback" not in err
    return err


def temporaries(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if snrpaths.files.TMP_MARK in p.name]


# -- 1. SNR bounds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["hybrid(2, 2, gamma_max=1e38)", "ramp(2, gamma_max=1e38) >> switch('commit')"])
def test_an_snr_beyond_what_float32_holds_is_refused_naming_the_field_and_the_limit(text):
    with pytest.raises(SNRPathError, match=r"'gamma_max' must be a number in \(0, 2\*\*64\], the largest SNR"):
        parse_path(text)
    with pytest.raises(SNRPathError, match=r"'logit' schedule ends at gamma inf instead of gamma_max=40.0"):
        Path.ramp(2, kappa=1e-300)
    tokens = sample(Path.hybrid(2, 2, gamma_max=2.0**64), TOY, batch=8, seed=0).tokens  # the limit itself samples
    assert bool(((tokens >= 0) & (tokens < TOY.vocab_size)).all())


class HalfPrecision:
    """A denoiser whose token table computes in float16: an SNR of 1e5 overflows its state to gamma = inf."""

    vocab_size, seq_len = 3, 4
    table = TokenTable(torch.eye(3, dtype=torch.float16))

    def logits(self, state):
        return torch.zeros(state.batch, self.seq_len, self.vocab_size)


def test_a_position_at_infinite_snr_without_a_token_is_an_error_naming_the_step():
    with pytest.raises(DenoiserError, match=r"at step 2 \(ramp\(3, gamma_max=100000.0\)\) of .* 8 positions reached "
                                            r"gamma = inf without a token .* overflowed torch.float16"):
        sample(Path.ramp(3, gamma_max=1e5) >> Path.switch("commit"), HalfPrecision(), batch=2)


# -- 2. prompts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8, torch.uint16, torch.uint32,
                                   torch.uint64])
def test_a_prompt_of_any_integer_dtype_is_read_by_its_values(dtype):
    big = ExactToy.random(256, 1, seed=0)
    if dtype != torch.int8:  # 255 is a token of a 256-token vocabulary, never the free marker -1
        assert sample(Path.mdm(2), big, prompt=torch.tensor([255], dtype=dtype)).tokens.tolist() == [[255]]
        with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 2\], or -1 for a free position \(first bad: "
                                               r"255 at index \[0\]\)"):
            sample(Path.mdm(2), ExactToy.random(3, 1, seed=0), prompt=torch.tensor([255], dtype=dtype))
    if dtype.is_signed:
        prompt = torch.tensor([-1, 2, -1], dtype=dtype)
        assert sample(Path.mdm(2), TOY, prompt=prompt, batch=4).tokens[:, 1].tolist() == [2] * 4
    if dtype == torch.uint64:
        with pytest.raises(SNRPathError, match=r"holds the token id 18446744073709551615 at index \[1\]"):
            sample(Path.mdm(2), TOY, prompt=torch.tensor([0, -1, 0]).to(torch.uint64))


# -- 3. integrity ---------------------------------------------------------------------------------------------------


def flip(path, at: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_damaged_model_file_is_an_error_naming_it_and_a_folder_without_hashes_loads(tmp_path):
    model = campaign.tiny_model()
    folder = save(model, tmp_path / "model")
    flip(folder / "model.safetensors")
    with pytest.raises(SNRPathError, match=r"model.safetensors is damaged: its SHA-256 differs from the one "
                                           r".*config.json records"):
        load(folder)
    save(model, folder)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text.replace('"abcde"', '"abcdf"'))  # still valid JSON, another tokenizer
    with pytest.raises(SNRPathError, match=r"config.json is damaged: its content does not match the SHA-256"):
        load(folder)
    config = json.loads(text)
    del config["sha256"]  # as another tool writes it
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load(folder).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def train_argv(corpus, out):
    return campaign.train_args(corpus, out, steps=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_corpus):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "c", [4, 5, 4])


def test_resume_falls_back_from_a_damaged_checkpoint_to_the_one_before_and_ends_as_the_straight_run(
        tmp_path, corpus, capsys):
    assert main(train_argv(corpus, tmp_path / "straight")) == 0
    out = tmp_path / "damaged"
    assert main(train_argv(corpus, out)) == 0
    flip(out / "checkpoint.pt")
    capsys.readouterr()
    assert main(train_argv(corpus, out)) == 0  # resumes at step 3 from checkpoint.prev.pt, trains step 4 again
    assert "is damaged (its SHA-256 is not in manifest.json); resuming from the checkpoint before it" in \
        capsys.readouterr().err
    straight, resumed = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (tmp_path / "straight", out))
    assert resumed["step"] == 4 and all(torch.equal(v, straight["model"][k]) for k, v in resumed["model"].items())
    flip(out / "checkpoint.pt")
    flip(out / "checkpoint.prev.pt")
    assert "checkpoint.pt is damaged: its SHA-256 is not one" in fails(train_argv(corpus, out), capsys)


# -- 4. disk failures -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["model.safetensors", "checkpoint.pt"])
def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_checkpoint(tmp_path, corpus, monkeypatch, capsys,
                                                                               victim):
    out = tmp_path / "run"
    real = snrpaths.files._write

    def full(file, data):  # the disk fills once the first checkpoint is in
        if (out / "checkpoint.pt").exists() and victim in os.path.basename(file.name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(file, data)

    monkeypatch.setattr(snrpaths.files, "_write", full)
    err = fails(train_argv(corpus, out), capsys)
    assert f"cannot write {'the folder ' if victim == 'model.safetensors' else ''}'{out / victim.split('.')[0]}" in err
    assert err.endswith("No space left on device") or err.endswith("No space left on device)")
    assert temporaries(out) == []
    assert torch.load(good_checkpoint(out / "checkpoint.pt"), weights_only=True)["step"] == 1
    assert load(out / "model").seq_len == 16  # the export of step 1, whole


def read_only(folder, monkeypatch):
    """``folder`` made read-only; as root, opening, making, renaming or removing anything inside it fails as it would
    for anyone else."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return folder
    inside = str(folder.resolve()) + os.sep

    def denied(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(inside) or os.path.abspath(os.fspath(path)) == inside[:-1]

    def guard(real, writes=lambda *a, **k: True):
        def call(path, *a, **k):
            if not isinstance(path, int) and denied(path) and writes(*a, **k):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, *a, **k)
        return call

    opening = guard(builtins.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))
    for owner in (builtins, io):
        monkeypatch.setattr(owner, "open", opening)
    for name in ("mkdir", "unlink", "rmdir", "replace", "rename", "link"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: not (denied(path) and mode & os.W_OK))
    return folder


@pytest.mark.parametrize("command", ["train", "sample", "nll", "bench", "tune --storage", "tune --out", "check"])
def test_a_read_only_output_is_refused_before_any_work_in_one_line(tmp_path, corpus, monkeypatch, capsys, command):
    ro = tmp_path / "ro"
    argv = {"train": train_argv(corpus, ro / "run"), "sample": ["sample", "--out", str(ro / "s.jsonl")],
            "nll": ["nll", "--out", str(ro / "n.json")], "bench": ["bench", "robustness", "--quick", "--out", str(ro)],
            "tune --storage": ["tune", "--nfe", "2", "--trials", "1", "--storage", str(ro / "t.db")],
            "tune --out": ["tune", "--nfe", "2", "--trials", "1", "--out", str(ro / "t.png")],
            "check": ["check", "--out", str(ro / "c.json")]}[command]
    read_only(ro, monkeypatch)
    err = fails(argv, capsys)
    assert str(ro) in err and "Permission denied" in err
    assert not any(ro.iterdir())


# -- 5. the tuner ---------------------------------------------------------------------------------------------------


def test_unusable_tuner_storage_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "text.db").write_text("not a database\n")
    for storage, message in ((tmp_path / "folder.db", "is a folder"), (tmp_path / "text.db", "is not an SQLite "
                                                                                             "database")):
        with pytest.raises(SNRPathError, match=message):
            tune("mdm", TOY, 2, trials=1, n=4, storage=storage)
        assert message in fails(["tune", "--nfe", "2", "--trials", "1", "--storage", str(storage)], capsys)


@pytest.mark.parametrize("value", [float("inf"), "0.5", "abc", True, None, torch.tensor([0.5])])
def test_a_metric_value_that_is_not_a_finite_number_is_one_message(value, caplog):
    with pytest.raises(SNRPathError, match=r"'metric' must be a finite number \(lower is better\) \(got .*\) for "
                                           r"mdm\(2\)$"):
        tune("mdm", TOY, 2, lambda tokens: value, trials=2, n=4)
    assert not [r for r in caplog.records if r.name.startswith("optuna")]  # no screen of Optuna's warnings


def test_tuning_killed_or_interrupted_resumes_from_its_storage(tmp_path):
    for k in (1, 3):  # SIGKILL inside the default trial, and inside a later one
        out = tmp_path / f"killed{k}"
        assert campaign.forked(lambda: campaign._tune(out, k), None) == -signal.SIGKILL
        assert campaign.forked(lambda: campaign._tune(out, None), None) == 0
        assert len(campaign._tune(out, None).trials) == campaign.TUNE_TRIALS

    calls = []

    def interrupted(tokens):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 0.5

    storage = tmp_path / "interrupted.db"
    with pytest.raises(KeyboardInterrupt):
        tune("mdm", TOY, 2, interrupted, trials=4, n=4, storage=storage)
    assert len(tune("mdm", TOY, 2, interrupted, trials=4, n=4, storage=storage).trials) == 4


# -- 6. bounds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [dict(row_offset=2**64), dict(batch=2, row_offset=2**64 - 1),
                                    dict(batch=3, row_offset=2**63 - 2)])
def test_row_offset_beyond_the_streams_is_refused_naming_the_users_argument(kwargs):
    with pytest.raises(SNRPathError, match=rf"'row_offset' must be an integer in \[0, 2\*\*63 - batch\] = \[0, "
                                           rf"{2**63 - kwargs.get('batch', 1)}\] for batch={kwargs.get('batch', 1)}"):
        sample(Path.mdm(2), TOY, **kwargs)
    batch = kwargs.get("batch", 1)
    last = sample(Path.mdm(2), TOY, batch=batch, row_offset=2**63 - batch)  # the last valid rows
    assert torch.equal(last.tokens[-1:], sample(Path.mdm(2), TOY, row_offset=2**63 - 1).tokens)


# -- 7. repr round trips of values built directly ------------------------------------------------------------------


def test_groups_built_directly_print_as_expressions_that_parse_back():
    a = Path.ar()
    for one in (lambda: Then((a,)), lambda: Parallel((On((0,), a),))):
        with pytest.raises(SNRPathError, match=r"joins at least two paths .* a single path stands for itself"):
            one()
    nested = Then((Then((a, Path.mdm(2))), Path.roar()))
    assert nested == a >> Path.mdm(2) >> Path.roar() and parse_path(repr(nested)) == nested
    side = Parallel((Parallel((On((0,), a), On((1,), a))), On((2,), a)))
    assert parse_path(repr(side)) == side


# -- 8. the fuzz suite: every surface of the campaign, a few examples each ------------------------------------------

SURFACES = {"text": (campaign.text_case, campaign.probe_text, None),
            "ramp": (campaign.ramp_case, campaign.probe_ramp, None),
            "value": (campaign.value_case, campaign.probe_value, None),
            "prompt": (campaign.prompt_case, campaign.probe_prompt, campaign.prompt_valid),
            "integers": (campaign.integers_case, campaign.probe_integers, campaign.integers_valid),
            "tuner": (campaign.tuner_case, campaign.probe_tuner, None)}


@pytest.mark.parametrize("surface", sorted(SURFACES))
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_every_input_is_refused_by_the_library_or_right(surface, rng):
    draw, probe, oracle = SURFACES[surface]
    case = draw(rng)
    outcome, note = campaign.classify(probe, case, None if oracle is None else oracle(case))
    assert outcome in (campaign.OK, campaign.LIBRARY), f"{case!r}: {outcome}: {note}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return campaign.Files(tmp_path_factory.mktemp("files"))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), disk=st.booleans())
def test_fuzz_damaged_files_are_detected_and_failed_writes_keep_what_was_there(files, rng, disk):
    case = (campaign.disk_case if disk else campaign.damage_case)(rng)
    probe = campaign.probe_disk if disk else campaign.probe_damage
    outcome, note = campaign.classify(lambda c: probe(files, c), case)
    assert outcome in (campaign.OK, campaign.LIBRARY), f"{case!r}: {outcome}: {note}"


@settings(max_examples=6)
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_tuner_storage_files(tmp_path_factory, rng):
    case = campaign.storage_case(rng)
    outcome, note = campaign.classify(lambda c: campaign.probe_storage(tmp_path_factory.mktemp("storage"), c), case)
    assert outcome in (campaign.OK, campaign.LIBRARY), f"{case!r}: {outcome}: {note}"


@pytest.mark.parametrize("make", [lambda seed: ExactToy.markov(3, 3, seed=seed),
                                  lambda seed: TokenTable.random(3, 2, seed=seed),
                                  lambda seed: roar(TOY, TOY.states[:2], seed=seed)])
@pytest.mark.parametrize("seed", [2**64, 1.5, True])
def test_every_seed_is_checked_where_it_is_given(make, seed):
    with pytest.raises(SNRPathError, match=rf"'seed' must be an integer in \[.*, 2\*\*64 - 1\] \(got {seed}\)"):
        make(seed)
