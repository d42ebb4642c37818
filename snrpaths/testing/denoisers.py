"""Denoiser wrappers for tests and studies: deliberately miscalibrated or instrumented versions of another one."""

from __future__ import annotations

import torch


class Tempered:
    """``inner``'s logits divided by ``temperature``: ``< 1`` over-confident, ``> 1`` under-confident. For an exact
    toy this is the posterior of no joint, so likelihood identities that need a joint must fail on it."""

    exact_posterior = False  # whatever ``inner`` declares: tempered logits are no Bayes posterior

    def __init__(self, inner, temperature: float):
        self.inner, self.temperature = inner, temperature
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state) -> torch.Tensor:
        return self.inner.logits(state) / self.temperature
