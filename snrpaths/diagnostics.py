"""Does a denoiser read its evidence? Cross-entropy at finite SNR against the context-free Bayes rule.

At SNR ``gamma`` a position's own evidence ``z_i = gamma x_{s_i} + sqrt(gamma) eps`` alone gives the context-free
Bayes rule (DESIGN.md section 4b)

    r(s_i = v | z_i) = softmax_v(z_i . x_v + log p(v))            p: a unigram prior, x_v: the unit-norm anchors

which needs no network. The exact posterior ``p(s_i | z)`` also uses the rest of the sequence, so on data its
expected cross-entropy is below the rule's at every gamma; a learned denoiser whose cross-entropy is above it is
ignoring its own evidence (as the first shipped DSL fine-tune did: 3.27 bits at gamma = 16 where the rule has 0.82).

:func:`evidence_curve` measures, per SNR and layout, on windows ``s_b`` ``[N, L]`` of held-out text:

    CE_b    = mean_{i scored} -log2 p_theta(s_bi | z_b)                   (bits per scored position)
    rule_b  = mean_{i scored} -log2 r(s_bi | z_bi)                         (the same draws of z)
    diff_b  = CE_b - rule_b                                                paired by window

and reports ``mean_b`` with the standard error ``std_b / sqrt(N)`` of each. Layouts: ``"all"``, every position at
``gamma`` (all scored); ``"half"``, a random half of the positions at ``gamma`` and the rest clean, the state a
hybrid's hand-over sees (only the finite ones scored). Given an exact ``reference`` denoiser (an ``ExactToy``'s
posterior, say), it also reports ``KL_b = mean_{i scored} KL(p_ref(. | z_b) || p_theta(. | z_b))`` in bits.

Verdict per row, at a margin of two standard errors of the paired difference: ``"reads its evidence"`` when
``diff + 2 se < 0``, ``"below the context-free rule"`` when ``diff - 2 se > 0``, otherwise ``"inconclusive"``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import attrs
import torch

from . import validate
from .channel import posterior_logits
from .denoiser import Denoiser, require, require_finite_snr
from .errors import SNRPathError, SNRTypeError, ShapeError
from .geometry import TokenTable
from .state import SNRState


@attrs.frozen
class Layout:
    """Which positions of the ``[b, L]`` windows a row of :func:`evidence_curve` puts at the SNR and scores, the others
    clean: ``positions(shape, generator)`` is ``[b, L]`` bool, drawn from ``generator`` (which each row seeds on its
    own)."""

    name: str
    positions: Callable[[tuple[int, int], torch.Generator], torch.Tensor]


def _all(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Every position: no draw."""
    return torch.ones(*shape, dtype=torch.bool)


def _half(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``max(1, L // 2)`` positions per row, uniformly at random (one ``[b, L]`` uniform draw)."""
    b, L = shape
    rank = torch.rand(b, L, generator=generator).argsort(1).argsort(1)
    return rank < max(1, L // 2)


#: The evidence curve's layouts by name.
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (Layout("all", _all), Layout("half", _half))}
READS, BELOW, INCONCLUSIVE = "reads its evidence", "below the context-free rule", "inconclusive"
#: The SNRs of issue 13's targets and of ``snrpaths check``.
DEFAULT_GAMMAS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
LOG2 = math.log(2)


@attrs.frozen
class Estimate:
    """A mean over windows with its standard error (bits)."""

    mean: float
    se: float

    @classmethod
    def of(cls, values: torch.Tensor) -> "Estimate":
        n = values.numel()
        se = float(values.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.nan
        return cls(float(values.mean()), se)

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.se:.4f}"


@attrs.frozen
class EvidenceRow:
    """One SNR in one layout: model, rule, their paired difference and (with a reference) the KL, in bits."""

    layout: str
    gamma: float
    model: Estimate
    rule: Estimate
    diff: Estimate
    kl: Estimate | None
    scored: int  # positions scored per window

    @property
    def verdict(self) -> str:
        if self.diff.mean + 2 * self.diff.se < 0:
            return READS
        if self.diff.mean - 2 * self.diff.se > 0:
            return BELOW
        return INCONCLUSIVE


@attrs.frozen
class EvidenceCurve:
    """The rows of :func:`evidence_curve`, layout by layout, SNRs in the order given."""

    rows: tuple[EvidenceRow, ...]
    windows: int

    def verdicts(self) -> dict[tuple[str, float], str]:
        return {(r.layout, r.gamma): r.verdict for r in self.rows}

    def table(self) -> str:
        """A Markdown table, one line per (layout, SNR)."""
        kl = any(r.kl is not None for r in self.rows)
        head = "| layout | gamma | model CE (bits) | context-free rule | model - rule | " + ("KL to reference | " if kl else "")
        lines = [head + "verdict |", "|---|---:|---:|---:|---:|" + ("---:|" if kl else "") + "---|"]
        for r in self.rows:
            cells = [r.layout, f"{r.gamma:g}", str(r.model), str(r.rule), f"{r.diff.mean:+.4f} ± {r.diff.se:.4f}"]
            cells += [str(r.kl)] if kl else []
            lines.append("| " + " | ".join(cells + [r.verdict]) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"windows": self.windows, "rows": [
            {"layout": r.layout, "gamma": r.gamma, "scored": r.scored, "verdict": r.verdict,
             **{k: None if e is None else {"mean": e.mean, "se": e.se}
                for k, e in (("model", r.model), ("rule", r.rule), ("diff", r.diff), ("kl", r.kl))}}
            for r in self.rows]}


def unigram_prior(tokens: torch.Tensor, vocab_size: int, smoothing: float = 0.5) -> torch.Tensor:
    """``(V,)`` float64 ``p(v) = (count(v) + smoothing) / (N + V smoothing)`` of a token stream (any shape): strictly
    positive for ``smoothing > 0``, so ``log p`` exists for tokens the stream never shows."""
    vocab_size = validate.integer("vocab_size", vocab_size)
    smoothing = validate.number("smoothing", smoothing, 0.0, high_open=True, phrase="a finite number >= 0")
    flat = validate.token_ids("tokens", tokens, vocab_size).flatten().cpu()
    counts = torch.bincount(flat, minlength=vocab_size).double()
    total = counts.sum() + vocab_size * smoothing
    if total <= 0:
        raise SNRPathError("'tokens' is empty and 'smoothing' is 0: no prior can be formed")
    return (counts + smoothing) / total


def evidence_curve(
    denoiser,
    tokens: torch.Tensor,
    gammas: Iterable[float] = DEFAULT_GAMMAS,
    *,
    prior: torch.Tensor,
    layouts: Sequence[str] = tuple(LAYOUTS),
    reference=None,
    seed: int = 0,
    batch: int = 64,
    progress: bool = False,
) -> EvidenceCurve:
    """Cross-entropy of ``denoiser`` at each SNR against the context-free Bayes rule (module docstring).

    Args:
        denoiser: any :class:`snrpaths.Denoiser`.
        tokens: ``[N, L]`` integer windows, ``L = denoiser.seq_len``, ids in ``[0, V)``; ``N >= 2`` for error bars.
        gammas: positive finite SNRs.
        prior: ``[V]`` probabilities of the rule (e.g. :func:`unigram_prior` of the training stream).
        layouts: any of ``"all"``, ``"half"``.
        reference: an exact denoiser of the same ``V``, ``L`` and anchors: adds the KL from it.
        seed: seeds every draw (the noise, the half layout's positions); the same seed gives the same numbers.
        batch: windows per denoiser call.
    Every argument is checked before the first denoiser call.
    """
    require("denoiser", denoiser, Denoiser)
    require_finite_snr(denoiser, "evidence_curve (it scores states at finite SNR)")
    gammas = _check_gammas(gammas)
    layouts = _check_layouts(layouts)
    _check_tokens(denoiser, tokens)
    log_prior = _check_prior(prior, denoiser.vocab_size).log()
    if reference is not None:
        _check_reference(reference, denoiser)
    batch = validate.integer("batch", batch)
    seed = validate.seed("seed", seed)
    from tqdm.auto import tqdm

    jobs = [(layout, gamma) for layout in layouts for gamma in gammas]
    rows = [_row(denoiser, reference, tokens, layout, gamma, log_prior, seed + k, batch)
            for k, (layout, gamma) in enumerate(tqdm(jobs, desc="evidence curve", disable=not progress))]
    return EvidenceCurve(tuple(rows), int(tokens.shape[0]))


def _row(denoiser, reference, tokens, layout, gamma, log_prior, seed, batch) -> EvidenceRow:
    # on the CPU: the numbers do not depend on the device; mod 2^64 as torch folds a negative seed
    generator = torch.Generator().manual_seed(seed % 2**64)
    device = denoiser.table.anchors.device
    table = denoiser.table.to("cpu")
    # in float64, renormalised (float32 norms are off by ~1e-7); a demonstration table of unequal norms kept as is
    table64 = TokenTable.from_embeddings(table.anchors.double()) if table.is_unit_norm else table
    terms = {"model": [], "rule": [], "kl": []}
    scored = 0
    for chunk in tokens.cpu().split(batch):
        finite = LAYOUTS[layout].positions(chunk.shape, generator)  # [b, L] bool: the positions at gamma, the scored ones
        gamma_bl = torch.where(finite, gamma, math.inf).to(table.anchors.dtype)
        state = SNRState.from_tokens(chunk, gamma_bl, table, generator)
        target = chunk[..., None]
        model = _log_probs(denoiser, _to(state, device))
        rule = posterior_logits(state.z.double(), table64, log_prior).log_softmax(-1)
        weights = finite.double() / finite.sum(1, keepdim=True)  # [b, L]: a mean over the scored positions
        terms["model"].append(-(model.gather(-1, target)[..., 0] * weights).sum(1) / LOG2)
        terms["rule"].append(-(rule.gather(-1, target)[..., 0] * weights).sum(1) / LOG2)
        if reference is not None:
            ref = _log_probs(reference, _to(state, reference.table.anchors.device))
            kl = (ref.exp() * (ref - model)).nan_to_num(nan=0.0).sum(-1)  # 0 log 0 = 0 where the reference is 0
            terms["kl"].append((kl * weights).sum(1) / LOG2)
        scored = int(finite[0].sum())
    model, rule = torch.cat(terms["model"]), torch.cat(terms["rule"])
    kl = Estimate.of(torch.cat(terms["kl"])) if reference is not None else None
    return EvidenceRow(layout, float(gamma), Estimate.of(model), Estimate.of(rule), Estimate.of(model - rule), kl, scored)


def _to(state: SNRState, device) -> SNRState:
    return state if state.gamma.device == device else SNRState(
        *(getattr(state, f.name).to(device) for f in attrs.fields(SNRState)))


def _log_probs(denoiser, state: SNRState) -> torch.Tensor:
    """``[b, L, V]`` float64 log-probabilities; a NaN or a non-float output is the denoiser's error, named."""
    with torch.no_grad():
        logits = denoiser.logits(state)
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise SNRTypeError(f"the denoiser returned {_describe(logits)}; logits must be a floating-point tensor")
    if bool(torch.isnan(logits).any()):
        raise SNRPathError("the denoiser returned NaN logits")
    return logits.double().cpu().log_softmax(-1)


# -- checks ---------------------------------------------------------------------------------------------------------


def _check_gammas(gammas) -> tuple[float, ...]:
    try:
        values = tuple(gammas)
    except TypeError:
        raise SNRTypeError(f"'gammas' must be a sequence of positive finite SNRs (got {_describe(gammas)})") from None
    if not values:
        raise SNRPathError("'gammas' is empty; give at least one positive finite SNR, e.g. (1, 4, 16)")
    # gamma = 0 is [MASK] and inf is clean: no evidence to read
    return tuple(validate.number("gammas", g, 0.0, low_open=True, high_open=True, phrase="positive and finite")
                 for g in values)


def _check_layouts(layouts) -> tuple[str, ...]:
    values = (layouts,) if isinstance(layouts, str) else tuple(layouts)
    if not values:
        raise SNRPathError(f"'layouts' is empty; give any of {tuple(LAYOUTS)}")
    return tuple(validate.choice("layouts", layout, LAYOUTS) for layout in values)


def _check_tokens(denoiser, tokens) -> None:
    validate.token_ids("tokens", tokens, denoiser.vocab_size, ndims=(2,))
    if tokens.shape[0] < 2:
        raise ShapeError(f"'tokens' must have N >= 2 windows [N, L], for an error bar (got {list(tokens.shape)})")
    if tokens.shape[1] != denoiser.seq_len:
        raise ShapeError(f"'tokens' windows have L = {tokens.shape[1]}; the denoiser is built for seq_len = "
                         f"{denoiser.seq_len}")


def _check_prior(prior, vocab_size: int) -> torch.Tensor:
    if not isinstance(prior, torch.Tensor) or not prior.is_floating_point() or tuple(prior.shape) != (vocab_size,):
        raise ShapeError(f"'prior' must be a floating tensor of shape [{vocab_size}] (got {_describe(prior)})")
    p = prior.double().cpu()
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or abs(float(p.sum()) - 1) > 1e-6:
        raise SNRPathError(f"'prior' must hold finite probabilities >= 0 summing to 1 (sum {float(p.sum()):.6g}); "
                           "unigram_prior(train_tokens, V) makes one")
    return p


def _check_reference(reference, denoiser) -> None:
    require("reference", reference, Denoiser)
    for name in ("vocab_size", "seq_len"):
        if getattr(reference, name) != getattr(denoiser, name):
            raise SNRPathError(f"the reference has {name} = {getattr(reference, name)!r}; the denoiser has "
                               f"{getattr(denoiser, name)!r}")
    a, b = reference.table.anchors, denoiser.table.anchors
    if a.shape != b.shape or not torch.allclose(a.double().cpu(), b.double().cpu(), atol=1e-6):
        raise SNRPathError("the reference's anchors differ from the denoiser's: the KL needs the same evidence z")


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    return f"{type(value).__name__} {value!r:.60}"
