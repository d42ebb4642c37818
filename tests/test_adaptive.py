"""Paths that adapt (issue 17, parts 1-3): threshold and entropy-bounded reveals, semi-autoregressive blocks, stop
tokens. What each reduces to at its edges, the bounds it keeps, the calls it saves, and the bad input it refuses
before any call. The conformance suite (tests/test_runner.py) runs every one of them too.

Every comparison is exact (same seed, same tokens): no statistical budget is needed here.
"""

import itertools
import math

import pytest
import torch

from snrpaths import Path, PathSyntaxError, SNRPathError, SNRTypeError, parse_path, sample
from snrpaths.backends.toy import ExactToy
from snrpaths.data import trim_at_stop
from snrpaths.orders import EntropyBound, Threshold
from snrpaths.testing.denoisers import Counting

pytestmark = pytest.mark.usefixtures("one_thread")

#: a Markov chain whose exact posterior is never certain (every transition has positive probability)
CHAIN = ExactToy.markov(3, 6, seed=3)


# -- threshold reveals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("floor", ["2", "3", "6", "9", "6, schedule='cosine'", "count=1", "count=2"])
@pytest.mark.parametrize("order", ["confidence", "random", "entropy", "left-to-right"])
def test_threshold_1_is_the_floor_alone(floor, order):
    """No position of CHAIN is ever certain, so ``threshold=1`` adds nothing to its count or clock: the same tokens
    for the same seed. The same calls too, except that the rule reads the logits on every step with something left,
    where an unranked floor (random coin flips, left to right) skips the call on a step that chose nothing."""
    clock = "" if "count" in floor or "schedule" in floor else ", schedule='linear'"
    plain = parse_path(f"reveal({floor}, order='{order}'{clock})")
    adaptive = parse_path(f"reveal({floor}, order='{order}', threshold=1.0)")
    a, b = sample(plain, CHAIN, batch=64, seed=4), sample(adaptive, CHAIN, batch=64, seed=4)
    assert torch.equal(a.tokens, b.tokens)
    if plain.order.uses_evidence or plain.count is not None:
        assert torch.equal(a.calls, b.calls) and a.nfe == b.nfe
    else:
        assert bool((a.calls <= b.calls).all())


@pytest.mark.parametrize("text", ["reveal(6, order='confidence', threshold=0.0)", "reveal(count=1, threshold=0.0)",
                                  "reveal(3, order='entropy', schedule='cosine', threshold=0.0)"])
def test_threshold_0_reveals_everything_in_one_step(text):
    prompt = torch.tensor([-1, 2, -1, -1, 0, -1])
    for kwargs in ({}, {"prompt": prompt}):
        result = sample(parse_path(text), Counting(CHAIN), batch=32, seed=1, trace=True, **kwargs)
        assert result.nfe == 1 and result.calls.eq(1).all()
        assert torch.isinf(result.trace.gamma[1]).all(), "every position clean after the first step"
        assert not result.trace.called[1:].any()


def test_a_threshold_reveals_every_confident_position_and_what_the_clock_needs():
    """Step by step: the positions revealed are those whose confidence (the trace's, from the same logits) is at
    least tau, topped up by the most confident others to the clock's count ``round(alpha_s L) - n_clean``."""
    tau, T, L = 0.6, 3, CHAIN.seq_len
    trace = sample(Path.reveal(T, order="confidence", threshold=tau), CHAIN, batch=128, seed=2, trace=True).trace
    for k in range(T):
        before, after = torch.isinf(trace.gamma[k]), torch.isinf(trace.gamma[k + 1])
        revealed, conf = after & ~before, trace.confidence[k].double()
        assert not ((conf - tau).abs() < 1e-6).any(), "the trace's float32 confidences decide every comparison"
        confident = ~before & (conf >= tau)
        assert bool((revealed | ~confident).all()), "every confident position is revealed"
        need = round((k + 1) / T * L) - before.sum(1)
        assert bool((revealed.sum(1) == torch.maximum(confident.sum(1), need)).all())
    assert torch.isinf(trace.gamma[-1]).all()


def test_threshold_reveals_save_calls_and_stay_within_the_static_bound():
    toy = ExactToy.markov(4, 6, seed=1, concentration=0.2)  # peaked transitions: many positions are near certain
    program = Path.reveal(6, order="confidence", threshold=0.7).compile(6)
    result = sample(program, Counting(toy), batch=64, seed=0)
    assert int(result.calls.max()) <= result.nfe <= program.nfe == 6
    assert float(result.calls.double().mean()) < 4, "most rows finish in fewer than the clock's 6 calls"


# -- entropy-bounded reveals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 0.4, 1.0, 3.0])
@pytest.mark.parametrize("den", [CHAIN, ExactToy.markov(4, 6, seed=1, concentration=0.2)], ids=["chain", "peaked"])
def test_entropy_bounded_reveals_keep_the_bound_except_for_the_forced_position(eps, den):
    """With a count of one as the floor, each step either reveals one position (forced, whatever its entropy) or
    positions whose entropies (the trace's, from the same logits) sum to at most eps, lowest entropies first."""
    trace = sample(parse_path(f"reveal(order='entropy', count=1, entropy_bound={eps})"), den, batch=64, seed=3,
                   trace=True).trace
    several = 0
    for k in range(trace.called.shape[0]):
        before, after = torch.isinf(trace.gamma[k]), torch.isinf(trace.gamma[k + 1])
        for b in range(64):
            revealed = (after & ~before)[b]
            if int(revealed.sum()) <= 1:
                continue
            several += 1
            h = trace.entropy[k, b].double()
            assert float(h[revealed].sum()) <= eps + 1e-9, (k, b)
            assert float(h[revealed].max()) <= float(torch.cat([h[~before[b] & ~revealed], torch.tensor([math.inf])]).min()), "lowest first"
    if eps == 0.0:
        assert several == 0, "no position of these toys is certain"
    if eps == 3.0:
        assert several > 0, "the bound reveals several positions per step"


@pytest.mark.parametrize("eps", [0.0, 1.0, 3.0])
def test_on_a_clock_the_bound_is_kept_beyond_the_clocks_count(eps):
    """With a clock as the floor a step reveals the lowest-entropy prefix of length max(1, what the clock needs, what
    the bound allows): more than the forced max(1, need) only within the bound."""
    T, L = 3, CHAIN.seq_len
    trace = sample(Path.reveal(T, order="entropy", entropy_bound=eps), CHAIN, batch=64, seed=5, trace=True).trace
    for k in range(T):
        before, after = torch.isinf(trace.gamma[k]), torch.isinf(trace.gamma[k + 1])
        revealed = after & ~before
        left = L - before.sum(1)
        forced = torch.minimum((round((k + 1) / T * L) - before.sum(1)).clamp_min(1), left)
        beyond = revealed.sum(1) > forced
        summed = torch.where(revealed, trace.entropy[k].double(), 0.0).sum(1)
        assert bool((summed[beyond] <= eps + 1e-9).all()) and bool((revealed.sum(1) >= forced).all())


def test_the_entropy_bound_reveals_at_least_one_per_step():
    """A clock of 9 steps over 6 positions needs nothing on some steps; the bound 0 takes nothing (no position is
    certain), so each step reveals the lowest-entropy position alone: every row is done after 6 calls of 9."""
    program = Path.reveal(9, order="entropy", entropy_bound=0.0).compile(6)
    result = sample(program, Counting(CHAIN), batch=32, seed=0, trace=True)
    assert program.nfe == 9 and result.nfe == 6 and result.calls.eq(6).all()
    assert torch.isinf(result.trace.gamma[6]).all() and not result.trace.called[6:].any()


def test_a_larger_entropy_bound_costs_fewer_calls():
    calls = [float(sample(parse_path(f"reveal(6, order='entropy', entropy_bound={eps})"), CHAIN, batch=128,
                          seed=0).calls.double().mean()) for eps in (0.0, 1.0, 3.0, 100.0)]
    assert calls == sorted(calls, reverse=True) and calls[0] == 6 and calls[-1] == 1, calls


# -- the rules' values and bad input ----------------------------------------------------------------------------------


def test_adaptive_reveals_print_and_parse_as_typed():
    for text in ["reveal(8, order='confidence', threshold=0.9)", "reveal(order='entropy', count=1, entropy_bound=0.5)",
                 "reveal(8, order='confidence', schedule='cosine', threshold=0.9)", "blocks(4, mdm(8))",
                 "blocks(2, reveal(4, order='entropy', entropy_bound=1.0)) >> ar()"]:
        path = parse_path(text)
        assert repr(path) == text and parse_path(repr(path)) == path
    # a clock written out is the default one: it parses to the same value and prints as typed without it
    assert parse_path("reveal(8, order='confidence', schedule='linear', threshold=0.9)") == \
        Path.reveal(8, order="confidence", threshold=0.9)
    assert Path.reveal(8, order="confidence", threshold=1).adaptive == Threshold(1.0)
    assert Path.reveal(count=1, entropy_bound=2).adaptive == EntropyBound(2.0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(threshold=-0.1), SNRPathError, r"'threshold' must lie in \[0.0, 1.0\] \(got -0.1\)"),
    (dict(threshold=1.5), SNRPathError, r"'threshold' must lie in \[0.0, 1.0\] \(got 1.5\)"),
    (dict(threshold=math.nan), SNRPathError, r"'threshold' must lie in \[0.0, 1.0\] \(got nan\)"),
    (dict(threshold="0.9"), SNRTypeError, r"'threshold' must be a number in \[0.0, 1.0\] \(got '0.9'\)"),
    (dict(threshold=True), SNRTypeError, "'threshold' must be a number"),
    (dict(threshold=torch.tensor([0.5, 0.6])), SNRTypeError, "'threshold' must be a number"),
    (dict(entropy_bound=-1e-9), SNRPathError, r"'entropy_bound' must lie in \[0.0, inf\) \(got -1e-09\)"),
    (dict(entropy_bound=math.inf), SNRPathError, r"'entropy_bound' must lie in \[0.0, inf\)"),
    (dict(entropy_bound=math.nan), SNRPathError, "'entropy_bound' must lie in"),
    (dict(entropy_bound=[1.0]), SNRTypeError, "'entropy_bound' must be a number"),
    (dict(threshold=0.9, entropy_bound=1.0), SNRPathError, "at most one adaptive rule of \\('threshold', "),
])
def test_bad_rules_are_refused_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        Path.reveal(8, order="confidence", **kwargs)


def test_an_adaptive_reveal_needs_a_floor_and_the_parser_points_at_bad_values():
    with pytest.raises(SNRPathError, match=r"reveal\(threshold=0.9\) needs a floor: steps T .* or count=k"):
        Path.reveal(order="confidence", threshold=0.9)
    with pytest.raises(PathSyntaxError, match=r"'threshold' must lie in \[0.0, 1.0\] \(got 2\)"):
        parse_path("reveal(4, order='confidence', threshold=2)")
    with pytest.raises(SNRTypeError, match="'adaptive' must be a reveal rule value"):
        Path.reveal(4, schedule="linear").__class__(steps=4, schedule="linear", adaptive=0.9)


def test_adaptive_reveals_define_no_path_integral():
    """Which positions a rule reveals depends on the evidence, so the route is not a curve for the estimator."""
    from snrpaths.nll.curves import SamplerCurve

    with pytest.raises(SNRPathError, match="sized by an adaptive rule"):
        SamplerCurve(parse_path("reveal(4, threshold=0.5)")).knots(4)


# -- blocks ---------------------------------------------------------------------------------------------------------

INNERS = ["mdm(4)", "ar()", "hybrid(2, 2, switch='commit')", "reveal(4, order='confidence', threshold=0.7)",
          "mdm(3, remask='cap', eta=0.3)"]


@pytest.mark.parametrize("inner", INNERS)
def test_one_block_is_its_inner_path(inner):
    one, plain = parse_path(f"blocks(1, {inner})"), parse_path(inner)
    assert [s.ops for s in one.compile(6).steps] == [s.ops for s in plain.compile(6).steps]
    for prompt in (None, torch.tensor([-1, 1, -1, -1, 0, -1])):
        a = sample(one, CHAIN, batch=32, seed=6, prompt=prompt)
        b = sample(plain, CHAIN, batch=32, seed=6, prompt=prompt)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.calls, b.calls)


def test_blocks_run_their_spans_left_to_right():
    """blocks(3, mdm(2)) on 8 positions: spans 0..2, 3..5, 6..7 (the first ``8 % 3`` one longer), two steps each;
    no position of a block moves before the blocks on its left are clean."""
    program = parse_path("blocks(3, mdm(2))").compile(8)
    assert program.nfe == 6 and [s.ops[0].positions for s in program.steps] == \
        [(0, 1, 2)] * 2 + [(3, 4, 5)] * 2 + [(6, 7)] * 2
    assert program.steps[2].stage == "blocks(3, mdm(2)) block 2 of 3 (positions 3..5): mdm(2)"
    toy = ExactToy.markov(2, 8, seed=0)
    gamma = sample(program, toy, batch=16, seed=0, trace=True).trace.gamma
    for k, (start, stop) in itertools.product(range(6), [(0, 3), (3, 6), (6, 8)]):
        moved = (gamma[k + 1, :, start:stop] != 0).any()
        if moved:
            assert torch.isinf(gamma[k + 1, :, :start]).all(), (k, start)


def test_a_block_the_prompt_fills_costs_no_call():
    prompt = torch.tensor([0, 1, 2, -1, -1, -1])
    result = sample(parse_path("blocks(2, mdm(3))"), Counting(CHAIN), batch=8, seed=0, prompt=prompt, trace=True)
    assert not result.trace.called[:3].any() and result.nfe <= 3
    assert torch.equal(result.tokens[:, :3], prompt[:3].expand(8, 3))


@pytest.mark.parametrize("make, error, message", [
    (lambda: Path.blocks(0, Path.mdm(4)), SNRPathError, "'n' must be a positive integer \\(got 0\\)"),
    (lambda: Path.blocks(2.0, Path.mdm(4)), SNRTypeError, "'n' must be a positive integer \\(got 2.0\\)"),
    (lambda: Path.blocks(True, Path.mdm(4)), SNRTypeError, "'n' must be a positive integer"),
    (lambda: Path.blocks(2, "mdm(4)"), SNRTypeError, "'inner' must be a Path"),
    (lambda: Path.blocks(2), SNRTypeError, "missing a required argument: 'inner'"),
    (lambda: Path.blocks(7, Path.mdm(4)).compile(6), SNRPathError,
     r"blocks\(7, mdm\(4\)\): 7 blocks of a stage with 6 positions; each block needs at least one \(n in 1..6\)"),
    (lambda: Path.blocks(2, Path.reveal(order=(2, 1, 0, 3), count=1)).compile(6), SNRPathError,
     "the explicit order has 4 entries but the stage covers 3"),
    (lambda: parse_path("blocks(-1, ar())"), PathSyntaxError, "'n' must be a positive integer"),
])
def test_bad_blocks_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- stop tokens ----------------------------------------------------------------------------------------------------

END = 2
#: the rarest token of CHAIN (no row in 0.72 holds it): a stop token most rows never draw
RARE = 0


def test_the_ended_toy_holds_only_end_tokens_after_its_end_token():
    toy = ExactToy.ended(3, 5, seed=1, p_end=0.4)
    tokens = toy.sample(4000, torch.Generator().manual_seed(0))
    first = torch.where(tokens == END, torch.arange(5), 5).amin(1)
    assert bool((tokens[torch.arange(5) > first[:, None]] == END).all()) and (first == 0).sum() == 0
    assert abs(float((first == 1).double().mean()) - 0.4) < 5 * math.sqrt(0.24 / 4000)
    with pytest.raises(SNRPathError, match=r"'p_end' must lie in \(0.0, 1.0\)"):
        ExactToy.ended(3, 5, p_end=1.0)


def test_stop_tokens_save_calls_on_a_joint_with_an_end_token():
    """AR on a joint where only the end token follows the end token: the same tokens with and without the stop
    token (the exact posterior draws it anyway), but a row stops calling once it drew it: calls = first end + 1, and
    the rows it finished are left out of the batch's later calls."""
    toy = ExactToy.ended(3, 6, seed=0, p_end=0.3)
    counting = Counting(toy)
    plain, stopped = (sample(Path.ar(), den, batch=256, seed=0, stop_token=s)
                      for s, den in ((None, Counting(toy)), (END, counting)))
    assert torch.equal(plain.tokens, stopped.tokens)
    first = torch.where(plain.tokens == END, torch.arange(6), 5).amin(1)
    assert torch.equal(stopped.calls, first + 1) and plain.calls.eq(6).all()
    assert stopped.nfe == 6 and float(stopped.calls.double().mean()) < 4.5
    # a finished row takes no place in later calls: call k goes to the rows whose first end token is at k or later
    assert [s.batch for s in counting.states] == [int((first >= k).sum()) for k in range(6)]


def test_stop_tokens_never_change_a_sequence_that_has_none():
    """Rows of the run without a stop token that never drew it are the same samples, with the same calls, in the run
    with it; every row that did draw it holds it from the first one to the end."""
    for text in ["mdm(4)", "hybrid(2, 2)", "reveal(4, order='confidence', threshold=0.6)", "blocks(2, mdm(2))",
                 "mdm(4, remask='cap', eta=0.3)", "roar()"]:
        plain = sample(parse_path(text), CHAIN, batch=128, seed=9, trace=True)
        stopped = sample(parse_path(text), CHAIN, batch=128, seed=9, stop_token=RARE)
        # rows that never held it at any step (with remasking, a stop token drawn and remasked later counts)
        none = ~(plain.trace.tokens == RARE).any(2).any(0)
        assert none.sum() > 50 and torch.equal(plain.tokens[none], stopped.tokens[none]), text
        assert torch.equal(plain.calls[none], stopped.calls[none]), text
        hit = (stopped.tokens == RARE).int().argmax(1)
        ended = (stopped.tokens == RARE).any(1)
        after = torch.arange(6) >= hit[:, None]
        assert ended.sum() > 10 and bool((stopped.tokens[ended][after[ended]] == RARE).all()), text


def test_a_stop_token_in_the_prompt_does_not_end_the_row():
    """Only a stop token the path drew ends a row: a prompt may hold it (a chat template's separators)."""
    prompt = torch.tensor([RARE, -1, -1, -1, -1, -1])
    a = sample(Path.ar(), CHAIN, batch=64, seed=2, prompt=prompt)
    b = sample(Path.ar(), CHAIN, batch=64, seed=2, prompt=prompt, stop_token=RARE)
    none = ~(a.tokens[:, 1:] == RARE).any(1)
    assert none.sum() > 5 and torch.equal(a.tokens[none], b.tokens[none]) and b.calls[none].eq(5).all()


def test_a_row_with_a_stop_token_is_the_same_sample_in_any_batch():
    program = parse_path("reveal(4, order='confidence', threshold=0.6)").compile(6)
    full = sample(program, CHAIN, batch=8, seed=3, stop_token=RARE)
    assert (full.tokens == RARE).any()
    for i in range(8):
        alone = sample(program, CHAIN, batch=1, seed=3, row_offset=i, stop_token=RARE)
        assert torch.equal(alone.tokens[0], full.tokens[i]) and alone.nfe == int(full.calls[i]), i


@pytest.mark.parametrize("stop, error, message", [
    (3, SNRPathError, r"'stop_token' must be an integer in \[0, 2\] or None \(got 3\)"),
    (-1, SNRPathError, r"'stop_token' must be an integer in \[0, 2\] or None \(got -1\)"),
    (1.0, SNRTypeError, "'stop_token' must be an integer"),
    (True, SNRTypeError, "'stop_token' must be an integer"),
    ("2", SNRTypeError, "'stop_token' must be an integer"),
])
def test_stop_tokens_outside_the_vocabulary_are_refused_before_any_call(stop, error, message):
    counting = Counting(CHAIN)
    with pytest.raises(error, match=message):
        sample(Path.ar(), counting, stop_token=stop)
    assert counting.calls == 0


def test_trim_at_stop_cuts_at_the_first_stop_the_path_drew():
    ids = torch.tensor([2, 0, 1, 2, 2, 2])
    assert trim_at_stop(ids, 2).tolist() == []
    assert trim_at_stop(ids, 2, prompt=torch.tensor([2, -1, -1, -1, -1, -1])).tolist() == [2, 0, 1]
    assert trim_at_stop(ids, None).tolist() == ids.tolist() and trim_at_stop(ids, 5).tolist() == ids.tolist()
    with pytest.raises(SNRPathError, match="'stop_token' must be a non-negative integer"):
        trim_at_stop(ids, -1)
