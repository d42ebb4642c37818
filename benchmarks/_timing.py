"""How every study times things: round-robin over its variants, device-synchronised, on a described device."""

from __future__ import annotations

import platform
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
                device: torch.device | None = None, warmup: int = 0, log: bool = True) -> dict:
    """Every job once per round, ``warmup + repeats`` rounds, so load from other processes hits all alike.

    ``jobs``: key -> ``run(seed)`` returning the denoiser calls it spent (an int; anything else is recorded as
    None); round ``r`` (0-based, warm-up
    rounds included) passes ``seed + 1 + r``. Each run is timed between device synchronisations. Returns key ->
    ``{"seconds": [...], "nfe": [...]}`` over the ``repeats`` timed rounds.
    """
    out = {key: {"seconds": [], "nfe": []} for key in jobs}
    for r in range(warmup + repeats):
        for key, run in jobs.items():
            sync(device)
            start = time.perf_counter()
            nfe = run(seed + 1 + r)
            sync(device)
            if r >= warmup:
                out[key]["seconds"].append(time.perf_counter() - start)
                out[key]["nfe"].append(nfe if isinstance(nfe, int) else None)
        if log and r >= warmup:
            print(f"  round {r - warmup + 1}/{repeats}: "
                  + ", ".join(f"{_label(k)} {v['seconds'][-1]:.2f} s" for k, v in out.items()), flush=True)
    return out


def _label(key: Hashable) -> str:
    return " ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)
