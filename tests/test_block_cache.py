"""Cached block decoding (issue 26, item 2): ``blocks(n, inner, cache='prefix' | 'dual', refresh=k)``.

What is checked, on a small DiT with random weights (a fresh one is the identity with zero logits: its adaLN and head
start at zero): a cache refreshed at every call is the uncached run bit for bit (tokens, evidence, SNRs, calls),
over paths, prompts and seeds; a refresh call's logits are the uncached ones bit for bit, and it comes exactly at a
row's first call in each block; a cached call on the refresh's own state gives the refresh's logits up to float32
rounding; a cached call computes only the cache's active positions and differs from the uncached call once the
block moved (the cache is used); rows are refreshed on their own (a row's sample does not depend on the batch);
the path field prints, parses back and refuses bad values; every denoiser that cannot cache, and a cached block
beside a parallel branch, is refused before any call."""

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import CapabilityError, Path, SNRPathError, SNRTypeError, parse_path, sample
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, ExactHMM, ExactToy, Interpolated
from snrpaths.blockcache import RowCaches
from snrpaths.compile import CacheScope
from snrpaths.denoiser import caches_blocks
from snrpaths.testing.denoisers import Counting

pytestmark = pytest.mark.usefixtures("one_thread")

V, L = 7, 12
INNERS = ("mdm(3)", "hybrid(2, 2)", "reveal(2, order='confidence', schedule='linear')", "ar()",
          "mdm(3, remask='rescale', eta=0.5)")


def random_dit(seed=0):
    """A DSLDenoiser whose every weight is drawn at scale 0.3, so that positions read each other."""
    den = DSLDenoiser.build(DiTConfig(V, seq_len=L, hidden=32, cond_dim=16, n_blocks=2, n_heads=2, dropout=0.0),
                            ConverterConfig(anchor_dim=8), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.backbone.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return den


DEN = random_dit()


class Spy:
    """``inner`` with a record of every call: ``("full" | "refresh" | "cached", state, active, output)``."""

    caches_blocks = True

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        out = self.inner.logits(state)
        self.calls.append(("full", state, None, out))
        return out

    def refresh_cache(self, state, active):
        logits, cache = self.inner.refresh_cache(state, active)
        self.calls.append(("refresh", state, active, (logits, cache)))
        return logits, cache

    def cached_logits(self, state, active, cache):
        out = self.inner.cached_logits(state, active, cache)
        self.calls.append(("cached", state, active, out))
        return out


def cached(text, mode, refresh=None):
    path = parse_path(text)
    return Path.blocks(path.n, path.inner, cache=mode, refresh=refresh)


def same_run(a, b):
    return (torch.equal(a.tokens, b.tokens) and torch.equal(a.state.z, b.state.z)
            and torch.equal(a.state.gamma, b.state.gamma) and a.nfe == b.nfe and torch.equal(a.calls, b.calls))


# -- exactness -------------------------------------------------------------------------------------------------------


@settings(max_examples=12)
@given(inner=st.sampled_from(INNERS), n=st.integers(1, 4), mode=st.sampled_from(("prefix", "dual")),
       seed=st.integers(0, 2**32), prompt_len=st.integers(0, 5), batch=st.integers(1, 4))
def test_a_cache_refreshed_at_every_call_is_the_uncached_run_bit_for_bit(inner, n, mode, seed, prompt_len, batch):
    text = f"blocks({n}, {inner})"
    prompt = torch.full((L,), -1)
    prompt[:prompt_len] = torch.arange(prompt_len) % V
    plain = sample(parse_path(text), DEN, batch=batch, seed=seed, prompt=prompt)
    every = sample(cached(text, mode, refresh=1), DEN, batch=batch, seed=seed, prompt=prompt)
    assert same_run(every, plain)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_refreshes_are_the_uncached_logits_and_come_first_in_each_block(mode):
    """blocks(3, roar()) on 12 positions, batch 1 (four calls a block): per block one refresh then cached calls. The refresh logits are
    ``logits(state)`` exactly; a cached call on the refresh's own state gives them again, up to float32 rounding of
    the same sums (atol 1e-5 on logits of order 1: 100 float32 ulps); later cached calls read a stale cache (the
    uncached logits differ), computed over the active positions only: the block (dual) or the block and all after
    it (prefix)."""
    spy = Spy(DEN)
    sample(cached("blocks(3, roar())", mode), spy, batch=1, seed=1)
    kinds = [c[0] for c in spy.calls]
    assert kinds == ["refresh", "cached", "cached", "cached"] * 3
    blocks = [(0, 4), (4, 8), (8, 12)]
    stale = 0.0
    for k, (kind, state, active, out) in enumerate(spy.calls):
        start, stop = blocks[k // 4]
        assert active.tolist() == list(range(start, stop if mode == "dual" else L))
        if kind == "refresh":
            logits, cache = out
            assert torch.equal(logits, DEN.logits(state))
            again = DEN.cached_logits(state, active, cache)
            torch.testing.assert_close(again, logits[:, active], atol=1e-5, rtol=1e-5)
        else:
            assert out.shape == (1, len(active), V)
            stale = max(stale, float((out - DEN.logits(state)[:, active]).abs().max()))
    assert stale > 1e-4, "the cached calls must read the cache (10x the rounding budget), not recompute everything"


@pytest.mark.parametrize("refresh, kinds", [(2, ["refresh", "cached"] * 2), (3, ["refresh", "cached", "cached", "refresh"]),
                                             (4, ["refresh", "cached", "cached", "cached"])])
def test_refresh_k_refreshes_after_every_k_calls_of_a_row_in_a_block(refresh, kinds):
    spy = Spy(DEN)
    sample(cached("blocks(3, roar())", "dual", refresh=refresh), spy, batch=1, seed=1)
    assert [c[0] for c in spy.calls] == kinds * 3


def test_outside_the_active_positions_the_refresh_logits_are_kept():
    """Under the dual cache the logits the run holds outside the block are those of the block's refresh."""
    result = sample(cached("blocks(2, mdm(3))", "dual"), spy := Spy(DEN), batch=1, seed=2, trace=True)
    refresh_logits = spy.calls[0][3][0]
    entropy = -(refresh_logits.log_softmax(-1).exp() * refresh_logits.log_softmax(-1)).sum(-1)
    # trace step 1 (the block's second call) holds the refresh's logits at positions 6..11, outside the block
    torch.testing.assert_close(result.trace.entropy[1, 0, 6:], entropy[0, 6:].float(), atol=1e-6, rtol=1e-6)


def test_rows_refresh_on_their_own_so_samples_do_not_depend_on_the_batch():
    """Rows whose coin flips skip a call refresh later than the rest; each row's sample and calls are the ones it
    has alone (row_offset)."""
    path = cached("blocks(2, mdm(6))", "dual", refresh=2)
    batch = sample(path, DEN, batch=8, seed=5)
    for row in range(8):
        alone = sample(path, DEN, batch=1, seed=5, row_offset=row)
        assert torch.equal(alone.tokens[0], batch.tokens[row]), row
        assert int(alone.calls[0]) == int(batch.calls[row])


def test_a_call_whose_rows_differ_refreshes_the_stale_ones_only():
    """Three rows; row 1's cache is for another block: it gets the refresh (the uncached logits, its cache stored),
    rows 0 and 2 read their caches, and the rows come back in order."""
    state = sample(parse_path("mdm(2)"), DEN, batch=3, seed=0).state
    state = attrs.evolve(state, gamma=state.gamma.index_fill(1, torch.arange(4, 8), 0.0),
                         tokens=state.tokens.index_fill(1, torch.arange(4, 8), -1),
                         z=state.z.index_fill(1, torch.arange(4, 8), 0.0))
    scope = CacheScope(block=0, active=tuple(range(4, 8)), refresh=None)
    rows, spy = torch.ones(3, dtype=torch.bool), Spy(DEN)
    caches = RowCaches(3, torch.device("cpu"))
    first = caches.logits(spy, state, rows, scope, None)
    caches.block[1] = -1
    second = caches.logits(spy, state, rows, scope, first)
    assert [c[0] for c in spy.calls] == ["refresh", "refresh", "cached"]
    assert spy.calls[1][1].batch == 1 and spy.calls[2][1].batch == 2
    assert torch.equal(second[1], DEN.logits(state)[1])
    torch.testing.assert_close(second[[0, 2]], first[[0, 2]], atol=1e-5, rtol=1e-5)  # the refresh's own state
    assert caches.block.tolist() == [0, 0, 0] and caches.since.tolist() == [2, 1, 2]


def test_a_cached_run_ends_clean_and_keeps_the_prompt():
    prompt = torch.tensor([3, 1, -1, -1, -1, -1, 4, -1, -1, -1, -1, -1])
    for mode in ("prefix", "dual"):
        result = sample(cached("blocks(3, hybrid(2, 2))", mode), DEN, batch=3, seed=0, prompt=prompt)
        assert bool(result.state.clean.all()) and bool((result.tokens[:, prompt >= 0] == prompt[prompt >= 0]).all())


# -- the path field --------------------------------------------------------------------------------------------------


@given(n=st.integers(1, 9), inner=st.sampled_from(INNERS), mode=st.sampled_from((None, "prefix", "dual")),
       refresh=st.one_of(st.none(), st.integers(1, 9)))
def test_the_cache_prints_and_parses_back(n, inner, mode, refresh):
    refresh = None if mode is None else refresh
    path = Path.blocks(n, parse_path(inner), cache=mode, refresh=refresh)
    assert parse_path(repr(path)) == path
    assert ("cache=" in repr(path)) == (mode is not None) and ("refresh=" in repr(path)) == (refresh is not None)


def test_the_printed_form():
    assert repr(Path.blocks(4, Path.mdm(8), cache="dual")) == "blocks(4, mdm(8), cache='dual')"
    assert repr(Path.blocks(4, Path.mdm(8), cache="prefix", refresh=2)) == "blocks(4, mdm(8), cache='prefix', refresh=2)"
    assert Path.blocks(4, Path.mdm(8), cache="dual") != Path.blocks(4, Path.mdm(8))


def test_each_block_gets_its_scope_and_a_nested_cached_block_keeps_its_own():
    """On positions 4..11 in blocks of 4: the prefix cache computes from the block's first position to the end of the
    sequence, the dual cache the block; a cached blocks stage inside another keeps its own blocks."""
    def scopes(text):
        return [s.cache for s in parse_path(text).compile(L).steps]

    prefix = scopes("on(slice(0, 4), ar()) >> on(slice(4, 12), blocks(2, roar(), cache='prefix', refresh=3))")
    assert prefix[:4] == [None] * 4
    assert prefix[4:] == [CacheScope(0, tuple(range(4, 12)), 3)] * 4 + [CacheScope(1, tuple(range(8, 12)), 3)] * 4
    nested = scopes("blocks(2, blocks(2, roar(), cache='dual'), cache='prefix')")
    assert [(s.block, s.active) for s in nested[::3]] == [(1, (0, 1, 2)), (2, (3, 4, 5)), (4, (6, 7, 8)),
                                                           (5, (9, 10, 11))]


@pytest.mark.parametrize("build, error, message", [
    (lambda: Path.blocks(2, Path.mdm(4), cache="full"), SNRPathError,
     r"'cache' must be one of \('prefix', 'dual'\) \(got 'full'\)"),
    (lambda: Path.blocks(2, Path.mdm(4), cache=True), SNRTypeError, r"'cache' must be one of \('prefix', 'dual'\)"),
    (lambda: Path.blocks(2, Path.mdm(4), refresh=2), SNRPathError,
     r"refresh=2 .* give blocks a cache in \('prefix', 'dual'\)"),
    (lambda: Path.blocks(2, Path.mdm(4), cache="dual", refresh=0), SNRPathError,
     r"'refresh' must be a positive integer or None \(got 0\)"),
    (lambda: parse_path("blocks(2, mdm(4), cache='Dual')"), SNRPathError, r"'cache' must be one of"),
    (lambda: (Path.on(slice(0, 6), Path.blocks(2, Path.mdm(2), cache="dual"))
              | Path.on(slice(6, 12), Path.mdm(2))).compile(L), SNRPathError,
     r"caches keys and values outside its block, so it cannot share calls with the parallel branch"),
])
def test_bad_caches_are_refused_naming_the_valid_values(build, error, message):
    with pytest.raises(error, match=message):
        build()


# -- denoisers that cannot cache ---------------------------------------------------------------------------------


def _masked_lm(tmp_path_factory):
    from snrpaths.backends.hf import MaskedLM, save_random

    folder = save_random(tmp_path_factory.mktemp("bert"), "the a cat dog sat on mat".split(), seed=1)
    return MaskedLM.from_pretrained(folder, seq_len=4)


@pytest.mark.parametrize("make", [
    lambda tmp: ExactToy.random(3, 4, seed=0),
    lambda tmp: ExactHMM.random(2, 3, 4, seed=0),
    lambda tmp: Interpolated(ExactHMM.random(2, 3, 4, seed=0), ExactHMM.random(2, 3, 4, seed=0), 0.5),
    _masked_lm,
], ids=["ExactToy", "ExactHMM", "Interpolated", "MaskedLM"])
def test_a_denoiser_that_cannot_cache_refuses_before_any_call(make, tmp_path_factory):
    inner = make(tmp_path_factory)
    den = Counting(inner)
    den.caches_blocks = caches_blocks(inner)  # a counter that can cache when its denoiser can
    for mode in ("prefix", "dual"):
        with pytest.raises(CapabilityError, match=rf"blocks\(2, mdm\(2\), cache='{mode}'\).*asks for a key/value "
                                                  rf"cache.*Counting\(.*cannot cache.*drop cache="):
            sample(Path.blocks(2, Path.mdm(2), cache=mode), den, batch=2, seed=0)
    assert den.calls == 0
