"""The sampler conformance suite, one function run over every sampler and every backend (optax's ``_common_test``):
tests import it with the backend of their choice instead of copying it."""

from __future__ import annotations

import torch

from snrpaths.parse import parse_path
from snrpaths.runner import sample

from .denoisers import Counting

#: Every kind of built-in sampler and composition, for sequences of 4 positions (explicit orders and positions fit
#: ``L = 4``): endpoint paths, finite-SNR paths (ramps, hybrids), adaptive reveals, remasking, blocks.
SAMPLERS = (
    "ar()", "roar()", "mdm(5)", "mdm(5, schedule='cosine')", "mdm(5, remask='cap', eta=0.3)",
    "mdm(5, remask='rescale', eta=0.5)", "mdm(5, remask='confidence')", "mdm(8, remask='loop', eta=0.3)",
    "mdm(3, top_p=0.8)", "hybrid(3, 3)", "hybrid(3, 3, switch='commit', form='sample')", "hybrid(2, 4, switch='mask')",
    "reveal(count=2, order='confidence')", "reveal(count=1, order='margin', temperature=0.5)",
    "reveal(count=1, order='entropy')", "reveal(order=(3, 1, 0, 2), count=1)",
    "reveal(4, schedule='linear', order='confidence')", "reveal(4, schedule='linear', exact=True)",
    "ramp(4, gamma_max=400.0, schedule='loglinear') >> switch('commit')",
    "on(slice(0, 2), ar()) | on(slice(2, 4), hybrid(2, 2))",
    "mdm(4) >> remask(positions=[1, 2]) >> reveal(count=1, order='confidence')",
    # adaptive reveals (issue 17): a floor of a clock or a count, and a rule that reveals more when it can
    "reveal(4, order='confidence', threshold=0.8)", "reveal(4, threshold=0.6)", "reveal(3, order='entropy', entropy_bound=1.5)",
    "reveal(order='entropy', count=1, entropy_bound=0.5)", "remask('cap', eta=0.3) & reveal(5, order='margin', threshold=0.7)",
    # semi-autoregressive blocks
    "blocks(2, mdm(3))", "blocks(3, reveal(2, order='confidence', threshold=0.7))", "blocks(2, hybrid(2, 2))",
    # staggered ramps (issue 17): overlapping, one position after another, inside blocks and beside another branch
    "ramp(4, lag=0.5, gamma_max=400.0) >> switch('commit')", "hybrid(6, 3, lag=1.0, form='sample')",
    "blocks(2, ramp(2, lag=1.0) >> switch('commit'))",
    "on(slice(0, 2), ar()) | on(slice(2, 4), ramp(3, lag=0.3) >> mdm(2))",
)
#: The samplers of :data:`SAMPLERS` that never show a finite-SNR state: what an endpoint-only denoiser must run.
ENDPOINT_SAMPLERS = tuple(text for text in SAMPLERS if parse_path(text).compile(4).finite_snr_call() is None)


def check_sampler(text: str, denoiser, prompt: torch.Tensor, *, stop: int | None = None, batch: int = 16,
                  seed: int = 7) -> None:
    """Assert what every sampler owes every denoiser, sampling the path ``text`` with the ``[L]`` ``prompt`` (``-1``
    where free): every position ends clean with an id in ``[0, V)``; fixed positions never change and stay at
    ``gamma = inf`` at every step; ``nfe`` is the calls made, at most the program's, the per-row calls bracket
    it, and a call takes exactly the rows whose count it adds to; the trace covers every step; the same seed gives the same samples and another seed others; with a
    ``stop`` token, every free position after the first drawn one holds it."""
    path = parse_path(text)
    program = path.compile(denoiser.seq_len)
    fixed = prompt != -1
    counting = Counting(denoiser)
    result = sample(path, counting, batch=batch, seed=seed, prompt=prompt, trace=True, stop_token=stop)
    assert bool(result.state.clean.all()), "every position ends clean"
    assert bool((result.tokens >= 0).all() & (result.tokens < denoiser.vocab_size).all())
    assert bool((result.trace.tokens[:, :, fixed] == prompt[fixed]).all()), "a fixed position never changes"
    assert bool(torch.isinf(result.trace.gamma[:, :, fixed]).all())
    assert result.nfe == counting.calls <= program.nfe
    assert int(result.trace.called.sum()) == result.nfe
    assert int(result.calls.max()) <= result.nfe <= int(result.calls.sum()), "per-row calls bracket the run's"
    assert sum(s.batch for s in counting.states) == int(result.calls.sum()), "a call takes the rows that count it"
    assert result.trace.gamma.shape[0] == len(program.steps) + 1, "a run that stops early still traces every step"
    again = sample(program, denoiser, batch=batch, seed=seed, prompt=prompt, stop_token=stop)
    assert torch.equal(again.tokens, result.tokens), "the same seed gives the same samples"
    assert not torch.equal(sample(program, denoiser, batch=batch, seed=seed + 1, stop_token=stop).tokens, result.tokens)
    if stop is not None:  # after a revealed stop token, every free position holds it
        L = denoiser.seq_len
        tokens = torch.where(fixed, -1, result.tokens)  # a prompt's position never counts as a stop
        first = torch.where(tokens == stop, torch.arange(L), L).amin(1)
        after = (torch.arange(L) > first[:, None]) & ~fixed
        assert bool((result.tokens[after] == stop).all())
