"""The runner's side of cached block decoding (``blocks(..., cache=...)``; the denoiser's side is
:class:`snrpaths.denoiser.BlockCaching`): per row, the cache of its last refresh, the block that cache belongs to
and the calls the row made since.

A call under a :class:`~snrpaths.compile.CacheScope` splits its rows in two. A row whose cache belongs to another
block, or that made ``scope.refresh`` calls since its last refresh, refreshes: a full call, whose logits are the
uncached ones bit for bit, storing its cache. Every other row computes only the scope's active positions from its
cache and keeps the logits of its own last call at the others. So a row's logits depend on its own calls only (its
samples do not depend on the batch, as the runner promises), and ``refresh=1`` is the uncached run, bit for bit.
"""

from __future__ import annotations

import torch

from .compile import CacheScope
from .errors import ShapeError
from .state import SNRState


class RowCaches:
    """The caches of a run's ``batch`` rows, kept on ``device``; :meth:`logits` serves one call."""

    def __init__(self, batch: int, device: torch.device):
        self.cache: torch.Tensor | None = None  # [B, ...] each row's cache from its last refresh
        self.block = torch.full((batch,), -1, dtype=torch.int64, device=device)  # the block it is for (-1: none)
        self.since = torch.zeros(batch, dtype=torch.int64, device=device)  # the row's calls since that refresh
        self.active: dict[tuple[int, ...], torch.Tensor] = {}

    def logits(self, denoiser, state: SNRState, rows: torch.Tensor, scope: CacheScope,
               last: torch.Tensor | None) -> torch.Tensor:
        """``[n, L, V]`` logits of ``state``, the ``n`` rows of the run where ``rows`` (``[B]`` bool) is true,
        under ``scope``; ``last`` ``[B, L, V]`` each row's logits from its own last call (None before the first)."""
        where = rows.nonzero().squeeze(1)  # [n] each call row's row in the run
        stale = self.block[where] != scope.block
        if scope.refresh is not None:
            stale = stale | (self.since[where] >= scope.refresh)
        active = self._index(scope.active, where.device)
        n_stale = int(stale.sum())
        if n_stale == len(where):
            return self._refresh(denoiser, state, where, active, scope.block)
        if n_stale == 0:
            return self._cached(denoiser, state, where, active, last)
        fresh = self._refresh(denoiser, state.rows(stale), where[stale], active, scope.block)
        reused = self._cached(denoiser, state.rows(~stale), where[~stale], active, last)
        return fresh.new_empty(fresh.shape[0] + reused.shape[0], *fresh.shape[1:]).index_put_(
            (stale,), fresh).index_put_((~stale,), reused)

    def _refresh(self, denoiser, state: SNRState, where: torch.Tensor, active: torch.Tensor,
                 block: int) -> torch.Tensor:
        logits, cache = denoiser.refresh_cache(state, active)
        if not isinstance(cache, torch.Tensor) or cache.ndim == 0 or cache.shape[0] != state.batch:
            got = list(cache.shape) if isinstance(cache, torch.Tensor) else type(cache).__name__
            raise ShapeError(f"refresh_cache returned a cache of shape {got}; its first dimension must be the "
                             f"{state.batch} rows of the call")
        if len(where) == len(self.block):
            self.cache = cache
        else:
            if self.cache is None or self.cache.shape[1:] != cache.shape[1:] or self.cache.dtype != cache.dtype:
                self.cache = cache.new_zeros(len(self.block), *cache.shape[1:])
            self.cache[where] = cache
        self.block[where] = block
        self.since[where] = 1
        return logits

    def _cached(self, denoiser, state: SNRState, where: torch.Tensor, active: torch.Tensor,
                last: torch.Tensor) -> torch.Tensor:
        cache = self.cache if len(where) == len(self.block) else self.cache[where]
        new = denoiser.cached_logits(state, active, cache)
        expected = (state.batch, len(active), last.shape[-1])
        if not isinstance(new, torch.Tensor) or tuple(new.shape) != expected:
            got = list(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ShapeError(f"cached_logits returned logits of shape {got}; expected {list(expected)} (rows, active "
                             "positions, vocabulary)")
        self.since[where] += 1
        return last[where].index_copy_(1, active, new.to(last.dtype))

    def _index(self, positions: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if positions not in self.active:
            self.active[positions] = torch.tensor(positions, dtype=torch.int64, device=device)
        return self.active[positions]
