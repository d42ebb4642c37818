"""Denoiser wrappers for tests and studies: deliberately miscalibrated or instrumented versions of another one."""

from __future__ import annotations

import torch

from snrpaths.denoiser import reads_finite_snr


class Tempered:
    """``inner``'s logits divided by ``temperature``: ``< 1`` over-confident, ``> 1`` under-confident. For an exact
    toy this is the posterior of no joint, so likelihood identities that need a joint must fail on it."""

    exact_posterior = False  # whatever ``inner`` declares: tempered logits are no Bayes posterior

    def __init__(self, inner, temperature: float):
        self.inner, self.temperature = inner, temperature
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.reads_finite_snr = reads_finite_snr(inner)  # a wrapper reads what ``inner`` reads

    def logits(self, state) -> torch.Tensor:
        return self.inner.logits(state) / self.temperature


class Blind:
    """``inner`` queried with every finite-SNR position reset to ``[MASK]`` (``gamma = 0``, ``z = 0``): a denoiser
    that ignores its evidence, as the first shipped DSL fine-tune nearly did. Clean positions are kept."""

    exact_posterior = False

    def __init__(self, inner):
        self.inner = inner
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.reads_finite_snr = reads_finite_snr(inner)  # a wrapper reads what ``inner`` reads

    def logits(self, state) -> torch.Tensor:
        import attrs

        finite = ~torch.isinf(state.gamma)
        blind = attrs.evolve(state, gamma=torch.where(finite, 0.0, state.gamma).to(state.gamma.dtype),
                             z=torch.where(finite[..., None], 0.0, state.z).to(state.z.dtype))
        return self.inner.logits(blind)


class Counting:
    """``inner`` with a count of its ``logits`` calls (the ground truth for ``result.nfe``, and for 'no call before
    the checks') and the states it was given."""

    def __init__(self, inner):
        self.inner, self.calls, self.states = inner, 0, []
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table
        self.reads_finite_snr = reads_finite_snr(inner)  # a wrapper reads what ``inner`` reads

    def __repr__(self) -> str:
        return f"Counting({self.inner!r})"

    def logits(self, state) -> torch.Tensor:
        self.calls += 1
        self.states.append(state)
        return self.inner.logits(state)


class EndpointOnly:
    """``inner`` declaring that it reads endpoint states only (``reads_finite_snr = False``, as a masked LM does):
    every path, estimator and tuner that would give it a finite-SNR state must refuse before a call."""

    reads_finite_snr = False

    def __init__(self, inner):
        self.inner = inner
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state) -> torch.Tensor:
        return self.inner.logits(state)
