"""Forward throughput of the DSL DiT, with and without the converter, and the converter's share of a forward.

At V = 50258 real tokens, d = 48, hidden 768, L = 1024 (MDLM's OpenWebText sizes), it times:

* ``mdlm``: the backbone on token ids, i.e. MDLM's forward (no converter);
* ``endpoint``: the DSL denoiser on an endpoint state (half clean, half [MASK]): the converter only gathers rows;
* ``finite``: the DSL denoiser with every position at a finite SNR: the dense (V + 1)-way mixture everywhere;
* ``converter``: the converter alone on that finite state.

The converter share is ``converter / finite`` (issue 5's target: under 15%). The dense mixture costs about
``2 (V + 1)(d + hidden)`` FLOPs per token, as much as the output head, so its share falls with the number of blocks;
the FLOP share printed beside the measurement says what to expect on any device.

    python benchmarks/dit_throughput.py --quick        # one timed forward per variant
    python benchmarks/dit_throughput.py --device cuda --dtype bfloat16
"""

import argparse
import math
import pathlib
import platform
import time

import torch
from snrpaths.benchmarks._results import RESULTS, write

from snrpaths import SNRState
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser


def parse(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed forward per variant")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for the JSON, table and plot")
    p.add_argument("--vocab", type=int, default=50258, help="V real tokens (the embedding has V + 1 rows)")
    p.add_argument("--anchor-dim", type=int, default=48)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--cond-dim", type=int, default=128)
    p.add_argument("--n-blocks", type=int, default=12, help="12 is MDLM-OWT; a forward takes seconds on 2 CPU cores")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16 = autocast")
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def timed(fns, device, warmup, reps):
    """Seconds per run of each of ``fns``, timed round-robin (so load from other processes hits all alike)."""
    times = {name: [] for name in fns}
    for rep in range(warmup + reps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def median(xs):
    return sorted(xs)[len(xs) // 2]


def flop_share(a) -> float:
    """Converter FLOPs over a finite-SNR forward's FLOPs (matmuls and attention only)."""
    V1, H, L = a.vocab + 1, a.hidden, a.seq_len
    converter = 2 * V1 * (a.anchor_dim + H)
    backbone = a.n_blocks * (2 * 12 * H * H + 4 * L * H) + 2 * H * a.vocab
    return converter / (converter + backbone)


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    warmup, reps = (1, 1) if a.quick else (1, a.reps)
    device = torch.device(a.device)
    config = DiTConfig(vocab_size=a.vocab, seq_len=a.seq_len, hidden=a.hidden, cond_dim=a.cond_dim,
                       n_blocks=a.n_blocks, n_heads=a.heads)
    t0 = time.perf_counter()
    den = DSLDenoiser.build(config, ConverterConfig(anchor_dim=a.anchor_dim)).to(device).eval()
    build_s = time.perf_counter() - t0

    g = torch.Generator().manual_seed(0)
    B, L = a.batch, a.seq_len
    tokens = torch.randint(0, a.vocab, (B, L), generator=g)
    # Finite SNRs as in DSL's continuous training branch: log-normal (mu 1.4, sigma 0.55), capped at 40.
    finite_gamma = (1.4 + 0.55 * torch.randn(B, L, generator=g)).exp().clamp(max=40)
    endpoint_gamma = torch.where(torch.rand(B, L, generator=g) < 0.5, math.inf, 0.0)
    table = den.table.to("cpu")
    finite = SNRState.from_tokens(tokens, finite_gamma, table, g)
    endpoint = SNRState.from_tokens(tokens, endpoint_gamma, table, g)
    finite, endpoint = (SNRState(*(getattr(s, f).to(device) for f in ("gamma", "z", "tokens", "fixed", "confidence")))
                        for s in (finite, endpoint))
    ids = torch.where(torch.isinf(endpoint.gamma), endpoint.tokens, a.vocab).to(device)
    E = den.backbone.vocab_embed.embedding
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.dtype == "bfloat16")

    variants = {
        "mdlm": ("backbone on token ids (MDLM, no converter)", lambda: den.backbone(den.backbone.vocab_embed(ids))),
        "endpoint": ("DSL, endpoint state (converter gathers rows)", lambda: den.logits(endpoint)),
        "finite": ("DSL, every position at finite SNR", lambda: den.logits(finite)),
        "converter": ("converter alone, finite state", lambda: den.converter(finite.z, finite.gamma, finite.tokens, E)),
    }
    with torch.no_grad(), autocast:
        times = timed({name: fn for name, (_, fn) in variants.items()}, device, warmup, reps)
    results = {name: {"what": what, "seconds": median(times[name]), "tokens_per_s": B * L / median(times[name]),
                      "all_seconds": times[name]} for name, (what, _) in variants.items()}
    # Converter and finite forward ran back to back in each round: their ratio is steadier than a ratio of medians.
    share = median([c / f for c, f in zip(times["converter"], times["finite"])])
    overhead = median([f / m - 1 for f, m in zip(times["finite"], times["mdlm"])])

    summary = {
        "device": describe_device(device), "torch": torch.__version__, "dtype": a.dtype, "quick": a.quick,
        "warmup": warmup, "reps": reps, "build_seconds": build_s,
        "sizes": {"vocab": a.vocab, "anchor_dim": a.anchor_dim, "hidden": a.hidden, "heads": a.heads,
                  "cond_dim": a.cond_dim, "n_blocks": a.n_blocks, "seq_len": L, "batch": B,
                  "parameters": sum(p.numel() for p in den.parameters())},
        "results": results, "converter_share": share, "finite_over_mdlm": overhead, "flop_share": flop_share(a),
        "target_share": 0.15,
    }
    lines = [f"device: {summary['device']} | torch {torch.__version__} | {a.dtype} | "
             f"V={a.vocab} d={a.anchor_dim} hidden={a.hidden} heads={a.heads} n_blocks={a.n_blocks} L={L} batch={B} | "
             f"{summary['sizes']['parameters'] / 1e6:.1f} M parameters | median of {reps} after {warmup} warm-up\n",
             "| variant | what runs | ms / forward | tokens / s |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {r['what']} | {1e3 * r['seconds']:.0f} | {r['tokens_per_s']:,.0f} |"
              for name, r in results.items()]
    lines.append(f"\nconverter share of a finite-SNR forward: {100 * share:.1f}% (target < 15%; FLOP estimate "
                 f"{100 * flop_share(a):.1f}%); finite-SNR forward vs MDLM forward: {100 * overhead:+.1f}%")
    text = "\n".join(lines)
    print(text)
    write(a.out, "dit_throughput_quick" if a.quick else "dit_throughput", summary, text,
          lambda path: plot(summary, path))


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["mdlm", "endpoint", "finite"]
    rates = [summary["results"][n]["tokens_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh(names, rates, color=["#888888", "#4C72B0", "#DD8452"])
    for y, r in enumerate(rates):
        ax.text(r, y, f" {r:,.0f}", va="center")
    s = summary["sizes"]
    ax.set_xlabel("tokens / s (forward)")
    ax.set_xlim(0, max(rates) * 1.25)
    ax.set_title(f"DSL DiT, {s['n_blocks']} blocks, hidden {s['hidden']}, V {s['vocab']}, L {s['seq_len']}\n"
                 f"{summary['device']}, {summary['dtype']}: converter share "
                 f"{100 * summary['converter_share']:.1f}%", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
