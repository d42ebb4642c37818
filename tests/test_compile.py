"""The compiler: static NFE, zipped parallel branches, purity and caching, and errors naming the stage."""

import pytest
from hypothesis import given

from snrpaths import Path, SNRPathError, parse_path
from snrpaths.compile import MaskOp, RampOp, RemaskOp, RevealOp
from snrpaths.testing import strategies as sst


@pytest.mark.parametrize("text, seq_len, nfe", [
    ("ramp(16) >> mdm(32, remask='confidence')", 64, 48),
    ("ar()", 10, 10),
    ("roar()", 7, 7),
    ("hybrid(16, 32)", 128, 48),
    ("hybrid(16, 32, switch='commit')", 128, 49),
    ("hybrid(16, 32, switch='mask')", 128, 48),
    ("on(slice(0, 4), ar()) | on(slice(4, 8), mdm(2))", 8, 4),
    ("reveal(count=3)", 10, 4),
    ("reveal(8, order='confidence', threshold=0.9)", 16, 8),  # an upper bound: adaptive runs stop sooner
    ("reveal(order='entropy', count=2, entropy_bound=1.0)", 9, 5),
    ("blocks(4, mdm(8))", 32, 32),
    ("blocks(3, ar())", 7, 7),
    ("mdm(8) >> remask(positions=[0, 1]) >> reveal(count=1, order='confidence')", 8, 10),
])
def test_nfe_is_known_before_running(text, seq_len, nfe):
    assert parse_path(text).compile(seq_len).nfe == nfe


def test_parallel_branches_share_calls():
    prog = (Path.on(slice(0, 2), Path.ar()) | Path.on(slice(2, 6), Path.ramp(3) >> Path.mdm(2))).compile(6)
    kinds = [tuple(type(op).__name__ for op in step.ops) for step in prog.steps]
    assert kinds == [("RevealOp", "RampOp"), ("RevealOp", "RampOp"), ("RampOp",), ("RevealOp",), ("RevealOp",)]
    assert all(step.call for step in prog.steps)


def test_program_ops_carry_the_clock():
    prog = Path.mdm(4, remask="cap", eta=0.1).compile(3)
    ops = [step.ops[0] for step in prog.steps]
    assert [(op.alpha_t, op.alpha_s) for op in ops] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert [round(op.sigma, 12) for op in ops] == [0.1, 0.1, 0.1, 0.0]  # min(eta, (1 - a_s) / a_t), 1 at t = 1
    assert all(isinstance(op, RevealOp) and op.positions == (0, 1, 2) for op in ops)
    assert [type(s.ops[0]) for s in Path.hybrid(1, 1, switch="mask").compile(2).steps] == [RampOp, MaskOp, RevealOp]
    assert type(parse_path("mdm(2) >> remask(positions=[0]) >> ar()").compile(2).steps[2].ops[0]) is RemaskOp


def _outcome(path, seq_len=4):
    try:
        return path.compile(seq_len).steps
    except SNRPathError as err:
        return str(err)


@given(a=sst.paths(), b=sst.paths(), c=sst.paths())
def test_then_is_associative_at_the_program_level(a, b, c):
    """Same steps, or the same error (a sampler after a complete sampler has nothing left to reveal)."""
    assert _outcome((a >> b) >> c) == _outcome(a >> (b >> c))


@given(c=sst.paths())
def test_then_with_finite_snr_prefixes_is_associative(c):
    b = Path.ramp(3) >> Path.switch("mask")
    left, right = ((b >> b) >> c).compile(4), (b >> (b >> c)).compile(4)
    assert left.steps == right.steps and left.nfe == right.nfe == 6 + c.compile(4).nfe


def test_compile_is_pure_and_cached():
    path = Path.ramp(8) >> Path.mdm(16, remask="loop")
    assert path.compile(32) is path.compile(32)
    assert parse_path(repr(path)).compile(32) is path.compile(32)
    assert path.compile(32).steps != path.compile(16).steps
    assert repr(path.compile(32)) == "Program(ramp(8) >> mdm(16, remask='loop'), seq_len=32, steps=24, nfe=24)"


@pytest.mark.parametrize("text, seq_len, message", [
    ("ramp(4)", 4, r"can leave positions \[0, 1, 2, 3\] unrevealed"),
    ("ramp(4) >> switch('keep')", 4, "unrevealed"),
    ("mdm(4) >> remask(positions=[2])", 4, r"positions \[2\] unrevealed \(left open by remask\(positions=\(2,\)\)\)"),
    ("reveal(2, count=1)", 4, "unrevealed"),
    ("on(slice(0, 2), ar())", 4, r"positions \[2, 3\] unrevealed"),
    ("reveal(count=5)", 4, "reveals 5 positions per step but at most 4 are left"),
    ("reveal(200, count=1)", 128, "200 steps of 1 plan 200 reveals but at most 128 positions are left"),
    ("reveal(4, count=64)", 128, "4 steps of 64 plan 256 reveals but at most 128 positions are left; 2 steps"),
    ("ar() >> remask(positions=[1]) >> reveal(2, count=1)", 4, "at most 1 positions are left"),
    ("ar() >> reveal(count=1)", 4, "at most 0 are left"),
    ("on(slice(0, 3), ar()) | on(slice(2, 4), mdm(2))", 4, "overlap at position 2"),
    ("ar() | mdm(2)", 4, "overlap at position 0"),
    ("on([0, 9], ar())", 4, r"positions \[9\] are out of range for seq_len=4"),
    ("on(slice(5, 9), ar())", 4, "selects no position"),
    ("reveal(order=(1, 0), count=1)", 4, "explicit order has 2 entries but the stage covers 4"),
    ("remask('cap') >> mdm(4)", 4, "a remask policy runs on a reveal's clock"),
    ("on([0, 1], on([1, 2], ar()))", 4, "outside the enclosing stage"),
    ("blocks(5, mdm(2))", 4, r"blocks\(5, mdm\(2\)\): 5 blocks of a stage with 4 positions"),
    ("on(slice(0, 2), blocks(3, ar())) | on(slice(2, 4), ar())", 4, "3 blocks of a stage with 2 positions"),
    ("blocks(2, on([0], ar()))", 4, "outside the enclosing stage"),
    ("blocks(2, reveal(3, count=1))", 4, "3 steps of 1 plan 3 reveals but at most 2 positions are left"),
])
def test_invalid_paths_fail_at_compile_time_naming_the_stage(text, seq_len, message):
    with pytest.raises(SNRPathError, match=message):
        parse_path(text).compile(seq_len)


def test_bad_seq_len():
    with pytest.raises(SNRPathError, match="'seq_len' must be a positive integer"):
        Path.ar().compile(0)


# -- a clock must end with every position clean (issue 16) -------------------------------------------------------------


def _always_remasks():
    import attrs

    from snrpaths.schedules import RemaskPolicy

    @attrs.frozen
    class Always(RemaskPolicy):
        """A user's policy that remasks even on the clock's last step."""

        name = "always"

        def sigma(self, t, s, alpha_t, alpha_s):
            return 0.5

    return Always()


def _short_clock():
    import attrs

    from snrpaths.schedules import AlphaSchedule

    @attrs.frozen(repr=False)
    class Short(AlphaSchedule):
        """A user's clock that stops at alpha = 0.9."""

        name = "short"

        def alpha(self, t):
            return 0.9 * (1 - t)

    return Short()


def test_a_clock_that_does_not_end_clean_is_refused_naming_the_stage():
    remasking = Path.remask(_always_remasks()) & Path.reveal(4, schedule="linear")
    with pytest.raises(SNRPathError, match=r"unrevealed \(left open by remask\(.*\) & reveal\(4, schedule='linear'\), "
                                           r"whose last step ends at alpha=1.0 with remasking probability 0.5"):
        remasking.compile(4)
    short = Path.reveal(4, schedule=_short_clock())
    with pytest.raises(SNRPathError, match=r"whose last step ends at alpha=0.9 with remasking probability 0.0"):
        short.compile(4)
    for path in (remasking, short):  # a later stage that reveals what is left makes them complete
        assert (path >> Path.mdm(2)).compile(4).nfe == 6


def test_the_built_in_clocks_end_clean_at_every_step_count():
    from snrpaths.schedules import ALPHA_SCHEDULES, REMASK_POLICIES

    for T in (1, 2, 3, 7):
        for schedule in ALPHA_SCHEDULES:
            for policy in (None, *REMASK_POLICIES):
                op = Path.mdm(T, schedule=schedule, remask=policy).compile(3).steps[-1].ops[0]
                assert (op.alpha_s, op.sigma) == (1.0, 0.0), (T, schedule, policy)
    op = Path.mdm(8, remask="loop", t_off=1e-12).compile(3).steps[-1].ops[0]
    assert (op.alpha_s, op.sigma) == (1.0, 0.0)


# -- which calls see finite SNR (what an endpoint-only denoiser may run) ------------------------------------------


@pytest.mark.parametrize("text, step", [
    ("mdm(4)", None), ("ar()", None), ("blocks(2, reveal(2, order='confidence', threshold=0.7))", None),
    ("ramp(3) >> mdm(2)", 1),  # the ramp's first call reads the all-[MASK] start; its second the risen evidence
    ("ramp(1) >> switch('keep') >> mdm(2)", 1), ("ramp(1) >> switch('commit')", 1),
    ("ramp(1) >> switch('mask') >> mdm(2)", None),  # the evidence is dropped before any call reads it
    ("mdm(2) >> ramp(2) >> switch('commit')", 3),
    ("ramp(2) >> switch('commit') >> mdm(2)", 1),
    # side by side, ar()'s call at step 1 is shared and sees the ramped positions before the mask drops them
    ("on(slice(0, 2), ar()) | on(slice(2, 4), ramp(1) >> switch('mask') >> mdm(2))", 1),
])
def test_the_first_call_that_can_see_finite_snr(text, step):
    assert parse_path(text).compile(4).finite_snr_call() == step


class _Plain:
    """A user denoiser written before the flag existed: it declares nothing."""

    def __init__(self, inner):
        self.inner, self.vocab_size, self.seq_len, self.table = inner, inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        return self.inner.logits(state)


class _Endpoint(_Plain):
    """The same, declaring it reads endpoint states only (snrpaths.denoiser.FiniteSNR)."""

    reads_finite_snr = False


def test_an_undeclared_denoiser_runs_every_path_and_an_endpoint_only_one_is_refused_before_any_call():
    from snrpaths import CapabilityError, sample
    from snrpaths.backends.toy import ExactToy
    from snrpaths.denoiser import reads_finite_snr
    from snrpaths.testing.denoisers import Counting

    toy = ExactToy.markov(2, 4, seed=0)
    assert reads_finite_snr(toy) and reads_finite_snr(_Plain(toy))
    assert sample(Path.hybrid(2, 2), _Plain(toy), batch=2).nfe == 4
    endpoint = Counting(_Endpoint(toy))
    assert not reads_finite_snr(endpoint), "a wrapper reads what its inner denoiser reads"
    with pytest.raises(CapabilityError, match=r"step 1 of ramp\(2\) >> switch\('commit'\), in stage `ramp\(2\)`, "
                                              r"needs a denoiser that reads finite-SNR evidence"):
        sample(Path.ramp(2) >> Path.switch("commit"), endpoint)
    assert endpoint.calls == 0
    assert sample(Path.mdm(3), endpoint, batch=2).nfe == endpoint.calls > 0
