"""How every study times things: round-robin over its variants, device-synchronised, on a described device."""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Hashable

import torch


def describe_device(device: torch.device) -> str:
    """``'NVIDIA H100 ...'`` on CUDA, else ``'CPU <model name>, N thread(s)'`` (the threads torch will use)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {cpu}, {threads} thread{'s' if threads != 1 else ''}"


def sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(jobs: dict[Hashable, Callable[[int], object]], repeats: int, seed: int = 0,
                device: torch.device | None = None, warmup: int = 0, log: bool = True, alternate: bool = False) -> dict:
    """Every job once per round, ``warmup + repeats`` rounds, so load from other processes hits all alike.

    ``jobs``: key -> ``run(seed)`` returning the denoiser calls it spent (an int; anything else is recorded as
    None), or a dict of such counts (``{"nfe": 64, "row_calls": 512}``, each recorded under its own name); round
    ``r`` (0-based, warm-up rounds included) passes ``seed + 1 + r``. Each run is timed between device
    synchronisations. ``alternate`` runs odd rounds in reverse order, so that no job always follows the same one.
    Returns key -> ``{"seconds": [...], "cpu_seconds": [...], "nfe": [...], ...}`` over the ``repeats`` timed rounds:
    wall time, and this process's CPU time (which, on a shared machine, leaves out the time spent waiting for other
    processes; it does not count time a device computes).
    """
    out = {key: {"seconds": [], "cpu_seconds": [], "nfe": []} for key in jobs}
    for r in range(warmup + repeats):
        order = list(jobs.items())
        for key, run in reversed(order) if alternate and r % 2 else order:
            sync(device)
            start, cpu = time.perf_counter(), time.process_time()
            counts = run(seed + 1 + r)
            sync(device)
            if r >= warmup:
                out[key]["seconds"].append(time.perf_counter() - start)
                out[key]["cpu_seconds"].append(time.process_time() - cpu)
                for name, count in (counts if isinstance(counts, dict) else {"nfe": counts}).items():
                    out[key].setdefault(name, []).append(count if isinstance(count, int) else None)
        if log and r >= warmup:
            print(f"  round {r - warmup + 1}/{repeats}: "
                  + ", ".join(f"{_label(k)} {v['seconds'][-1]:.2f} s" for k, v in out.items()), flush=True)
    return out


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(median, low, high)``: the median of ``values`` and a distribution-free interval for it, the order statistics
    ``x_(k)`` and ``x_(n + 1 - k)`` with the largest ``k`` whose coverage ``1 - 2 P(Binomial(n, 1/2) < k)`` is at least
    ``level`` (``n = 9`` gives ``k = 2``, 96.1%); with too few values for ``level`` the interval is the range."""
    xs, n = sorted(values), len(values)
    k = 1
    while k < n // 2 + 1 and 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n >= level:
        k += 1
    return statistics.median(xs), xs[k - 1], xs[n - k]


def _label(key: Hashable) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
