"""``snrpaths train`` and ``snrpaths sample`` through subprocesses: a tiny run on a tiny corpus, the same run as a
2-process gloo DDP job, sharded sampling under torchrun, and every bad input ending in one line with no output file.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from snrpaths import parse_path, sample
from snrpaths.cli import main
from snrpaths.backends.text import load_with_tokenizer
from snrpaths.data import trim_at_stop
from snrpaths.errors import SNRPathError

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores: one thread each
TINY = ["--corpus", None, "--valid-every", "2", "--seq-len", "16", "--hidden", "32", "--blocks", "1", "--heads", "2",
        "--cond-dim", "16", "--anchor-dim", "8", "--steps", "4", "--batch", "8", "--eval-every", "2", "--eval-rows",
        "8", "--save-every", "2", "--objective", "dsl", "--no-progress"]


def snrpaths(*args, torchrun=False, timeout=1800):  # a hang guard only: CI machines are shared
    # "--" ends torchrun's own options: its parser would otherwise read "--n" as an abbreviation of "--nnodes".
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "snrpaths", "--"] if torchrun else [sys.executable, "-m", "snrpaths"]
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def ok(out):
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def tiny(corpus, *extra):
    return [str(corpus) if a is None else a for a in TINY] + list(extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, write_corpus):
    """A 4-step DSL run on a 4-document corpus; the exported model is the checkpoint the sample tests use."""
    root = tmp_path_factory.mktemp("cli")
    corpus = write_corpus(root / "corpus", [20, 21, 22, 23])
    out = ok(snrpaths("train", *tiny(corpus, "--out", root / "run", "--export", root / "ckpt")))
    assert "trained to step 4" in out.stdout and "bits/char" in out.stdout
    return root


def test_train_exports_a_loadable_checkpoint_with_its_tokenizer(trained):
    from snrpaths.backends import load

    model = load(trained / "ckpt")
    characters = set((trained / "corpus" / "doc0.txt").read_text())  # every document repeats one line
    assert model.seq_len == 16 and model.tokenizer["kind"] == "char" and model.vocab_size == len(characters)
    assert model.converter.config.head == "evidence"  # a fresh model, trained with DSL's objective
    assert len((trained / "run" / "log.jsonl").read_text().splitlines()) == 2


def test_two_process_ddp_equals_one_process_on_the_same_global_batch(trained):
    """Each gloo process takes half of the same drawn batch of 8; DDP averages the two half-batch gradients, which is
    the full-batch gradient because the loss is a mean of per-row terms. Only float summation order differs."""
    ok(snrpaths("train", *tiny(trained / "corpus", "--out", trained / "ddp"), torchrun=True))
    one = torch.load(trained / "run" / "checkpoint.pt", weights_only=True)
    two = torch.load(trained / "ddp" / "checkpoint.pt", weights_only=True)
    assert one["step"] == two["step"] == 4
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_sample_prints_text_and_writes_jsonl_with_its_settings(trained, tmp_path):
    out = ok(snrpaths("sample", "--checkpoint", trained / "ckpt", "--path", "mdm(4)", "--n", "3", "--seed", "1",
                      "--prompt", "to be", "--out", tmp_path / "s.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(records) == 3 and out.stdout.count("--- sample") == 3
    for r in records:
        assert r["text"].startswith("to be") and len(r["text"]) == 16 and r["text"] in out.stdout
        assert r["config"] | {"checkpoint": None} == {"checkpoint": None, "path": "mdm(4)", "seed": 1, "n": 3,
                                                      "prompt": "to be", "seq_len": 16, "nfe_static": 4,
                                                      "stop_token": None}


def test_torchrun_sample_gathers_the_same_samples_as_one_process(trained, tmp_path):
    """20 samples are two chunks (16 + 4), rows 0-15 and 16-19 of one seeded run: one process per chunk gives the same
    output, and both are the rows of ``sample(..., batch=20, seed=5)`` in Python, with each row's own calls."""
    args = ["sample", "--checkpoint", trained / "ckpt", "--path", "ramp(2) >> mdm(3)", "--n", "20", "--seed", "5"]
    one = ok(snrpaths(*args, "--out", tmp_path / "one.jsonl"))
    two = ok(snrpaths(*args, "--out", tmp_path / "two.jsonl", torchrun=True))
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()
    assert one.stdout == two.stdout and one.stdout.count("--- sample") == 20
    model, tokenizer = load_with_tokenizer(str(trained / "ckpt"))
    with torch.no_grad():
        result = sample(parse_path("ramp(2) >> mdm(3)"), model, batch=20, seed=5)
    records = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [tokenizer.decode(t) for t in result.tokens]
    assert [r["nfe"] for r in records] == result.calls.tolist()


def test_sample_0_is_the_same_for_any_n_and_in_python(tmp_path, capsys):
    """The shipped checkpoint, ``mdm(4)``: ``--n 1``, ``--n 4`` and ``sample(..., seed=0)`` give one sample 0, with
    one call count (in-process through ``cli.main``, so no interpreter starts)."""
    records = {}
    for n in (1, 4):
        out = tmp_path / f"{n}.jsonl"
        assert main(["sample", "--path", "mdm(4)", "--n", str(n), "--seed", "0", "--out", str(out)]) == 0
        records[n] = [json.loads(line) for line in out.read_text().splitlines()]
    assert f"--- sample 0 (path mdm(4), {records[1][0]['nfe']} calls) ---\n{records[1][0]['text']}\n" in \
        capsys.readouterr().out
    model, tokenizer = load_with_tokenizer("tiny-shakespeare-dsl")
    with torch.no_grad():
        alone = sample(parse_path("mdm(4)"), model, seed=0)
        four = sample(parse_path("mdm(4)"), model, batch=4, seed=0)
    assert records[1][0]["text"] == records[4][0]["text"] == tokenizer.decode(alone.tokens[0])
    assert records[1][0]["nfe"] == records[4][0]["nfe"] == alone.nfe == int(four.calls[0])
    assert [r["text"] for r in records[4]] == [tokenizer.decode(t) for t in four.tokens]
    assert [r["nfe"] for r in records[4]] == four.calls.tolist()


def test_the_loaded_checkpoint_carries_its_text_as_the_cli_does(tmp_path):
    """``load(name)`` alone is a :class:`TextCodec`: a text prompt in Python gives ``Result.text`` equal to the text
    ``snrpaths sample --prompt`` writes for the same seed, each starting with the prompt."""
    from snrpaths.backends import load
    from snrpaths.denoiser import TextCodec

    out = tmp_path / "s.jsonl"
    assert main(["sample", "--path", "mdm(4)", "--n", "2", "--seed", "3", "--prompt", "ROMEO:", "--out", str(out)]) == 0
    model = load("tiny-shakespeare-dsl")
    assert isinstance(model, TextCodec)
    with torch.no_grad():
        result = sample(parse_path("mdm(4)"), model, batch=2, seed=3, prompt="ROMEO:")
    assert list(result.text) == [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert all(text.startswith("ROMEO:") and len(text) == model.seq_len for text in result.text)


def test_a_denoiser_without_a_tokenizer_refuses_text_naming_the_cause():
    model = load_with_tokenizer("tiny-shakespeare-dsl")[0]
    model.tokenizer = None
    with pytest.raises(SNRPathError, match="records no tokenizer"):
        sample(parse_path("mdm(4)"), model, prompt="ROMEO:")
    model.tokenizer = {"kind": "char", "chars": "ab"}
    with pytest.raises(SNRPathError, match="vocabulary of 82 but its tokenizer has 2 ids"):
        model.decode(torch.zeros(128, dtype=torch.int64))


def test_sample_with_a_stop_token_prints_each_text_up_to_it(tmp_path):
    """``--stop-token`` (the id of a space here): the samples and calls of ``sample(..., stop_token=...)``, each text
    trimmed at its first stop token (:func:`snrpaths.data.trim_at_stop`)."""
    model, tokenizer = load_with_tokenizer("tiny-shakespeare-dsl")
    stop = int(tokenizer.encode(" ")[0])
    out = tmp_path / "s.jsonl"
    assert main(["sample", "--path", "mdm(4)", "--n", "4", "--seed", "0", "--stop-token", str(stop),
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    with torch.no_grad():
        result = sample(parse_path("mdm(4)"), model, batch=4, seed=0, stop_token=stop)
    assert [r["text"] for r in records] == [tokenizer.decode(trim_at_stop(t, stop)) for t in result.tokens]
    main(["sample", "--path", "mdm(4)", "--n", "4", "--seed", "0", "--stop-token", str(stop), "--prompt", "ROMEO:",
          "--out", str(out)])
    with torch.no_grad():
        texts = sample(parse_path("mdm(4)"), model, batch=4, seed=0, stop_token=stop, prompt="ROMEO:").text
    assert list(texts) == [json.loads(line)["text"] for line in out.read_text().splitlines()]  # Python as the CLI
    assert all(t.startswith("ROMEO:") and " " not in t.removeprefix("ROMEO:") for t in texts)
    assert all(" " not in r["text"] for r in records) and [r["nfe"] for r in records] == result.calls.tolist()
    assert records[0]["config"]["stop_token"] == stop


def bad_checkpoint(trained, tmp_path):
    """The trained checkpoint with one character dropped from its tokenizer: vocabulary 1 larger than the tokenizer."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((trained / "ckpt" / "model.safetensors").read_bytes())
    config = json.loads((trained / "ckpt" / "config.json").read_text())
    del config["sha256"]  # edited by hand: no longer the saved content
    config["tokenizer"]["chars"] = config["tokenizer"]["chars"][:-1]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("case", ["missing corpus", "vocabulary mismatch", "corpus outside the vocabulary",
                                  "unparsable path", "n = 0", "prompt too long", "negative stop token",
                                  "stop token outside the vocabulary"])
def test_bad_input_is_one_line_with_no_output_file(trained, tmp_path, capsys, write_corpus, case):
    """In-process through ``cli.main`` (what the console script runs), so each case costs no interpreter start."""
    out_file = tmp_path / "samples.jsonl"
    sample = ["sample", "--checkpoint", trained / "ckpt", "--out", out_file]
    other = write_corpus(tmp_path / "other", [1, 1], text="XYZ unknown characters\n")
    args = {
        "missing corpus": ["train", *tiny(tmp_path / "nowhere", "--out", out_file)],
        "vocabulary mismatch": ["sample", "--checkpoint", bad_checkpoint(trained, tmp_path), "--out", out_file],
        "corpus outside the vocabulary": ["train", *tiny(other, "--init", trained / "ckpt", "--out", out_file)],
        "unparsable path": [*sample, "--path", "ramp(16) >> mdm(32"],
        "n = 0": [*sample, "--n", "0"],
        "prompt too long": [*sample, "--prompt", "to be " * 10],
        "negative stop token": [*sample, "--stop-token", "-1"],
        "stop token outside the vocabulary": [*sample, "--stop-token", "100000"],
    }[case]
    with pytest.raises(SystemExit) as exit_:
        main(list(map(str, args)))
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    if case == "unparsable path":  # the one error line, then the parser's caret picture under the expression
        assert lines[1:] == ["  ramp(16) >> mdm(32", " " * 20 + "^"], lines
        lines = lines[:1]
    assert len(lines) == 1 and lines[0].startswith("snrpaths: error:"), lines
    assert not out_file.exists() and not list(tmp_path.glob(".samples*"))
    expected = {"missing corpus": "does not exist", "vocabulary mismatch": "do not belong together",
                "corpus outside the vocabulary": "does not fit the checkpoint's tokenizer",
                "unparsable path": "--path 'ramp(16) >> mdm(32': expected", "n = 0": "--n must be a positive integer",
                "prompt too long": "shorter than seq_len",
                "negative stop token": "--stop-token must be a non-negative integer or None (got -1)",
                "stop token outside the vocabulary": "--stop-token must be an integer in [0, "}[case]
    assert expected in lines[0]


def test_check_prints_the_evidence_curve_and_writes_it(trained, tmp_path):
    out = ok(snrpaths("check", "--checkpoint", trained / "ckpt", "--corpus", trained / "corpus", "--valid-every", "2",
                      "--windows", "4", "--gammas", "1,16", "--out", tmp_path / "c.json", "--plot", tmp_path / "c.png"))
    assert "output head: evidence" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("| all") or line.startswith("| half")]
    assert len(rows) == 4
    record = json.loads((tmp_path / "c.json").read_text())
    assert [(r["layout"], r["gamma"]) for r in record["rows"]] == [("all", 1.0), ("all", 16.0), ("half", 1.0),
                                                                   ("half", 16.0)]
    assert (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--gammas", "1,0"], "--gammas must list positive finite SNRs"),
    (["--gammas", "a"], "--gammas must be comma-separated numbers"),
    (["--layouts", "all,most"], "--layouts must list some of all, half"),
    (["--windows", "1"], "--windows must be an integer >= 2"),
    (["--plot", "c.gif"], "must end in .png, .svg or .pdf"),
])
def test_check_refuses_bad_flags_in_one_line(trained, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--checkpoint", str(trained / "ckpt"), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize(("args", "message"), [
    (["--objective", "covering", "--roar-fraction", "0.5"], "--roar-fraction is a setting of dsl, not of --objective "
                                                            "covering"),
    (["--objective", "path-states"], "--objective path-states needs --path"),
    (["--objective", "path-states", "--path", "mdm(4"], "--path 'mdm(4': expected ')'"),
    (["--objective", "path-states", "--path", "mdm(4)", "--teacher", "hmm"], "--teacher cannot be given as a flag"),
    (["--objective", "path-states", "--path", "mdm(4)", "--policy", "model"], "no teacher can be given: train from "
                                                                               "Python"),
    (["--objective", "mixture"], "--objective mixture needs --parts: mixture: (objective, weight) pairs, in an "
                                 "expression only"),
    (["--objective", "DSL()", "--mu", "1"], "--mu: settings flags go with --objective NAME"),
    (["--objective", "Mixture((DSL(), 1), (ExactHMM(), 1))"], "'ExactHMM' is not an objective"),
    (["--objective", "covering", "--gamma-min", "500"], "--gamma-min must lie in (0.0, 100.0] (got 500.0)"),
])
def test_train_refuses_bad_objectives_in_one_line(tmp_path, capsys, args, message):
    """The objective is built from the registry (snrpaths.objectives.OBJECTIVES) before the corpus is read."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--out", str(tmp_path / "run"), "--corpus", str(tmp_path / "nowhere"), *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_train_takes_an_objective_expression(tmp_path, write_corpus):
    """In process: a Mixture of DSL and the states of a hybrid, recorded in the checkpoint's settings."""
    corpus = write_corpus(tmp_path / "corpus", [20, 21])
    expression = "Mixture((DSL(), 1), (PathStates('hybrid(2, 2)'), 1))"
    assert main(["train", *tiny(corpus, "--out", str(tmp_path / "run"), "--objective", expression, "--steps", "2",
                                "--save-every", "2", "--eval-every", "2")]) == 0
    settings = json.loads(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["settings"])
    assert settings["objective"]["name"] == "Mixture"
    assert settings["objective"]["parts"][1] == [{"name": "PathStates", "path": "hybrid(2, 2)", "policy": None,
                                                  "teacher": None, "refresh": None, "rollouts": None}, 1.0]


def test_train_fine_tunes_a_masked_lm_behind_a_dsl_converter(tmp_path, write_corpus, capsys):
    """``--hf-model``: a fresh converter on a tiny BERT, the converter trained and the backbone not (default), the
    export in the authors' layout; words outside the tokenizer's vocabulary ([UNK]) are left out and counted."""
    from snrpaths.backends.hf import MaskedLM, save_random
    from snrpaths.backends.hf_dsl import DSLMaskedLM

    corpus = write_corpus(tmp_path / "corpus", [20, 21])
    folder = save_random(tmp_path / "bert", "to be or not that is the question".split(), hidden=16, layers=1, heads=2)
    args = ["train", "--hf-model", str(folder), "--corpus", str(corpus), "--valid-every", "2", "--seq-len", "8",
            "--anchor-dim", "8", "--steps", "2", "--batch", "4", "--eval-every", "2", "--eval-rows", "4",
            "--save-every", "2", "--objective", "dsl", "--no-progress", "--out", str(tmp_path / "run")]
    assert main([*args, "--export", str(tmp_path / "export")]) == 0
    assert "train: left out" in capsys.readouterr().out
    tuned, plain = MaskedLM.from_pretrained(tmp_path / "export", seq_len=8), MaskedLM.from_pretrained(folder, seq_len=8)
    assert isinstance(tuned, DSLMaskedLM) and tuned.converter.config.head == "evidence"
    assert tuned.converter.config.anchor_dim == 8 and float(tuned.converter.beta.detach()) != 8 ** -0.5
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, tuned.model.state_dict()[name]), name
    with pytest.raises(SystemExit):
        main([*args, "--init", "tiny-shakespeare-dsl"])
    assert "--init and --hf-model name two models" in capsys.readouterr().err
