"""The token table: V anchors ``x_v`` on the unit sphere in ``R^d``.

The unit norm is what makes DSL work: under the localization channel the posterior is
``p(x | z, gamma) ∝ P(x) exp(z·x - gamma/2 ||x||^2)`` and the last term cancels only when every
``||x_v||`` is equal, leaving ``p(x | z) ∝ P(x) exp(z·x)``, a posterior that does not depend on gamma.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from .errors import SNRPathError, SNRTypeError, ShapeError, shown_positions
from . import validate

#: How far a row norm may stray from 1 (relative to the dtype's precision) and still count as unit norm.
_NORM_TOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


def _as_float_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise SNRTypeError(f"{name!r} must be a torch.Tensor or numpy array (got {type(value).__name__})")
    if not value.is_floating_point():
        value = value.to(torch.float64)
    return value


def _validate_anchors(table: "TokenTable", attribute: attrs.Attribute, anchors: torch.Tensor) -> None:
    if not isinstance(anchors, torch.Tensor) or not anchors.is_floating_point():
        raise SNRTypeError(f"'anchors' must be a floating-point torch.Tensor (got {anchors!r:.60})")
    if anchors.ndim != 2 or anchors.shape[0] < 1 or anchors.shape[1] < 1:
        raise ShapeError(f"'anchors' must have shape [V, d] with V, d >= 1 (got {list(anchors.shape)})")
    if not bool(torch.isfinite(anchors).all()):
        raise SNRPathError("'anchors' contain NaN or inf entries")
    if table.unit_norm_required and not table.is_unit_norm:
        worst = float((anchors.norm(dim=1) - 1).abs().max())
        raise SNRPathError(
            f"anchors must have unit norm (largest |norm - 1| is {worst:.3g}); "
            "use TokenTable.from_embeddings(E) to normalise rows"
        )


@attrs.frozen(eq=False)
class TokenTable:
    """V token anchors of unit norm in R^d.

    Attributes:
        anchors: ``[V, d]`` floating tensor; row ``v`` is the anchor ``x_v``, ``||x_v|| = 1``.
    """

    anchors: torch.Tensor = attrs.field(validator=_validate_anchors)
    # Only TokenTable.with_norms turns this off: to show what breaks when anchors are not unit norm.
    unit_norm_required: bool = attrs.field(default=True, kw_only=True, repr=False)

    @classmethod
    def random(cls, vocab_size: int, dim: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> "TokenTable":
        """Anchors drawn uniformly on the unit sphere (normalised Gaussians) from ``seed``."""
        vocab_size, dim = validate.integer("vocab_size", vocab_size), validate.integer("dim", dim)
        g = torch.Generator().manual_seed(validate.seed("seed", seed))
        e = torch.randn(vocab_size, dim, generator=g, dtype=torch.float64)
        return cls((e / e.norm(dim=1, keepdim=True)).to(dtype))

    @classmethod
    def orthonormal(cls, vocab_size: int, dim: int | None = None, dtype: torch.dtype = torch.float64) -> "TokenTable":
        """The first V standard basis vectors of R^d (``V <= d``): every pair of anchors at distance sqrt(2)."""
        vocab_size = validate.integer("vocab_size", vocab_size)
        dim = validate.integer("dim", vocab_size if dim is None else dim)
        if dim < vocab_size:
            raise SNRPathError(f"orthonormal anchors need dim >= vocab_size (got dim={dim}, vocab_size={vocab_size})")
        return cls(torch.eye(vocab_size, dim, dtype=dtype))

    @classmethod
    def from_embeddings(cls, embeddings: torch.Tensor | np.ndarray) -> "TokenTable":
        """Rows of ``embeddings`` ([V, d]) scaled to unit norm; zero or non-finite rows are rejected."""
        e = _as_float_tensor("embeddings", embeddings)
        if e.ndim != 2:
            raise ShapeError(f"'embeddings' must have shape [V, d] (got {list(e.shape)})")
        bad = (~torch.isfinite(e)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise SNRPathError(f"embedding rows {shown_positions(bad)} contain NaN or inf; every row must be finite")
        norms = e.norm(dim=1, keepdim=True)
        zero = (norms.flatten() == 0).nonzero().flatten().tolist()
        if zero:
            raise SNRPathError(f"embedding rows {shown_positions(zero)} are zero and have no direction; every row must be nonzero")
        return cls(e / norms)

    @classmethod
    def with_norms(cls, embeddings: torch.Tensor | np.ndarray) -> "TokenTable":
        """Rows kept as given, norms and all. For demonstrations only: with unequal norms the posterior
        depends on gamma and one time-invariant denoiser no longer exists."""
        return cls(_as_float_tensor("embeddings", embeddings), unit_norm_required=False)

    @property
    def vocab_size(self) -> int:
        return self.anchors.shape[0]

    @property
    def dim(self) -> int:
        return self.anchors.shape[1]

    @property
    def is_unit_norm(self) -> bool:
        tol = _NORM_TOL.get(self.anchors.dtype, 1e-5)
        return bool(((self.anchors.norm(dim=1) - 1).abs() <= tol).all())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TokenTable":
        """The same anchors on another device or in another floating dtype."""
        return attrs.evolve(self, anchors=self.anchors.to(device=device, dtype=dtype))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``x_{s}``: anchors of ``tokens`` ([...] ints in [0, V)) as a ``[..., d]`` tensor."""
        return self.anchors[tokens]

    def min_distance(self, chunk: int = 4096) -> float:
        """``Delta_min = min_{u != v} ||x_u - x_v||``, the hardest pair to tell apart (0 if two anchors coincide)."""
        if self.vocab_size < 2:
            return float("inf")
        a = self.anchors.to(torch.float64)
        best = float("inf")
        for start in range(0, self.vocab_size, chunk):
            block = a[start : start + chunk]
            # ||u - v||^2 = 2 - 2 u·v for unit vectors, but use the general form: with_norms tables are allowed.
            d2 = (block.pow(2).sum(1, keepdim=True) + a.pow(2).sum(1) - 2 * block @ a.T).clamp_min(0)
            rows = torch.arange(block.shape[0])
            d2[rows, rows + start] = float("inf")
            best = min(best, float(d2.min()))
        return best**0.5

    def check_tokens(self, name: str, tokens: torch.Tensor) -> None:
        """Raise unless ``tokens`` is an integer tensor with every entry in ``[0, V)`` (:func:`validate.token_ids`)."""
        validate.token_ids(name, tokens, self.vocab_size)

