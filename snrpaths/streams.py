"""Per-row random streams: the numbers row ``i`` of a run draws do not depend on how many rows run beside it.

A ``torch.Generator`` hands out numbers in sequence, so row 3 of a batch of 8 reads different numbers from row 3 of
a batch of 4. :class:`Streams` instead computes every number from its coordinates with a counter-based generator,
Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the generator behind torch's
CUDA backend and cuRAND): the key is the user's seed, the 128-bit counter is ``(element pair, draw, row)``. So the
``k``-th draw of global row ``r`` is the same numbers in a batch of 1, of 64, or in chunk 5 of a sharded run.
Uniforms are the same bits on every device (integer arithmetic, then an exact conversion); normals go through
``log``, ``cos`` and ``sin``, so across devices they agree to float rounding, and bit for bit on one machine.

Philox is computed over all requested numbers at once (no Python loop over rows). On the CPU the rounds run in
numpy ``uint64``, where a 32 x 32 -> 64-bit product is exact, in about ten array operations a round (numpy's cost
per operation is a fraction of torch's, which matters at batch 1, where a draw is a few hundred numbers). On other
devices they run in ``int64`` torch arithmetic: the products split the multiplier into 16-bit halves, so no
intermediate exceeds 2^49. Both give the same words (tests check both against Random123's known answers).

    streams = Streams(seed=0, rows=torch.arange(8))   # rows 0..7; a shard would pass torch.arange(16, 24)
    u = streams.uniform((8, 256))                       # draw 0: [8, 256] float64 in [0, 1)
    eps = streams.normal((8, 256, 48))                  # draw 1: float64 standard normals
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from . import validate
from .errors import ShapeError, SNRPathError, SNRTypeError

#: Philox4x32 multipliers and Weyl key increments (Random123, philox.h).
_M = (0xD2511F53, 0xCD9E8D57)
_W = (0x9E3779B9, 0xBB67AE85)
_MASK32 = 0xFFFFFFFF
_ROUNDS = 10
#: On the CPU, a draw of at most ``_AHEAD_BLOCKS`` blocks (all rows) computes the words of ``_AHEAD`` draws at once.
_AHEAD, _AHEAD_BLOCKS = 16, 4096


def philox4x32(counter: torch.Tensor, key: tuple[int, int], rounds: int = _ROUNDS) -> torch.Tensor:
    """Philox4x32-``rounds`` of ``counter`` (``[4, n]`` int64 words in ``[0, 2^32)``) under ``key`` (two 32-bit ints).

    Returns ``[4, n]`` int64 output words in ``[0, 2^32)``. With ``rounds = 10`` this is Random123's
    ``philox4x32_R(10, ctr, key)`` word for word (tests check its published known-answer vectors). On the CPU the
    rounds run in numpy (:func:`_philox_numpy`), elsewhere in torch (:func:`_philox_rounds`).
    """
    if counter.dtype != torch.int64 or counter.ndim != 2 or counter.shape[0] != 4:
        raise ShapeError(f"'counter' must be a [4, n] int64 tensor (got {counter.dtype} {list(counter.shape)})")
    keys = _round_keys(key, rounds)
    if counter.device.type == "cpu":
        words = _philox_numpy(counter.numpy().astype(np.uint64), np.array(keys, dtype=np.uint64))
        return torch.from_numpy(words.view(np.int64))
    round_keys = torch.tensor(keys, dtype=torch.int64, device=counter.device).reshape(rounds, 2, 1)
    return _philox_rounds(counter, round_keys)


def _round_keys(key: tuple[int, int], rounds: int) -> list[tuple[int, int]]:
    """The key of each round: Philox bumps both words by the Weyl constants between rounds."""
    keys, (k0, k1) = [], (int(k) & _MASK32 for k in key)
    for _ in range(rounds):
        keys.append((k0, k1))
        k0, k1 = (k0 + _W[0]) & _MASK32, (k1 + _W[1]) & _MASK32
    return keys


_M_NP = (np.uint64(_M[0]), np.uint64(_M[1]))
_MASK32_NP, _SHIFT_NP = np.uint64(_MASK32), np.uint64(32)
_UNIT_SHIFT = (np.uint64(21), np.uint64(11))


def _philox_numpy(counter: np.ndarray, round_keys: np.ndarray) -> np.ndarray:
    """The rounds on ``[4, n]`` ``uint64`` words (each below 2^32) with ``[rounds, 2]`` ``uint64`` round keys: the
    ``[4, n]`` ``uint64`` output words. ``M x < 2^64`` for 32-bit ``M`` and ``x``, so every product is exact in
    ``uint64``:
    ``c0' = hi(M1 c2) ^ c1 ^ k0``, ``c1' = lo(M1 c2)``, ``c2' = hi(M0 c0) ^ c3 ^ k1``, ``c3' = lo(M0 c0)``."""
    c0, c1, c2, c3 = counter
    for k0, k1 in round_keys:
        p0, p1 = c0 * _M_NP[0], c2 * _M_NP[1]
        c0, c1, c2, c3 = (p1 >> _SHIFT_NP) ^ c1 ^ k0, p1 & _MASK32_NP, (p0 >> _SHIFT_NP) ^ c3 ^ k1, p0 & _MASK32_NP
    return np.stack([c0, c1, c2, c3])


def _philox_rounds(counter: torch.Tensor, round_keys: torch.Tensor) -> torch.Tensor:
    """The rounds on ``[4, n]`` words, in place on a few ``[2, n]`` buffers.

    A round multiplies words 0 and 2 by ``M`` and xors words 1 and 3 in:
    ``c0' = hi(M1 c2) ^ c1 ^ k0``, ``c1' = lo(M1 c2)``, ``c2' = hi(M0 c0) ^ c3 ^ k1``, ``c3' = lo(M0 c0)``.
    The 64-bit product ``M x`` is formed from ``M``'s 16-bit halves: ``x M_lo`` and ``x M_hi`` are below 2^48, and
    ``M x = (x M_hi) 2^16 + x M_lo``, so ``hi = (x M_hi + (x M_lo >> 16)) >> 16`` and
    ``lo = ((x M_hi mod 2^16) 2^16 + x M_lo) mod 2^32``: nothing exceeds 2^49.
    """
    device = counter.device
    m_lo = torch.tensor([[_M[0] & 0xFFFF], [_M[1] & 0xFFFF]], dtype=torch.int64, device=device)
    m_hi = torch.tensor([[_M[0] >> 16], [_M[1] >> 16]], dtype=torch.int64, device=device)
    mul = counter[0::2].clone()  # (c0, c2)
    xor = counter[1::2].clone()  # (c1, c3), or (c3, c1) once swapped
    low, high, lo = torch.empty_like(mul), torch.empty_like(mul), torch.empty_like(mul)
    swapped = False
    for keys in round_keys:
        torch.mul(mul, m_lo, out=low)
        torch.mul(mul, m_hi, out=high)
        torch.bitwise_and(high, 0xFFFF, out=lo).bitwise_left_shift_(16).add_(low).bitwise_and_(_MASK32)
        high.add_(low.bitwise_right_shift_(16)).bitwise_right_shift_(16)  # now hi
        x0, x1 = (xor[1], xor[0]) if swapped else (xor[0], xor[1])
        torch.bitwise_xor(high[1], x0, out=mul[0])
        torch.bitwise_xor(high[0], x1, out=mul[1])
        mul.bitwise_xor_(keys)
        xor, lo, swapped = lo, xor, True  # (c1', c3') = (lo[1], lo[0]): keep lo as it is, read it swapped
    x0, x1 = (xor[1], xor[0]) if swapped else (xor[0], xor[1])
    return torch.stack([mul[0], x0, mul[1], x1])


def seed_key(seed: object) -> tuple[int, int]:
    """The Philox key of a seed (:func:`snrpaths.validate.seed`: an integer in ``[0, 2^64 - 1]``) as (low, high)
    32-bit words: distinct seeds give distinct keys."""
    seed = validate.seed("seed", seed)
    return seed & _MASK32, seed >> 32


class Streams:
    """One random stream per row, all drawn at once.

    ``rows`` are the *global* indices of the batch's rows (``torch.arange(B)`` for a plain run, ``offset +
    torch.arange(B)`` for a shard starting at row ``offset``). Every call of :meth:`uniform`, :meth:`normal` or
    :meth:`uniform_at` is one *draw* and advances the draw index by one, whatever it returns; element ``e`` of row
    ``r`` in draw ``k`` is a pure function of ``(seed, r, k, e)``. So two runs that make the same sequence of draws
    give every global row the same numbers, whatever the other rows are. A caller whose draws depend on data must
    make the same calls anyway (:meth:`skip` stands for a draw it does not need).

    The draw index is the only state (as with a ``torch.Generator``, a run owns its streams).
    """

    def __init__(self, seed: object, rows: torch.Tensor | Sequence[int]):
        self.key = seed_key(seed)
        self._round_keys = np.array(_round_keys(self.key, _ROUNDS), dtype=np.uint64)
        rows = torch.as_tensor(rows)
        if rows.ndim != 1 or rows.dtype not in (torch.int64, torch.int32) or (rows.numel() and int(rows.min()) < 0):
            raise SNRTypeError(f"'rows' must be a 1-D tensor of non-negative integer row indices (got {rows!r:.80})")
        if rows.numel() and int(rows.max()) >= 2**63:
            raise SNRPathError("'rows' must be below 2**63")
        self.rows = rows.to(torch.int64)
        self._on_cpu = self.rows.device.type == "cpu"  # asked on every draw: a plain attribute is cheapest
        self.draws = 0
        self._ahead: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # on the CPU: draw -> (words, uniforms)

    @classmethod
    def for_batch(cls, seed: object, batch: int, offset: int = 0, device: torch.device | str | None = None) -> Streams:
        """The streams of rows ``offset .. offset + batch - 1``."""
        return cls(seed, torch.arange(batch, device=device) + offset)

    @property
    def batch(self) -> int:
        return self.rows.shape[0]

    @property
    def device(self) -> torch.device:
        return self.rows.device

    def skip(self, draws: int = 1) -> None:
        """Advance past ``draws`` draws without computing them."""
        self.draws += draws

    def uniform(self, shape: Sequence[int]) -> torch.Tensor:
        """``shape`` (``[B, ...]``) float64 uniforms on ``[0, 1)``, multiples of ``2^-53``. Element ``e`` of a row (in
        row-major order of ``shape[1:]``) is half ``e % 2`` of Philox block ``e // 2``: words 0-1 or words 2-3."""
        per_row = self._per_row(shape)
        return _tensor(self._units((per_row + 1) // 2)[:, :per_row].reshape(tuple(shape)))

    def uniform_at(self, rows: torch.Tensor, elements: torch.Tensor, bound: int | None = None) -> torch.Tensor:
        """The numbers a :meth:`uniform` draw would give at (batch row ``rows[j]``, flat element ``elements[j]``),
        computed for those entries only: ``[n]`` float64. For draws at a few gathered positions; ``elements`` must
        lie in ``[0, 2^33)``, and below ``bound`` when one is given (e.g. the row length of the draw they index: it
        spares a reduction on the CPU); neither is checked, as that would cost a host synchronisation."""
        if rows.ndim != 1 or rows.shape != elements.shape:
            raise ShapeError(f"'rows' and 'elements' must be 1-D of one length (got {list(rows.shape)}, "
                             f"{list(elements.shape)})")
        if not rows.numel():
            self._next()
            return torch.zeros(0, dtype=torch.float64, device=self.device)
        if rows.dtype != torch.int64 or elements.dtype != torch.int64 or rows.device != self.device:
            rows, elements = rows.to(self.device, torch.int64), elements.to(self.device, torch.int64)
        if self._on_cpu:
            return torch.from_numpy(self._cpu_units_at(rows.numpy(), elements.numpy(), bound))
        draw, global_rows = self._next(), self.rows[rows]
        blocks = elements >> 1
        counter = torch.stack([blocks, torch.full_like(blocks, draw), global_rows & _MASK32, global_rows >> 32])
        return _units53(philox4x32(counter, self.key)).gather(1, (elements & 1)[:, None]).squeeze(1)

    def normal(self, shape: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``shape`` (``[B, ...]``) standard normals in ``dtype``, by Box-Muller (computed in float64).

        For float64, element pair ``(2j, 2j + 1)`` of a row is ``r (cos, sin)(theta)`` from block ``j``'s two 53-bit
        uniforms. For a narrower dtype, elements ``4j .. 4j + 3`` come from block ``j``'s four words read as 32-bit
        uniforms (twice the normals per block, as cuRAND's ``curand_normal4`` does; the radius reaches 6.66, so the
        law misses mass 3e-11 beyond it, below what float32 sampling resolves). Torch's CPU ``log``, ``cos`` and
        ``sin`` give an element the same bits wherever it sits in a tensor, which row invariance needs; ``ndtri`` does
        not, so it is not used."""
        per_row = self._per_row(shape)
        if dtype == torch.float64:
            u = _tensor(self._units((per_row + 1) // 2)).reshape(-1, 2)  # [n, 2]: (radius, angle) of each block
            radius_u, angle_u = u[:, :1], u[:, 1:]
        else:
            words = _tensor(self._words((per_row + 3) // 4)).to(torch.float64)
            u = ((words + 0.5) * 2.0**-32).T  # [n, 4] in (0, 1)
            radius_u, angle_u = u[:, 0::2], u[:, 1::2]
        radius = torch.sqrt(-2.0 * torch.log1p(-radius_u))  # 1 - u in (0, 1]: a finite log
        angle = (2 * math.pi) * angle_u
        pairs = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], -1)  # [n, k, 2]
        return pairs.reshape(self.batch, -1)[:, :per_row].reshape(tuple(shape)).to(dtype)

    # -- internals -------------------------------------------------------------------------------------------

    def _per_row(self, shape: Sequence[int]) -> int:
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != self.batch:
            raise ShapeError(f"a draw's shape must start with the streams' batch {self.batch} (got {list(shape)})")
        per_row = math.prod(shape[1:])
        if per_row > 2**33:
            raise SNRPathError(f"a draw of {per_row} numbers per row is beyond the counter's range (2**33)")
        return per_row

    def _next(self) -> int:
        draw = self.draws
        if draw >= 2**32:
            raise SNRPathError("these streams have made 2**32 draws, the most the counter can index")
        self.draws += 1
        return draw

    def _units(self, blocks: int) -> torch.Tensor | np.ndarray:
        """``[B, 2 blocks]`` float64 uniforms of blocks ``0 .. blocks - 1`` of every row, next draw (numpy on the
        CPU: its callers finish there, with fewer tensor operations)."""
        draw = self._next()
        if self._on_cpu:
            return self._cpu_draw(draw, blocks)[1][:, :2 * blocks]
        return _units53(self._device_words(draw, blocks)).reshape(self.batch, -1)

    def _words(self, blocks: int) -> torch.Tensor | np.ndarray:
        """``[4, B * blocks]`` Philox words of blocks ``0 .. blocks - 1`` of every row (row-major), next draw (numpy
        ``uint64`` on the CPU)."""
        draw = self._next()
        if self._on_cpu:
            return self._cpu_draw(draw, blocks)[0][:, :, :blocks].reshape(4, -1)
        return self._device_words(draw, blocks)

    def _device_words(self, draw: int, blocks: int) -> torch.Tensor:
        counter = torch.empty(4, self.batch, blocks, dtype=torch.int64, device=self.device)
        counter[0] = torch.arange(blocks, dtype=torch.int64, device=self.device)
        counter[1] = draw
        counter[2] = (self.rows & _MASK32)[:, None]
        counter[3] = (self.rows >> 32)[:, None]
        return philox4x32(counter.reshape(4, -1), self.key)

    def _cpu_draw(self, draw: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``draw``'s words ``[4, B, >= blocks]`` and uniforms ``[B, >= 2 blocks]`` on the CPU, from the draws
        computed ahead when they hold it (see :meth:`_compute_ahead`)."""
        ahead = self._ahead.pop(draw, None)
        return ahead if ahead is not None and ahead[0].shape[2] >= blocks else self._compute_ahead(draw, blocks)

    def _cpu_units_at(self, rows: np.ndarray, elements: np.ndarray, bound: int | None) -> np.ndarray:
        """``[n]`` the uniforms of the next draw at (batch row ``rows[j]``, element ``elements[j]``, each below
        ``bound`` when given), on the CPU."""
        draw = self._next()
        ahead = self._ahead.pop(draw, None)
        if ahead is not None and (elements.max() + 1 if bound is None else bound) <= ahead[1].shape[1]:
            return ahead[1][rows, elements]
        global_rows = self.rows.numpy()[rows].astype(np.uint64)
        counter = np.stack([(elements >> 1).astype(np.uint64), np.full(rows.shape, draw, dtype=np.uint64),
                            global_rows & _MASK32_NP, global_rows >> _SHIFT_NP])
        return _units53(_philox_numpy(counter, self._round_keys))[np.arange(rows.size), elements & 1]

    def _compute_ahead(self, draw: int, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """Words ``[4, B, blocks]`` and uniforms ``[B, 2 blocks]`` of ``draw``. A small draw also computes the next
        ``_AHEAD - 1`` draws at its size in the same pass and keeps them in ``_ahead``: a later draw of at most
        ``blocks`` blocks per row, or a :meth:`uniform_at` within them, reads its numbers there (the same numbers:
        a block's words depend on its counter only). At batch 1 that turns a few hundred numpy operations per draw
        into a few dozen."""
        k = min(_AHEAD if self.batch * blocks <= _AHEAD_BLOCKS else 1, 2**32 - draw)
        counter = np.empty((4, k, self.batch, blocks), dtype=np.uint64)
        counter[0] = np.arange(blocks, dtype=np.uint64)
        counter[1] = (draw + np.arange(k, dtype=np.uint64))[:, None, None]
        rows = self.rows.numpy().astype(np.uint64)[:, None]
        counter[2], counter[3] = rows & _MASK32_NP, rows >> _SHIFT_NP
        words = _philox_numpy(counter.reshape(4, -1), self._round_keys)
        units = np.ascontiguousarray(_units53(words)).reshape(k, self.batch, 2 * blocks)
        words = words.reshape(4, k, self.batch, blocks)
        self._ahead = {draw + j: (words[:, j], units[j]) for j in range(1, k)}
        return words[:, 0], units[0]


def _units53(words: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``[4, n]`` Philox words to ``[n, 2]`` float64 uniforms on ``[0, 1)``: the top 53 bits of words (0, 1) and of
    words (2, 3), times ``2^-53`` (exact). Numpy words give a numpy array, computed there."""
    high, low = words[0::2], words[1::2]
    if isinstance(words, np.ndarray):
        return (((high << _UNIT_SHIFT[0]) | (low >> _UNIT_SHIFT[1])).astype(np.float64) * 2.0**-53).T
    return ((high << 21) | (low >> 11)).to(torch.float64).mul_(2.0**-53).T


def _tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A CPU draw's numpy result as a tensor (sharing its memory); a tensor as it is."""
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def uniform(source: torch.Generator | Streams, shape: Sequence[int],
            device: torch.device | None = None) -> torch.Tensor:
    """``shape`` float64 uniforms on ``[0, 1)`` from a :class:`Streams` (``shape[0]`` its rows) or a generator."""
    if isinstance(source, Streams):
        return source.uniform(shape)
    return torch.rand(tuple(shape), generator=source, dtype=torch.float64, device=device or source.device)


def normal(source: torch.Generator | Streams, shape: Sequence[int], dtype: torch.dtype = torch.float64,
           device: torch.device | None = None) -> torch.Tensor:
    """``shape`` standard normals in ``dtype`` from a :class:`Streams` (``shape[0]`` its rows) or a generator."""
    if isinstance(source, Streams):
        return source.normal(shape, dtype)
    return torch.randn(tuple(shape), generator=source, dtype=dtype, device=device or source.device)
