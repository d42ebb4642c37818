"""Public hypothesis strategies for snrpaths objects.

Every strategy draws small integers (seeds, sizes) and builds the object from them, so failures shrink to
small, readable examples. Requires ``hypothesis`` (the ``test`` extra).

    from hypothesis import given
    from snrpaths.testing import strategies as sst

    @given(toy=sst.toy_joints(), gamma=sst.snr_configs(...))
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from snrpaths.geometry import TokenTable

#: The toy families ``toy_joints`` can draw from (names of ``ExactToy`` constructors).
TOY_KINDS = ("random", "markov", "product", "parity")


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``torch.Generator`` and the toy constructors."""
    return st.integers(0, 2**31 - 1)


@st.composite
def token_tables(
    draw,
    vocab_sizes: st.SearchStrategy[int] = st.integers(2, 5),
    dims: st.SearchStrategy[int] = st.integers(1, 6),
    min_distance: float = 0.0,
) -> TokenTable:
    """Unit-norm random tables (``TokenTable.random``) whose closest pair of anchors is ``>= min_distance``."""
    vocab_size, dim = draw(vocab_sizes), draw(dims)
    table = TokenTable.random(vocab_size, dim, draw(seeds()))
    if min_distance > 0 and table.min_distance() < min_distance:
        # Re-drawing in d >= V-ish always finds well-separated anchors; orthonormal ones are the fallback.
        table = TokenTable.random(vocab_size, max(dim, vocab_size + 1), draw(seeds()))
        if table.min_distance() < min_distance:
            table = TokenTable.orthonormal(vocab_size)
    return table


@st.composite
def toy_joints(
    draw,
    vocab_sizes: st.SearchStrategy[int] = st.integers(2, 3),
    seq_lens: st.SearchStrategy[int] = st.integers(1, 4),
    kinds: tuple[str, ...] = ("random", "markov", "product"),
    concentrations: st.SearchStrategy[float] = st.sampled_from([0.3, 1.0, 3.0]),
    tables: bool = True,
    min_distance: float = 0.3,
):
    """Exact toy joints (``snrpaths.backends.toy.ExactToy``) of the given ``kinds``, with random token tables.

    ``parity`` joints are binary whatever ``vocab_sizes`` says and have zero-probability sequences.
    """
    from snrpaths.backends.toy import ExactToy  # the testing module may know backends; the core may not

    bad = set(kinds) - set(TOY_KINDS)
    if bad:
        raise TypeError(f"toy_joints kinds must be among {TOY_KINDS} (got {sorted(bad)})")
    kind, seq_len = draw(st.sampled_from(kinds)), draw(seq_lens)
    vocab_size = 2 if kind == "parity" else draw(vocab_sizes)
    table = draw(token_tables(st.just(vocab_size), min_distance=min_distance)) if tables else None
    if kind == "parity":
        return ExactToy.parity(seq_len, table=table)
    make = getattr(ExactToy, kind)
    return make(vocab_size, seq_len, seed=draw(seeds()), concentration=draw(concentrations), table=table)


@st.composite
def hmms(
    draw,
    n_states: st.SearchStrategy[int] = st.integers(1, 3),
    vocab_sizes: st.SearchStrategy[int] = st.integers(2, 3),
    seq_lens: st.SearchStrategy[int] = st.integers(1, 4),
    concentrations: st.SearchStrategy[float] = st.sampled_from([0.3, 1.0, 3.0]),
    min_distance: float = 0.3,
):
    """Exact hidden Markov models (``snrpaths.backends.hmm.ExactHMM.random``) with random structural zeros (each
    state moves to 1..K states and emits 1..V tokens) and random token tables. The defaults are small enough for
    ``ExactToy`` to enumerate the same joint (``ExactToy(hmm.probs, hmm.table)``)."""
    from snrpaths.backends.hmm import ExactHMM

    k, vocab_size, seq_len = draw(n_states), draw(vocab_sizes), draw(seq_lens)
    table = draw(token_tables(st.just(vocab_size), min_distance=min_distance))
    return ExactHMM.random(k, vocab_size, seq_len, seed=draw(seeds()), successors=draw(st.integers(1, k)),
                           emissions=draw(st.integers(1, vocab_size)), concentration=draw(concentrations), table=table)


def exact_denoisers(seq_lens: st.SearchStrategy[int] = st.integers(1, 4)) -> st.SearchStrategy:
    """Every exact backend over small joints: ``toy_joints`` of all kinds and ``hmms``, for properties that must hold
    for any exact Bayes denoiser."""
    return st.one_of(toy_joints(seq_lens=seq_lens, kinds=TOY_KINDS), hmms(seq_lens=seq_lens))


def snr_values(max_log10: float = 3.0, endpoints: bool = True) -> st.SearchStrategy[float]:
    """Single SNRs: log-uniform in ``[10^-max_log10, 10^max_log10]``, plus 0 and inf when ``endpoints``."""
    finite = st.floats(-max_log10, max_log10).map(lambda e: 10.0**e)
    return st.one_of(st.just(0.0), st.just(math.inf), finite) if endpoints else finite


@st.composite
def snr_configs(draw, batch: int, seq_len: int, max_log10: float = 3.0, endpoints: bool = True) -> torch.Tensor:
    """A ``[batch, seq_len]`` float64 tensor of per-position SNRs mixing masked, finite and clean positions."""
    values = draw(st.lists(snr_values(max_log10, endpoints), min_size=batch * seq_len, max_size=batch * seq_len))
    return torch.tensor(values, dtype=torch.float64).reshape(batch, seq_len)


# -- paths -----------------------------------------------------------------------------------------------------------


#: A ramp's stagger: the joint ramp, an overlap, one position after another, and a value with no exact binary form.
_LAGS = st.sampled_from([0.0, 0.5, 1.0, 0.3])


def _steps(max_steps: int) -> st.SearchStrategy[int]:
    return st.integers(1, max_steps)


def ramps(max_steps: int = 8, gamma_maxes: tuple[float, ...] = (4.0, 40.0, 400.0)) -> st.SearchStrategy:
    """Ramps of both forms, joint and staggered, mostly plain, else with random drift guards (temperature down to 0,
    top-k down to 1, tiny nuclei, noise 0, Heun steps)."""
    from snrpaths.path import Path

    guards = st.one_of(st.just({}), st.fixed_dictionaries({}, optional={
        "temperature": st.sampled_from([0.0, 0.5, 2.0]), "top_k": st.sampled_from([1, 2, 512]),
        "top_p": st.sampled_from([1e-300, 0.5, 0.9]), "noise": st.sampled_from([0.0, 0.1, 1.5]),
        "solver": st.just("heun")}))
    return st.builds(lambda T, g, form, lag, guard: Path.ramp(T, gamma_max=g, form=form, lag=lag, **guard),
                     _steps(max_steps), st.sampled_from(gamma_maxes), st.sampled_from(("mean", "sample")), _LAGS,
                     guards)


def renoises() -> st.SearchStrategy:
    """``renoise(gamma)`` at levels below, inside and above the ramps' ranges."""
    from snrpaths.path import Path

    return st.sampled_from([0.01, 1.0, 4.0, 100.0]).map(Path.renoise)


def sampler_paths(max_steps: int = 8) -> st.SearchStrategy:
    """Complete samplers (every position ends clean): the paper's named samplers with random arguments."""
    from snrpaths.orders import ORDERS
    from snrpaths.path import Path
    from snrpaths.schedules import ALPHA_SCHEDULES, REMASK_POLICIES

    floats = st.floats(0.05, 1.0).map(lambda x: round(x, 3))
    mdm = st.builds(
        lambda T, schedule, remask, top_p: Path.mdm(T, schedule=schedule, remask=remask, top_p=top_p),
        _steps(max_steps), st.sampled_from(tuple(ALPHA_SCHEDULES)), st.sampled_from((None, *REMASK_POLICIES)), floats)
    reveal = st.builds(
        lambda order, count, temperature: Path.reveal(order=order, count=count, temperature=temperature),
        st.sampled_from(tuple(ORDERS)), st.just(1), st.sampled_from([0.5, 1.0, 2.0]))
    hybrid_guards = st.one_of(st.just({}), st.fixed_dictionaries({}, optional={
        "ramp_temperature": st.just(0.5), "ramp_top_k": st.just(2), "ramp_top_p": st.just(0.9),
        "noise": st.just(0.0), "solver": st.just("heun")}))
    hybrid = st.builds(
        lambda a, b, switch, form, guard: Path.hybrid(a, b, switch=switch, form=form, **guard),
        _steps(max_steps), _steps(max_steps), st.sampled_from(("keep", "commit", "mask")), st.sampled_from(("mean", "sample")),
        hybrid_guards)
    return st.one_of(st.just(Path.ar()), st.just(Path.roar()), mdm, reveal, hybrid, adaptive_reveals(max_steps))


def adaptive_reveals(max_steps: int = 8) -> st.SearchStrategy:
    """Complete adaptive reveals: a confidence threshold or an entropy bound over a clock of ``steps`` or a count of
    one per step, with any order, the edge values of the rule included (threshold 0 and 1, bound 0)."""
    from snrpaths.orders import ORDERS
    from snrpaths.path import Path

    rules = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 1.0]).map(lambda t: {"threshold": t}),
                      st.sampled_from([0.0, 0.3, 1.0, 5.0]).map(lambda e: {"entropy_bound": e}))
    floors = st.one_of(_steps(max_steps).map(lambda T: {"steps": T}), st.just({"count": 1}))
    return st.builds(lambda order, floor, rule: Path.reveal(order=order, **floor, **rule),
                     st.sampled_from(tuple(ORDERS)), floors, rules)


@st.composite
def paths(draw, max_steps: int = 8, seq_len: int = 4) -> object:
    """Composed paths valid for ``seq_len``: a prefix of finite-SNR stages (ramps, renoises, switches), then a
    sampler, possibly
    split side by side over two spans with ``on(...) | on(...)``."""
    from snrpaths.path import Path

    def one(draw_):
        prefix = draw_(st.lists(st.one_of(
            ramps(max_steps), renoises(), st.sampled_from([Path.switch("keep"), Path.switch("mask")])), max_size=2))
        path = draw_(sampler_paths(max_steps))
        for stage in reversed(prefix):
            path = stage >> path
        return path

    if seq_len >= 2 and draw(st.booleans()):
        cut = draw(st.integers(1, seq_len - 1))
        return Path.on(slice(0, cut), one(draw)) | Path.on(slice(cut, seq_len), one(draw))
    if seq_len >= 2 and draw(st.integers(0, 3)) == 0:
        return Path.blocks(draw(st.integers(1, 2)), one(draw))  # semi-autoregressive: blocks of >= 1 position
    return one(draw)


def nll_curves(seq_len: int) -> st.SearchStrategy:
    """Monotone SNR curves for :func:`snrpaths.nll.path_integral`: the joint ramp, sequential in a random order,
    a random order per trajectory, random per-token piecewise schedules, and the routes of staggered ramps (their
    knots, taken once: the route draws nothing, and a ``SamplerCurve`` would rerun the sampler per trajectory)."""
    from snrpaths.nll import Joint, Piecewise, RandomOrder, SamplerCurve, Sequential
    from snrpaths.path import Path

    return st.one_of(
        st.just(Joint()),
        st.permutations(range(seq_len)).map(lambda order: Sequential(tuple(order))),
        st.just(RandomOrder()),
        st.builds(Piecewise.random, st.just(seq_len), st.integers(1, 3), seeds()),
        st.builds(lambda T, lag: Piecewise.from_gammas(SamplerCurve(
            Path.ramp(T, lag=lag, gamma_max=4.0) >> Path.switch("commit")).knots(seq_len)), st.integers(1, 4), _LAGS),
    )



def stages(max_steps: int = 4, seq_len: int = 4, first: int = 0) -> st.SearchStrategy:
    """Single stages of every kind for ``seq_len`` positions starting at ``first``, finishing or not, with the edge
    values of their arguments: reveals by count and by clock (every remask policy, one-step clocks, a loop whose
    ``t_off`` is tiny, temperatures down to 0 and the smallest float64s, tiny nucleus thresholds), adaptive
    reveals, blocks (up to one more than there are positions, which the compiler refuses), explicit remasks
    of random positions, ramps (joint and staggered, guarded or not), renoises and switches. Sequences of them (:func:`composed_paths`) may
    or may not compile."""
    from snrpaths.orders import ORDERS
    from snrpaths.path import Path
    from snrpaths.schedules import ALPHA_SCHEDULES

    temperatures = st.sampled_from([0.0, 5e-324, 1e-320, 0.5, 1.0, 2.0])
    top_ps = st.sampled_from([5e-324, 1e-300, 0.5, 0.9, 1.0])
    policies = st.sampled_from([
        {}, {"remask": "cap", "eta": 0.5}, {"remask": "cap", "eta": 1.0}, {"remask": "rescale", "eta": 1.0},
        {"remask": "rescale"}, {"remask": "confidence"}, {"remask": "loop", "eta": 0.5},
        {"remask": "loop", "eta": 1.0, "t_off": 1e-12}, {"remask": "loop", "t_on": 0.9, "t_off": 0.5, "alpha_on": 0.3},
    ])
    mdm = st.builds(lambda T, schedule, policy, temperature, top_p: Path.mdm(
        T, schedule=schedule, temperature=temperature, top_p=top_p, **policy),
        st.integers(1, max_steps), st.sampled_from(tuple(ALPHA_SCHEDULES)), policies, temperatures, top_ps)
    counted = st.builds(lambda order, count, temperature, top_p: Path.reveal(
        order=order, count=count, temperature=temperature, top_p=top_p),
        st.sampled_from(tuple(ORDERS)), st.integers(1, seq_len), temperatures, top_ps)
    clocked = st.builds(lambda T, order, exact: Path.reveal(T, order=order, schedule="linear",
                                                            exact=exact and order == "random"),
                        st.integers(1, max_steps), st.sampled_from(("random", "confidence", "entropy")), st.booleans())
    remask = st.lists(st.integers(first, first + seq_len - 1), min_size=1, max_size=seq_len, unique=True).map(
        lambda positions: Path.remask(positions=positions))
    switch = st.sampled_from([Path.switch("keep"), Path.switch("mask"), Path.switch("commit")])
    blocks = st.builds(Path.blocks, st.integers(1, seq_len + 1), st.one_of(st.just(Path.ar()), mdm))
    return st.one_of(st.just(Path.ar()), st.just(Path.roar()), mdm, counted, clocked, remask,
                     ramps(max_steps, (4.0, 400.0)), renoises(), switch, adaptive_reveals(max_steps), blocks)


@st.composite
def composed_paths(draw, max_steps: int = 4, seq_len: int = 4, max_stages: int = 4) -> object:
    """``stage >> stage >> ...`` of 1..``max_stages`` :func:`stages`, usually ending with a sampler, sometimes
    split side by side over two spans with ``on(...) | on(...)``. Not every such path compiles (a ramp or a remask
    may come last, a count may exceed what is left): the property to test is that every one that compiles ends
    with every position clean."""
    from snrpaths.path import Path

    def chain(length: int, first: int):
        parts = draw(st.lists(stages(max_steps, length, first), min_size=1, max_size=max_stages))
        if draw(st.integers(0, 3)):  # mostly: end with a sampler that reveals what is left
            parts.append(draw(sampler_paths(max_steps)))
        path = parts[0]
        for part in parts[1:]:
            path = path >> part
        return path

    if seq_len >= 2 and draw(st.booleans()):
        cut = draw(st.integers(1, seq_len - 1))
        return Path.on(slice(0, cut), chain(cut, 0)) | Path.on(slice(cut, seq_len), chain(seq_len - cut, cut))
    return chain(seq_len, 0)


@st.composite
def prompts(draw, vocab_size: int, seq_len: int, max_rows: int = 3) -> torch.Tensor:
    """``[L]`` or ``[B, L]`` int64 prompts: each position a token id in ``[0, V)`` (fixed) or ``-1`` (free)."""
    rows = draw(st.one_of(st.none(), st.integers(1, max_rows)))
    shape = (seq_len,) if rows is None else (rows, seq_len)
    n = seq_len if rows is None else rows * seq_len
    values = draw(st.lists(st.one_of(st.just(-1), st.integers(0, vocab_size - 1)), min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.int64).reshape(shape)
