"""Exact toy denoisers: an enumerable joint ``P(s)`` over ``V^L`` sequences and its exact Bayes posterior.

The ground truth of every property test. Given evidence ``z`` (``[B, L, d]``) and clean tokens, the joint posterior
over all ``V^L`` sequences is

    log p(s | z) = log P(s) + sum_{i not clean} z_i · x_{s_i} + sum_{i clean} log 1[s_i = t_i] - log Z(z)

(exact for unit-norm anchors, where the ``-gamma/2 ||x||^2`` term is the same for every token). Per-position
marginals come from log-sum-exp over the other ``L - 1`` axes, all in float64, so evidence at ``gamma = 1e6``
(``|z·x| ~ 1e6``) neither overflows nor loses the losing tokens' log-probabilities.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from snrpaths import validate
from snrpaths.draw import categorical
from snrpaths.errors import SNRPathError, ShapeError
from snrpaths.geometry import TokenTable
from snrpaths.state import SNRState
from snrpaths.streams import Streams

#: The largest joint the toy will enumerate (V^L states).
MAX_STATES = 2**17
#: Upper bound on batch x states per chunk of posterior work (float64 entries), to bound memory.
_CHUNK_ENTRIES = 2**23


def check_enumerable(vocab_size: int, seq_len: int) -> None:
    """Raise unless ``V`` and ``L`` are positive integers with ``V^L <= MAX_STATES``."""
    for name, value in (("vocab_size", vocab_size), ("seq_len", seq_len)):
        validate.integer(name, value)
    if vocab_size**seq_len > MAX_STATES:
        raise SNRPathError(
            f"a joint over V^L = {vocab_size}^{seq_len} = {vocab_size**seq_len} sequences is too large to "
            f"enumerate; at most {MAX_STATES} sequences are"
        )


def seeded(seed: object) -> np.random.Generator:
    """The numpy generator a toy's joint is drawn from, ``seed`` checked by the one seed rule
    (:func:`snrpaths.validate.seed`)."""
    return np.random.default_rng(validate.seed("seed", seed))


class ExactToy:
    """The exact Bayes denoiser of a joint ``P`` over ``V^L`` sequences (a :class:`snrpaths.Denoiser`).

    Args:
        probs: the joint as a tensor of shape ``(V,) * L`` (axis ``i`` is position ``i``), nonnegative, summing to 1.
        table: the anchors; default ``TokenTable.random(V, dim, seed)``.
    """

    reads_finite_snr = True  # the Bayes posterior of any state (snrpaths.denoiser.FiniteSNR)

    def __init__(self, probs: torch.Tensor | np.ndarray, table: TokenTable | None = None, *, dim: int = 8, seed: int = 0):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.ndim < 1 or len(set(probs.shape)) != 1:
            raise ShapeError(f"'probs' must have shape (V,) * L, one axis per position (got {list(probs.shape)})")
        vocab_size, seq_len = probs.shape[0], probs.ndim
        check_enumerable(vocab_size, seq_len)
        if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
            raise SNRPathError("'probs' must be finite and nonnegative")
        total = float(probs.sum())
        if abs(total - 1) > 1e-6:
            raise SNRPathError(f"'probs' must sum to 1 (got {total:.8g}); normalise the table first")
        table = TokenTable.random(vocab_size, dim, seed) if table is None else table
        if table.vocab_size != vocab_size:
            raise ShapeError(f"the token table has {table.vocab_size} anchors but the joint has V = {vocab_size}")
        self.vocab_size, self.seq_len, self.table = vocab_size, seq_len, table
        self.log_joint = (probs / total).log()  # (V,) * L, -inf where P(s) = 0
        self.states = enumerate_sequences(vocab_size, seq_len)  # [V^L, L], row n is the n-th sequence in C order
        self._onehot = torch.nn.functional.one_hot(self.states, vocab_size).reshape(len(self.states), -1).to(torch.float64)

    @property
    def exact_posterior(self) -> bool:
        """Its logits are the exact Bayes marginals of a joint (the :class:`~snrpaths.Denoiser` capability that lets
        ``path_integral(control="auto")`` use the Stein control); not so for a ``with_norms`` table."""
        return self.table.is_unit_norm

    def __repr__(self) -> str:
        return f"ExactToy(V={self.vocab_size}, L={self.seq_len}, d={self.table.dim}, H={self.entropy():.4f} nats)"

    # -- constructors ------------------------------------------------------------------------------------

    @classmethod
    def random(cls, vocab_size: int, seq_len: int, seed: int = 0, concentration: float = 1.0, **kw) -> "ExactToy":
        """A joint drawn from a symmetric Dirichlet(``concentration``) over all ``V^L`` sequences."""
        check_enumerable(vocab_size, seq_len)
        check_concentration(concentration)
        rng = seeded(seed)
        p = rng.dirichlet(np.full(vocab_size**seq_len, concentration))
        return cls(p.reshape((vocab_size,) * seq_len), seed=seed, **kw)

    @classmethod
    def markov(cls, vocab_size: int, seq_len: int, seed: int = 0, concentration: float = 1.0, **kw) -> "ExactToy":
        """A first-order Markov chain: initial law and transition rows each Dirichlet(``concentration``)."""
        check_enumerable(vocab_size, seq_len)
        check_concentration(concentration)
        rng = seeded(seed)
        p = rng.dirichlet(np.full(vocab_size, concentration))
        transition = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
        for _ in range(seq_len - 1):
            p = p[..., None] * transition.reshape((1,) * (p.ndim - 1) + transition.shape)
        return cls(p, seed=seed, **kw)

    @classmethod
    def ended(cls, vocab_size: int, seq_len: int, seed: int = 0, p_end: float = 0.3, concentration: float = 1.0,
              **kw) -> "ExactToy":
        """Text with an end token: ids ``0 .. V-2`` are content, ``V - 1`` is the end token, and only the end token
        follows it (the padding of a language model's sampled text). A Markov chain whose end state is absorbing:
        position 0 is content (initial law Dirichlet(``concentration``) over the content ids); after a content token
        comes the end token with probability ``p_end``, else content by a Dirichlet(``concentration``) transition row.
        The joint for :func:`snrpaths.sample`'s ``stop_token=V - 1``."""
        check_enumerable(vocab_size, seq_len)
        check_concentration(concentration)
        if vocab_size < 2:
            raise SNRPathError(f"'vocab_size' must be at least 2, a content token and the end token (got {vocab_size})")
        p_end = validate.number("p_end", p_end, 0.0, 1.0, low_open=True, high_open=True)
        rng = seeded(seed)
        content = vocab_size - 1
        p = np.append(rng.dirichlet(np.full(content, concentration)), 0.0)
        transition = np.zeros((vocab_size, vocab_size))
        transition[:content, :content] = (1 - p_end) * rng.dirichlet(np.full(content, concentration), size=content)
        transition[:content, content] = p_end
        transition[content, content] = 1.0
        for _ in range(seq_len - 1):
            p = p[..., None] * transition.reshape((1,) * (p.ndim - 1) + transition.shape)
        return cls(p, seed=seed, **kw)

    @classmethod
    def product(cls, vocab_size: int, seq_len: int, seed: int = 0, concentration: float = 1.0, **kw) -> "ExactToy":
        """Independent positions, each marginal Dirichlet(``concentration``)."""
        check_enumerable(vocab_size, seq_len)
        check_concentration(concentration)
        rng = seeded(seed)
        return cls.from_marginals(rng.dirichlet(np.full(vocab_size, concentration), size=seq_len), seed=seed, **kw)

    @classmethod
    def from_marginals(cls, marginals: torch.Tensor | np.ndarray, **kw) -> "ExactToy":
        """The product joint ``P(s) = prod_i m_i(s_i)`` of ``[L, V]`` marginals (rows summing to 1)."""
        m = torch.as_tensor(marginals, dtype=torch.float64)
        if m.ndim != 2:
            raise ShapeError(f"'marginals' must have shape [L, V] (got {list(m.shape)})")
        check_enumerable(m.shape[1], m.shape[0])
        p = m[0]
        for row in m[1:]:
            p = p[..., None] * row
        return cls(p, **kw)

    @classmethod
    def two_bit(cls) -> "ExactToy":
        """The paper's toy: uniform on (0, 0) and (1, 1), anchors -1 and +1 on the line (d = 1).

        The posterior odds of (1, 1) against (0, 0) are ``exp(2 (z_1 + z_2))``: the decision boundary is the
        line ``z_1 + z_2 = 0``, so one position's evidence can overrule the other's.
        """
        return cls(torch.tensor([[0.5, 0.0], [0.0, 0.5]]), TokenTable.from_embeddings(torch.tensor([[-1.0], [1.0]])))

    @classmethod
    def parity(cls, seq_len: int, **kw) -> "ExactToy":
        """Uniform on the binary sequences of even parity: every position depends on all the others."""
        check_enumerable(2, seq_len)
        even = (enumerate_sequences(2, seq_len).sum(-1) % 2 == 0).to(torch.float64)
        return cls((even / even.sum()).reshape((2,) * seq_len), **kw)

    # -- the joint -----------------------------------------------------------------------------------------

    @property
    def probs(self) -> torch.Tensor:
        """The joint ``P``, shape ``(V,) * L``."""
        return self.log_joint.exp()

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """``log P(s)`` of ``[..., L]`` token sequences, as a ``[...]`` float64 tensor."""
        check_sequences(self, "tokens", tokens)
        return self.log_joint.flatten()[self._index(tokens)]

    def entropy(self) -> float:
        """``H(P) = -sum_s P(s) log P(s)`` in nats (``0 log 0 = 0``)."""
        p = self.probs.flatten()
        return float(-(p[p > 0] * p[p > 0].log()).sum())

    def entropy_rate(self) -> tuple[float, float]:
        """``(H(P) / L, 0.0)``: the entropy per token in nats, exact, so its standard error is 0. The same contract as
        ``ExactHMM.entropy_rate``, which has to estimate it."""
        return self.entropy() / self.seq_len, 0.0

    def marginals(self) -> torch.Tensor:
        """``[L, V]`` prior marginals ``P(s_i = v)``."""
        p = self.probs
        if self.seq_len == 1:  # an empty dim tuple would sum everything
            return p[None]
        return torch.stack([p.sum(dim=tuple(j for j in range(self.seq_len) if j != i)) for i in range(self.seq_len)])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, L]`` sequences drawn from ``P``."""
        return self.states[categorical(self.probs.flatten(), generator, n)]

    # -- the posterior ---------------------------------------------------------------------------------------

    def joint_log_posterior(self, state: SNRState) -> torch.Tensor:
        """``[B, V^L]`` normalised ``log p(s | z, clean tokens)``, sequences in C order (see ``states``).

        A row whose clean tokens have probability 0 under ``P`` (parallel reveals can produce one from a joint
        with zeros) has no posterior; it gets the limit of the posterior under ``(1 - eps) P + eps U`` as
        ``eps -> 0``, which is the posterior under the uniform prior ``U``: evidence and clean tokens only.
        """
        check_state(self, state)
        chunks = [self._joint_scores(state, rows, self.log_joint) for rows in self._chunks(state.batch)]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        norm = out.logsumexp(-1, keepdim=True)
        impossible = torch.isneginf(norm).flatten()
        if bool(impossible.any()):
            flat = torch.zeros_like(self.log_joint)
            out[impossible] = self._joint_scores(state, impossible, flat)
            norm = out.logsumexp(-1, keepdim=True)
        return out - norm

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` exact ``log p(s_i = v | z)`` (float64): ``p(s_i = v | z) = sum_s p(s | z) 1[s_i = v]``.

        Sums run over normalised joint probabilities, so a marginal below float64's smallest normal (1e-308) reads
        as log 0 = -inf; every other entry is exact to float64 rounding, at any SNR.
        """
        post = self.joint_log_posterior(state).exp()  # [B, N]
        return (post @ self._onehot).log().reshape(state.batch, self.seq_len, self.vocab_size)

    def sample_posterior(self, state: SNRState, generator: torch.Generator | Streams) -> torch.Tensor:
        """``[B, L]`` whole sequences drawn from the exact joint posterior ``p(s | z)`` (clean tokens kept)."""
        probs = self.joint_log_posterior(state).exp()
        return self.states[categorical(probs, generator)]

    # -- internals ---------------------------------------------------------------------------------------------

    def _joint_scores(self, state: SNRState, rows: slice | torch.Tensor, log_joint: torch.Tensor) -> torch.Tensor:
        """``[b, N]`` ``log P(s) + sum_{i unrevealed} z_i · x_{s_i}``, -inf where s disagrees with a clean token."""
        z, tokens, clean = state.z[rows], state.tokens[rows], state.clean[rows]
        b = z.shape[0]
        evidence = z.to(torch.float64) @ self.table.anchors.to(torch.float64).T  # [b, L, V]
        evidence = torch.where(clean[..., None], 0.0, evidence)
        onehot = self._onehot.to(evidence.device)  # [N, L*V], row n marks (i, s_i) of the n-th sequence
        score = log_joint.to(evidence.device).flatten() + evidence.reshape(b, -1) @ onehot.T
        pinned = torch.zeros(b, self.seq_len, self.vocab_size, dtype=torch.float64, device=evidence.device)
        pinned.scatter_(-1, tokens.clamp_min(0)[..., None], clean[..., None].to(torch.float64))
        agree = pinned.reshape(b, -1) @ onehot.T  # how many clean tokens sequence n matches
        return torch.where(agree == clean.sum(-1, keepdim=True), score, -math.inf)

    def _chunks(self, batch: int):
        step = max(1, _CHUNK_ENTRIES // self.states.shape[0])
        return [slice(s, s + step) for s in range(0, batch, step)]

    def _index(self, tokens: torch.Tensor) -> torch.Tensor:
        powers = self.vocab_size ** torch.arange(self.seq_len - 1, -1, -1, device=tokens.device)
        return (tokens.to(torch.int64) * powers).sum(-1)


def check_sequences(model, name: str, tokens: torch.Tensor) -> None:
    """Raise unless ``tokens`` are valid ids of ``model.table`` in a ``[..., L]`` tensor, ``L = model.seq_len``."""
    model.table.check_tokens(name, tokens)
    if tokens.ndim < 1 or tokens.shape[-1] != model.seq_len:
        raise ShapeError(f"{name!r} must end in the sequence length {model.seq_len} (got shape {list(tokens.shape)})")


def check_state(model, state: SNRState) -> None:
    """Raise, before any work, unless ``state`` has ``model``'s length and anchor dimension."""
    if state.seq_len != model.seq_len:
        raise ShapeError(f"the state has L = {state.seq_len} positions; this denoiser models L = {model.seq_len}")
    if state.z.shape[-1] != model.table.dim:
        raise ShapeError(f"the state's evidence has d = {state.z.shape[-1]}; this denoiser's anchors have "
                         f"d = {model.table.dim}")


def enumerate_sequences(vocab_size: int, seq_len: int) -> torch.Tensor:
    """All ``V^L`` sequences as a ``[V^L, L]`` int64 tensor, position 0 the most significant digit."""
    powers = vocab_size ** torch.arange(seq_len - 1, -1, -1)
    return (torch.arange(vocab_size**seq_len)[:, None] // powers) % vocab_size


def check_concentration(concentration: float) -> float:
    return validate.number("concentration", concentration, 0.0, math.inf, low_open=True, high_open=True,
                           phrase="a positive finite number")
