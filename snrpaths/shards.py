"""Work shared out over the processes of a ``torchrun`` job: where this process stands (:class:`Processes`, which
the trainer uses too), and sampling in chunks gathered on rank 0 (:func:`sample_sharded`).

Sharded sampling changes no sample: chunk ``c`` runs as rows ``c * chunk ..`` of one seeded run (the runner's
``row_offset`` and per-row streams), so sample ``i`` is row ``i`` of ``sample(..., seed=seed)`` whatever the number
of samples, the chunk size and the number of processes.
"""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist

from . import validate
from .compile import Program
from .denoiser import Denoiser
from .errors import SNRPathError, ShapeError
from .path import Path
from .progress import Meter
from .runner import sample

#: Samples per runner call by default: the unit of sharding (process ``c % W`` runs chunk ``c``).
CHUNK = 16


@attrs.frozen
class Processes:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_env(cls) -> "Processes":
        """Joins the process group when ``torchrun`` set ``WORLD_SIZE > 1``: NCCL on GPUs, gloo on CPU."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and torch.cuda.device_count() > local
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def rows(self, batch: int) -> slice:
        """This process's equal share ``[rank * batch / W, (rank + 1) * batch / W)`` of a global batch."""
        if batch % self.world:
            raise SNRPathError(f"the global batch {batch} must be divisible by the number of processes {self.world}")
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over every process, in place (all-reduce); ``t`` itself with one process."""
        if self.world > 1:
            dist.all_reduce(t)
        return t


@attrs.frozen(eq=False)
class Samples:
    """``tokens`` ``[n, L]`` and ``calls`` ``[n]`` int64 (the calls each sample needed, as
    :attr:`snrpaths.Result.calls`), on the CPU, in sample order."""

    tokens: torch.Tensor
    calls: torch.Tensor


def sample_sharded(
    path: Path | Program,
    denoiser: Denoiser,
    n: int,
    *,
    seed: int = 0,
    prompt: torch.Tensor | None = None,
    processes: Processes | None = None,
    chunk: int = CHUNK,
    stop_token: int | None = None,
    progress: bool | None = False,
) -> Samples | None:
    """``n`` samples of ``path`` in chunks of ``chunk`` rows, chunk ``c`` run by process ``c % W``, gathered on rank 0.

    The guarantee: sample ``i`` is row ``i`` of ``sample(path, denoiser, batch=n, seed=seed, prompt=prompt)``, tokens
    and calls, whatever ``n``, ``chunk`` and the number of processes ``W`` (given a denoiser that computes each row's
    logits from that row alone, as the runner assumes).

    Args:
        n: how many samples (a positive integer).
        seed: as :func:`snrpaths.sample`'s.
        prompt: ``[L]`` (every sample) or ``[n, L]`` (one per sample) token ids, ``-1`` where free.
        processes: this process's place in the job; default :meth:`Processes.from_env` (one process outside
            ``torchrun``, else joins the process group). Each process runs on the device ``denoiser`` is on.
        chunk: rows per runner call (a positive integer): bounds memory, changes no sample.
        stop_token: as :func:`snrpaths.sample`'s.
        progress: a bar of the samples done on rank 0 (None: on an interactive terminal), with the run's length
            after two chunks (:class:`snrpaths.progress.Meter`).
    Returns:
        on rank 0 the :class:`Samples`; ``None`` on every other rank. ``n``, ``seed``, ``chunk`` and the prompt's shape
        are checked before any work, on every process; :func:`snrpaths.sample` checks the rest (the path, the
        denoiser, the prompt's ids) before its first call, on each process's first chunk (rank 0 always runs chunk 0).
    """
    n, seed, chunk = validate.integer("n", n), validate.seed("seed", seed), validate.integer("chunk", chunk)
    if prompt is not None:
        _check_prompt_rows(prompt, n)
    procs = Processes.from_env() if processes is None else processes
    starts = range(0, n, chunk)
    mine = {}
    with Meter(n, "sample", "sampling", progress if procs.rank == 0 else False, leave=False) as bar:
        for c in range(procs.rank, len(starts), procs.world):
            rows = slice(starts[c], min(starts[c] + chunk, n))
            rows_prompt = prompt if prompt is None or prompt.ndim == 1 else prompt[rows]
            result = sample(path, denoiser, batch=rows.stop - rows.start, seed=seed, prompt=rows_prompt,
                            row_offset=rows.start, stop_token=stop_token)
            mine[c] = (result.tokens.cpu(), result.calls.cpu())
            bar.update(min(n - rows.start, chunk * procs.world))  # every process runs a chunk meanwhile
    everyone = _gather(mine, procs)
    if everyone is None:
        return None
    tokens, calls = zip(*(everyone[c] for c in range(len(starts))))
    return Samples(torch.cat(tokens), torch.cat(calls))


def _check_prompt_rows(prompt, n: int) -> None:
    validate.token_ids("prompt", prompt, ndims=(1, 2))
    if prompt.ndim == 2 and prompt.shape[0] != n:
        raise ShapeError(f"'prompt' has {prompt.shape[0]} rows for n={n} samples; give one row per sample, or an "
                         "[L] prompt for all")


def _gather(mine: dict, procs: Processes) -> dict | None:
    """Every process's ``{chunk: value}`` merged on rank 0 (``None`` elsewhere)."""
    if procs.world == 1:
        return mine
    gathered = [None] * procs.world if procs.rank == 0 else None
    dist.gather_object(mine, gathered, dst=0)
    if procs.rank != 0:
        return None
    return {c: v for part in gathered for c, v in part.items()}
