"""Masked LMs as denoisers (snrpaths.backends.hf): tiny randomly initialised BERT and ModernBERT built from their
configs (no download), saved to a temporary folder and loaded back by path.

What is checked: endpoint logits are the wrapped model's own output on the samplable ids (exactly: the same forward
pass); the conformance suite runs every endpoint sampler on both; every finite-SNR path, estimator and plot is refused
before any call; prompts (ids and text) are never changed; special ids are never sampled, even when the model prefers
them; and every bad input is refused before any sampling call."""

import sys

import pytest
import torch

from snrpaths import CapabilityError, SNRPathError, SNRState, SNRTypeError, ShapeError, parse_path, sample
from snrpaths.backends.hf import MaskedLM, save_random
from snrpaths.cli import main
from snrpaths.testing.conformance import ENDPOINT_SAMPLERS, SAMPLERS, check_sampler
from snrpaths.testing.denoisers import Counting

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a cat dog sat on mat ran big small red and .".split()
ARCHS = ("bert", "modernbert")


@pytest.fixture(scope="module", params=ARCHS)
def folder(request, tmp_path_factory):
    return save_random(tmp_path_factory.mktemp(request.param), WORDS, arch=request.param, seed=1)


@pytest.fixture(scope="module")
def den(folder):
    return MaskedLM.from_pretrained(folder, seq_len=4)


def test_loads_by_path_with_framing_and_specials(den):
    tokenizer = den.tokenizer
    assert den.prefix == (tokenizer.cls_token_id,) and den.suffix == (tokenizer.sep_token_id,), "[CLS] span [SEP]"
    assert den.mask_id == tokenizer.mask_token_id
    assert not set(den.samplable) & set(tokenizer.all_special_ids)
    assert den.vocab_size == len(WORDS) == den.table.vocab_size and den.reads_finite_snr is False


def test_endpoint_logits_are_the_models_own_on_the_samplable_ids(den):
    tokens = torch.tensor([[0, -1, 5, -1], [-1, -1, -1, 3]])
    gamma = torch.where(tokens >= 0, torch.inf, 0.0).double()
    state = SNRState(gamma=gamma, z=torch.zeros(2, 4, den.table.dim, dtype=torch.float64), tokens=tokens,
                     fixed=torch.zeros(2, 4, dtype=torch.bool), confidence=(tokens >= 0).double())
    ids = torch.tensor([[den.samplable[t] if t >= 0 else den.mask_id for t in row] for row in tokens.tolist()])
    framed = torch.cat([torch.tensor([den.prefix] * 2), ids, torch.tensor([den.suffix] * 2)], 1)
    with torch.no_grad():
        own = den.model(input_ids=framed).logits
    assert torch.equal(den.logits(state), own[:, 1:5][..., list(den.samplable)])


def test_shift_reads_the_previous_position(folder):
    """Dream-style: token i is predicted at position i - 1 of the framed input."""
    plain = MaskedLM.from_pretrained(folder, seq_len=4)
    shifted = MaskedLM.from_pretrained(folder, seq_len=4, shift=True)
    state = SNRState.masked(2, 4, plain.table)
    framed = torch.tensor([[*plain.prefix, *[plain.mask_id] * 4, *plain.suffix]] * 2)
    with torch.no_grad():
        own = plain.model(framed).logits[..., list(plain.samplable)]
    assert torch.equal(plain.logits(state), own[:, 1:5]) and torch.equal(shifted.logits(state), own[:, 0:4])


@pytest.mark.parametrize("text", ENDPOINT_SAMPLERS)
def test_conformance(text, den):
    check_sampler(text, den, torch.tensor([-1, 2, -1, -1]))


@pytest.mark.parametrize("text", sorted(set(SAMPLERS) - set(ENDPOINT_SAMPLERS)))
def test_finite_snr_paths_are_refused_before_any_call(text, den):
    counting = Counting(den)
    with pytest.raises(CapabilityError, match=r"step \d+ of .*, in stage `.*ramp.*`, needs a denoiser that reads "
                                              r"finite-SNR evidence; Counting\(MaskedLM\(.*\)\) is endpoint-only: "
                                              r"use endpoint paths such as ar\(\), roar\(\)"):
        sample(parse_path(text), counting, batch=2)
    assert counting.calls == 0


def test_estimators_and_plots_that_need_finite_snr_are_refused_before_any_call(den):
    from snrpaths import nll, plot
    from snrpaths.diagnostics import evidence_curve

    counting = Counting(den)
    tokens = torch.zeros(2, 4, dtype=torch.int64)
    uniform = torch.full((den.vocab_size,), 1 / den.vocab_size)
    refused = [lambda: nll.path_integral(counting, tokens),
               lambda: evidence_curve(counting, tokens, prior=uniform),
               lambda: plot.gamma_plane(["ar()", "hybrid(2, 2)"], denoiser=counting),
               lambda: plot.generation_order(["mdm(4)", "ramp(4) >> switch('keep') >> mdm(2)"], denoiser=counting),
               lambda: plot.calibration(counting, tokens, gamma=4.0)]
    for call in refused:
        with pytest.raises(CapabilityError, match="needs a denoiser that reads finite-SNR evidence"):
            call()
    assert counting.calls == 0
    assert nll.roar(counting, tokens, n_orders=1).samples.shape == (2, 1), "endpoint estimators run"


def test_a_finite_snr_state_given_directly_is_refused(den):
    state = SNRState.from_tokens(torch.zeros(1, 4, dtype=torch.int64), torch.full((1, 4), 2.0, dtype=torch.float64),
                                 den.table, torch.Generator().manual_seed(0))
    with pytest.raises(CapabilityError, match="endpoint-only"):
        den.logits(state)


def test_text_prompts_of_different_lengths_batch_and_are_never_changed(folder):
    den = MaskedLM.from_pretrained(folder, seq_len=8)
    texts = ["the cat sat", "a [MASK] dog ran [MASK] the mat", "red"]
    prompt = den.encode_prompts(texts)
    assert prompt.shape == (3, 8)
    assert prompt[0, 3:].eq(-1).all() and prompt[1, [1, 4]].eq(-1).all() and prompt[2, 1:].eq(-1).all()
    result = sample(parse_path("mdm(6, remask='cap', eta=0.3)"), den, seed=3, prompt=texts)
    assert torch.equal(result.tokens[prompt >= 0], prompt[prompt >= 0])
    assert result.text[0].startswith("the cat sat ") and result.text[2].startswith("red ")
    words = result.text[1].split()
    assert words[0] == "a" and words[2:4] == ["dog", "ran"] and words[5:7] == ["the", "mat"]
    assert result.text == tuple(den.decode(result.tokens))
    one = sample(parse_path("ar()"), den, batch=2, seed=0, prompt="the dog")
    assert all(t.startswith("the dog") for t in one.text), "one text is repeated over the batch"


class _PrefersSpecials(torch.nn.Module):
    """The wrapped model with +100 on every special id: a sampler reading the wrong ids would draw them."""

    def __init__(self, inner, special):
        super().__init__()
        self.inner, self.special = inner, list(special)

    def forward(self, ids):
        logits = self.inner(ids).logits.clone()
        logits[..., self.special] += 100.0
        return logits


def test_special_ids_are_never_sampled(den):
    specials = den.tokenizer.all_special_ids
    greedy = MaskedLM(_PrefersSpecials(den.model, specials), mask_id=den.mask_id, seq_len=4, prefix=den.prefix,
                      suffix=den.suffix, tokenizer=den.tokenizer)
    assert greedy.samplable == den.samplable
    tokens = sample(parse_path("mdm(4)"), greedy, batch=64, seed=0).tokens
    model_ids = torch.tensor(greedy.samplable)[tokens]
    assert not torch.isin(model_ids, torch.tensor(specials)).any()
    assert len(set(tokens.flatten().tolist())) > 3, "the draws spread over the samplable ids"


# -- bad input: a clear error before any sampling call -------------------------------------------------------------


class _Flat(torch.nn.Module):
    """A model whose output is [B, V], not [B, N, V]."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(1, 9)

    def forward(self, ids):
        return self.w(ids[:, :1].float())


def test_bad_models_and_arguments(den):
    model, base = den.model, dict(seq_len=4, prefix=den.prefix, suffix=den.suffix)
    vocab = model.config.vocab_size
    with pytest.raises(SNRPathError, match=rf"'mask_id' must be an integer in \[0, {vocab - 1}\] \(got {vocab}\)"):
        MaskedLM(model, mask_id=vocab, **base)
    with pytest.raises(ShapeError, match=r"output of shape \[1, 9\]; a masked LM must give \[B, N, V\] logits"):
        MaskedLM(_Flat(), mask_id=0, seq_len=4)
    with pytest.raises(SNRTypeError, match="'model' must be a torch.nn.Module"):
        MaskedLM(lambda ids: ids, mask_id=0, seq_len=4)
    with pytest.raises(SNRPathError, match=r"seq_len=63 with 2 framing tokens needs 65 positions; the model has at "
                                           r"most 64: seq_len <= 62"):
        MaskedLM(model, mask_id=den.mask_id, **base | dict(seq_len=63))
    with pytest.raises(SNRPathError, match="shift=True .* needs at least one framing token before it"):
        MaskedLM(model, mask_id=den.mask_id, seq_len=4, shift=True)
    with pytest.raises(SNRPathError, match=rf"the framing ids \[{vocab}\] lie outside the model's vocabulary"):
        MaskedLM(model, mask_id=den.mask_id, **base | dict(suffix=(vocab,)))
    with pytest.raises(SNRPathError, match="'samplable' must be at least 2 distinct model ids"):
        MaskedLM(model, mask_id=den.mask_id, samplable=[5, den.mask_id], **base)


def test_bad_folders(tmp_path, folder):
    with pytest.raises(SNRPathError, match="is not a folder"):
        MaskedLM.from_pretrained(tmp_path / "nowhere")
    for missing, what in (("model.safetensors", "weights"), ("tokenizer.json", "tokenizer")):
        partial = tmp_path / what
        partial.mkdir()
        for f in folder.iterdir():
            if f.name != missing:
                (partial / f.name).write_bytes(f.read_bytes())
        with pytest.raises(SNRPathError, match=f"has no {what} \\(one of .*{missing}"):
            MaskedLM.from_pretrained(partial)


def test_prompts_that_do_not_fit_are_refused_before_any_call(den):
    calls = []
    hook = den.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(SNRPathError, match=r"prompt 1 \('the cat sat on the mat'\) has 6 tokens; it must fit "
                                               r"seq_len = 4"):
            sample(parse_path("mdm(4)"), den, prompt=["the cat", "the cat sat on the mat"])
        with pytest.raises(SNRPathError, match=r"holds the token '\[UNK\]' \(id 1\), which may not be sampled"):
            sample(parse_path("mdm(4)"), den, prompt="the zebra")
    finally:
        hook.remove()
    assert not calls


def test_a_text_prompt_needs_a_denoiser_with_a_tokenizer(den):
    from snrpaths.backends.toy import ExactToy

    with pytest.raises(SNRTypeError, match="a text prompt needs a denoiser that carries its tokenizer .* ExactToy has "
                                           "none: give token ids"):
        sample(parse_path("mdm(2)"), ExactToy.markov(2, 3), prompt="the cat")
    bare = MaskedLM(den.model, mask_id=den.mask_id, seq_len=4)
    with pytest.raises(SNRPathError, match=r"encode_prompts needs the tokenizer: build the MaskedLM with tokenizer="):
        sample(parse_path("mdm(2)"), bare, prompt="the cat")


def test_a_missing_extra_names_the_pip_install(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(SNRPathError, match=r"pip install 'snrpaths\[hf\]'"):
        MaskedLM.from_pretrained(folder)


# -- the command line ----------------------------------------------------------------------------------------------


def test_cli_samples_text_from_a_folder(folder, capsys):
    assert main(["sample", "--hf-model", str(folder), "--seq-len", "6", "--path", "mdm(4)", "--prompt",
                 "the [MASK] sat", "--n", "2"]) == 0
    out = capsys.readouterr().out
    texts = [line for line in out.splitlines() if not line.startswith("---")]
    assert len(texts) == 2 and all(t.startswith("the ") and t.split()[2] == "sat" for t in texts), out
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--hf-model", str(folder), "--path", "hybrid(2, 2)"])
    assert exit_.value.code == 2
    assert "needs a denoiser that reads finite-SNR evidence" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--hf-model", str(folder), "--checkpoint", "tiny-shakespeare-dsl"])
    assert "--checkpoint and --hf-model name two models; give one" in capsys.readouterr().err


def test_the_speed_rows_loops_make_the_same_calls():
    """The masked-LM row of the runner-overhead study (benchmarks/runner_overhead.py --backend masked-lm) compares
    loops that make the same calls."""
    from snrpaths.benchmarks.runner_overhead import measure_masked_lm

    result = measure_masked_lm(batch=2, seq_len=8, steps=4, repeats=1, hidden=32, blocks=1, vocab=20)
    assert result["nfe"] == {"hand-written loop": 4, "snrpaths.sample": 4} and result["ratio"] > 0
