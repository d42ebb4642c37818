"""The one contract between the core and every backend, and the capabilities some backends add to it.

The core reads a capability through these declared protocols (``isinstance(d, EnumerableJoint)``) or the flag
they declare (``exact_posterior``), never through a backend's type."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .geometry import TokenTable
from .state import SNRState
from .streams import Streams


@runtime_checkable
class Denoiser(Protocol):
    """A clean-token posterior estimator ``p_theta(s_i | z)``, queried on any per-token SNR state.

    Because the anchors have unit norm the Bayes posterior depends on the evidence only, never on gamma, so a
    denoiser takes no time or SNR argument.

    Attributes:
        vocab_size: ``V``.
        seq_len: ``L``, the length it was built for.
        table: the unit-norm anchors (``[V, d]``) that the channel uses to build ``z``.

    Optional capabilities: :class:`ExactPosterior` (the flag ``exact_posterior``, ``log_prob``, joint posterior
    sampling) and :class:`EnumerableJoint` (every sequence listed). A denoiser without them is read as having
    ``exact_posterior = False``.
    """

    vocab_size: int
    seq_len: int
    table: TokenTable

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` log-probabilities (or logits) of ``p(s_i = v | z)`` for every position.

        Clean positions may return anything; callers never resample them unless a path remasks them first.
        """
        ...


@runtime_checkable
class ExactPosterior(Denoiser, Protocol):
    """A denoiser whose ``logits`` are the exact Bayes marginals of a joint ``P(s)`` it can also score and sample
    (``ExactToy``, exact hidden Markov models): the ground truth the estimators and samplers are checked against.

    Attributes:
        exact_posterior: ``True`` only when ``logits`` are the exact marginals ``p(s_i | z)`` of ``P`` (a wrapper that
            changes the logits, tempering or a mismatched prior, must say ``False``). This flag is what the core
            reads: ``path_integral(control="auto")`` picks the Stein control when it is ``True``.
    """

    exact_posterior: bool

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """``log P(s)`` of ``[..., L]`` token sequences, ``[...]`` float64."""
        ...

    def sample_posterior(self, state: SNRState, generator: torch.Generator | Streams) -> torch.Tensor:
        """``[B, L]`` whole sequences drawn from the exact joint posterior ``p(s | z)`` (clean tokens kept).

        ``generator`` is a ``torch.Generator`` or per-row :class:`~snrpaths.streams.Streams` (``B`` rows): with
        streams, row ``b``'s sequence reads only row ``b``'s stream, a fixed number of draws per call (pass it to
        :func:`snrpaths.draw.categorical`, which takes either)."""
        ...


@runtime_checkable
class EnumerableJoint(ExactPosterior, Protocol):
    """An exact posterior over few enough sequences to list (``V^L`` small): what the evidence-space plots colour.

    Attributes:
        states: ``[V^L, L]`` every sequence, in C order.
        log_joint: ``log P`` of every sequence, shape ``(V,) * L`` (``-inf`` where ``P(s) = 0``).
    """

    states: torch.Tensor
    log_joint: torch.Tensor

    def joint_log_posterior(self, state: SNRState) -> torch.Tensor:
        """``[B, V^L]`` normalised ``log p(s | z, clean tokens)``, sequences in the order of ``states``."""
        ...
