"""Exact hidden-Markov-model denoisers: the exact Bayes posterior at any sequence length (DESIGN 4c).

A hidden Markov model has K hidden states, an initial law ``pi`` ``[K]``, transitions ``T`` ``[K, K]`` and emissions
``B`` ``[K, V]``: ``P(s) = sum_h pi(h_0) B[h_0, s_0] prod_{i>0} T[h_{i-1}, h_i] B[h_i, s_i]``. Evidence enters
position ``i`` as a weight on each token,

    w_i(v) = exp(z_i · x_v)   (finite SNR; z_i = 0 at [MASK] gives w_i = 1: the position is free)
    w_i(v) = 1[v = t_i]       (clean, gamma = inf: the token is pinned)

so that ``p(s | z) ∝ P(s) prod_i w_i(s_i)`` (unit-norm anchors, DESIGN 1): an HMM again, with soft emissions
``e_i(k) = sum_v B[k, v] w_i(v)``. Forward-backward over ``h`` with ``e_i`` gives the leave-one-out law of the hidden
state, ``p(h_i = k | z_{-i}) ∝ (alpha_{i-1} T)(k) beta_i(k)`` (position ``i``'s own evidence left out), and then
the identity of DESIGN 4b,

    log p(s_i = v | z) = log w_i(v) + log sum_k p(h_i = k | z_{-i}) B[k, v] - log Z_i,

in ``O(L K^2 + L K V)`` (less with structural zeros: every sum runs over the nonzero entries only). Every sum is a
log-sum-exp in float64, so evidence at ``gamma = 1e6`` (``|z·x| ~ 1e6``), even evidence that contradicts the model,
neither overflows nor underflows to a wrong zero.

Data without a corpus: started from the stationary law of ``T`` (``pi T = pi``, :func:`stationary_law`,
:meth:`ExactHMM.with_stationary_initial`), every hidden state of a run has law ``pi``, so every window of ``L``
consecutive tokens of one long run (:meth:`ExactHMM.sample_run`) is an exact draw from the length-``L`` HMM: a
training stream as long as wanted, and a held-out one from another seed.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch

from snrpaths.draw import categorical, inverse_cdf
from snrpaths import validate
from snrpaths.errors import SNRPathError, SNRTypeError, ShapeError
from snrpaths.geometry import TokenTable
from snrpaths.state import SNRState
from snrpaths.streams import Streams

from .toy import (check_concentration, check_enumerable, check_sequences, check_state, seeded,
                  enumerate_sequences)

#: Upper bound on the float64 entries of one chunk of rows' work (the largest is ``[b, L, K, nonzeros]``).
_CHUNK_ENTRIES = 2**24
#: Steps of the hidden chain per block of uniforms drawn at once by :meth:`ExactHMM.sample_run`.
_RUN_CHUNK = 2**20
#: Below this, a sum of shifted exponentials may have lost its terms to underflow (float64's smallest normal is
#: 2.2e-308, so any term lost is a relative 1e-58 of a sum this large) and is recomputed by log-sum-exp.
_TINY = 1e-250


class _LogMatrix:
    """A nonnegative matrix ``M`` ``[R, C]`` applied in log space: ``y[..., c] = log sum_r exp(x[..., r]) M[r, c]``.

    Fast path: one product ``exp(x - max_r x) @ M`` in float64. It is exact to rounding wherever the result is
    at least ``_TINY`` (every term is a product of normal numbers, and no sum of nonnegative terms cancels), but it
    reads 0 or loses digits where every term of a column underflowed although the column is not truly 0 (the largest
    ``x`` has ``M = 0`` there, the others are ``e^-745`` below it: evidence at large SNR that favours a token the
    column's states cannot emit). Those entries are redone as a true log-sum-exp over the column's nonzero rows
    (``index`` ``[C, W]``, ``W`` the most nonzeros of any column, padded with weight ``-inf``).
    """

    def __init__(self, m: torch.Tensor):
        self.matrix, self.support = m, (m > 0).to(m.dtype)
        width = max(1, int(self.support.sum(0).max()))
        self.index = self.support.T.argsort(dim=1, descending=True, stable=True)[:, :width]  # [C, W]
        self.log_weight = m.T.log().gather(1, self.index)  # [C, W], -inf on padding

    @property
    def width(self) -> int:
        return self.index.shape[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., R]`` log-space vectors to ``[..., C]``."""
        matrix, support = self.matrix.to(x.device), self.support.to(x.device)
        shift = _finite_or_zero(x.amax(-1, keepdim=True))
        linear = (x - shift).exp() @ matrix
        out = linear.log() + shift
        # a column with no finite term is truly -inf; one with a finite term but a tiny fast-path value is redone
        redo = (linear < _TINY) & (torch.isfinite(x).to(matrix.dtype) @ support > 0)
        if bool(redo.any()):
            rows, cols = redo.reshape(-1, redo.shape[-1]).nonzero(as_tuple=True)
            index, weight = self.index.to(x.device)[cols], self.log_weight.to(x.device)[cols]
            exact = (x.reshape(-1, x.shape[-1])[rows[:, None], index] + weight).logsumexp(-1)
            out = out.reshape(-1, out.shape[-1]).index_put((rows, cols), exact).reshape(out.shape)
        return out


class ExactHMM:
    """The exact Bayes denoiser of a hidden Markov model over ``L`` positions (a :class:`snrpaths.Denoiser`).

    The same contract as :class:`~snrpaths.backends.toy.ExactToy` where they overlap (``exact_posterior``, ``table``,
    ``logits``, ``log_prob``, ``sample``, ``sample_posterior``, ``marginals``, ``entropy_rate``, and ``probs`` when
    ``V^L`` is small enough to enumerate), at any ``L``; and one long run of the chain (``sample_run``).

    Args:
        initial: ``pi``, ``[K]``; transition: ``T``, ``[K, K]`` (row ``j`` is the law of the next state from ``j``);
            emission: ``B``, ``[K, V]``. Nonnegative, each summing to 1 along its last axis; zeros are structural.
        seq_len: ``L``.
        table: the anchors; default ``TokenTable.random(V, dim, seed)``.
    """

    reads_finite_snr = True  # the Bayes posterior of any state (snrpaths.denoiser.FiniteSNR)

    def __init__(self, initial, transition, emission, seq_len: int, table: TokenTable | None = None, *,
                 dim: int = 8, seed: int = 0):
        validate.integer("seq_len", seq_len)
        initial, transition, emission = _check_laws(initial, transition, emission)
        table = TokenTable.random(emission.shape[1], dim, seed) if table is None else table
        if table.vocab_size != emission.shape[1]:
            raise ShapeError(f"the token table has {table.vocab_size} anchors but 'emission' has V = {emission.shape[1]}")
        self.n_states, self.vocab_size = emission.shape
        self.seq_len, self.table = int(seq_len), table
        self.initial, self.transition, self.emission = initial, transition, emission
        self._log_initial, self._log_transition, self._log_emission = initial.log(), transition.log(), emission.log()
        # the four sums of forward-backward, each over nonzero entries only
        self._forward_step = _LogMatrix(transition)  # (a T)(k) = sum_j a(j) T[j, k]
        self._backward_step = _LogMatrix(transition.T)  # (T b)(j) = sum_k T[j, k] b(k)
        self._soft_emission = _LogMatrix(emission.T)  # e(k) = sum_v B[k, v] w(v)
        self._token_mixture = _LogMatrix(emission)  # sum_k p(k) B[k, v]
        self._pairs: torch.Tensor | None = None  # the support of neighbouring pairs, built on first use

    @classmethod
    def from_arrays(cls, initial, transition, emission, seq_len: int, table: TokenTable | None = None,
                    **kw) -> "ExactHMM":
        """An HMM from its probability tables (tensors, arrays or nested lists), validated: shapes ``[K]``,
        ``[K, K]``, ``[K, V]``, entries finite and nonnegative, ``pi`` and every row of ``T`` and ``B`` summing to 1."""
        return cls(initial, transition, emission, seq_len, table, **kw)

    @classmethod
    def random(cls, n_states: int, vocab_size: int, seq_len: int, seed: int = 0, successors: int = 2,
               emissions: int = 2, concentration: float = 1.0, stationary: bool = False, **kw) -> "ExactHMM":
        """A random HMM with structural zeros: each state moves to ``successors`` states and emits ``emissions``
        tokens (chosen uniformly), with Dirichlet(``concentration``) weights on them; ``pi`` is Dirichlet over all
        states. With ``successors < K`` or ``emissions < V`` some sequences are impossible (``P(s) = 0``), and the
        fewer, the stronger the dependence between neighbours. Drawn, like ``ExactToy``'s joints, from ``seed``.

        ``stationary=True``: one of each state's successors is its next state on a random cycle through all states
        (so every state reaches every other: the chain is irreducible, whatever ``successors``), and ``pi`` is the
        stationary law of ``T`` (see :meth:`with_stationary_initial`)."""
        for name, value, most in (("n_states", n_states, None), ("vocab_size", vocab_size, None),
                                  ("successors", successors, n_states), ("emissions", emissions, vocab_size)):
            validate.integer(name, value)
            if most is not None and value > most:
                raise SNRPathError(f"{name!r} must be at most {most} (got {value})")
        check_concentration(concentration)
        stationary = validate.boolean("stationary", stationary)
        rng = seeded(seed)

        def sparse_rows(width: int, support: int, first: np.ndarray | None = None) -> np.ndarray:
            """``[K, width]`` rows with ``support`` nonzeros each; ``first[j]``, if given, is always one of row j's."""
            rows = np.zeros((n_states, width))
            for j, row in enumerate(rows):
                # weights before columns: the order in which HMMs drawn before `first` existed took their draws
                weights = rng.dirichlet(np.full(support, concentration))
                if first is None:
                    columns = rng.choice(width, support, replace=False)
                else:
                    others = rng.choice(np.delete(np.arange(width), first[j]), support - 1, replace=False)
                    columns = np.concatenate([[first[j]], others])
                row[columns] = weights
            return rows

        if stationary:
            order = rng.permutation(n_states)
            cycle = np.empty(n_states, dtype=np.int64)
            cycle[order] = np.roll(order, -1)  # state order[i] moves on to order[i + 1]
            transition = sparse_rows(n_states, successors, cycle)
            initial = stationary_law(torch.as_tensor(transition))
        else:
            initial = rng.dirichlet(np.full(n_states, concentration))
            transition = sparse_rows(n_states, successors)
        emission = sparse_rows(vocab_size, emissions)
        return cls(initial, transition, emission, seq_len, seed=seed, **kw)

    def with_stationary_initial(self) -> "ExactHMM":
        """The same chain, emissions, length and anchors, started from the stationary law of ``T``
        (:func:`stationary_law`, ``pi T = pi``). Then every hidden state has law ``pi`` and every window
        ``s_t .. s_{t+L-1}`` of one long run (:meth:`sample_run`) is distributed exactly as this HMM's ``P``."""
        return ExactHMM(stationary_law(self.transition), self.transition, self.emission, self.seq_len, self.table)

    @property
    def exact_posterior(self) -> bool:
        """Its logits are the exact Bayes marginals of a joint (see :class:`snrpaths.Denoiser`); not so for a
        ``with_norms`` table."""
        return self.table.is_unit_norm

    def __repr__(self) -> str:
        return f"ExactHMM(K={self.n_states}, V={self.vocab_size}, L={self.seq_len}, d={self.table.dim})"

    # -- the joint -----------------------------------------------------------------------------------------

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """``log P(s)`` of ``[..., L]`` token sequences as a ``[...]`` float64 tensor (``-inf`` where ``P(s) = 0``),
        by the forward algorithm: the normaliser of the posterior with every position clean."""
        check_sequences(self, "tokens", tokens)
        flat = tokens.reshape(-1, self.seq_len).to(torch.int64)
        log_e = self._log_emission.T.to(flat.device)  # [V, K]
        out = [self._forward(log_e[flat[rows]])[2] for rows in self._chunks(flat.shape[0], self.n_states)]
        return torch.cat(out).reshape(tokens.shape[:-1]) if out else torch.zeros(tokens.shape[:-1], dtype=torch.float64)

    def impossible_pairs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[..., L - 1]`` bool: neighbours ``(s_i, s_{i+1})`` of ``[..., L]`` sequences that no sequence of ``P``
        holds at positions ``i, i + 1``, i.e. ``P(s_i = a, s_{i+1} = b) = 0``.

        A per-token measure of invalidity where whole sequences are all invalid (a learned model that puts a little
        mass on every transition draws no possible sequence of length 256). Support only, so exact in booleans:
        ``R_0 = {h : pi(h) > 0}``, ``R_{i+1} = {k : T[j, k] > 0, j in R_i}``, and the pair is possible iff some
        ``j in R_i`` and ``k`` have ``B[j, a] T[j, k] B[k, b] > 0``.
        """
        check_sequences(self, "tokens", tokens)
        support = self._pair_support().to(tokens.device)  # [L - 1, V, V]
        flat = tokens.reshape(-1, self.seq_len).to(torch.int64)
        position = torch.arange(self.seq_len - 1, device=tokens.device)
        possible = support[position, flat[:, :-1], flat[:, 1:]]
        return (~possible).reshape(*tokens.shape[:-1], self.seq_len - 1)

    def _pair_support(self) -> torch.Tensor:
        """``[L - 1, V, V]`` bool: ``P(s_i = a, s_{i+1} = b) > 0`` (see :meth:`impossible_pairs`), cached."""
        if self._pairs is None:
            emit, move = _indicator(self.emission), _indicator(self.transition)
            reach, supports = _indicator(self.initial), []
            after = move @ emit  # [K, V]: from state j, the next token can be b
            for _ in range(self.seq_len - 1):
                supports.append(((emit * reach[:, None]).T @ after) > 0)  # [V, V]
                reach = _indicator(reach @ move)
            self._pairs = torch.stack(supports) if supports else torch.zeros(0, self.vocab_size, self.vocab_size,
                                                                              dtype=torch.bool)
        return self._pairs

    @property
    def probs(self) -> torch.Tensor:
        """The joint ``P`` as a ``(V,) * L`` tensor, as ``ExactToy.probs`` (only where ``V^L`` can be enumerated)."""
        check_enumerable(self.vocab_size, self.seq_len)
        log_p = self.log_prob(enumerate_sequences(self.vocab_size, self.seq_len))
        return log_p.exp().reshape((self.vocab_size,) * self.seq_len)

    def marginals(self) -> torch.Tensor:
        """``[L, V]`` prior marginals ``P(s_i = v)``: the posterior with every position masked."""
        return self.logits(SNRState.masked(1, self.seq_len, self.table)).exp()[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, L]`` sequences drawn from ``P`` (ancestral: ``h_0 ~ pi``, ``s_i ~ B[h_i]``, ``h_{i+1} ~ T[h_i]``)."""
        validate.integer("n", n)
        tokens = torch.empty(n, self.seq_len, dtype=torch.int64)
        hidden = categorical(self.initial.expand(n, -1), generator)
        for i in range(self.seq_len):
            tokens[:, i] = categorical(self.emission[hidden], generator)
            if i + 1 < self.seq_len:
                hidden = categorical(self.transition[hidden], generator)
        return tokens

    def sample_run(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n]`` tokens of one run of the chain, any ``n`` (not tied to ``L``): ``h_0 ~ pi``, ``h_{t+1} ~ T[h_t]``,
        ``s_t ~ B[h_t]``. With a stationary ``pi`` (:meth:`with_stationary_initial`) every window
        ``run[t : t + L]`` is an exact draw from ``P`` (overlapping windows are dependent, distant ones nearly
        independent): training data with no fixed corpus, as long as wanted.

        The hidden run is sequential, a Python loop (about half a microsecond a step: inverse CDF of ``T[h_t]`` at
        one uniform, the same rule as :func:`snrpaths.draw.inverse_cdf`); the tokens are then drawn state by state,
        all at once.
        """
        validate.integer("n", n)
        hidden = self._hidden_run(n, generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        tokens = torch.empty(n, dtype=torch.int64)
        for k in range(self.n_states):
            at = hidden == k
            tokens[at] = inverse_cdf(self.emission[k], u[at])
        return tokens

    def _hidden_run(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n]`` hidden states of one run from ``pi`` (see :meth:`sample_run`), uniforms drawn ``_RUN_CHUNK`` at a
        time."""
        cdf = self.transition.cumsum(-1).tolist()  # [K][K]: row h's cumulative law
        state = int(categorical(self.initial, generator))
        blocks = []
        for start in range(0, n, _RUN_CHUNK):
            states = []
            for u in torch.rand(min(_RUN_CHUNK, n - start), generator=generator, dtype=torch.float64).tolist():
                states.append(state)
                row = cdf[state]
                # u scaled by the row's total, so rounding in the cumulative sum never reaches past the last state
                state = bisect.bisect_right(row, u * row[-1])
            blocks.append(torch.tensor(states, dtype=torch.int64))  # a block at a time: Python ints cost 8x more
        return torch.cat(blocks)

    def entropy_rate(self, n: int = 4096, seed: int = 0) -> tuple[float, float]:
        """``(H(P) / L, standard error)`` in nats per token, estimated as the mean of ``-log P(s) / L`` over ``n``
        exact samples (seeded by ``seed``). ``H`` has no closed form for an HMM; the estimate is unbiased, and exact
        ``log P`` leaves only the sampling error ``sd(-log P(s) / L) / sqrt(n)``."""
        n = validate.integer("n", n, 2, phrase="an integer >= 2 (a standard error needs two samples)")
        nll = -self.log_prob(self.sample(n, torch.Generator().manual_seed(validate.seed("seed", seed)))) / self.seq_len
        return float(nll.mean()), float(nll.std() / math.sqrt(n))

    # -- the posterior ---------------------------------------------------------------------------------------

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` exact normalised ``log p(s_i = v | z)`` (float64), by forward-backward (module docstring).

        Clean positions give their token log-probability 0 and the others ``-inf``; a token the model rules out at
        a position gets ``-inf``. A row whose clean tokens have probability 0 under ``P`` has no posterior; as in
        ``ExactToy``, it gets the limit under ``(1 - eps) P + eps U`` as ``eps -> 0``: the uniform-prior posterior
        ``log_softmax(log w_i)``.
        """
        check_state(self, state)
        log_w = self._log_weights(state)
        out = [self._marginals(log_w[rows]) for rows in self._chunks(state.batch, self._posterior_width)]
        return torch.cat(out)

    def sample_posterior(self, state: SNRState, generator: torch.Generator | Streams) -> torch.Tensor:
        """``[B, L]`` whole sequences drawn from the exact joint posterior ``p(s | z)`` (clean tokens kept).

        Forward filtering, backward sampling: ``h_{L-1} ~ p(h_{L-1} | z)``, then ``h_i ~ p(h_i | z_{<=i}) T[h_i,
        h_{i+1}]``, then each token from ``p(s_i = v | h_i, z_i) ∝ B[h_i, v] w_i(v)``. Rows with no posterior draw
        from the uniform-prior posterior (see :meth:`logits`).
        """
        check_state(self, state)
        log_w = self._log_weights(state)
        batch, device = state.batch, log_w.device
        filtered, log_z = torch.empty(batch, self.seq_len, self.n_states, dtype=torch.float64, device=device), []
        for rows in self._chunks(batch, self._posterior_width):
            filtered[rows], _, norm = self._forward(self._soft_emission(log_w[rows]))
            log_z.append(norm)
        possible = torch.isfinite(torch.cat(log_z))[:, None]
        log_t = self._log_transition.to(device)
        # an impossible row draws its hidden states from a placeholder law: its tokens ignore them below
        hidden = categorical(_softmax_where(possible, filtered[:, -1]), generator)
        states = [hidden]
        for i in range(self.seq_len - 2, -1, -1):
            hidden = categorical(_softmax_where(possible, filtered[:, i] + log_t[:, hidden].T), generator)
            states.append(hidden)
        hidden = torch.stack(states[::-1], 1)  # [B, L]
        token_logits = torch.where(possible[..., None], self._log_emission.to(device)[hidden] + log_w, log_w)
        return categorical(torch.softmax(token_logits, -1), generator)

    # -- internals ---------------------------------------------------------------------------------------------

    def _log_weights(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V]`` ``log w_i(v)``, shifted per position so that its largest entry is 0 (the shift cancels in
        every normalised law and keeps the forward messages' magnitudes at one position's evidence)."""
        anchors = self.table.anchors.to(device=state.z.device, dtype=torch.float64)
        evidence = state.z.to(torch.float64) @ anchors.T
        evidence = evidence - evidence.amax(-1, keepdim=True)
        pinned = torch.full_like(evidence, -math.inf).scatter_(-1, state.tokens.clamp_min(0)[..., None], 0.0)
        return torch.where(state.clean[..., None], pinned, evidence)

    def _forward(self, log_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Filtering with emission log-likelihoods ``log_e`` ``[b, L, K]``, each step normalised so that no message
        grows with ``L``.

        Returns ``log p(h_i | z_{<=i})`` and ``log p(h_i | z_{<i})`` (``[b, L, K]`` each; ``-inf`` once the
        evidence is impossible), and ``log Z = sum_i log p(z_i | z_{<i})`` ``[b]`` (``-inf`` for impossible rows).
        """
        filtered, predicted = torch.empty_like(log_e), torch.empty_like(log_e)
        log_z = torch.zeros(log_e.shape[0], dtype=torch.float64, device=log_e.device)
        step = self._log_initial.to(log_e.device).expand(log_e.shape[0], -1)
        for i in range(log_e.shape[1]):
            predicted[:, i] = step
            joint = step + log_e[:, i]
            norm = joint.logsumexp(-1)
            log_z += norm
            filtered[:, i] = joint - _finite_or_zero(norm)[:, None]
            step = self._forward_step(filtered[:, i])
        return filtered, predicted, log_z

    def _marginals(self, log_w: torch.Tensor) -> torch.Tensor:
        """``[b, L, V]`` normalised ``log p(s_i | z)`` from shifted log weights ``[b, L, V]`` (see :meth:`logits`)."""
        log_e = self._soft_emission(log_w)  # [b, L, K]
        _, predicted, log_z = self._forward(log_e)  # predicted_i: position i's evidence not yet in
        backward = torch.zeros_like(log_e)  # log p(z_{>i} | h_i) up to a constant per position
        for i in range(self.seq_len - 1, 0, -1):
            message = self._backward_step(log_e[:, i] + backward[:, i])
            backward[:, i - 1] = message - _finite_or_zero(message.amax(-1))[:, None]
        leave_one_out = predicted + backward  # log p(h_i | z_{-i}) + const
        scores = log_w + self._token_mixture(leave_one_out)
        scores = torch.where(torch.isfinite(log_z)[:, None, None], scores, log_w)
        return scores - scores.logsumexp(-1, keepdim=True)

    @property
    def _posterior_width(self) -> int:
        """Entries per position of a posterior pass: the gathers ``[K, nonzeros]`` and ``[V, nonzeros]``."""
        return max(self.n_states * self._soft_emission.width, self.vocab_size * self._token_mixture.width)

    def _chunks(self, batch: int, per_position: int) -> list[slice]:
        """Row slices small enough that ``[rows, L, per_position]`` fits in ``_CHUNK_ENTRIES``."""
        step = max(1, _CHUNK_ENTRIES // (self.seq_len * per_position))
        return [slice(s, s + step) for s in range(0, batch, step)]


def stationary_law(transition: torch.Tensor) -> torch.Tensor:
    """``[K]`` float64: the stationary law ``pi`` of an irreducible transition matrix ``T`` ``[K, K]`` (rows summing
    to 1), the unique solution of ``pi T = pi``, ``sum_k pi_k = 1`` (by one linear solve: ``T^T - I`` with its last
    equation replaced by the normalisation, nonsingular for an irreducible chain). Periodic chains are fine.

    A reducible chain (some state cannot reach another) has no unique stationary law, and one long run of it would
    show a single closed class: an error naming such a pair of states.
    """
    t = torch.as_tensor(transition, dtype=torch.float64)
    k = t.shape[0]
    reach = (t > 0) | torch.eye(k, dtype=torch.bool)
    for _ in range(max(1, math.ceil(math.log2(k)))):  # paths of length up to 2^steps >= K
        reach = (reach.double() @ reach.double()) > 0
    if not bool(reach.all()):
        a, b = (int(i) for i in (~reach).nonzero()[0])
        raise SNRPathError(f"the chain is reducible: state {b} cannot be reached from state {a}, so it has no unique "
                           "stationary law (give each state more successors, or draw another seed)")
    system = t.T - torch.eye(k, dtype=torch.float64)
    system[-1] = 1.0
    rhs = torch.zeros(k, dtype=torch.float64)
    rhs[-1] = 1.0
    pi = torch.linalg.solve(system, rhs).clamp_min(0.0)  # an irreducible chain's pi is positive; only rounding is cut
    return pi / pi.sum()


def _indicator(m: torch.Tensor) -> torch.Tensor:
    """``1[m > 0]`` in float64: products of such 0/1 matrices count paths (at most ``K^2``), exactly."""
    return (m > 0).to(torch.float64)


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``x`` with ``-inf`` replaced by 0, for subtracting a normaliser that may be ``log 0`` (an impossible row)."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _softmax_where(keep: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``softmax(logits)`` on rows where ``keep`` (``[B, 1]``), uniform elsewhere (rows that may be all ``-inf``)."""
    return torch.softmax(torch.where(keep, logits, torch.zeros_like(logits)), -1)


def _check_laws(initial, transition, emission) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three tables as float64 tensors, validated (see ``ExactHMM.from_arrays``), renormalised to sum to 1."""
    laws = {}
    for name, value, ndim in (("initial", initial, 1), ("transition", transition, 2), ("emission", emission, 2)):
        try:
            laws[name] = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise SNRTypeError(f"{name!r} must be a numeric tensor, array or nested list (got {value!r:.60})") from None
        if laws[name].ndim != ndim or 0 in laws[name].shape:
            raise ShapeError(f"{name!r} must have {ndim} nonempty axes (got shape {list(laws[name].shape)})")
    k = laws["initial"].shape[0]
    for name, shape in (("transition", (k, k)), ("emission", (k, laws["emission"].shape[1]))):
        if tuple(laws[name].shape) != shape:
            raise ShapeError(f"{name!r} must have shape {list(shape)} for K = {k} states (got {list(laws[name].shape)})")
    for name, law in laws.items():
        if not bool(torch.isfinite(law).all()):
            raise SNRPathError(f"{name!r} contains NaN or inf")
        if bool((law < 0).any()):
            where = [int(i) for i in (law < 0).nonzero()[0]]
            raise SNRPathError(f"{name!r} must be nonnegative (entry {where} is {float(law[tuple(where)]):.4g})")
        totals = law.sum(-1, keepdim=True)
        off = (totals - 1).abs() > 1e-6
        if bool(off.any()):
            if law.ndim == 1:
                raise SNRPathError(f"'initial' must sum to 1 (got {float(totals):.8g})")
            row = int(off.flatten().nonzero()[0])
            hint = f": state {row} {'emits' if name == 'emission' else 'moves to'} nothing" if totals[row] == 0 else ""
            raise SNRPathError(f"every row of {name!r} must sum to 1 (row {row} sums to {float(totals[row]):.8g}){hint}")
        laws[name] = law / totals
    return laws["initial"], laws["transition"], laws["emission"]
