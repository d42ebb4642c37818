"""The path-integral NLL along any monotone per-token SNR curve, to infinite SNR or to a finite ``gamma_max``.

Shapes: ``B`` sequences, ``L`` positions, ``d`` anchor dimension, ``V`` vocabulary, ``N`` quadrature nodes along one
trajectory, ``P`` points of its Brownian path (the ``N`` nodes, then the end point when the curve stops at a finite
SNR), ``m`` endpoint states, ``R`` rows (states) in one denoiser batch.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

from ..denoiser import Denoiser, require_finite_snr
from ..errors import SNRPathError
from .. import limits, validate
from . import _common
from ._common import NLLEstimate
from .curves import as_curve, check_knots, kappa, radau, truncate



def path_integral(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    path: object = "joint",
    n_samples: int = 8,
    seed: int = 0,
    *,
    n_nodes: int = 64,
    control: str = "auto",
    gamma_max: float | None = None,
    endpoint: str | None = None,
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
    A learned denoiser is assumed to localise at least as fast; one that never becomes confident (a model trained
    with SNRs up to some cap only) has an infinite integral, which no finite rule can report: give it ``gamma_max``.

    **Finite endpoint** (``gamma_max``). Stop the curve at ``gamma* = gamma_max`` for every position (the curve
    through the knots capped at ``gamma_max``, :func:`~snrpaths.nll.curves.truncate`) and add the endpoint term
    (DESIGN 5b; no tail, nothing assumed of the denoiser at large SNR):

        -log P(s) = 1/2 int_0^{gamma*} E(s, gamma) . dgamma + E_{z ~ p_{gamma*}(. | s)} [-log p(s | z)],

    with ``z = z(gamma*)`` the SAME Brownian path's value at the end point, one more point ``P = N + 1`` of each
    trajectory. Sharing the noise is what keeps the sum's variance low: pathwise, ``Q`` plus the Ito control is
    ``log p(s | z(gamma*)) - log P(s)`` up to discretisation (see ``"ito"`` below; its last increment runs to the end
    point), which the endpoint term cancels. The joint ``-log p(s | z)`` is not the sum of a per-position denoiser's
    marginals; ``endpoint`` says how it is computed (default ``"roar"``):

    * ``"roar"``: the chain rule ``-sum_j log p(s_{sigma_j} | s_{sigma_<j}, z)`` in one uniformly random order
      ``sigma`` per trajectory. State ``j`` has the positions ``sigma_<j`` clean (SNR inf, the true token) and the
      rest at their ``z(gamma*)``; ``m = L`` states, the first being the end point itself. Exact (every order gives
      ``log p(s | z)``) for the Bayes denoiser of any joint, since ``z_i`` tells nothing more once ``s_i`` is shown;
      for a learned denoiser it is ROAR's random-order value conditioned on ``z`` (:func:`~snrpaths.nll.roar`).
    * ``"marginals"``: ``-sum_i log p(s_i | z)`` at the end point, ``m = 1`` state (no call beyond the end point).
      Exact when the posterior factorises given ``z``, i.e. for a product joint; otherwise biased by
      ``E_z[log p(s | z) - sum_i log p(s_i | z)]``, which vanishes as the posterior localises at large ``gamma_max``
      but is of the order of the positions' pointwise mutual information at small ``gamma_max`` (upward on average
      over ``s ~ P``, a product of marginals being a worse model of ``s`` given ``z``; either sign for one ``s``).
      Cheap, approximate.

    For a learned denoiser both endpoint terms are the cross-entropy of a normalised law of ``s`` given ``z``, and
    its ``E`` is a mismatched mean-square error, so averaged over data the estimate stays an upper bound on the
    entropy (``H(S) = 1/2 int_0^{gamma*} mmse + H(S | Z_{gamma*})``).

    **Inner expectation.** Each of ``n_samples`` trajectories per sequence draws one Brownian motion per position,
    ``W_i(gamma_i)``, at the ``N = n_nodes x (pieces that move)`` nodes (common random numbers along the curve), and
    evaluates all ``N`` (+ ``m`` endpoint) states in batched denoiser calls. Its estimate ``Y`` is the Radau sum
    ``Q = sum_j omega_j F_j`` plus a control variate (``control``) of mean zero, plus the endpoint term if any:

    * ``"auto"`` (default): ``"stein"`` when the denoiser declares ``exact_posterior = True`` (its logits are the
      exact Bayes marginals of a joint, as :class:`~snrpaths.backends.toy.ExactToy`'s are), ``"ito"`` otherwise.
      The estimator's name records which ran.
    * ``"ito"`` (exact for any denoiser): ``sum_j sum_i h_ji . dW_ji - 1/2 (dW_ji^T J_ji dW_ji - tr(J_ji)
      dgamma_ji)`` with ``h = x_s - xhat``, ``J_ji = Cov_p(x)`` at position ``i`` of node ``j`` (from the marginals),
      and ``dW_j``, ``dgamma_j`` the increments to the next point ``j+1`` of the path: each term has conditional mean
      0 given point ``j`` (an Ito sum and its Milstein correction). Why it works: pathwise, ``log p(s | z(gamma)) -
      log P(s) = int 1/2 ||h||^2 dgamma + int h . dW`` (Ito's formula on the log-partition), so for the Bayes
      denoiser ``Q`` plus the Ito integral is a constant (to infinite SNR) or ``log p(s | z(gamma*)) - log P(s)``
      (to a finite end), and the control cancels ``Q``'s noise up to discretisation.
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
            ``"joint"``, ``"sequential"``, ``"random-order"``, or a sampler ``Path`` whose route is monotone.
        n_samples: trajectories per sequence (the standard error needs 2 or more).
        n_nodes: Radau nodes per moving piece.
        control: ``"auto"`` or one of ``CONTROLS``.
        gamma_max: ``None`` (or ``inf``): integrate to infinite SNR; a positive number: stop there and add the
            endpoint term.
        endpoint: how the endpoint term is computed, one of ``ENDPOINTS`` (default ``"roar"``); only with a finite
            ``gamma_max``.
        batch_size: most states per denoiser call.
        progress: show a progress bar (default: only for work spanning several batches, on a terminal).
    Returns:
        an :class:`NLLEstimate`: ``samples[b, p] = Y`` of trajectory ``p``; ``n_calls = n_samples * (N + m)``, with
        ``m = 0`` without ``gamma_max``, 1 for ``"marginals"`` and ``L`` for ``"roar"``. Every random choice (noise,
        random orders) comes from one CPU generator seeded with ``seed``, trajectory by trajectory, so results do not
        depend on ``batch_size`` or device.

    Work is bounded before it starts (:mod:`snrpaths.limits`): ``min(batch_size, rows) x L x V`` logits per call
    and ``rows x L`` positions in all, ``rows = B x n_samples x (N + m)``; ``n_nodes`` at most ``MAX_NODES``.
    """
    _common.check_denoiser(denoiser)
    require_finite_snr(denoiser, "path_integral (the path-integral NLL integrates over finite SNRs)")
    tokens = _common.check_tokens(denoiser, tokens)
    n_samples = _common.check_count("n_samples", n_samples)
    n_nodes = _common.check_count("n_nodes", n_nodes)
    batch_size = _common.check_count("batch_size", batch_size)
    _common.check_progress(progress)
    control = _resolve_control(denoiser, control)
    gamma_max, endpoint = _check_end(gamma_max, endpoint)
    curve = as_curve(path)
    g = _common.generator(seed)
    length = denoiser.seq_len
    b = tokens.shape[0]
    remedy = "lower n_samples, n_nodes or the number of sequences"
    # Every trajectory has at least n_nodes nodes: refuse before the Radau rule (cubic in n_nodes) is built.
    limits.check_nodes("path_integral", n_nodes)
    _common.check_size("path_integral", denoiser, b * n_samples, n_nodes, batch_size, remedy)
    probe = curve.knots(length, torch.Generator().manual_seed(0))
    check_knots(probe, length)
    rule = _Rule(kappa(denoiser.table), *radau(n_nodes), gamma_max)
    states = ENDPOINTS[endpoint] if endpoint is not None else _no_endpoint

    samples = torch.empty(b * n_samples, dtype=torch.float64)
    calls = 0
    per_trajectory = rule.nodes(probe).gamma.shape[0] + states(length, torch.Generator())[0].shape[0]
    _common.check_size("path_integral", denoiser, b * n_samples, per_trajectory, batch_size, remedy)
    # the bar counts calls per sequence, as n_calls does (one call: every sequence once)
    with _common.progress_bar(n_samples * per_trajectory, max(1, batch_size // b), progress, "path_integral") as bar:
        for chunk in _chunks(curve, rule, states, denoiser, b * n_samples, batch_size, g):
            rows = _Rows.assemble(chunk, tokens, n_samples, denoiser.table.anchors)
            stats = _node_stats(denoiser, rows, batch_size)
            y = _control_sum(rows, stats, control) + stats.end
            samples[torch.tensor([t.index for t in chunk])] = torch.zeros(len(chunk), dtype=torch.float64).index_add_(
                0, rows.owner, y)
            bar.update(math.ceil((calls + rows.gamma.shape[0]) / b) - math.ceil(calls / b))  # whole calls
            calls += rows.gamma.shape[0]
    end = "" if endpoint is None else f", gamma_max={gamma_max!r}, endpoint={endpoint!r}"
    name = f"path_integral({curve!r}, control={control!r}, n_nodes={n_nodes}{end})"
    return NLLEstimate.from_samples(name, samples.reshape(b, n_samples), length, math.ceil(calls / b))


def _resolve_control(denoiser: Denoiser, control: object) -> str:
    """The control that runs: ``control`` itself, or for ``"auto"`` the Stein control exactly when the denoiser
    declares ``exact_posterior = True``, the flag of :class:`~snrpaths.denoiser.ExactPosterior` (the core reads the
    declaration, never the backend's type; the Stein control needs only that the logits are exact)."""
    if validate.choice("control", control, ("auto", *CONTROLS)) == "auto":
        return "stein" if getattr(denoiser, "exact_posterior", False) is True else "ito"
    return control  # type: ignore[return-value]


def _check_end(gamma_max: object, endpoint: object) -> tuple[float, str | None]:
    """``(gamma_max, endpoint)`` as used: ``(inf, None)`` for the integral to infinite SNR (``gamma_max`` None or
    inf), else a positive finite ``gamma_max`` and an endpoint name (default ``"roar"``)."""
    validate.number("gamma_max", gamma_max, 0, math.inf, low_open=True, allow_none=True,
                    phrase="a positive number or None")
    if gamma_max is None or math.isinf(gamma_max):
        if endpoint is not None:
            raise SNRPathError(f"'endpoint' applies only with a finite 'gamma_max' (got endpoint={endpoint!r} with "
                               f"gamma_max={gamma_max!r}): the integral to infinite SNR has no endpoint term")
        return math.inf, None
    return float(gamma_max), validate.choice("endpoint", "roar" if endpoint is None else endpoint, ENDPOINTS)


# -- endpoint states: (seq_len, generator) -> (reveal [m, L] bool, score [m, L]) ------------------------------------
# State k of the m shows the positions reveal[k] clean and the rest at z(gamma*); its -log p(s_i | state) enters Y
# with weight score[k, i]. State 0 shows nothing: it is the curve's end point, the last point of the Brownian path.


def _no_endpoint(length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A curve to infinite SNR: no end point, no term."""
    return torch.zeros(0, length, dtype=torch.bool), torch.zeros(0, length, dtype=torch.float64)


def _marginals_endpoint(length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``-sum_i log p(s_i | z)``: the end point alone, every position scored."""
    return torch.zeros(1, length, dtype=torch.bool), torch.ones(1, length, dtype=torch.float64)


def _roar_endpoint(length: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``-sum_j log p(s_{sigma_j} | s_{sigma_<j}, z)`` for an order ``sigma`` drawn from ``g``: state ``j`` shows
    ``sigma_<j`` and scores ``sigma_j``."""
    rank = torch.empty(length, dtype=torch.int64)
    rank[torch.randperm(length, generator=g)] = torch.arange(length)
    step = torch.arange(length)[:, None]
    return rank[None] < step, (rank[None] == step).to(torch.float64)


#: How ``endpoint=`` computes the endpoint term ``-log p(s | z(gamma*))`` (see :func:`path_integral`).
ENDPOINTS = {"roar": _roar_endpoint, "marginals": _marginals_endpoint}


@attrs.frozen(eq=False)
class _Nodes:
    """The quadrature nodes of one trajectory: ``gamma`` ``[N, L]`` SNRs (inf = clean), ``rate`` ``[N, L]`` the
    ``dgamma_i / dtau`` of the node's piece (0 for positions that hold still), ``weight`` ``[N]`` Radau weights;
    ``end`` ``[L]`` the SNRs of the curve's end point when it stops at a finite ``gamma_max`` (else ``None``)."""

    gamma: torch.Tensor
    rate: torch.Tensor
    weight: torch.Tensor
    end: torch.Tensor | None = None

    @property
    def path(self) -> torch.Tensor:
        """``[P, L]``: the SNRs where the Brownian path is drawn, the nodes then the end point."""
        return self.gamma if self.end is None else torch.cat([self.gamma, self.end[None]])


@attrs.frozen(eq=False)
class _Rule:
    """Gauss-Radau nodes ``tau`` ``[n]`` and weights ``omega`` ``[n]``, laid in ``w`` on every piece of the curve
    capped at ``gamma_max`` (inf: not capped)."""

    kappa: float
    tau: torch.Tensor
    omega: torch.Tensor
    gamma_max: float = math.inf

    def __attrs_post_init__(self) -> None:
        if math.isfinite(self.gamma_max) and self.gamma_max / (self.gamma_max + self.kappa) >= 1:
            raise SNRPathError(f"'gamma_max' = {self.gamma_max!r} is infinite in float64 at this token table's scale "
                               f"(kappa = {self.kappa:.3g}); give gamma_max=None to integrate to infinite SNR")

    def nodes(self, knots: torch.Tensor) -> _Nodes:
        """Nodes on the pieces of ``knots`` (``[K+1, L]``) along which some position moves (still ones cost nothing)."""
        w = self._w(truncate(knots, self.gamma_max))  # [K+1, L]
        dw = w[1:] - w[:-1]
        moving = dw.sum(-1) > 0
        start, dw = w[:-1][moving], dw[moving]  # [K', L]
        wn = start[:, None, :] + self.tau[None, :, None] * dw[:, None, :]  # [K', n, L]
        rate = torch.where(dw[:, None, :] > 0, self.kappa * dw[:, None, :] / (1 - wn).square(), 0.0)
        length = knots.shape[1]
        # The end point's SNRs come through w like the nodes', so a position holding still at gamma_max gains exactly 0.
        end = None if math.isinf(self.gamma_max) else self._gamma(w[-1])
        return _Nodes(self._gamma(wn).reshape(-1, length), rate.reshape(-1, length),
                      self.omega.repeat(int(moving.sum())), end)

    def _w(self, gamma: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.isinf(gamma), 1.0, gamma / (gamma + self.kappa))

    def _gamma(self, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w >= 1, math.inf, self.kappa * w / (1 - w))


@attrs.frozen(eq=False)
class _Trajectory:
    index: int  # b * n_samples + p
    nodes: _Nodes
    eps: torch.Tensor  # [P, L, d] standard normal
    reveal: torch.Tensor  # [m, L] bool: the endpoint states' clean positions (see ENDPOINTS)
    score: torch.Tensor  # [m, L]: the endpoint states' weights of -log p(s_i | state)

    @property
    def rows(self) -> int:
        return self.nodes.gamma.shape[0] + self.reveal.shape[0]

    def brownian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` ``[P, L, d]`` at the points of the path (``W_i(0) = 0``) and ``dgamma_in`` ``[P, L]``, the SNR gained
        since the previous point (0 where the position is clean: ``W`` is never needed at infinite SNR)."""
        gamma = self.nodes.path
        previous = torch.cat([torch.zeros_like(gamma[:1]), gamma[:-1]])
        # The clamp absorbs round-off of the w <-> gamma map for positions holding still across a knot.
        gained = torch.where(torch.isfinite(gamma), (gamma - previous).clamp_min(0), 0.0)
        return (gained.sqrt()[..., None] * self.eps).cumsum(0), gained


def _chunks(curve, rule: _Rule, states, denoiser: Denoiser, n_traj: int, batch_size: int, g: torch.Generator):
    """Trajectories ``0..n_traj-1`` (index ``b * n_samples + p``) in groups of about ``batch_size`` rows, the first
    trajectory alone (its time is the run's estimate, :class:`snrpaths.progress.Meter`).

    Each draws its knots (random orders), then its noise, then its endpoint states (``states``, an ``ENDPOINTS``
    entry) from ``g``, in index order, so the draws do not depend on how trajectories are grouped.
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
        eps = torch.randn(nodes.path.shape[0], length, dim, generator=g, dtype=torch.float64)
        pending.append(_Trajectory(index, nodes, eps, *states(length, g)))
        rows += pending[-1].rows
        if rows >= batch_size or index in (0, n_traj - 1):
            yield pending
            pending, rows = [], 0


@attrs.frozen(eq=False)
class _Rows:
    """The states of a group of trajectories, stacked (``R`` rows, CPU, float64): each trajectory's ``N`` nodes, then
    its ``m`` endpoint states.

    ``gamma``, ``rate`` ``[R, L]``; ``weight`` ``[R]``; ``z`` ``[R, L, d]``; ``tokens`` ``[R, L]`` the sequence's;
    ``dw`` ``[R, L, d]`` and ``gained`` ``[R, L]``: the Brownian and SNR increments from each node to the next point
    of its path (the last node's run to the end point, if any; 0 after the path's last point, on endpoint states,
    and wherever a position holds still or becomes clean); ``score`` ``[R, L]`` the weight of ``-log p(s_i | z)``
    in ``Y`` (0 off the endpoint states); ``owner`` ``[R]`` the trajectory's place in the group; ``last`` ``[R]``
    whether the row has no next point on its path.
    """

    gamma: torch.Tensor
    rate: torch.Tensor
    weight: torch.Tensor
    z: torch.Tensor
    tokens: torch.Tensor
    dw: torch.Tensor
    gained: torch.Tensor
    score: torch.Tensor
    owner: torch.Tensor
    last: torch.Tensor

    @classmethod
    def assemble(cls, chunk: list[_Trajectory], tokens: torch.Tensor, n_samples: int, anchors: torch.Tensor) -> _Rows:
        anchors, tokens = anchors.detach().to("cpu", torch.float64), tokens.cpu()
        parts = [cls._columns(t, traj, tokens[traj.index // n_samples], anchors) for t, traj in enumerate(chunk)]
        return cls(*(torch.cat(column) for column in zip(*parts)))

    @staticmethod
    def _columns(t: int, traj: _Trajectory, seq: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One trajectory's rows, in field order: its nodes, then its endpoint states built on the end point's ``z``."""
        w, gained = traj.brownian()
        g = traj.nodes.path  # [P, L]
        inside = (g > 0) & torch.isfinite(g)
        z = torch.where(inside[..., None], torch.where(inside, g, 0.0)[..., None] * anchors[seq] + w, 0.0)
        # Increments from each point to the next, 0 after the last: node N-1 runs on to the end point if there is one.
        dw = torch.cat([w[1:] - w[:-1], torch.zeros_like(w[:1])])
        ahead = torch.cat([gained[1:], torch.zeros_like(gained[:1])])
        n, (m, length) = traj.nodes.gamma.shape[0], traj.reveal.shape
        reveal, zeros = traj.reveal, torch.zeros(m, length, dtype=torch.float64)
        return (
            torch.cat([g[:n], torch.where(reveal, math.inf, g[-1])]),
            torch.cat([traj.nodes.rate, zeros]),
            torch.cat([traj.nodes.weight, zeros[:, 0]]),
            torch.cat([z[:n], torch.where(reveal[..., None], 0.0, z[-1])]),
            seq[None].expand(n + m, -1),
            torch.cat([dw[:n], torch.zeros_like(z[-1]).expand(m, -1, -1)]),
            torch.cat([ahead[:n], zeros]),
            torch.cat([torch.zeros_like(g[:n]), traj.score]),
            torch.full((n + m,), t),
            torch.arange(n + m) >= n - 1 + min(m, 1),  # with an end point, node N-1's next point is the end point
        )


@attrs.frozen(eq=False)
class _Stats:
    """What the controls read from the denoiser at each row: ``h = x_s - xhat`` ``[R, L, d]``, ``tr_j = tr J``
    ``[R, L]`` and ``quad_j = dW^T J dW`` ``[R, L]``, with ``J = sum_v p_v x_v x_v^T - xhat xhat^T`` the marginal
    posterior covariance at each position; and ``end`` ``[R]``, the row's share ``-sum_i score_i log p(s_i | z)`` of
    the endpoint term. Clean positions hold finite junk; every use multiplies it by a zero rate, increment or score."""

    h: torch.Tensor
    tr_j: torch.Tensor
    quad_j: torch.Tensor
    end: torch.Tensor


def _node_stats(denoiser: Denoiser, rows: _Rows, batch_size: int) -> _Stats:
    """Evaluate every row's state in denoiser calls of at most ``batch_size`` rows."""
    device, dtype = denoiser.table.anchors.device, denoiser.table.anchors.dtype
    anchors = denoiser.table.anchors.detach().to(device, torch.float64)
    out = []
    for r in _common.slices(rows.gamma.shape[0], batch_size):
        tokens, dw, score = rows.tokens[r].to(device), rows.dw[r].to(device), rows.score[r].to(device)
        logp = _common.log_probs(denoiser, rows.gamma[r].to(device, dtype), rows.z[r].to(device, dtype), tokens)
        p = logp.exp()
        xhat = p @ anchors  # [r, L, d]
        tr_j = p @ anchors.square().sum(-1) - xhat.square().sum(-1)
        quad_j = (p * (dw @ anchors.T).square()).sum(-1) - (xhat * dw).sum(-1).square()
        # where, not a product: a node may give the true token probability 0 (log -inf) where its score is 0.
        end = -torch.where(score > 0, score * logp.gather(-1, tokens[..., None]).squeeze(-1), 0.0).sum(-1)
        out.append((anchors[tokens] - xhat, tr_j, quad_j, end))
    return _Stats(*(torch.cat(column).cpu() for column in zip(*out)))


def _control_sum(rows: _Rows, stats: _Stats, control: str) -> torch.Tensor:
    """``[R]``: each row's share of its trajectory's ``Y`` (see :func:`path_integral` for the formulas): the Radau
    terms, then the control variate ``control`` adds (``CONTROLS``)."""
    y = rows.weight * 0.5 * torch.where(rows.rate > 0, stats.h.square().sum(-1) * rows.rate, 0.0).sum(-1)
    return CONTROLS[control](y, rows, stats)


def _ito(y: torch.Tensor, rows: _Rows, stats: _Stats) -> torch.Tensor:
    h, dw = stats.h, rows.dw
    return y + (h * dw).sum((-1, -2)) - 0.5 * (stats.quad_j - stats.tr_j * rows.gained).sum(-1)


def _stein(y: torch.Tensor, rows: _Rows, stats: _Stats) -> torch.Tensor:
    h, dw = stats.h, rows.dw
    # The right point of row j's interval is row j+1, of the same trajectory unless row j is its last.
    h_next = torch.where(rows.last[:, None, None], 0.0, h.roll(-1, 0))
    tr_next = torch.where(rows.last[:, None], 0.0, stats.tr_j.roll(-1, 0))
    right = (h_next * dw).sum((-1, -2)) + (rows.gained * tr_next).sum(-1)
    return y + 0.5 * ((h * dw).sum((-1, -2)) + right)


#: Control variates added to the quadrature of each trajectory, by name (see :func:`path_integral`): each maps the
#: rows' Radau terms ``y`` ``[R]`` to ``y`` plus its mean-zero term. ``control="auto"`` picks one of them from what the
#: denoiser declares.
CONTROLS: dict[str, Callable[[torch.Tensor, _Rows, _Stats], torch.Tensor]] = {
    "ito": _ito,
    "stein": _stein,
    "none": lambda y, rows, stats: y,
}
