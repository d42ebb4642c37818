"""The runner's invariants (issue 16): every run that starts ends with every position clean, arguments are checked
before the first denoiser call, and what a denoiser does wrong is the library's error naming the step.

The property runs generated compositions (snrpaths.testing.strategies.composed_paths) with random prompts on exact
toys: whatever compiles must end clean, with the prompt untouched. The regressions are the inputs of the issue.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import Path, SNRPathError, SNRTypeError, ShapeError, parse_path, sample
from snrpaths.backends.toy import ExactToy
from snrpaths.compile import Program, RemaskOp, Step
from snrpaths.errors import DenoiserError
from snrpaths.testing import strategies as sst
from snrpaths.testing.denoisers import Counting

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ExactToy.markov(3, 4, seed=3)


# -- the property ------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_path_that_compiles_ends_clean(data):
    length = data.draw(st.integers(1, 4), label="seq_len")
    toy = data.draw(sst.toy_joints(seq_lens=st.just(length)), label="toy")
    path = data.draw(sst.composed_paths(seq_len=length), label="path")
    try:
        program = path.compile(length)
    except SNRPathError:
        return  # refused before any work: allowed; the property is about what the compiler accepts
    prompt = data.draw(st.one_of(st.none(), sst.prompts(toy.vocab_size, length)), label="prompt")
    batch = None if prompt is not None and prompt.ndim == 2 else data.draw(st.integers(1, 3), label="batch")
    result = sample(program, toy, batch=batch, seed=data.draw(sst.seeds(), label="seed"), prompt=prompt)
    assert bool(result.state.clean.all()), f"{path!r} left positions unrevealed"
    assert bool((result.tokens >= 0).all() & (result.tokens < toy.vocab_size).all())
    if prompt is not None:
        fixed = prompt.expand_as(result.tokens) != -1
        assert torch.equal(result.tokens[fixed], prompt.expand_as(result.tokens)[fixed]), "a prompt position moved"


# -- remasking on the last step --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "ar() >> mdm(1, remask='rescale', eta=1.0)",  # returned every token as -1
    "ar() >> mdm(1, remask='cap', eta=1.0)",
    "ar() >> mdm(1, remask='confidence')",
    "roar() >> mdm(1, remask='loop', eta=1.0)",
    "mdm(8, remask='loop', t_off=1e-12)",  # left some positions unrevealed
    "mdm(8, remask='loop', eta=1.0, t_off=1e-12)",
    "mdm(1, remask='rescale', eta=1.0) >> mdm(1, remask='rescale', eta=1.0)",
])
def test_a_remasking_clock_ends_with_every_position_clean(text):
    result = sample(parse_path(text), TOY, batch=256, seed=0)
    assert bool(result.state.clean.all()) and bool((result.tokens >= 0).all())


def test_the_remasking_policies_still_remask_before_the_last_step():
    """The fix sets sigma to 0 on the last step only: a two-step clock after ar() still remasks on its first."""
    trace = sample(parse_path("ar() >> mdm(2, remask='rescale', eta=1.0)"), TOY, batch=64, seed=0, trace=True).trace
    after_first = trace.gamma[5]  # 4 ar steps, then the clock's first step
    assert bool((after_first == 0).any()) and bool(torch.isinf(trace.gamma[-1]).all())


# -- the runner's own check --------------------------------------------------------------------------------------------


def test_a_program_that_ends_masked_raises_naming_the_step():
    good = Path.ar().compile(4)
    bad = Program(path=Path.ar(), seq_len=4, steps=good.steps + (Step(False, (RemaskOp((1, 2)),), "remask(...)"),))
    with pytest.raises(SNRPathError, match=r"after step 4 \(remask\(\.\.\.\)\), the last step .* unrevealed"):
        sample(bad, TOY, batch=2)
    with pytest.raises(SNRPathError, match="before any step|the program has no steps"):
        sample(Program(path=Path.ar(), seq_len=4, steps=()), TOY)


def test_a_partial_program_may_end_unrevealed():
    head = Path.ar().compile(4).prefix(2)
    assert head.partial and repr(head).endswith("partial=True)")
    result = sample(head, TOY, batch=3)
    assert result.tokens[:, 2:].eq(-1).all() and result.tokens[:, :2].ge(0).all()
    with pytest.raises(SNRPathError, match="'k' must be an integer in"):
        Path.ar().compile(4).prefix(5)


# -- temperature ---------------------------------------------------------------------------------------------------


class Fixed:
    """The same logits at every position: token 1 is the most likely, the last token is not."""

    def __init__(self, logits, seq_len=3, dtype=torch.float64):
        self.vocab_size, self.seq_len = len(logits), seq_len
        self.table = ExactToy.product(len(logits), 1).table
        self.row, self.dtype = torch.tensor(logits, dtype=torch.float64), dtype

    def logits(self, state):
        return self.row.expand(state.batch, self.seq_len, -1).to(self.dtype)


@pytest.mark.parametrize("temperature", [0, 0.0, 5e-324, 1e-320, 1e-300])
def test_tiny_and_zero_temperatures_draw_the_argmax(temperature):
    """temperature=1e-320 drew the last token every time (NaN confidences); 0 was refused."""
    den = Fixed([0.0, 5.0, 1.0])
    for text in (f"mdm(4, temperature={temperature!r})", f"reveal(count=1, temperature={temperature!r})"):
        result = sample(parse_path(text), den, batch=64, seed=1)
        assert result.tokens.eq(1).all(), text
        assert result.state.confidence.eq(1.0).all(), "the argmax had probability 1"


def test_temperature_zero_splits_ties_evenly_and_is_the_limit_of_small_temperatures():
    den = Fixed([2.0, 2.0, -1.0])
    tokens = sample(Path.mdm(2, temperature=0), den, batch=2000, seed=3).tokens
    share = float(tokens.eq(0).double().mean())
    assert tokens.lt(2).all() and abs(share - 0.5) < 5 * (0.25 / tokens.numel()) ** 0.5
    assert torch.equal(tokens, sample(Path.mdm(2, temperature=1e-320), den, batch=2000, seed=3).tokens)


def test_temperatures_below_zero_are_still_refused():
    with pytest.raises(SNRPathError, match="'temperature' must lie in"):
        Path.mdm(4, temperature=-1e-320)


# -- what the denoiser returns or raises ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_non_float_logits_are_refused_naming_the_dtype(dtype):
    with pytest.raises(ShapeError, match=rf"at step 0 \(ar\(\)\) .* dtype {dtype}; logits must be floating point"):
        sample(Path.ar(), Fixed([0.0, 5.0, 1.0], dtype=dtype))


class Raising:
    def __init__(self, inner, error, at_call=2):
        self.inner, self.error, self.at_call, self.calls = inner, error, at_call, 0
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        self.calls += 1
        if self.calls == self.at_call:
            raise self.error
        return self.inner.logits(state)


def test_a_denoiser_exception_names_the_step_and_chains_the_original():
    original = RuntimeError("CUDA out of memory (simulated)")
    with pytest.raises(DenoiserError, match=r"at step 1 \(mdm\(4\)\) the denoiser raised RuntimeError: CUDA out") as info:
        sample(Path.mdm(4), Raising(TOY, original), batch=64)
    assert info.value.__cause__ is original and isinstance(info.value, SNRPathError)


def test_keyboard_interrupt_is_not_wrapped():
    with pytest.raises(KeyboardInterrupt):
        sample(Path.ar(), Raising(TOY, KeyboardInterrupt(), at_call=1))


# -- sample()'s arguments, all checked before the first call ---------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(seed=1.9), SNRTypeError, r"'seed' must be an integer in \[0, 2\*\*64 - 1\] \(got 1.9\)"),
    (dict(seed=2.0), SNRTypeError, "'seed' must be an integer"),
    (dict(seed=True), SNRTypeError, "'seed' must be an integer"),
    (dict(seed="0"), SNRTypeError, "'seed' must be an integer"),
    (dict(seed=-1), SNRPathError, r"'seed' must be an integer in \[0, 2\*\*64 - 1\] \(got -1\)"),
    (dict(seed=2**64), SNRPathError, "'seed' must be an integer"),
    (dict(batch=0), SNRPathError, "'batch' must be a positive integer"),
    (dict(batch=2.0), SNRTypeError, "'batch' must be a positive integer"),
    (dict(batch=False), SNRTypeError, "'batch' must be a positive integer"),
    (dict(batch=3, prompt=torch.full((2, 4), -1)), ShapeError, "'prompt' has 2 rows but batch=3"),
    (dict(prompt=torch.zeros(0, 4, dtype=torch.int64)), ShapeError, "'prompt' has no rows"),
    (dict(prompt=[-1, -1, -1, -1]), SNRTypeError, "'prompt' must be a torch.Tensor of token ids"),
    (dict(prompt=torch.full((4,), -1.0)), SNRTypeError, "'prompt' must hold integer token ids"),
    (dict(prompt=torch.zeros(4, dtype=torch.bool)), SNRTypeError, "'prompt' must hold integer token ids"),
    (dict(prompt=torch.full((1, 1, 4), -1)), ShapeError, r"'prompt' must have shape \[L\] or \[B, L\]"),
    (dict(prompt=torch.tensor([-2, -1, -1, -1])), SNRPathError, "or -1 for a free position"),
    (dict(prompt=torch.tensor([0, 3, -1, -1])), SNRPathError, r"valid ids are in \[0, 2\]"),
])
def test_bad_arguments_fail_before_any_call(kwargs, error, message):
    counting = Counting(TOY)
    with pytest.raises(error, match=message):
        sample(Path.ar(), counting, **kwargs)
    assert counting.calls == 0


def test_seeds_across_the_generator_range_and_numpy_integers():
    import numpy as np

    for seed in (0, 2**63, 2**64 - 1, np.int64(7), torch.tensor(7)):
        assert sample(Path.ar(), TOY, seed=seed).tokens.shape == (1, 4)
    assert torch.equal(sample(Path.ar(), TOY, seed=np.int64(7)).tokens, sample(Path.ar(), TOY, seed=7).tokens)


def test_a_2d_prompt_sets_the_batch_and_an_agreeing_batch_is_fine():
    prompt = torch.tensor([[0, -1, -1, -1], [-1, -1, 2, -1]])
    for batch in (None, 2):
        tokens = sample(Path.ar(), TOY, batch=batch, prompt=prompt).tokens
        assert tokens.shape == (2, 4) and tokens[0, 0] == 0 and tokens[1, 2] == 2
    assert sample(Path.ar(), TOY, batch=3, prompt=prompt[0]).tokens.shape == (3, 4)
    assert sample(Path.ar(), TOY, prompt=torch.tensor([0, -1, -1, -1], dtype=torch.int32)).tokens[0, 0] == 0


class NaNWhereClean:
    """Logits that are NaN at clean positions, which the Denoiser protocol allows ("may return anything")."""

    def __init__(self, inner):
        self.inner = inner
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        return self.inner.logits(state).masked_fill(state.clean[..., None], float("nan"))


@pytest.mark.parametrize("form", ["mean", "sample"])
def test_a_ramp_leaves_clean_positions_exactly_at_z_0_whatever_their_logits(form):
    """The mean form added 0 * NaN to the evidence of the prompt's positions."""
    prompt = torch.tensor([0, -1, -1, -1])
    result = sample(Path.hybrid(3, 3, form=form), NaNWhereClean(TOY), batch=4, prompt=prompt)
    result.state.validate(TOY.table)
    assert not torch.isnan(result.state.z).any() and result.tokens[:, 0].eq(0).all()
