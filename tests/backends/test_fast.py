"""Compiled and bfloat16 forward passes (snrpaths.backends.fast) of the DiT and of a wrapped masked LM, on tiny models.

Error budgets, derived rather than fitted (``u`` a format's unit roundoff, ``S = max |logit|`` of the float32 pass):

* **Compiled vs eager, float32** (``u = 2^-24``): inductor may sum a reduction of ``n`` terms in another order (and
  fuse elementwise work), which moves its result by at most ``2 (n - 1) u`` times the sum of the terms' magnitudes.
  Along the path to a logit there are ``K`` such reductions in series (the timestep MLP 2, adaLN 1, per block the
  two norms, qkv, scores, softmax, scores x v, out, two MLP layers 9, then the final norm and head 2: ``K = 14`` for
  one block), none longer than ``n = 256`` (the timestep features); first-order, their relative errors add, so
  ``|compiled - eager| <= 2 K n u S`` (4.3e-4 S). Transcendentals (GELU's tanh, exp) differ by a few ulps, far
  inside that.
* **bf16 autocast vs float32** (``u = 2^-8``, 8 significant bits): autocast rounds both operands of each matrix
  product to bfloat16 (a relative error up to ``2u`` per product term, accumulated in float32), and the norms,
  softmaxes and the converter's softmax stay float32. With ``M`` products in series on the path to a logit and the
  head's output rounded once more, ``|bf16 - fp32| <= (2M + 1) u S``: ``M = 11`` for the DiT (timestep MLP 2, adaLN 1,
  converter ``q @ E`` 1, qkv, scores, x v, out, MLP 2 x, head; 45 u S = 0.18 S) and ``M = 8`` for a one-layer BERT
  (q/k/v, scores, x v, out, two FFN layers, the MLM transform and decoder; 17 u S = 0.066 S).

Each budget is first-order and loose; what the tests guard against is a wrong result (padding rows read back, the
evidence head or a row lost, autocast not applied at all, the converter's softmax run in bf16), which breaks it by
orders of magnitude. Compiling with inductor costs seconds on the CPU (once; reruns read its disk cache), so only one
test uses it; the others use the ``aot_eager`` backend, which traces with the same static shapes and padding but
generates no code.
"""

import math

import attrs
import pytest
import torch

from snrpaths import CapabilityError, SNRPathError, SNRState, SNRTypeError, parse_path, sample
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, MaskedLM, load
from snrpaths.backends import converter as converter_module
from snrpaths.backends import fast
from snrpaths.backends.hf import save_random
from snrpaths.backends.hf_dsl import AUTHORS, DSLMaskedLM
from snrpaths.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

V, L, H = 16, 8, 32
U32, U16 = 2.0**-24, 2.0**-8


def tiny_dit(seed: int = 1) -> DSLDenoiser:
    """A one-block DiT whose every weight is random (MDLM's initialisation zeroes the head, so its logits would be
    the evidence term alone)."""
    den = DSLDenoiser.build(DiTConfig(vocab_size=V, seq_len=L, hidden=H, cond_dim=16, n_blocks=1, n_heads=2),
                            ConverterConfig(anchor_dim=8), seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return den


def mixed_state(den, batch: int = 3, seed: int = 0) -> SNRState:
    """Rows with [MASK], clean and finite-SNR positions (gamma from 0.1 to 100)."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, den.vocab_size, (batch, L), generator=g)
    gamma = torch.logspace(-1, 2, L).expand(batch, L).clone()
    gamma[0, :3], gamma[-1, 2:5] = 0.0, math.inf
    return SNRState.from_tokens(tokens, gamma, den.table, g)


def endpoint(state: SNRState) -> SNRState:
    """The state with its finite positions sent to [MASK] (what a masked LM reads)."""
    gamma = torch.where(state.clean, state.gamma, 0.0)
    return state.advance(gamma=gamma, z=torch.zeros_like(state.z))


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    return save_random(tmp_path_factory.mktemp("bert"), [f"w{k}" for k in range(20)], hidden=H, layers=1, heads=2,
                       max_len=L + 2, seed=3)


@pytest.mark.skipif(fast.compile_problem(torch.device("cpu")) is not None,
                    reason=f"no inductor here: {fast.compile_problem(torch.device('cpu'))}")
def test_inductor_compiled_dit_matches_eager_within_the_reassociation_budget():
    den = tiny_dit()
    state = mixed_state(den)  # 3 rows: padded to 4 inside
    eager = den.logits(state)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    compiled = den.set_forward(compile=True).logits(state)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs, "a graph was compiled"
    assert den.forward_options == {"precision": "fp32", "compile": "inductor"}
    scale = float(eager.abs().max())
    assert float((compiled - eager).abs().max()) <= 2 * 14 * 256 * U32 * scale
    refreshed, cache = den.refresh_cache(state, torch.arange(L))  # its own graph: the same kernels
    assert torch.equal(refreshed, compiled) and cache.shape[0] == 3, "the compiled refresh is the compiled logits"
    # a path whose every call takes all 4 rows: one shape, no recompile; the same seed gives the same samples
    path = parse_path("ramp(3) >> switch('commit')")
    first, again = (sample(path, den, batch=4, seed=5).tokens for _ in range(2))
    assert torch.equal(first, again)


@pytest.fixture
def softmaxes(monkeypatch):
    """``(dtype, autocast on)`` of every softmax chunk a DSL converter (ours, or the masked-LM one) computes."""
    seen = []
    chunks = converter_module.Converter._softmax_chunks

    def spy(self, *args, **kwargs):
        for q, scratch, s in chunks(self, *args, **kwargs):
            seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
            yield q, scratch, s

    monkeypatch.setattr(converter_module.Converter, "_softmax_chunks", spy)
    return seen


def test_bf16_autocast_dit_is_within_the_bf16_budget_and_keeps_the_converter_softmax_in_float32(softmaxes):
    den = tiny_dit()
    state = mixed_state(den)
    want = den.logits(state)
    softmaxes.clear()
    got = den.set_forward(precision="bf16").logits(state)
    assert got.dtype == torch.float32
    # the converter's softmax ran in float32, inside autocast (so its q @ E product follows it)
    assert softmaxes and set(softmaxes) == {(torch.float32, True)}
    error, scale = float((got - want).abs().max()), float(want.abs().max())
    assert 0 < error <= (2 * 11 + 1) * U16 * scale, "bf16 changed the logits, within its budget"
    assert torch.equal(den.set_forward().logits(state), want), "set_forward() restores the plain forward"


@pytest.mark.parametrize("options", [{"precision": "bf16"}, {"precision": "bf16", "compile": "aot_eager"}])
def test_cached_block_decoding_follows_the_options(options):
    """The refresh is ``logits(state)`` bit for bit under the same options (the protocol's requirement); a cached
    call on the refresh's own state is within the bf16 budget of the float32 logits (the same products, its keys and
    values read back from a bfloat16 cache), and not float32 (autocast reached it)."""
    den, active = tiny_dit(), torch.arange(4, L)
    state = mixed_state(den)  # 3 rows: padded to 4 inside a compiled refresh
    want = den.logits(state)
    fp32_cached = den.cached_logits(state, active, den.refresh_cache(state, active)[1])
    den.set_forward(**options)
    logits, cache = den.refresh_cache(state, active)
    assert torch.equal(logits, den.logits(state)) and cache.shape[0] == 3 and cache.dtype == torch.bfloat16
    got = den.cached_logits(state, active, cache)
    assert got.dtype == torch.float32
    error, scale = float((got - want[:, active]).abs().max()), float(want.abs().max())
    assert 0 < error <= (2 * 11 + 1) * U16 * scale and not torch.equal(got, fp32_cached)
    # a cache refreshed at every call is the uncached run, bit for bit, under the options too
    plain, every = (sample(parse_path(f"blocks(2, mdm(2){cache})"), den, batch=3, seed=4)
                    for cache in ("", ", cache='dual', refresh=1"))
    assert torch.equal(plain.tokens, every.tokens) and plain.nfe == every.nfe


def test_aot_eager_compile_pads_batches_to_powers_of_two_and_compiles_each_shape_once():
    den = tiny_dit().set_forward(compile="aot_eager")
    eager = tiny_dit()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for batch, new in ((3, 1), (4, 0), (2, 1), (1, 1), (3, 0)):  # buckets 4, 4, 2, 1, 4
        state = mixed_state(den, batch=batch, seed=batch)
        want = eager.logits(state)
        torch.testing.assert_close(den.logits(state), want, rtol=0, atol=2 * 14 * 256 * U32 * float(want.abs().max()))
        now = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert now - graphs == new, f"batch {batch}"
        graphs = now
    assert [fast.batch_bucket(n) for n in (1, 2, 3, 4, 5, 63, 64, 65)] == [1, 2, 4, 4, 8, 64, 64, 128]


def test_masked_lm_bf16_within_budget_and_compiled_equal_to_eager(lm_folder):
    plain = MaskedLM.from_pretrained(lm_folder, seq_len=L)
    state = endpoint(mixed_state(plain))
    want = plain.logits(state)
    bf16 = MaskedLM.from_pretrained(lm_folder, seq_len=L, precision="bf16")
    error, scale = float((bf16.logits(state) - want).abs().max()), float(want.abs().max())
    assert 0 < error <= (2 * 8 + 1) * U16 * scale
    compiled = MaskedLM.from_pretrained(lm_folder, seq_len=L, compile="aot_eager")
    assert compiled.forward_options == {"precision": "fp32", "compile": "aot_eager"}
    # 8 reductions in series, none longer than the FFN's 2H = 64 terms
    torch.testing.assert_close(compiled.logits(state), want, rtol=0, atol=2 * 8 * 64 * U32 * scale)


def test_dsl_masked_lm_bf16_keeps_its_converter_softmax_in_float32_and_compiles(lm_folder, softmaxes):
    """A masked LM behind the DSL-LLaDA converter: the converter's ``W q + c`` is one more product in series than the
    plain BERT's (``M = 9``), and compiling traces the model on ``inputs_embeds``."""
    den = DSLMaskedLM.from_pretrained(lm_folder, seq_len=L, config=attrs.evolve(AUTHORS, anchor_dim=8))
    state = mixed_state(den)
    want = den.logits(state)
    softmaxes.clear()
    got = den.set_forward(precision="bf16").logits(state)
    assert softmaxes and set(softmaxes) == {(torch.float32, True)}, "float32, under autocast"
    error, scale = float((got - want).abs().max()), float(want.abs().max())
    assert 0 < error <= (2 * 9 + 1) * U16 * scale
    compiled = den.set_forward(compile="aot_eager").logits(state)
    torch.testing.assert_close(compiled, want, rtol=0, atol=2 * 9 * 64 * U32 * scale)
    assert MaskedLM.from_pretrained(lm_folder, seq_len=L).forward_options["precision"] == "fp32"


@pytest.mark.parametrize("options", [{"precision": "bf16"}, {"compile": "aot_eager"}])
def test_the_same_seed_gives_the_same_samples_under_each_option(options, lm_folder):
    path = parse_path("mdm(4, remask='cap')")
    den = tiny_dit().set_forward(**options)
    runs = [sample(parse_path("hybrid(2, 3)"), den, batch=3, seed=9).tokens for _ in range(2)]
    assert torch.equal(*runs)
    lm = MaskedLM.from_pretrained(lm_folder, seq_len=L, **options)
    assert torch.equal(*(sample(path, lm, batch=3, seed=9).tokens for _ in range(2)))


def test_bad_options_are_refused_before_anything_is_read(monkeypatch, tmp_path, lm_folder):
    missing = tmp_path / "nothing-here"
    with pytest.raises(SNRPathError, match=r"'precision' must be one of \('fp32', 'bf16'\) \(got 'fp16'\)"):
        load(missing, precision="fp16")
    with pytest.raises(SNRTypeError, match="'compile' must be True, False or a torch.compile backend name"):
        load(missing, compile=1)
    with pytest.raises(SNRPathError, match="'compile' must be one of .*'inductor'.* \\(got 'inductr'\\)"):
        MaskedLM.from_pretrained(missing, compile="inductr")
    monkeypatch.setattr(fast, "compile_problem", lambda device: "inductor on the CPU needs a C++ compiler (...)")
    for make in (lambda: load(missing, compile=True), lambda: MaskedLM.from_pretrained(missing, compile=True),
                 lambda: tiny_dit().set_forward(compile=True)):
        with pytest.raises(CapabilityError, match="compile=True is not available on cpu: inductor on the CPU needs a "
                                                  "C\\+\\+ compiler .*load the model with compile=False"):
            make()


def test_load_passes_the_options_to_the_shipped_checkpoint():
    den = load("tiny-shakespeare-dsl", precision="bf16")
    assert den.forward_options == {"precision": "bf16", "compile": False}
    assert "_fast" not in " ".join(den.state_dict()), "the options add no weights"


def test_cli_sample_takes_precision_and_compile_flags(capsys):
    assert main(["sample", "--path", "mdm(2)", "--n", "1", "--precision", "bf16"]) == 0
    assert "--- sample 0" in capsys.readouterr().out


def test_cli_nll_runs_the_checkpoint_under_precision(capsys):
    """Two t draws of the ELBO on two windows: bf16 moves the estimate (its logits differ), so the flag reached it."""
    outs = []
    for precision in ("fp32", "bf16"):
        assert main(["nll", "--estimator", "elbo", "--samples", "2", "--windows", "2", "--precision", precision]) == 0
        outs.append(capsys.readouterr().out.split("elbo")[-1])
    assert "bits per token" in outs[0] and outs[0] != outs[1]


@pytest.mark.parametrize("command", [["sample"], ["nll"], ["check"], ["check", "--trajectory", "mdm(2)"]])
def test_cli_forward_flags_are_refused_before_a_model_is_loaded(command, capsys, monkeypatch):
    for flags, message in ((["--precision", "fp16"], "--precision must be one of ('fp32', 'bf16') (got 'fp16')"),
                           (["--compile"], "--compile is not available on cpu: no compiler (test)")):
        if flags == ["--compile"]:
            monkeypatch.setattr(fast, "compile_problem", lambda device: "no compiler (test)")
        with pytest.raises(SystemExit):
            main([*command, *flags])
        assert message in capsys.readouterr().err


def test_cli_check_trajectory_without_a_checkpoint_refuses_forward_flags(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--trajectory", "mdm(2)", "--precision", "bf16"])
    assert "--trajectory without --checkpoint runs no network" in capsys.readouterr().err
