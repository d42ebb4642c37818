"""The one contract between the core and every backend, and the capabilities some backends add to it.

The core reads a capability through these declared protocols (``isinstance(d, EnumerableJoint)``) or the flags
they declare (``exact_posterior``, ``reads_finite_snr``), never through a backend's type. :class:`Trainable` is what
the trainer needs of a model on top of the sampling contract."""

from __future__ import annotations

import inspect
from typing import Any, Generic, Protocol, Sequence, runtime_checkable

import torch

from .errors import CapabilityError, SNRTypeError
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

    Optional capabilities: :class:`FiniteSNR` (the flag ``reads_finite_snr``), :class:`ExactPosterior` (the flag
    ``exact_posterior``, ``log_prob``, joint posterior sampling), :class:`EnumerableJoint` (every sequence
    listed) and :class:`BlockCaching` (the flag ``caches_blocks``, key/value caches for blocks). A denoiser without
    them is read as having ``reads_finite_snr = True``, ``exact_posterior = False`` and ``caches_blocks = False``.
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
class FiniteSNR(Denoiser, Protocol):
    """A denoiser that declares whether it reads finite-SNR states (``0 < gamma_i < inf``, soft evidence ``z_i``).

    Attributes:
        reads_finite_snr: ``True`` for the DSL denoisers and the exact backends, which take any state; ``False`` for an
            endpoint-only model (a masked LM: every position is ``[MASK]`` or a clean token), which only the endpoint
            paths may call: ``ar()``, ``roar()``, ``mdm(T, remask=...)``, ``reveal(...)``, ``blocks(...)``.

    A denoiser that does not declare it is read as reading finite SNR (:func:`reads_finite_snr`): denoisers written
    before the flag existed keep running every path, as they did; an endpoint-only model has to say so.
    """

    reads_finite_snr: bool


#: What an endpoint-only denoiser can run, for the messages of :func:`require_finite_snr`.
ENDPOINT_PATHS = "ar(), roar(), mdm(T, remask=...), reveal(...), blocks(...)"


def reads_finite_snr(denoiser: Any) -> bool:
    """``denoiser.reads_finite_snr``, ``True`` when undeclared (see :class:`FiniteSNR`)."""
    return bool(getattr(denoiser, "reads_finite_snr", True))


def require_finite_snr(denoiser: Any, what: str) -> None:
    """Raise :class:`CapabilityError` unless ``denoiser`` reads finite-SNR states: ``what`` (a stage, an estimator)
    needs them. Called before the first denoiser call of whatever needs them."""
    if not reads_finite_snr(denoiser):
        raise CapabilityError(f"{what} needs a denoiser that reads finite-SNR evidence; {denoiser!r} is endpoint-only: "
                              f"use endpoint paths such as {ENDPOINT_PATHS}")


@runtime_checkable
class BlockCaching(Denoiser, Protocol):
    """A denoiser that can cache the keys and values of positions outside an active block (Fast-dLLM's prefix and
    dual caches), which a ``blocks(n, inner, cache='prefix' | 'dual')`` path asks for (:meth:`snrpaths.Path.blocks`).

    Attributes:
        caches_blocks: ``True`` when the two methods below work. A denoiser that does not declare it is read as
            ``False`` (:func:`caches_blocks`), and a cached path refuses it before the first call.

    The cache is a tensor whose first dimension is the state's rows (the runner keeps one per row and hands a call
    the rows it makes); what the rest holds is the denoiser's business.
    """

    caches_blocks: bool

    def refresh_cache(self, state: SNRState, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A full call that also stores the cache: ``(logits, cache)``, ``logits`` ``[B, L, V]`` exactly (bit for bit)
        what ``logits(state)`` returns, ``cache`` ``[B, ...]``. ``active`` ``[A]`` int64, sorted: the positions the
        calls that read this cache will compute."""
        ...

    def cached_logits(self, state: SNRState, active: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """``[B, A, V]`` logits of the ``active`` positions (``[A]`` int64, sorted) of ``state``, computed from their
        own inputs and the ``cache`` of the last refresh (``[B, ...]``, read only) for every other position."""
        ...


def caches_blocks(denoiser: Any) -> bool:
    """``denoiser.caches_blocks``, ``False`` when undeclared (see :class:`BlockCaching`)."""
    return bool(getattr(denoiser, "caches_blocks", False))


def require_block_caching(denoiser: Any, what: str) -> None:
    """Raise :class:`CapabilityError` unless ``denoiser`` can cache keys and values (:class:`BlockCaching`): ``what``
    (a cached blocks stage) needs it. Called before the first denoiser call."""
    if not caches_blocks(denoiser):
        raise CapabilityError(f"{what} asks for a key/value cache (blocks(..., cache='prefix' | 'dual')); "
                              f"{denoiser!r} cannot cache (it does not declare caches_blocks = True, see "
                              "snrpaths.denoiser.BlockCaching): drop cache= to run it uncached")


@runtime_checkable
class TextCodec(Protocol):
    """A denoiser that carries its tokenizer: text prompts in, text out (:func:`snrpaths.sample` takes ``prompt`` as
    text for it and fills ``Result.text``)."""

    def encode_prompts(self, texts: Sequence[str]) -> torch.Tensor:
        """``[B, L]`` prompt ids for ``B`` texts, ``-1`` where free (the denoiser documents how a text becomes fixed
        and free positions); raises before any call for a text that does not fit ``L``."""
        ...

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """The ``B`` texts of ``[B, L]`` token ids."""
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


@runtime_checkable
class EvidenceConverter(Protocol):
    """The part of a :class:`Trainable` that turns evidence into the backbone's input, as the trainer reads it.

    Attributes:
        anchors: ``[V, d]`` the unit-norm anchors, differentiable: the objectives build ``z = gamma x + sqrt(gamma)
            eps`` from them, so gradients reach the anchor directions through ``z``.
        config: its settings; ``config.anchor_dim`` is ``d``, the dimension the objectives draw noise in.
    """

    anchors: torch.Tensor
    config: Any

    def calibrate(self, prior: torch.Tensor) -> None:
        """Start at the context-free Bayes rule of the unigram ``prior`` ``[V]`` (DSL runs call it before step 1)."""
        ...


@runtime_checkable
class Trainable(Denoiser, Protocol):
    """A denoiser :func:`snrpaths.train.train` can train: a ``torch.nn.Module`` whose forward pass takes the corrupted
    state as plain tensors and is differentiable,

        model(z, gamma, tokens) -> [B, L, V] logits
            z: [B, L, d] evidence (read where 0 < gamma < inf), gamma: [B, L] SNRs in [0, inf],
            tokens: [B, L] the clean ids (read only where gamma = inf, so the trainer may pass the targets)

    with ``converter`` an :class:`EvidenceConverter` (its scalars ``converter.log_beta`` and ``converter.bias``, when it
    has them, get their own learning rate). The module methods below are the ones the trainer calls: parameters for
    the optimizer, state dicts for the EMA weights and the checkpoints, train / eval modes, the device. It is also a
    :class:`Denoiser`: the validation's evidence curve samples it through ``logits``. And it persists itself, so the
    trainer never names a backend: ``save`` writes the run folder's ``model/``, ``describe`` is the architecture the
    checkpoint records, ``from_description`` rebuilds it for a resume (:func:`snrpaths.train.checkpoint_model`). The
    shipped Trainable is :class:`snrpaths.backends.DSLDenoiser`.
    """

    converter: EvidenceConverter

    def save(self, folder: Any) -> Any:
        """Write the model (weights and :meth:`describe`) into ``folder``, each file atomically: what a backend's
        loader reads back, weights included."""
        ...

    def describe(self) -> dict:
        """A JSON-able description of the architecture (and tokenizer) the model was built with: enough for
        :meth:`from_description` to build a fresh model its state dict loads into."""
        ...

    @classmethod
    def from_description(cls, description: dict, where: str) -> "Trainable":
        """A freshly initialised model of ``description`` (a :meth:`describe` dict read back from a file), checked
        before anything is built; ``where`` names the source in errors."""
        ...

    def __call__(self, z: torch.Tensor, gamma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor: ...

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict: ...

    def load_state_dict(self, state_dict: dict, strict: bool = True, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def modules(self) -> Any: ...


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The attributes and methods ``protocol`` declares, its base protocols' included, sorted: what a runtime
    ``isinstance`` check looks for."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base not in (Protocol, Generic, object):
            names |= set(inspect.get_annotations(base))
            names |= {n for n, v in vars(base).items() if (callable(v) or isinstance(v, classmethod))
                      and (n == "__call__" or not n.startswith("_"))}
    return tuple(sorted(names))


def require(name: str, value: Any, protocol: type) -> None:
    """Raise :class:`SNRTypeError` unless ``isinstance(value, protocol)``, naming the members ``value`` lacks:
    ``'model' must implement the Trainable protocol (snrpaths.denoiser); Linear lacks converter, logits, ...``."""
    if not isinstance(value, protocol):
        lacks = [m for m in protocol_members(protocol) if not hasattr(value, m)]
        raise SNRTypeError(f"{name!r} must implement the {protocol.__name__} protocol (snrpaths.denoiser); "
                           f"{type(value).__name__} lacks {', '.join(lacks)}")
