"""The path-integral NLL along any monotone per-token SNR curve.

Shapes: ``B`` sequences, ``L`` positions, ``d`` anchor dimension, ``V`` vocabulary, ``N`` quadrature nodes along one
trajectory, ``R`` rows (states) in one denoiser batch.
"""

from __future__ import annotations

import math

import attrs
import torch

from ..denoiser import Denoiser
from ..errors import one_of
from . import _common
from ._common import NLLEstimate
from .curves import as_curve, check_knots, kappa, radau

#: Control variates added to the quadrature of each trajectory (see :func:`path_integral`).
CONTROLS = ("ito", "stein", "none")


def path_integral(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    path: object = "joint",
    n_samples: int = 8,
    seed: int = 0,
    *,
    n_nodes: int = 64,
    control: str = "ito",
    batch_size: int = 4096,
    progress: bool | None = None,
) -> NLLEstimate:
    """``-log P(s) = 1/2 int_C E(s, gamma) . dgamma`` along the curve ``C = path``, by quadrature and Monte Carlo.

    ``E_i(s, gamma) = E_z ||x_{s_i} - xhat_i(z)||^2`` with ``z_i = gamma_i x_{s_i} + W_i(gamma_i)`` and ``xhat_i(z) =
    sum_v p(s_i = v | z) x_v`` from the denoiser. For the Bayes denoiser the value is ``-log P(s)`` on every monotone
    curve from all-zero to all-infinite SNR; for a learned one its average over data bounds the entropy from above
    and may depend on the curve.

    **Infinite range.** Each piece of the curve (between two knots) is parametrised by ``tau in [0, 1]``, each position
    moving linearly in ``w = gamma / (gamma + kappa)``, ``kappa = 8 / Delta_min^2``, so ``dgamma_i / dtau =
    kappa dw_i / (1 - w_i)^2`` and the piece's integral is ``int_0^1 F(tau) dtau``, ``F = 1/2 sum_i E_i dgamma_i/dtau``.
    That is importance sampling over log-SNR made deterministic: the nodes' density in ``log gamma`` is the logistic
    ``w (1 - w)`` centred at ``log kappa``. The tail needs no truncation: for the Bayes denoiser, ``||x_s - xhat||^2
    <= 4 (1 - p(s_i | z))`` and ``E[min(1, r)] <= E[sqrt(r)]`` for the odds ``r`` of any ``s'`` against ``s`` give

        E_i(s, gamma) <= 4 sqrt(V^L / P(s)) exp(-gamma_i Delta_min^2 / 8) = 4 sqrt(V^L / P(s)) exp(-w_i / (1 - w_i)),

    so ``F`` and all its derivatives vanish as ``w_i -> 1``: ``F`` is smooth on the closed piece, and an ``n``-node
    Gauss-Radau rule in ``tau`` (nodes in ``[0, 1)``, none at infinite SNR) converges faster than any power of ``n``.
    A learned denoiser is assumed to localise at least as fast (one that never becomes confident has an infinite
    integral, which no finite rule can report).

    **Inner expectation.** Each of ``n_samples`` trajectories per sequence draws one Brownian motion per position,
    ``W_i(gamma_i)``, at the ``N = n_nodes x (pieces that move)`` nodes (common random numbers along the curve), and
    evaluates all ``N`` states in batched denoiser calls. Its estimate ``Y`` is the Radau sum
    ``Q = sum_j omega_j F_j`` plus a control variate (``control``) of mean zero:

    * ``"ito"`` (default; exact for any denoiser): ``sum_j sum_i h_ji . dW_ji - 1/2 (dW_ji^T J_ji dW_ji - tr(J_ji)
      dgamma_ji)`` with ``h = x_s - xhat``, ``J_ji = Cov_p(x)`` at position ``i`` of node ``j`` (from the marginals),
      and ``dW_j``, ``dgamma_j`` the increments to node ``j+1``: each term has conditional mean 0 given node ``j``
      (an Ito sum and its Milstein correction). Why it works: pathwise, ``log p(s | z(gamma)) - log P(s) =
      int 1/2 ||h||^2 dgamma + int h . dW`` (Ito's formula on the log-partition), so for the Bayes denoiser ``Q`` plus
      the Ito integral is a constant, and the control cancels ``Q``'s noise up to discretisation.
    * ``"stein"`` (exact only when ``div xhat = sum_i tr J_ii``, i.e. the denoiser is the Bayes posterior of some
      joint, as every :class:`~snrpaths.backends.toy.ExactToy` is, mismatched priors included): the symmetric form
      ``1/2 sum_j sum_i (h_ji + h_(j+1)i) . dW_ji + dgamma_ji tr J_(j+1)i``, whose right-point half is centred by
      Stein's lemma. For a learned denoiser it is BIASED (by ``1/2 int E[tr J - div xhat] dgamma``; 1-2 nats on a
      tempered toy), so use it to certify exact models, not to score trained ones.
    * ``"none"``: ``Q`` alone.

    Measured on toy Markov chains (V = 3, L = 3-4), joint ramp: one trajectory's standard deviation is 2-3 nats
    without a control; with ``"ito"`` about 1.2 / 0.5 / 0.09 nats at 16 / 32 / 120 nodes, with ``"stein"`` 0.4 / 0.17 /
    0.04: the
    variance falls like ``1 / N^2`` once ``N`` is a few dozen, so calls buy more as nodes than as trajectories.
    Antithetic pairs (``W -> -W``) gave no gain and are not used. The law of ``Y`` is skewed, with rare outlying
    trajectories (noise that keeps the posterior on a wrong token to large SNR, where nodes are sparse), so the
    reported standard error is optimistic for few trajectories (about 0.7 of the true one at ``n_samples = 2``).

    Args:
        tokens: ``[B, L]`` or ``[L]`` token ids, ``L = denoiser.seq_len``.
        path: a curve (:class:`Joint`, :class:`Sequential`, :class:`RandomOrder`, :class:`Piecewise`) or one of
            ``"joint"``, ``"sequential"``, ``"random-order"``.
        n_samples: trajectories per sequence (the standard error needs 2 or more).
        n_nodes: Radau nodes per moving piece.
        batch_size: most states per denoiser call.
        progress: show a progress bar (default: only for work spanning several batches, on a terminal).
    Returns:
        an :class:`NLLEstimate`: ``samples[b, p] = Y`` of trajectory ``p``; ``n_calls = n_samples * N``. Every random
        choice (noise, random orders) comes from one CPU generator seeded with ``seed``, trajectory by trajectory,
        so results do not depend on ``batch_size`` or device.
    """
    _common.check_denoiser(denoiser)
    tokens = _common.check_tokens(denoiser, tokens)
    n_samples = _common.check_count("n_samples", n_samples)
    n_nodes = _common.check_count("n_nodes", n_nodes)
    batch_size = _common.check_count("batch_size", batch_size)
    _common.check_progress(progress)
    if control not in CONTROLS:
        raise one_of("control", control, CONTROLS)
    curve = as_curve(path)
    g = _common.generator(seed)
    length = denoiser.seq_len
    probe = curve.knots(length, torch.Generator().manual_seed(0))
    check_knots(probe, length)
    rule = _Rule(kappa(denoiser.table), *radau(n_nodes))

    b = tokens.shape[0]
    samples = torch.empty(b * n_samples, dtype=torch.float64)
    calls = 0
    total = b * n_samples * rule.nodes(probe).gamma.shape[0]
    with _common.progress_bar(total, batch_size, progress, "path_integral") as bar:
        for chunk in _chunks(curve, rule, denoiser, b * n_samples, batch_size, g):
            rows = _Rows.assemble(chunk, tokens, n_samples, denoiser.table.anchors)
            y = _control_sum(rows, _node_stats(denoiser, rows, batch_size), control)
            samples[torch.tensor([t.index for t in chunk])] = torch.zeros(len(chunk), dtype=torch.float64).index_add_(
                0, rows.owner, y)
            calls += rows.gamma.shape[0]
            bar.update(rows.gamma.shape[0])
    name = f"path_integral({curve!r}, control={control!r}, n_nodes={n_nodes})"
    return NLLEstimate.from_samples(name, samples.reshape(b, n_samples), length, math.ceil(calls / b))


@attrs.frozen(eq=False)
class _Nodes:
    """The quadrature nodes of one trajectory: ``gamma`` ``[N, L]`` SNRs (inf = clean), ``rate`` ``[N, L]`` the
    ``dgamma_i / dtau`` of the node's piece (0 for positions that hold still), ``weight`` ``[N]`` Radau weights."""

    gamma: torch.Tensor
    rate: torch.Tensor
    weight: torch.Tensor


@attrs.frozen(eq=False)
class _Rule:
    """Gauss-Radau nodes ``tau`` ``[n]`` and weights ``omega`` ``[n]``, laid on every piece in ``w``."""

    kappa: float
    tau: torch.Tensor
    omega: torch.Tensor

    def nodes(self, knots: torch.Tensor) -> _Nodes:
        """Nodes on the pieces of ``knots`` (``[K+1, L]``) along which some position moves (still ones cost nothing)."""
        w = torch.where(torch.isinf(knots), 1.0, knots / (knots + self.kappa))  # [K+1, L]
        dw = w[1:] - w[:-1]
        moving = dw.sum(-1) > 0
        start, dw = w[:-1][moving], dw[moving]  # [K', L]
        wn = start[:, None, :] + self.tau[None, :, None] * dw[:, None, :]  # [K', n, L]
        gamma = torch.where(wn >= 1, math.inf, self.kappa * wn / (1 - wn))
        rate = torch.where(dw[:, None, :] > 0, self.kappa * dw[:, None, :] / (1 - wn).square(), 0.0)
        length = knots.shape[1]
        return _Nodes(gamma.reshape(-1, length), rate.reshape(-1, length), self.omega.repeat(int(moving.sum())))


@attrs.frozen(eq=False)
class _Trajectory:
    index: int  # b * n_samples + p
    nodes: _Nodes
    eps: torch.Tensor  # [N, L, d] standard normal

    @property
    def rows(self) -> int:
        return self.nodes.gamma.shape[0]

    def brownian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` ``[N, L, d]`` at the nodes (``W_i(0) = 0``) and ``dgamma_in`` ``[N, L]``, the SNR gained since the
        previous node (0 where the position is clean: ``W`` is never needed at infinite SNR)."""
        gamma = self.nodes.gamma
        previous = torch.cat([torch.zeros_like(gamma[:1]), gamma[:-1]])
        # The clamp absorbs round-off of the w <-> gamma map for positions holding still across a knot.
        gained = torch.where(torch.isfinite(gamma), (gamma - previous).clamp_min(0), 0.0)
        return (gained.sqrt()[..., None] * self.eps).cumsum(0), gained


def _chunks(curve, rule: _Rule, denoiser: Denoiser, n_traj: int, batch_size: int, g: torch.Generator):
    """Trajectories ``0..n_traj-1`` (index ``b * n_samples + p``) in groups of about ``batch_size`` node rows.

    Each draws its knots (random orders) and then its noise from ``g``, in index order, so the draws do not depend
    on how trajectories are grouped.
    """
    length, dim = denoiser.seq_len, denoiser.table.dim
    known: dict[bytes, _Nodes] = {}  # nodes by knot table: a deterministic curve builds its nodes once
    pending: list[_Trajectory] = []
    rows = 0
    for index in range(n_traj):
        knots = curve.knots(length, g)
        key = knots.numpy().tobytes()
        if key not in known:
            check_knots(knots, length)
            known[key] = rule.nodes(knots)
        nodes = known[key]
        pending.append(_Trajectory(index, nodes, torch.randn(nodes.gamma.shape[0], length, dim, generator=g,
                                                             dtype=torch.float64)))
        rows += nodes.gamma.shape[0]
        if rows >= batch_size or index == n_traj - 1:
            yield pending
            pending, rows = [], 0


@attrs.frozen(eq=False)
class _Rows:
    """The node states of a group of trajectories, stacked (``R`` rows, CPU, float64).

    ``gamma``, ``rate`` ``[R, L]``; ``weight`` ``[R]``; ``z`` ``[R, L, d]``; ``tokens`` ``[R, L]`` the sequence's;
    ``dw`` ``[R, L, d]`` and ``gained`` ``[R, L]``: the Brownian and SNR increments from each node to the next of
    its trajectory (0 after the last node, and wherever a position holds still or becomes clean); ``owner`` ``[R]``
    the trajectory's place in the group; ``last`` ``[R]`` whether the row is its trajectory's last node.
    """

    gamma: torch.Tensor
    rate: torch.Tensor
    weight: torch.Tensor
    z: torch.Tensor
    tokens: torch.Tensor
    dw: torch.Tensor
    gained: torch.Tensor
    owner: torch.Tensor
    last: torch.Tensor

    @classmethod
    def assemble(cls, chunk: list[_Trajectory], tokens: torch.Tensor, n_samples: int, anchors: torch.Tensor) -> "_Rows":
        anchors, tokens = anchors.detach().to("cpu", torch.float64), tokens.cpu()
        parts = []
        for t, traj in enumerate(chunk):
            w, gained = traj.brownian()
            seq = tokens[traj.index // n_samples]
            g = traj.nodes.gamma
            inside = (g > 0) & torch.isfinite(g)
            z = torch.where(inside[..., None], torch.where(inside, g, 0.0)[..., None] * anchors[seq] + w, 0.0)
            after = torch.zeros_like(w[:1]), torch.zeros_like(gained[:1])
            parts.append((g, traj.nodes.rate, traj.nodes.weight, z, seq[None].expand(traj.rows, -1),
                          torch.cat([w[1:] - w[:-1], after[0]]), torch.cat([gained[1:], after[1]]),
                          torch.full((traj.rows,), t), torch.arange(traj.rows) == traj.rows - 1))
        return cls(*(torch.cat(column) for column in zip(*parts)))


@attrs.frozen(eq=False)
class _Stats:
    """What the controls read from the denoiser at each row: ``h = x_s - xhat`` ``[R, L, d]``, ``tr_j = tr J``
    ``[R, L]`` and ``quad_j = dW^T J dW`` ``[R, L]``, with ``J = sum_v p_v x_v x_v^T - xhat xhat^T`` the marginal
    posterior covariance at each position. Clean positions hold finite junk; every use multiplies it by a zero rate
    or increment."""

    h: torch.Tensor
    tr_j: torch.Tensor
    quad_j: torch.Tensor


def _node_stats(denoiser: Denoiser, rows: _Rows, batch_size: int) -> _Stats:
    """Evaluate every row's state in denoiser calls of at most ``batch_size`` rows."""
    device, dtype = denoiser.table.anchors.device, denoiser.table.anchors.dtype
    anchors = denoiser.table.anchors.detach().to(device, torch.float64)
    out = []
    for r in _common.slices(rows.gamma.shape[0], batch_size):
        tokens, dw = rows.tokens[r].to(device), rows.dw[r].to(device)
        p = _common.log_probs(denoiser, rows.gamma[r].to(device, dtype), rows.z[r].to(device, dtype), tokens).exp()
        xhat = p @ anchors  # [r, L, d]
        tr_j = p @ anchors.square().sum(-1) - xhat.square().sum(-1)
        quad_j = (p * (dw @ anchors.T).square()).sum(-1) - (xhat * dw).sum(-1).square()
        out.append((anchors[tokens] - xhat, tr_j, quad_j))
    return _Stats(*(torch.cat(column).cpu() for column in zip(*out)))


def _control_sum(rows: _Rows, stats: _Stats, control: str) -> torch.Tensor:
    """``[R]``: each row's share of its trajectory's ``Y`` (see :func:`path_integral` for the formulas)."""
    h, dw = stats.h, rows.dw
    y = rows.weight * 0.5 * torch.where(rows.rate > 0, h.square().sum(-1) * rows.rate, 0.0).sum(-1)
    if control == "ito":
        return y + (h * dw).sum((-1, -2)) - 0.5 * (stats.quad_j - stats.tr_j * rows.gained).sum(-1)
    if control == "stein":
        # The right point of row j's interval is row j+1, of the same trajectory unless row j is its last.
        h_next = torch.where(rows.last[:, None, None], 0.0, h.roll(-1, 0))
        tr_next = torch.where(rows.last[:, None], 0.0, stats.tr_j.roll(-1, 0))
        right = (h_next * dw).sum((-1, -2)) + (rows.gained * tr_next).sum(-1)
        return y + 0.5 * ((h * dw).sum((-1, -2)) + right)
    return y
