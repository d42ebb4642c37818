"""Speed: tokens/s per sampler at equal NFE, NFE spent, runner overhead, peak memory, scaling in L and batch.

Every sampler runs on the shipped checkpoint (``--checkpoint``, default ``tiny-shakespeare-dsl``, L = 128) at one
budget T of denoiser calls (``--budget``, default 64): MDLM, the four ReMDM remasking strategies, the README's
composed path ``ramp(T/4) >> mdm(3T/4, remask='confidence')``, a continuous ramp ending in ``switch('commit')``
(``ramp(T-1)``, since the commit costs a call), the adaptive reveals (``reveal(T, ...)`` with a confidence threshold
or an entropy bound: T bounds their calls), and AR / ROAR at their own NFE = L. Measured:

* time: ``sample(path, den, batch=B, seed=...)`` under ``torch.no_grad()``, timed round-robin over the samplers (so
  load from other processes hits all alike), median of ``--repeats`` after a warm-up (the path once at batch 1 and
  two denoiser calls at batch B); samples/s = B / median, tokens/s = samples/s x L. Batch 1 is timed the same way.
* NFE: the budget is ``path.compile(L).nfe``; the runner skips a call when a step changes nothing (MDLM's cache), so
  plain ``mdm(K)`` on ``n`` free positions spends ``K (1 - (1 - 1/K)^n)`` in expectation, ``n = L`` at batch 1 and
  ``n = B L`` at batch B (each position's reveal step is uniform over the K steps); printed beside the measured mean.
* runner overhead: ``sample(mdm(T))`` against ``runner_overhead.hand_written_mdlm`` (the same rule written as a
  plain loop) on the same checkpoint, alternating, at batch 1 and a small batch (``python
  benchmarks/runner_overhead.py`` measures it at batch 1 and 8 side by side, L = 256).
* peak memory of one ``sample()`` call, above what is resident before it. On CUDA: ``torch.cuda.max_memory_allocated``
  after ``reset_peak_memory_stats``, minus ``memory_allocated`` before the call. On the CPU, each configuration is
  measured in its own child forked from this process (``multiprocessing``, fork context), so none sees another's
  allocations: the child sets one torch thread (a forked child cannot reuse its parent's OpenMP pool: it deadlocks),
  makes glibc map every block of 128 KiB or more on allocation and unmap it on free (``mallopt``; otherwise freed
  heap memory is reused or kept at random and repeated measurements scatter by +-15 MiB; with it they agree within
  0.1 MiB), warms up with the path at batch 1, returns freed heap pages to the system (``malloc_trim(0)``), resets
  its peak resident set (``/proc/self/clear_refs`` = 5), reads ``VmRSS``, runs the call, and reports
  ``VmHWM - VmRSS`` from ``/proc/self/status``: the growth of the resident set during the call (live tensors, at
  page granularity), comparable with the CUDA number. Not measured (n/a) where there is no fork or ``/proc``.
* scaling: ``mdm(T)`` (T fixed) at L in (64, 128, 256, 512) at a fixed batch and at batch in (1, 4, 16, 64) at the
  checkpoint's L; other lengths load the same weights with ``load(checkpoint, seq_len=L)`` (rotary positions work at
  any length; trained weights at a foreign length are as good as random ones for timing). Exponents come from a
  least-squares line in log-log space, with the standard error of its slope; time is fitted per ``sample()`` call and
  per denoiser call (the cache spends fewer calls when B L is small).

    python benchmarks/speed.py                 # full: T = 64, batch 32, 3 repeats (about 15 min on 2 CPU cores)
    python benchmarks/speed.py --quick         # T = 8, batch 4, smaller sweeps (under a minute)
    python benchmarks/speed.py --device cuda   # on a GPU (the default when one is available)
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import math
import multiprocessing
import pathlib
import statistics
import traceback
from collections.abc import Callable

import torch
from snrpaths.backends import load
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._samplers import ADAPTIVE, BUILTIN, OWN_NFE
from snrpaths.benchmarks._timing import describe_device, round_robin, sync
from snrpaths.benchmarks.runner_overhead import hand_written_mdlm

from snrpaths import parse_path, sample

#: sampler name -> path expression for a budget of ``T`` calls: the built-ins and two continuous-start paths.
SAMPLERS: dict[str, Callable[[int], str]] = {
    **{name: make for name, make in BUILTIN.items() if name not in OWN_NFE},
    "ramp >> ReMDM-conf": lambda T: f"ramp({T // 4}) >> mdm({T - T // 4}, remask='confidence')",
    "ramp >> commit": lambda T: f"ramp({T - 1}) >> switch('commit')",
    **ADAPTIVE,
    **{name: BUILTIN[name] for name in OWN_NFE},  # last: they run at their own NFE = L
}
CHILD_TIMEOUT_S = 900


def sizes(quick: bool, seq_len: int) -> dict:
    """Batch sizes and sweeps; ``seq_len`` is the checkpoint's (the batch sweep runs there)."""
    if quick:
        return {"batch": 4, "repeats": 2, "repeats_1": 3, "overhead_batch": 4, "lengths": (32, 64),
                "length_batch": 4, "batches": (1, 4), "batch_length": 64}
    return {"batch": 32, "repeats": 3, "repeats_1": 5, "overhead_batch": 8, "lengths": (64, 128, 256, 512),
            "length_batch": 8, "batches": (1, 4, 16, 64), "batch_length": seq_len}


# -- timing -------------------------------------------------------------------------------------------------------


def _sample_nfe(den, program, batch: int, seed: int) -> int:
    with torch.no_grad():  # not inference_mode: DSLDenoiser.table reads its anchors' version counter
        return sample(program, den, batch=batch, seed=seed).nfe


def _warm_up(den, program, batch: int, seed: int, device: torch.device) -> None:
    """Every code path of the path once (batch 1), and the denoiser at the timed shape (two calls at ``batch``)."""
    _sample_nfe(den, program, 1, seed)
    _sample_nfe(den, parse_path("mdm(2)").compile(den.seq_len), batch, seed)
    sync(device)


# -- peak memory --------------------------------------------------------------------------------------------------


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    raise OSError(f"/proc/self/status has no {key}")


#: glibc ``mallopt`` parameters, and the value given to both: every block of 128 KiB or more is mapped on
#: allocation and unmapped on free (the fixed threshold turns off glibc's dynamic raise), and the heap's top is
#: trimmed past 128 KiB, so the resident set follows live memory instead of what the heap happens to keep.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, MALLOPT_BYTES = -1, -3, 128 * 1024


def _glibc():
    name = ctypes.util.find_library("c")
    lib = ctypes.CDLL(name) if name else None
    return lib if lib is not None and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None


def _memory_child(conn, den, program, batch: int, seed: int) -> None:
    try:
        torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork: more threads deadlock
        libc = _glibc()
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, MALLOPT_BYTES)
            libc.mallopt(M_TRIM_THRESHOLD, MALLOPT_BYTES)
        with torch.no_grad():
            sample(program, den, batch=1, seed=seed)  # warm-up: lazily loaded kernels, thread-local buffers
        if libc is not None:
            libc.malloc_trim(0)  # freed heap pages back to the system: the call must fault in what it uses
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set (VmHWM) to the current one
        before = _status_bytes("VmRSS")
        with torch.no_grad():
            sample(program, den, batch=batch, seed=seed)
        conn.send(("ok", _status_bytes("VmHWM") - before))
    except Exception:  # noqa: BLE001 -- any failure goes to the parent, which raises it with this traceback
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def peak_memory(den, program, batch: int, seed: int, device: torch.device) -> int | None:
    """Bytes one ``sample()`` call adds at its peak to what is resident before it (see the module docstring); None
    where the CPU method cannot run (no fork, or no ``/proc/self/clear_refs``: not Linux)."""
    if device.type == "cuda":
        _sample_nfe(den, program, 1, seed)
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _sample_nfe(den, program, batch, seed)
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    if "fork" not in multiprocessing.get_all_start_methods() or not pathlib.Path("/proc/self/clear_refs").exists():
        return None
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_memory_child, args=(send, den, program, batch, seed), daemon=True)
    child.start()
    send.close()
    try:
        if not recv.poll(CHILD_TIMEOUT_S):
            raise RuntimeError(f"the memory child for {program!r} at batch {batch} gave no answer in "
                               f"{CHILD_TIMEOUT_S} s")
        status, value = recv.recv()
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
    if status != "ok":
        raise RuntimeError(f"the memory child for batch {batch} failed:\n{value}")
    return value


# -- fits -----------------------------------------------------------------------------------------------------------


def fit_exponent(x: list[float], y: list[float]) -> dict:
    """Least-squares ``log y = a log x + c``: the slope ``a``, its standard error (None with two points) and ``c``."""
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    n, mx, my = len(lx), statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx
    intercept = my - slope * mx
    ssr = sum((b - intercept - slope * a) ** 2 for a, b in zip(lx, ly))
    se = math.sqrt(ssr / (n - 2) / sxx) if n > 2 else None
    return {"exponent": slope, "se": se, "intercept": intercept, "points": n}


def expected_mdm_nfe(steps: int, free: int) -> float:
    """Expected calls of plain ``mdm(steps)`` (linear clock) on ``free`` positions: non-empty steps."""
    return steps * (1 - (1 - 1 / steps) ** free)


# -- the study ------------------------------------------------------------------------------------------------------


def run(args) -> dict:
    device = torch.device(args.device)
    den = load(args.checkpoint, device=device)
    L = den.seq_len
    s = sizes(args.quick, L)
    s["batch"] = args.batch or s["batch"]
    B, T, seed = s["batch"], args.budget or (8 if args.quick else 64), args.seed
    dens = {L: den}
    for length in {*s["lengths"], s["batch_length"]} - {L}:
        dens[length] = load(args.checkpoint, seq_len=length, device=device)
    info = {"device": describe_device(device), "device_type": device.type,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "checkpoint": str(args.checkpoint), "seq_len": L,
            "vocab_size": den.vocab_size, "parameters": sum(p.numel() for p in den.parameters()),
            "budget": T, "seed": seed, "quick": args.quick, **s,
            "memory_method": "cuda max_memory_allocated" if device.type == "cuda" else
            "forked child, 1 thread, glibc mmap threshold 128 KiB: VmHWM - VmRSS after a warm-up, malloc_trim and "
            "clear_refs"}
    print(f"speed: {info['device']}, torch {info['torch']}, {args.checkpoint} (L={L}), T={T}, batch {B}", flush=True)

    samplers = []
    for name, make in SAMPLERS.items():
        path = parse_path(make(T))
        samplers.append({"name": name, "path": repr(path), "seq_len": L, "batch": B, "program": path.compile(L)})
    # Scaling of mdm(T): in L at a fixed batch, in batch at a fixed L.
    scaling = [{"sweep": sweep, "seq_len": length, "batch": batch, "path": f"mdm({T})",
                "program": parse_path(f"mdm({T})").compile(length)}
               for sweep, length, batch in [("L", length, s["length_batch"]) for length in s["lengths"]]
               + [("batch", s["batch_length"], b) for b in s["batches"]]]

    # Peak memory first, every child forked from a parent that has sampled nothing yet (the heap a child inherits
    # holds no freed blocks a call could reuse without growing its resident set).
    for row in samplers + scaling:
        row["peak_bytes"] = peak_memory(dens[row["seq_len"]], row["program"], row["batch"], seed, device)
        print(f"  memory {row.get('name', row['path'])} L={row['seq_len']} batch {row['batch']}: "
              f"{_mib(row['peak_bytes'])} MiB", flush=True)

    # Samplers at equal budget: time at batch B and at batch 1, round-robin.
    for row in samplers:
        _warm_up(den, row["program"], B, seed, device)
    for batch, repeats in ((B, s["repeats"]), (1, s["repeats_1"])):
        print(f"timing at batch {batch}", flush=True)
        jobs = {row["name"]: (lambda sd, p=row["program"], b=batch: _sample_nfe(den, p, b, sd)) for row in samplers}
        for name, times in round_robin(jobs, repeats, seed, device).items():
            row = next(r for r in samplers if r["name"] == name)
            row[f"batch_{batch}" if batch != B else "batch_B"] = times

    # Runner overhead on the same checkpoint, at batch 1 and a small batch, alternating (CPU: the loop is CPU-only).
    cpu_den = den if device.type == "cpu" else load(args.checkpoint)
    mdm = parse_path(f"mdm({T})").compile(L)
    overhead_batches = sorted({1, s["overhead_batch"]})
    jobs = {}
    for b in overhead_batches:
        jobs[("hand-written", b)] = lambda sd, b=b: hand_written_mdlm(cpu_den, b, T, sd)[1]
        jobs[("snrpaths.sample", b)] = lambda sd, b=b: _sample_nfe(cpu_den, mdm, b, sd)
    for b in overhead_batches:
        hand_written_mdlm(cpu_den, b, 2, seed)
        _sample_nfe(cpu_den, parse_path("mdm(2)").compile(L), b, seed)
    print("runner overhead", flush=True)
    overhead_times = round_robin(jobs, s["repeats_1"], seed)
    overhead = [{"loop": loop, "batch": b, **overhead_times[(loop, b)]} for (loop, b) in jobs]

    # Scaling: time.
    for row in scaling:
        _warm_up(dens[row["seq_len"]], row["program"], row["batch"], seed, device)
    print("timing the scaling sweeps", flush=True)
    jobs = {(r["sweep"], r["seq_len"], r["batch"]):
            (lambda sd, r=r: _sample_nfe(dens[r["seq_len"]], r["program"], r["batch"], sd)) for r in scaling}
    for row, times in zip(scaling, round_robin(jobs, s["repeats"], seed, device).values()):
        row.update(times)
        row["median_s"] = statistics.median(row["seconds"])
        row["s_per_call"] = statistics.median(t / n for t, n in zip(row["seconds"], row["nfe"]))
    fits = {}
    for sweep, key in (("L", "seq_len"), ("batch", "batch")):
        rows = [r for r in scaling if r["sweep"] == sweep]
        x = [r[key] for r in rows]
        memory = [r["peak_bytes"] for r in rows]
        fits[sweep] = {"time": fit_exponent(x, [r["median_s"] for r in rows]),
                       "time_per_call": fit_exponent(x, [r["s_per_call"] for r in rows]),
                       "memory": None if None in memory else fit_exponent(x, [max(m, 1) for m in memory])}

    for row in samplers + scaling:
        row["budget"] = row.pop("program").nfe  # the Program itself is not JSON
    return {**info, "samplers": samplers, "overhead": overhead, "scaling": scaling, "fits": fits}


# -- report ---------------------------------------------------------------------------------------------------------


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f}"


def report(r: dict) -> str:
    B, T, L = r["batch"], r["budget"], r["seq_len"]
    med = statistics.median
    header = (f"Speed of every sampler at budget T = {T}: `{r['checkpoint']}` ({r['parameters'] / 1e6:.2f} M "
              f"parameters, L = {L}, V = {r['vocab_size']}), batch B = {B}, seed {r['seed']}; device: {r['device']}, "
              f"torch {r['torch']}; median of {r['repeats']} runs at batch B and {r['repeats_1']} at batch 1 after a "
              f"warm-up, round-robin over the samplers; peak memory: {r['memory_method']}")
    columns = (f"| sampler | path | NFE budget | NFE spent, batch 1 (expected) | NFE spent, batch {B} (expected) | "
               f"s per sample() at batch {B} | samples/s | tokens/s | samples/s at batch 1 | ms per call at batch {B} "
               f"| peak MiB at batch {B} |")
    lines = [header, "", columns, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["samplers"]:
        tb, t1 = med(row["batch_B"]["seconds"]), med(row["batch_1"]["seconds"])
        n1, nb = statistics.fmean(row["batch_1"]["nfe"]), statistics.fmean(row["batch_B"]["nfe"])
        if row["name"] == "MDLM":
            e1, eb = f" ({expected_mdm_nfe(T, L):.1f})", f" ({expected_mdm_nfe(T, B * L):.1f})"
        else:
            e1 = eb = ""
        mark = " (own NFE = L)" if row["name"] in OWN_NFE else ""
        lines.append(f"| {row['name']}{mark} | `{row['path']}` | {row['budget']} | {n1:.1f}{e1} | {nb:.1f}{eb} | "
                     f"{tb:.3f} | {B / tb:.2f} | {B * L / tb:,.0f} | {1 / t1:.2f} | {tb / nb * 1e3:.1f} | "
                     f"{_mib(row['peak_bytes'])} |")
    title = (f"Runner overhead: `sample(mdm({T}))` against `runner_overhead.hand_written_mdlm` on the same "
             f"checkpoint, alternating, median of {r['repeats_1']} (CPU; batches 1 and 8, L = 256 in "
             "`runner_overhead.md`)")
    columns = ("| batch | hand-written s | snrpaths.sample s | NFE (hand / sample) | ms per call (hand / sample) | "
               "ratio sample / hand |")
    lines += ["", title, "", columns, "|---:|---:|---:|---:|---:|---:|"]
    for b in sorted({o["batch"] for o in r["overhead"]}):
        hand, ours = (next(o for o in r["overhead"] if o["batch"] == b and o["loop"] == n)
                      for n in ("hand-written", "snrpaths.sample"))
        th, to = med(hand["seconds"]), med(ours["seconds"])
        nh, no = statistics.fmean(hand["nfe"]), statistics.fmean(ours["nfe"])
        lines.append(f"| {b} | {th:.3f} | {to:.3f} | {nh:.1f} / {no:.1f} | {th / nh * 1e3:.2f} / "
                     f"{to / no * 1e3:.2f} | {to / th:.3f} |")
    title = (f"Scaling of `mdm({T})`: in L at batch {r['length_batch']}, in batch at L = {r['batch_length']}; "
             f"median of {r['repeats']}")
    lines += ["", title, "",
              "| sweep | L | batch | NFE spent | s per sample() | ms per call | tokens/s | peak MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["scaling"]:
        lines.append(f"| {row['sweep']} | {row['seq_len']} | {row['batch']} | {statistics.fmean(row['nfe']):.1f} | "
                     f"{row['median_s']:.3f} | {row['s_per_call'] * 1e3:.2f} | "
                     f"{row['batch'] * row['seq_len'] / row['median_s']:,.0f} | {_mib(row['peak_bytes'])} |")
    lines += ["", "Fitted exponents (least squares in log-log, ± 1 standard error of the slope)", "",
              "| quantity | in L | in batch |", "|---|---:|---:|"]
    for quantity, what in (("time", "time per sample()"), ("time_per_call", "time per denoiser call"),
                           ("memory", "peak memory")):
        lines.append(f"| {what} | " + " | ".join(_exponent(r["fits"][sweep][quantity]) for sweep in ("L", "batch"))
                     + " |")
    return "\n".join(lines)


def _exponent(fit: dict | None) -> str:
    if fit is None:
        return "n/a"
    return f"{fit['exponent']:.2f}" + ("" if fit["se"] is None else f" ± {fit['se']:.2f}")


def plot(r: dict, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, lines) = plt.subplots(1, 2, figsize=(13, 4.6), constrained_layout=True,
                                      gridspec_kw={"width_ratios": [1.15, 1]})
    B, L = r["batch"], r["seq_len"]
    names = [f"{row['path']}" + ("  [NFE = L]" if row["name"] in OWN_NFE else "") for row in r["samplers"]]
    rates = [B * L / statistics.median(row["batch_B"]["seconds"]) for row in r["samplers"]]
    colors = ["#bbbbbb" if row["name"] in OWN_NFE else f"C{i}" for i, row in enumerate(r["samplers"])]
    y = range(len(names))
    bars.barh(y, rates, color=colors)
    for i, rate in enumerate(rates):
        bars.text(rate, i, f" {rate:,.0f}", va="center", fontsize=8)
    bars.set_yticks(list(y), names, fontsize=8)
    bars.invert_yaxis()
    bars.set_xlim(0, max(rates) * 1.2)
    bars.set_xlabel(f"tokens / s at batch {B}")
    bars.set_title(f"budget T = {r['budget']}, L = {L}; {r['device']}", fontsize=9)

    styles = {("L", "median_s"): ("C0", "-o", "time vs L"), ("batch", "median_s"): ("C1", "-s", "time vs batch"),
              ("L", "peak_bytes"): ("C0", "--o", "memory vs L"), ("batch", "peak_bytes"): ("C1", "--s", "memory vs batch")}
    for (sweep, key), (color, fmt, label) in styles.items():
        rows = [row for row in r["scaling"] if row["sweep"] == sweep]
        fit = r["fits"][sweep]["time" if key == "median_s" else "memory"]
        if fit is None:
            continue
        x0 = rows[0]["seq_len" if sweep == "L" else "batch"]
        xs = [row["seq_len" if sweep == "L" else "batch"] / x0 for row in rows]
        floor = 1 if key == "peak_bytes" else 0  # a call can add no whole page: keep the log finite
        ys = [max(row[key], floor) / max(rows[0][key], floor) for row in rows]
        lines.plot(xs, ys, fmt, color=color, ms=4, label=f"{label}: slope {_exponent(fit)}")
    top = max(max(row["seq_len"] for row in r["scaling"] if row["sweep"] == "L") / r["lengths"][0],
              max(r["batches"]) / r["batches"][0])
    lines.plot([1, top], [1, top], ":", color="grey", lw=1, label="slope 1")
    lines.set_xscale("log", base=2)
    lines.set_yscale("log", base=2)
    lines.set_xlabel("L or batch, relative to the smallest")
    lines.set_ylabel("relative to the smallest")
    lines.set_title(f"mdm({r['budget']}): L at batch {r['length_batch']}, batch at L = {r['batch_length']}",
                    fontsize=9)
    lines.legend(fontsize=8)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 8, batch 4, smaller sweeps (under a minute)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--checkpoint", default="tiny-shakespeare-dsl", help="a name or folder snrpaths.backends.load reads")
    parser.add_argument("--budget", type=int, default=None, help="NFE budget T (default 64, quick 8)")
    parser.add_argument("--batch", type=int, default=None, help="batch B of the sampler table (default 32, quick 4)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to run (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on the CPU (default 1; 0 keeps torch's default, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    text = report(result)
    print(text)
    stem = "speed_quick" if args.quick else "speed"
    write(args.out, stem, result, text, lambda path: plot(result, path))


if __name__ == "__main__":
    main()
