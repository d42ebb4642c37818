"""The per-token SNR state a path moves through.

A state holds, for a batch of ``B`` sequences of ``L`` positions:

* ``gamma`` ``[B, L]``: each position's SNR in ``[0, inf]`` (0 = ``[MASK]``, inf = clean);
* ``z`` ``[B, L, d]``: the evidence ``gamma x + sqrt(gamma) eps`` where gamma is finite, 0 where it is inf;
* ``tokens`` ``[B, L]`` int64: the clean token where ``gamma = inf``, ``-1`` elsewhere;
* ``fixed`` ``[B, L]`` bool: prompt positions, clean from the start, that no path may change;
* ``confidence`` ``[B, L]``: the probability a clean token had when it was revealed (1 for fixed positions,
  0 where not clean); ReMDM's confidence remasking reads it.

States are immutable values; the runner builds a new one per step.
"""

from __future__ import annotations

import attrs
import torch

from .channel import check_gamma, corrupt
from .errors import SNRPathError, SNRTypeError, ShapeError, check_shape
from .geometry import TokenTable
from . import validate

UNKNOWN = -1  #: the token id stored at positions that are not clean
_FIELDS = ("gamma", "z", "tokens", "fixed", "confidence")


@attrs.frozen(eq=False)
class SNRState:
    """Batched per-position SNR state (see the module docstring for every field's shape and meaning)."""

    gamma: torch.Tensor
    z: torch.Tensor
    tokens: torch.Tensor
    fixed: torch.Tensor
    confidence: torch.Tensor

    def __attrs_post_init__(self) -> None:
        check_shape("gamma", self.gamma, (None, None))
        shape = tuple(self.gamma.shape)
        check_shape("z", self.z, (*shape, None))
        check_shape("tokens", self.tokens, shape)
        check_shape("fixed", self.fixed, shape)
        check_shape("confidence", self.confidence, shape)
        if self.fixed.dtype != torch.bool:
            raise ShapeError(f"'fixed' must be a bool tensor (got dtype {self.fixed.dtype})")
        if self.tokens.dtype != torch.int64:
            raise ShapeError(f"'tokens' must be an int64 tensor (got dtype {self.tokens.dtype})")

    # -- constructors ------------------------------------------------------------------------------------

    @classmethod
    def masked(cls, batch: int, seq_len: int, table: TokenTable, device: torch.device | str | None = None) -> "SNRState":
        """Every position at ``gamma = 0`` (``[MASK]``), nothing fixed."""
        batch, seq_len = validate.integer("batch", batch), validate.integer("seq_len", seq_len)
        dtype = table.anchors.dtype
        return cls(
            gamma=torch.zeros(batch, seq_len, dtype=dtype, device=device),
            z=torch.zeros(batch, seq_len, table.dim, dtype=dtype, device=device),
            tokens=torch.full((batch, seq_len), UNKNOWN, dtype=torch.int64, device=device),
            fixed=torch.zeros(batch, seq_len, dtype=torch.bool, device=device),
            confidence=torch.zeros(batch, seq_len, dtype=dtype, device=device),
        )

    @classmethod
    def from_prompt(cls, prompt: torch.Tensor, table: TokenTable, batch: int | None = None) -> "SNRState":
        """Prompt positions fixed and clean, the rest masked.

        Args:
            prompt: ``[L]`` or ``[B, L]`` int tensor; a token id in ``[0, V)`` fixes that position, ``-1`` leaves
                it free. An ``[L]`` prompt is repeated over ``batch`` rows (default 1).
        """
        prompt = validate.token_ids("prompt", _batched("prompt", prompt, batch), table.vocab_size, free=UNKNOWN)
        fixed = prompt != UNKNOWN
        state = cls.masked(prompt.shape[0], prompt.shape[1], table, device=prompt.device)
        inf = torch.tensor(float("inf"), dtype=state.gamma.dtype, device=prompt.device)
        return attrs.evolve(
            state,
            gamma=torch.where(fixed, inf, state.gamma),
            tokens=torch.where(fixed, prompt.to(torch.int64), state.tokens),
            fixed=fixed,
            confidence=fixed.to(state.confidence.dtype),
        )

    @classmethod
    def from_tokens(
        cls, tokens: torch.Tensor, gamma: torch.Tensor, table: TokenTable, generator: torch.Generator
    ) -> "SNRState":
        """Tokens ``[B, L]`` corrupted at SNRs ``gamma`` ``[B, L]``: ``z = gamma x + sqrt(gamma) eps``.

        Positions with ``gamma = inf`` are clean (confidence 1); none is fixed.
        """
        z = corrupt(tokens, gamma, table, generator)
        clean = torch.isinf(gamma)
        return cls(
            gamma=gamma.to(table.anchors.dtype),
            z=z,
            tokens=torch.where(clean, tokens.to(torch.int64), torch.full_like(tokens, UNKNOWN, dtype=torch.int64)),
            fixed=torch.zeros_like(clean),
            confidence=clean.to(table.anchors.dtype),
        )

    def advance(self, **changes: torch.Tensor) -> "SNRState":
        """This state with ``changes`` (field name -> tensor), not checked again: for the runner, whose steps keep
        every field's shape and dtype by construction, and for which :meth:`__attrs_post_init__`'s checks would cost
        more than a small step's arithmetic. Anything else builds states with ``attrs.evolve``, which checks."""
        new = object.__new__(SNRState)
        for name in _FIELDS:
            object.__setattr__(new, name, changes.pop(name, getattr(self, name)))
        if changes:
            raise SNRTypeError(f"SNRState has no field {next(iter(changes))!r}; its fields are {', '.join(_FIELDS)}")
        return new

    # -- views -------------------------------------------------------------------------------------------

    @property
    def batch(self) -> int:
        return self.gamma.shape[0]

    @property
    def seq_len(self) -> int:
        return self.gamma.shape[1]

    @property
    def clean(self) -> torch.Tensor:
        """``[B, L]`` bool: positions whose token is known (``gamma = inf``)."""
        return torch.isposinf(self.gamma)  # one kernel; isinf is two (gamma is never -inf: check_gamma)

    @property
    def masked_positions(self) -> torch.Tensor:
        """``[B, L]`` bool: positions with no information (``gamma = 0``)."""
        return self.gamma == 0

    def rows(self, keep: torch.Tensor) -> "SNRState":
        """The state of the rows where ``keep`` ``[B]`` bool is true, in order."""
        index = keep.nonzero().squeeze(1)  # once, not once per field
        return self.advance(**{name: getattr(self, name).index_select(0, index) for name in _FIELDS})

    def validate(self, table: TokenTable) -> None:
        """Check the invariants that tie the fields together; raise naming the first that fails."""
        check_gamma("gamma", self.gamma)
        if self.z.shape[-1] != table.dim:
            raise ShapeError(f"'z' has anchor dimension {self.z.shape[-1]}; the token table has {table.dim}")
        clean = self.clean
        if bool((self.tokens[clean] == UNKNOWN).any()) or bool((self.tokens[~clean] != UNKNOWN).any()):
            raise SNRPathError("'tokens' must hold a token id exactly where gamma = inf and -1 elsewhere")
        table.check_tokens("tokens", self.tokens[clean])
        if bool((self.fixed & ~clean).any()):
            raise SNRPathError("every fixed (prompt) position must be clean (gamma = inf)")
        if bool((self.z[clean] != 0).any()) or bool((self.z[self.masked_positions] != 0).any()):
            raise SNRPathError("'z' must be exactly 0 where gamma is 0 or inf")


def _batched(name: str, tokens: torch.Tensor, batch: int | None) -> torch.Tensor:
    validate.token_ids(name, tokens, ndims=(1, 2))
    if tokens.ndim == 1:
        return tokens.unsqueeze(0).expand(batch or 1, -1).contiguous()
    if batch is not None and batch != tokens.shape[0]:
        raise ShapeError(f"{name!r} has {tokens.shape[0]} rows but batch={batch} was asked for")
    return tokens
