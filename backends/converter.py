"""The DSL converter: per-position evidence ``z_i`` -> a soft input embedding for the backbone.

Keys ``K = [x_1 .. x_V ; 0]`` (V + 1 slots, the last is ``[MASK]`` with a zero key), and

    q(v | z_i) = softmax_v(beta <z_i, K_v> + b_v),      h_i = sum_v q(v | z_i) E_v      (DESIGN.md section 4)

with ``E`` the backbone's (V + 1)-row input embedding. ``beta = exp(log_beta)`` stays positive. A fresh converter
starts at ``beta = 1 / sqrt(d)`` and ``b`` at 0 except ``b_mask = log(mask_prob V / (1 - mask_prob))``, so that
``z = 0`` gives ``p([MASK]) = mask_prob``; :meth:`Converter.calibrate` moves it to the context-free Bayes rule
(DESIGN.md section 4b): ``beta = 1``, ``b_v = log p(v)``, so that ``q(v | z_i) / (1 - q([MASK] | z_i)) =
softmax_v(z_i . x_v + log p(v))``.

**The evidence head.** Given the tokens the channel is independent across positions, so for any joint
``log p(s_i = v | z) = z_i . x_v + log p(s_i = v | z_{-i}) + const_i``: the own-position evidence enters the output
analytically. Under ``head = "evidence"`` the converter hands back ``e_iv = z_i . x_v`` ``(n, V)`` for the ``n``
finite positions, the first V columns of the ``z_i . K_v`` it computes anyway for ``q``, and the denoiser adds them
to the backbone's logits there (``head = "plain"`` is the paper's and the public code's form: no such term).

Endpoints bypass the softmax entirely, so an MDLM checkpoint run on endpoint states is exactly MDLM: a position at
``gamma = 0`` gets exactly ``E_[MASK]`` and a clean position exactly ``E_token``; only positions with finite
``0 < gamma < inf`` pay for the mixture.

**The certified sparse mixture.** The dense product ``q @ E`` costs ``2 (V + 1) H`` FLOPs per position, the logits
only ``2 (V + 1) d``. So for evidence ``z`` ``(N, d)`` the converter computes all ``(N, V + 1)`` logits and the exact
normaliser (the full softmax ``q``), keeps the ``k = sparse_k`` most probable slots ``S_i`` ``(N, k)`` of each
position, and gathers only their rows of ``E`` ``(V + 1, H)``, with their exact (not renormalised) weights:

    h_i    = sum_v          q_iv E_v          the exact mixture                      (N, H)
    hhat_i = sum_{v in S_i} q_iv E_v          the sparse one: a (k, H) gather         (N, H)
    r_i    = sum_{v not in S_i} q_iv          the dropped mass                        (N,)

    ||h_i - hhat_i|| = ||sum_{v not in S_i} q_iv E_v|| <= r_i max_{v not in S_i} ||E_v|| <= r_i max_v ||E_v||.

(Renormalising the kept weights, ``hhat_i / (1 - r_i)``, would give ``h_i - hhat_i / (1 - r_i) = sum_{v not in S_i}
q_iv E_v - r_i / (1 - r_i) hhat_i``, bounded by ``2 r_i max_v ||E_v||``: twice as loose, so the weights stay as
they are.) A position takes the sparse gather only when its certificate ``r_i <= sparse_tol`` holds; every other
finite position gets the dense product of the same softmax weights. So at every position

    ||h_i - mix_i|| <= sparse_tol * max_v ||E_v||,

the exact converter up to that stated tolerance, never a silent approximation. ``r_i`` is summed over the dropped
weights themselves, not as ``1 - sum_k``, so the certificate is not blurred by cancellation (its relative error is
float32 summation's, ~1e-6 of ``r_i``). Both branches use the softmax weights as computed; against exact arithmetic
both carry the same rounding (float32: up to ~2e-6 max_v ||E_v|| at gamma ~ 40, measured against float64 at
V = 2000). A cheap necessary test on a block of slots (``Converter._could_certify``) lets a chunk in which no
position can pass skip the top-k.

Whether positions pass depends on how concentrated ``q`` is. At initialisation (``beta = 1 / sqrt(d)``, ``p([MASK])``
about 0.99 near ``z = 0``) about 1% of the mass stays spread over all V tokens until gamma is in the hundreds, so at
V = 50258, d = 48 almost every finite position falls back to the dense product (see benchmarks/dit_throughput.py).
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from snrpaths import validate
from snrpaths.errors import SNRPathError, SNRTypeError, ShapeError

#: Logit entries per chunk of the mixture (64 MB in float32): bounds memory at any batch size.
CHUNK_ENTRIES = 2**24
#: Slots summed by the sparse mixture's quick rejection test (Converter._could_certify).
PRECHECK_SLOTS = 2048


@attrs.frozen
class Head:
    """The converter's output head (module docstring): whether the denoiser's logits gain the evidence term
    ``[0 < gamma_i < inf] z_i . x_v`` (``"evidence"``) or are the backbone's alone (``"plain"``, the paper's form)."""

    name: str
    adds_evidence: bool


#: The output heads by the name a config holds.
HEADS: dict[str, Head] = {h.name: h for h in (Head("evidence", True), Head("plain", False))}
_MASK_PROB = dict(low=0.0, high=1.0, low_open=True, high_open=True)


@attrs.frozen
class ConverterConfig:
    """The converter's settings; the anchors are its parameters, so they are described here too.

    ``sparse_k`` and ``sparse_tol`` only choose how the mixture is computed, never what it is (up to
    ``sparse_tol * max_v ||E_v||``, see the module docstring); a checkpoint config without them loads with these
    defaults. ``sparse_tol = 1e-6`` is about 8 float32 ulps (eps = 1.2e-7): the dense float32 mixture's own rounding
    of the softmax weights is of that order (more at large logits), so certified positions agree with the dense
    result to float32 working precision.
    """

    # d of the unit-norm anchors (public DSL code: 48)
    anchor_dim: int = attrs.field(default=48, converter=validate.field(validate.integer))
    # learn anchor directions (norm fixed to 1); False keeps them frozen (a buffer)
    learn_anchors: bool = attrs.field(default=True, converter=validate.field(validate.boolean))
    # p([MASK] | z = 0) at initialisation
    mask_prob: float = attrs.field(default=0.99, converter=validate.field(validate.number, **_MASK_PROB))
    # k slots gathered per certified position; 0 (or >= V + 1) computes the dense product everywhere
    sparse_k: int = attrs.field(default=128, converter=validate.field(
        validate.integer, low=0, phrase="a non-negative integer, 0 for always dense"))
    # largest dropped mass r_i for the sparse gather: its error is at most sparse_tol * max_v ||E_v|| (1 keeps all)
    sparse_tol: float = attrs.field(default=1e-6, converter=validate.field(validate.number, low=0.0, high=1.0))
    # a name of HEADS. "evidence": logits_i(v) = backbone_i(v) + [0 < gamma_i < inf] z_i . x_v; "plain": backbone_i(v)
    # only. Our checkpoints saved before the field existed load as "plain" (backends.checkpoint).
    head: str = attrs.field(default="evidence", converter=validate.field(validate.choice, valid=HEADS))


@attrs.frozen(eq=False)
class Converted:
    """What the converter hands the backbone, and the evidence term the head adds to its output."""

    h: torch.Tensor  # (B, L, H) soft input embeddings
    index: torch.Tensor  # (n,) flat indices (into B * L) of the finite positions, 0 < gamma < inf
    evidence: torch.Tensor | None  # (n, V) z_i . x_v there, in at least float32 (None under head = "plain")

    def added_to(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, L, V)`` ``logits`` with the evidence head's term added at its positions (``logits`` itself under
        ``head = "plain"``), in at least float32: ``z . x`` reaches ~gamma, which a bf16 output would blur."""
        if self.evidence is None:
            return logits
        B, L, V = logits.shape
        up = torch.promote_types(logits.dtype, self.evidence.dtype)
        return logits.reshape(B * L, V).to(up).index_add(0, self.index, self.evidence.to(up)).view(B, L, V)


@attrs.frozen
class Certificate:
    """Which slots each position keeps, with what weights, and whether the sparse gather is certified there."""

    slots: torch.Tensor  # (N, k) ids of the k most probable slots (the last id, V, is [MASK])
    weights: torch.Tensor  # (N, k) their exact softmax weights q_iv, differentiable (logits' dtype)
    residual: torch.Tensor  # (N,) the dropped mass r_i = sum of q_iv over the other slots, no gradient
    dense: torch.Tensor  # (N,) bool: r_i > sparse_tol, this position needs the dense product


class Converter(nn.Module):
    """Soft input embeddings from evidence. Parameters: ``anchor_weight`` (V, d) raw anchor directions (the anchors
    are its rows scaled to unit norm), ``log_beta`` (scalar, ``beta = exp(log_beta)``) and ``bias`` (V + 1,), the last
    entry for ``[MASK]``. A state dict of the earlier form, with ``beta`` itself, loads too (converted on load).

    Args:
        vocab_size: V real tokens.
        seed: seeds the initial anchors (uniform on the sphere), independent of torch's global RNG.
    """

    #: How a position at ``gamma = 0`` is fed: False gives it exactly the ``[MASK]`` slot's row ``E_V`` (MDLM's input,
    #: so an MDLM checkpoint is exactly MDLM there); True reads it through the softmax at ``z = 0``, ``q = softmax(b)``
    #: (the DSL-LLaDA converter's input, continuous in gamma at 0; ``backends.hf_dsl``).
    soft_mask: bool = False

    def __init__(self, vocab_size: int, config: ConverterConfig = ConverterConfig(), seed: int = 0):
        super().__init__()
        self.config = config
        d = config.anchor_dim
        if torch.empty(()).is_meta:  # built under torch.device("meta") to receive stored weights: draw nothing
            w = torch.empty(vocab_size, d)
        else:
            g = torch.Generator().manual_seed(validate.seed("seed", seed))
            w = torch.randn(vocab_size, d, generator=g, device="cpu")
            w = w / w.norm(dim=1, keepdim=True)
        if config.learn_anchors:
            self.anchor_weight = nn.Parameter(w)
        else:
            self.register_buffer("anchor_weight", w)
        self.log_beta = nn.Parameter(torch.tensor(-0.5 * math.log(d)))  # beta = 1 / sqrt(d)
        bias = torch.zeros(vocab_size + 1)
        # At z = 0 every token has logit 0 and [MASK] has b_mask: p(mask) = e^b / (e^b + V) = mask_prob.
        bias[-1] = math.log(config.mask_prob / (1 - config.mask_prob) * vocab_size)
        self.bias = nn.Parameter(bias)

    @property
    def beta(self) -> torch.Tensor:
        """The positive scale ``beta = exp(log_beta)`` of the evidence in ``q`` (0-d, differentiable)."""
        return self.log_beta.exp()

    @torch.no_grad()
    def calibrate(self, prior: torch.Tensor, mask_prob: float | None = None) -> None:
        """Start at the context-free Bayes rule: ``beta = 1``, ``b_v = log p(v)``, ``b_mask = log(m / (1 - m))``.

        With ``sum_v p(v) = 1``, ``z = 0`` gives ``q([MASK]) = m`` (``mask_prob``, default the config's), and at any
        ``z`` the token part of ``q`` is ``softmax_v(z . x_v + log p(v))``, the posterior of a position whose prior is
        the unigram law ``p`` and whose only evidence is its own ``z``.

        Args:
            prior: ``(V,)`` strictly positive probabilities summing to 1 (smooth zero counts before calling).
        """
        m = validate.number("mask_prob", self.config.mask_prob if mask_prob is None else mask_prob, **_MASK_PROB)
        V = self.vocab_size
        if not isinstance(prior, torch.Tensor) or not prior.is_floating_point():
            got = prior.dtype if isinstance(prior, torch.Tensor) else type(prior).__name__
            raise SNRTypeError(f"'prior' must be a floating tensor of shape [{V}] (got {got})")
        if tuple(prior.shape) != (V,):
            raise ShapeError(f"'prior' must be a floating tensor of shape [{V}] (got {list(prior.shape)})")
        p = prior.double()
        if not bool(torch.isfinite(p).all()) or bool((p <= 0).any()) or abs(float(p.sum()) - 1) > 1e-6:
            raise SNRPathError(f"'prior' must hold positive finite probabilities summing to 1 (sum {float(p.sum())}, "
                               f"min {float(p.min())}); smooth zero counts first")
        self.log_beta.zero_()
        bias = torch.cat([(p / p.sum()).log(), torch.tensor([math.log(m / (1 - m))], dtype=torch.float64)])
        self.bias.copy_(bias.to(self.bias))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before beta was parametrised by its logarithm hold 'beta' itself.
        old = state_dict.pop(prefix + "beta", None)
        if old is not None and prefix + "log_beta" not in state_dict:
            state_dict[prefix + "log_beta"] = log_beta_from(old, prefix + "beta")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self.anchor_weight.shape[0]

    @property
    def key_anchors(self) -> torch.Tensor:
        """``(V, d)`` unit-norm keys of the V token slots, ``x_v = w_v / ||w_v||`` (normalised in at least float32)."""
        w = self.anchor_weight
        up = w.to(torch.promote_types(w.dtype, torch.float32))
        return (up / up.norm(dim=1, keepdim=True)).to(w.dtype)

    @property
    def anchors(self) -> torch.Tensor:
        """``(V, d)`` the channel's anchors, the evidence ``z`` is built from: here the keys themselves (a converter
        whose slots outnumber the sampler's tokens, ``backends.hf_dsl``, gives the rows of the samplable ones)."""
        return self.key_anchors

    def forward(self, z: torch.Tensor, gamma: torch.Tensor, tokens: torch.Tensor, embedding: torch.Tensor) -> Converted:
        """Soft embeddings ``h`` ``(B, L, H)`` and, under ``head = "evidence"``, the head's term ``z_i . x_v`` at the
        finite positions (see the module docstring).

        Args:
            z: ``(B, L, d)`` evidence; read only where ``0 < gamma < inf``.
            gamma: ``(B, L)`` SNRs in ``[0, inf]``; 0 is ``[MASK]``, inf is clean.
            tokens: ``(B, L)`` ids, read only where ``gamma = inf`` (must be in ``[0, V)`` there).
            embedding: ``(V + 1, H)`` the backbone's input table ``E``, ``[MASK]`` last.

        One device-to-host transfer per call checks the values (SNRs, clean ids) and sizes the finite part; the sparse
        mixture adds a few per chunk of finite positions (:meth:`mix`).
        """
        B, L = gamma.shape
        V = self.vocab_size
        clean = torch.isinf(gamma)
        finite = (gamma > 0) & ~clean
        bad_gamma = (gamma < 0) | torch.isnan(gamma)
        bad_token = clean & ((tokens < 0) | (tokens >= V))
        n_bad_gamma, n_bad_token, n_finite = torch.stack([bad_gamma.sum(), bad_token.sum(), finite.sum()]).tolist()
        if n_bad_gamma:
            first = gamma[bad_gamma][0].item()
            raise SNRPathError(
                f"'gamma' has {n_bad_gamma} entries outside [0, inf] (e.g. {first}); SNRs must lie in [0, inf]"
            )
        if n_bad_token:
            first = tokens[bad_token][0].item()
            raise SNRPathError(
                f"'tokens' has {n_bad_token} clean (gamma = inf) positions with ids outside [0, {V - 1}] (e.g. {first})"
            )
        ids = torch.where(clean, tokens, V)  # (B, L): the token where clean, [MASK] elsewhere
        h = embedding[ids]  # (B, L, H): endpoint rows, exact by construction
        if self.soft_mask:  # every [MASK] position reads the same q = softmax(b): one row, computed once
            at_zero = self._mix(z.new_zeros(1, z.shape[-1]), embedding, False)[0]  # (1, H)
            h = torch.where((gamma == 0).unsqueeze(-1), at_zero.to(h.dtype), h)
        idx = torch.nonzero_static(finite.flatten(), size=n_finite).squeeze(1)  # (n,), no second sync
        if n_finite == 0:
            return Converted(h, idx, None)
        head = HEADS[self.config.head].adds_evidence
        soft, evidence = self._mix(z.reshape(B * L, -1)[idx], embedding, head)  # (n, H), (n, V) or None
        return Converted(h.reshape(B * L, -1).index_copy(0, idx, soft.to(h.dtype)).view(B, L, -1), idx, evidence)

    def mix(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """``sum_v softmax_v(beta <z, K_v> + b_v) E_v`` for ``(N, d)`` evidence -> ``(N, H)`` (in ``E``'s dtype), no
        endpoint handling.

        Chunk by chunk: the softmax over all ``V + 1`` slots, then (``1 <= sparse_k <= V``) the certificate; certified
        positions take the ``(k, H)`` gather, the others the dense product of the same softmax weights (module
        docstring). ``sparse_k = 0`` or ``>= V + 1`` is the dense product everywhere. Gradients reach ``beta``, ``b``,
        the anchors and ``E`` on both branches (the choice of slots is piecewise constant). The sparse branch reads a
        few counts per chunk back to the host (which positions fall back); the dense one none.

        The logits and softmax run in at least float32 even under autocast: at gamma = 1e6 the logits reach ~1e5 and
        bf16 would blur which token wins. The ``q @ E`` product follows autocast (it is the costly part).
        """
        return self._mix(z, embedding, head=False)[0]

    def _mix(self, z: torch.Tensor, embedding: torch.Tensor, head: bool):
        """:meth:`mix`, and with ``head`` also ``z . x_v`` ``(N, V)`` (in at least float32) from the same product."""
        k = self.config.sparse_k
        sparse = 0 < k < self.vocab_size + 1
        out, scores = [], []
        for q, scratch, s in self._softmax_chunks(z, embedding, scratch=sparse, scores=head):
            out.append(self._mix_chunk(q, scratch, embedding) if sparse else _product(q, embedding))
            scores.append(s)
        h = torch.cat(out) if out else z.new_zeros(0, embedding.shape[1], dtype=embedding.dtype)
        return h, (torch.cat(scores) if head else None)

    def certify(self, z: torch.Tensor) -> Certificate:
        """The ``sparse_k`` most probable slots of each of ``(N, d)`` evidence rows, their weights, the dropped mass
        and whether the position falls back to the dense product: the choices :meth:`mix` makes (it skips the top-k
        only in chunks where no row can pass, :meth:`_could_certify`), for diagnostics and tests. Needs
        ``1 <= sparse_k <= V + 1``."""
        k = self.config.sparse_k
        if not 1 <= k <= self.vocab_size + 1:
            raise SNRPathError(f"'sparse_k' must be in [1, V + 1 = {self.vocab_size + 1}] to certify (got {k})")
        parts = []
        for q, _, _ in self._softmax_chunks(z, None):
            weights, slots, residual = self._top(q)
            parts.append((slots, weights, residual, residual > self.config.sparse_tol))
        slots, weights, residual, dense = (torch.cat(t) for t in zip(*parts, strict=True))
        return Certificate(slots, weights, residual, dense)

    def _mix_chunk(self, q: torch.Tensor, scratch: torch.Tensor | None, embedding: torch.Tensor) -> torch.Tensor:
        """``(n, H)`` mixture of one chunk of softmax rows ``q`` ``(n, V + 1)``: sparse where certified, else dense."""
        n = q.shape[0]
        if not bool(self._could_certify(q, scratch).any()):
            return _product(q, embedding)
        weights, slots, residual = self._top(q)  # (n, k), (n, k), (n,): cheaper than gathering the candidate rows
        ok = residual <= self.config.sparse_tol  # (n,)
        sparse_rows = torch.nonzero(ok).squeeze(1)  # (s,)
        if sparse_rows.numel() == 0:
            return _product(q, embedding)
        # (s, H): the weighted sum over each position's k slots, without materialising the (s, k, H) gather
        h = F.embedding_bag(slots[ok], embedding, per_sample_weights=weights[ok].to(embedding.dtype), mode="sum")
        h = h.to(embedding.dtype)  # autocast may have run it in float32
        if sparse_rows.numel() == n:
            return h
        dense_rows = torch.nonzero(~ok).squeeze(1)  # (n - s,)
        if 4 * dense_rows.numel() >= 3 * n:  # copying most rows of q out costs more than the product it saves
            return _product(q, embedding).index_copy(0, sparse_rows, h)
        out = h.new_zeros(n, h.shape[1]).index_copy(0, sparse_rows, h)
        return out.index_copy(0, dense_rows, _product(_rows(q, dense_rows, scratch), embedding))

    def _could_certify(self, q: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
        """``(n,)`` bool: False where the certificate surely fails, so a chunk where no row can pass skips the top-k.

        For any ``theta >= 0``, ``sum_{v in S} q_v <= k theta + sum_v (q_v - theta)_+``, so the dropped mass is
        ``r >= sum_v min(q_v, theta) - k theta``; with ``theta = sparse_tol / k``, ``r <= sparse_tol`` needs
        ``sum_v min(q_v, theta) <= 2 sparse_tol``. The sum runs over the first ``PRECHECK_SLOTS`` slots only (a lower
        bound, so the test stays necessary) to cost a fraction of the top-k; passing it only costs a top-k.
        """
        k, tol = self.config.sparse_k, self.config.sparse_tol
        q = q.detach()[:, :PRECHECK_SLOTS]  # (n, c)
        if scratch is None:
            clipped = q.clamp(max=tol / k)
        else:
            clipped = torch.clamp(q, max=tol / k, out=scratch.view(-1)[: q.numel()].view(q.shape))
        return clipped.sum(-1) <= 2 * tol

    def _top(self, q: torch.Tensor):
        """``(n, k)`` weights and slot ids of the top ``k`` of softmax rows ``q``, and the ``(n,)`` dropped mass.

        The dropped mass is summed directly over the dropped weights (all non-negative), so it is accurate to float32
        summation, ~1e-6 of itself, with no cancellation against 1.
        """
        weights, slots = q.topk(self.config.sparse_k, dim=-1)  # (n, k)
        if q.requires_grad:
            residual = q.detach().scatter(1, slots, 0.0).sum(-1)
        else:  # q is a scratch buffer (_softmax_chunks): zero the kept slots, sum, put them back bit for bit
            residual = q.scatter_(1, slots, 0.0).sum(-1)
            q.scatter_(1, slots, weights)
        return weights, slots, residual

    def _softmax_chunks(self, z: torch.Tensor, embedding: torch.Tensor | None, scratch: bool = False,
                        scores: bool = False):
        """Yield ``(q, scratch, s)``: ``q = softmax(beta <z, K_v> + b_v)`` ``(n, V + 1)`` for consecutive chunks of
        ``(N, d)`` evidence, in at least float32 with autocast off, a scratch buffer of ``q``'s size (or None), and
        with ``scores`` the evidence head's ``s_iv = <z_i, x_v>`` ``(n, V)`` (else None): the same product, scaled
        and shifted after the head's columns are copied out, so no second ``V x d`` product is computed.

        Without autograd, ``q`` is written in place into one reused buffer (valid until the next chunk is drawn), and
        the scratch is reused likewise: on CPU a fresh 64 MB tensor per step costs page faults comparable to the
        softmax itself. With autograd (through the logits or into ``embedding``, whose product saves ``q``), both
        are fresh (scratch is None) so that backward sees every chunk as it was.
        """
        keys = F.pad(self.key_anchors, (0, 0, 0, 1))  # (V + 1, d): the [MASK] key is the zero vector
        up = torch.promote_types(torch.promote_types(z.dtype, keys.dtype), torch.float32)
        keys, beta, bias = keys.to(up), self.beta.to(up), self.bias.to(up)
        V = keys.shape[0] - 1
        rows = max(1, CHUNK_ENTRIES // keys.shape[0])
        needs = (z, keys, beta, bias) if embedding is None else (z, keys, beta, bias, embedding)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in needs)
        shape = (min(rows, z.shape[0]), keys.shape[0])
        buf = extra = None
        for start in range(0, z.shape[0], rows):
            s = None
            with torch.autocast(z.device.type, enabled=False):
                x = z[start : start + rows].to(up)  # (n, d)
                if grad:
                    if scores:
                        s = x @ keys.T  # (n, V + 1)
                        q = torch.softmax(torch.addcmul(bias, s, beta), dim=-1)
                        s = s[:, :V]
                    else:
                        q = torch.softmax(torch.addmm(bias, beta * x, keys.T), dim=-1)
                else:
                    if buf is None:
                        buf = torch.empty(shape, dtype=up, device=z.device)
                        extra = torch.empty(shape, dtype=up, device=z.device) if scratch else None
                    q = buf[: x.shape[0]]
                    if scores:
                        torch.mm(x, keys.T, out=q)
                        s = q[:, :V].clone()
                        torch.addcmul(bias, q, beta, out=q)
                    else:
                        torch.addmm(bias, beta * x, keys.T, out=q)
                    torch.softmax(q, dim=-1, out=q)
            yield q, extra, s  # outside the autocast-off block: the consumer's product follows the caller's autocast


def log_beta_from(beta: torch.Tensor, name: str = "beta") -> torch.Tensor:
    """``log beta`` of a converter saved with ``beta`` itself (before the positive parametrisation)."""
    if not isinstance(beta, torch.Tensor) or not beta.is_floating_point():
        raise SNRTypeError(f"{name!r} must be a floating scalar tensor (got {beta!r})")
    if beta.numel() != 1:
        raise ShapeError(f"{name!r} must be a floating scalar tensor (got shape {list(beta.shape)})")
    if not float(beta) > 0 or not math.isfinite(float(beta)):
        raise SNRPathError(f"{name!r} must be positive and finite to be read as beta = exp(log_beta) (got {float(beta)})")
    return beta.reshape(()).log()


def _product(q: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
    """The dense mixture ``q @ E`` ``(n, H)`` (under the caller's autocast), returned in ``E``'s dtype."""
    return (q.to(embedding.dtype) @ embedding).to(embedding.dtype)


def _rows(q: torch.Tensor, rows: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
    """``q[rows]``, copied into ``scratch`` when there is one (no fresh allocation)."""
    return q[rows] if scratch is None else torch.index_select(q, 0, rows, out=scratch[: rows.numel()])
