"""The one contract between the core and every backend."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .geometry import TokenTable
from .state import SNRState


@runtime_checkable
class Denoiser(Protocol):
    """A clean-token posterior estimator ``p_theta(s_i | z)``, queried on any per-token SNR state.

    Because the anchors have unit norm the Bayes posterior depends on the evidence only, never on gamma, so a
    denoiser takes no time or SNR argument.

    Attributes:
        vocab_size: ``V``.
        seq_len: ``L``, the length it was built for.
        table: the unit-norm anchors (``[V, d]``) that the channel uses to build ``z``.

    Optional capability (read with ``getattr(denoiser, "exact_posterior", False)``, so not a protocol member):
        exact_posterior: ``True`` only when ``logits`` are the exact Bayes marginals ``p(s_i | z)`` of some joint
            (as ``ExactToy``'s are). Estimators that are unbiased only for such posteriors (the path integral's Stein
            control) are then chosen by default. A wrapper that changes the logits (tempering, a mismatched prior
            mixed in) must not pass it on.
    """

    vocab_size: int
    seq_len: int
    table: TokenTable

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` log-probabilities (or logits) of ``p(s_i = v | z)`` for every position.

        Clean positions may return anything; callers never resample them unless a path remasks them first.
        """
        ...
