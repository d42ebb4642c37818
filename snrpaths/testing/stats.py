"""Statistical yardsticks for sampler tests and benchmarks on exact toy joints."""

from __future__ import annotations

import math

import torch


def empirical_law(samples: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[V^L]`` empirical probabilities of ``[n, L]`` sequences, in the C order of ``ExactToy.states``."""
    seq_len = samples.shape[-1]
    powers = vocab_size ** torch.arange(seq_len - 1, -1, -1, device=samples.device)
    index = (samples.to(torch.int64) * powers).sum(-1)
    counts = torch.bincount(index, minlength=vocab_size**seq_len).to(torch.float64)
    return counts / counts.sum()


def empirical_tv(probs: torch.Tensor, samples: torch.Tensor) -> float:
    """Total variation ``1/2 sum_s |P_hat(s) - P(s)|`` between ``[n, L]`` samples and a joint of shape ``(V,) * L``."""
    return 0.5 * float((empirical_law(samples, probs.shape[0]) - probs.flatten()).abs().sum())


def tv_tolerance(probs: torch.Tensor, n: int, delta: float = 1e-6) -> float:
    """Error budget of an n-sample empirical TV when the sampler is exact.

    ``E[TV] <= 1/2 sum_s sqrt(P(s)(1 - P(s)) / n)`` (Jensen), and TV moves by at most 1/n when one sample changes,
    so McDiarmid gives ``P(TV > E[TV] + t) <= exp(-2 n t^2)``: ``t = sqrt(ln(1/delta) / (2n))``. An exact sampler
    exceeds the returned value with probability below ``delta``.
    """
    p = probs.flatten().to(torch.float64)
    return 0.5 * float((p * (1 - p) / n).sqrt().sum()) + math.sqrt(math.log(1 / delta) / (2 * n))


def ks_normal(x: torch.Tensor, mu: float, sigma: float) -> float:
    """Kolmogorov-Smirnov statistic ``sup_x |F_n(x) - Phi((x - mu) / sigma)|`` of ``[n]`` samples against a normal.

    Under the null, ``P(D > c / sqrt(n)) ~ 2 exp(-2 c^2)``: ``c = 1.63`` gives 1%, ``c = 1.95`` gives 0.1%.
    """
    x = x.flatten().to(torch.float64).sort().values
    n = len(x)
    cdf = 0.5 * (1 + torch.erf((x - mu) / (sigma * math.sqrt(2))))
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - cdf
    below = cdf - torch.arange(n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())
