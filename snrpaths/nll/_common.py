"""What every estimator shares: the result value, input checks, and batched denoiser evaluation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import attrs
import torch

from ..denoiser import Denoiser, require
from ..errors import ShapeError, SNRTypeError
from .. import limits, validate
from ..progress import Meter, calibrated
from ..reprs import Z95, format_estimate
from ..state import UNKNOWN, SNRState

LN2 = math.log(2.0)


@attrs.frozen(eq=False, repr=False)
class NLLEstimate:
    """A Monte Carlo estimate of ``-log P(s)`` for each of ``B`` sequences.

    Attributes:
        estimator: what produced it, e.g. ``"path_integral(Joint(), control='ito')"``.
        samples: ``[B, n]`` float64: ``n`` unbiased estimates per sequence, in nats (one per trajectory, order or
            draw); ``nll`` is their mean.
        nll: ``[B]`` nats per sequence.
        stderr: ``[B]`` standard error of ``nll`` in nats, ``sd(samples) / sqrt(n)`` (NaN when ``n = 1``).
        seq_len: ``L``, for the per-token views.
        n_calls: denoiser evaluations (rows of a ``logits`` batch) spent per sequence.
    """

    estimator: str
    samples: torch.Tensor
    nll: torch.Tensor
    stderr: torch.Tensor
    seq_len: int
    n_calls: int

    @classmethod
    def from_samples(cls, estimator: str, samples: torch.Tensor, seq_len: int, n_calls: int) -> NLLEstimate:
        n = samples.shape[1]
        sd = samples.std(dim=1) if n > 1 else torch.full(samples.shape[:1], math.nan, dtype=samples.dtype)
        return cls(estimator, samples, samples.mean(dim=1), sd / math.sqrt(n), seq_len, n_calls)

    @property
    def bits_per_token(self) -> torch.Tensor:
        """``[B]``: ``nll / (L ln 2)``."""
        return self.nll / (self.seq_len * LN2)

    @property
    def bits_per_token_stderr(self) -> torch.Tensor:
        """``[B]``: ``stderr / (L ln 2)``."""
        return self.stderr / (self.seq_len * LN2)

    def __repr__(self) -> str:
        """``NLLEstimate(roar: 2.345 ± 0.012 bits per token, 16 sequences of 128, 2048 calls each; ± 95%)``: the
        batch mean and its Monte Carlo interval (the tensors are its fields)."""
        mean, se = self.mean_bits_per_token()
        return (f"NLLEstimate({self.estimator}: {format_estimate(mean, Z95 * se)} bits per token, "
                f"{self.nll.numel()} sequences of {self.seq_len}, {self.n_calls} calls each; ± 95%)")

    def mean_bits_per_token(self) -> tuple[float, float]:
        """The batch average in bits per token and its Monte Carlo standard error (sequences held fixed)."""
        b = self.bits_per_token.numel()
        return float(self.bits_per_token.mean()), float(self.bits_per_token_stderr.pow(2).sum().sqrt() / b)


# -- input checks (all run before any denoiser call) ----------------------------------------------------------


def check_denoiser(denoiser: object) -> None:
    require("denoiser", denoiser, Denoiser)


def check_tokens(denoiser: Denoiser, tokens: object) -> torch.Tensor:
    """``tokens`` as ``[B, L]`` int64 on the table's device; ``[L]`` is read as one sequence."""
    if not isinstance(tokens, torch.Tensor):
        raise SNRTypeError(f"'tokens' must be a torch.Tensor of token ids (got {type(tokens).__name__})")
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[0] < 1:
        raise ShapeError(f"'tokens' must have shape [B, L] or [L] (got {list(tokens.shape)})")
    if tokens.shape[1] != denoiser.seq_len:
        raise ShapeError(
            f"'tokens' has sequences of length {tokens.shape[1]}; the denoiser's seq_len is {denoiser.seq_len}"
        )
    denoiser.table.check_tokens("tokens", tokens)
    return tokens.to(device=denoiser.table.anchors.device, dtype=torch.int64)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    return validate.integer(name, value, minimum, phrase=f"an integer >= {minimum}")


def check_size(where: str, denoiser: Denoiser, sequences: int, rows_per_sequence: int, batch_size: int,
               remedy: str) -> None:
    """Refuse, before any work, an estimate of ``sequences x rows_per_sequence`` denoiser rows whose logits per
    call (``min(batch_size, rows) x L x V``) or positions in all (``rows x L``) exceed :mod:`snrpaths.limits`."""
    rows = sequences * rows_per_sequence
    length = denoiser.seq_len
    limits.check_logits(where, min(batch_size, rows), length, denoiser.vocab_size, "lower batch_size")
    limits.check_work(where, rows, length, f"{sequences} sequences x {rows_per_sequence} rows", remedy)


def check_progress(progress: object) -> None:
    validate.boolean("progress", progress, allow_none=True)


def generator(seed: object) -> torch.Generator:
    """The CPU generator every random choice of an estimator comes from (so results do not depend on device)."""
    return torch.Generator().manual_seed(validate.seed("seed", seed))


# -- evaluation ------------------------------------------------------------------------------------------------


def progress_bar(total: float, batch_size: int, progress: bool | None, desc: str) -> Meter:
    """A bar counting denoiser calls per sequence (the unit of ``NLLEstimate.n_calls``: one call evaluates every
    sequence once), with the run's length said after the second (:class:`snrpaths.progress.Meter`): shown when
    asked, hidden when not, and by default only for work spanning several batches on an interactive terminal."""
    enabled = progress if progress is not None else (None if total > batch_size else False)
    return Meter(total, "call", desc, enabled, leave=False)


def log_probs(denoiser: Denoiser, gamma: torch.Tensor, z: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """One batched denoiser call on ``R`` states.

    Args:
        gamma: ``[R, L]`` SNRs; positions at inf are shown the true token.
        z: ``[R, L, d]`` evidence (0 where gamma is 0 or inf).
        tokens: ``[R, L]`` the true tokens.
    Returns:
        ``[R, L, V]`` float64 ``log p(s_i = v | z)``, normalised; 0 at clean positions, whose outputs the protocol
        leaves undefined (so a NaN there cannot leak into a sum).
    """
    clean = torch.isinf(gamma)
    state = SNRState(gamma=gamma, z=z, tokens=torch.where(clean, tokens, UNKNOWN), fixed=torch.zeros_like(clean),
                     confidence=clean.to(gamma.dtype))
    logits = denoiser.logits(state)
    expected = (*gamma.shape, denoiser.vocab_size)
    if tuple(logits.shape) != expected:
        raise ShapeError(f"the denoiser returned logits of shape {list(logits.shape)}; expected {list(expected)}")
    if not logits.is_floating_point():
        raise ShapeError(f"the denoiser returned logits of dtype {logits.dtype}; logits must be floating point")
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return torch.where(clean[..., None], torch.zeros((), dtype=logp.dtype, device=logp.device), logp)


def endpoint_nll(
    denoiser: Denoiser,
    tokens: torch.Tensor,
    clean: torch.Tensor,
    weight: torch.Tensor,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> torch.Tensor:
    """``sum_i weight[b, r, i] * -log p(s_i | s_A)`` for endpoint states (``A`` = ``clean[b, r]``, the rest masked).

    Args:
        tokens: ``[B, L]``; clean: ``[B, R, L]`` bool; weight: ``[B, R, L]`` (0 on clean positions).
    Returns:
        ``[B, R]`` float64, evaluated in denoiser calls of at most ``batch_size`` rows.
    """
    b, r, length = clean.shape
    dtype, device = denoiser.table.anchors.dtype, denoiser.table.anchors.device
    out = torch.empty(b, r, dtype=torch.float64, device=device)
    # A call is the same row r of every sequence at once, so the bar counts what n_calls reports; the first two
    # calls run alone, a warm-up and the one that times the run (snrpaths.progress.calibrated).
    with progress_bar(r, max(1, batch_size // b), progress, desc) as bar:
        for calls in calibrated(r, max(1, batch_size // b)):
            k = calls.stop - calls.start
            flat_clean = clean[:, calls].reshape(b * k, length)
            flat_weight = weight[:, calls].reshape(b * k, length).to(torch.float64)
            flat_tokens = tokens[:, None, :].expand(b, k, length).reshape(b * k, length)
            values = torch.empty(b * k, dtype=torch.float64, device=device)
            for rows in slices(b * k, batch_size):
                c = flat_clean[rows].to(device)
                gamma = torch.where(c, math.inf, 0.0).to(dtype)
                z = torch.zeros(*c.shape, denoiser.table.dim, dtype=dtype, device=device)
                logp = log_probs(denoiser, gamma, z, flat_tokens[rows])
                nll = -logp.gather(-1, flat_tokens[rows, :, None]).squeeze(-1)  # [rows, L]
                values[rows] = (flat_weight[rows].to(device) * nll).sum(-1)
            out[:, calls] = values.reshape(b, k)
            bar.update(k)
    return out.cpu()


def slices(total: int, size: int) -> Iterator[slice]:
    return (slice(s, min(s + size, total)) for s in range(0, total, size))
