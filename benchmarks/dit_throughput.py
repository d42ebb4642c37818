"""Forward throughput of the DSL DiT, with and without the converter, and the converter's share of a forward.

At V = 50258 real tokens, d = 48, hidden 768, L = 1024 (MDLM's OpenWebText sizes), it times, round-robin:

* ``mdlm``: the backbone on token ids, i.e. MDLM's forward (no converter);
* ``endpoint``: the DSL denoiser on an endpoint state (half clean, half [MASK]): the converter only gathers rows;
* ``finite``: the DSL denoiser with every position at a finite SNR (log-normal, DSL's training draw), dense converter
  (``sparse_k = 0``: the (V + 1)-way product everywhere); ``converter``: that converter alone on that state;
* ``finite_sparse`` / ``converter_sparse``: the same with the certified sparse converter (``sparse_k``, ``sparse_tol``;
  positions whose dropped mass exceeds the tolerance fall back to the dense product);
* a sweep over fixed SNRs (``--snrs``): the dense and the sparse converter alone, as initialised, and the sparse one
  with Bayes-calibrated parameters (``beta = 1``, ``b = 0``, ``b_mask = -30``: the exact posterior for a uniform
  prior over the anchors, the sharpest a trained converter could be); its share of a forward is
  ``converter / (converter + backbone)``, the backbone timed as ``mdlm`` in the same round (the log-normal rows check
  this decomposition against the measured forwards).

The converter share is ``converter / finite`` (issue 5's target: under 15%). The dense mixture costs about
``2 (V + 1)(d + hidden)`` FLOPs per token, as much as the output head, so its share falls with the number of blocks;
the FLOP share printed beside the measurement says what to expect on any device. The sparse mixture's benefit depends
on how concentrated the posterior is: freshly initialised anchors in d = 48 with V = 50258 are poorly separated and
``p([MASK])`` starts near 0.99, so at DSL's training SNRs (gamma <= 40) nearly every position falls back.

    python benchmarks/dit_throughput.py --quick        # one timed round
    python benchmarks/dit_throughput.py --device cuda --dtype bfloat16
"""

import argparse
import math
import pathlib
import time

import attrs
import torch
from snrpaths.backends import Converter, ConverterConfig, DiTConfig, DSLDenoiser
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._timing import describe_device, round_robin

from snrpaths import SNRState


def parse(argv: list[str] | None = None):
    p = argparse.ArgumentParser(prog="snrpaths bench dit-throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one warm-up and one timed round")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="folder for the JSON, table and plot")
    p.add_argument("--vocab", type=int, default=50258, help="V real tokens (the embedding has V + 1 rows)")
    p.add_argument("--anchor-dim", type=int, default=48, help="dimension d of the anchors (default: 48)")
    p.add_argument("--hidden", type=int, default=768, help="width of the DiT (default: 768, MDLM-OWT)")
    p.add_argument("--heads", type=int, default=12, help="attention heads (default: 12)")
    p.add_argument("--cond-dim", type=int, default=128, help="width of the SNR conditioning (default: 128)")
    p.add_argument("--n-blocks", type=int, default=12, help="12 is MDLM-OWT; a forward takes seconds on 2 CPU cores")
    p.add_argument("--seq-len", type=int, default=1024, help="sequence length L (default: 1024)")
    p.add_argument("--batch", type=int, default=1, help="sequences per forward (default: 1)")
    p.add_argument("--reps", type=int, default=3, help="timed rounds, the median reported (default: 3)")
    p.add_argument("--sparse-k", type=int, default=ConverterConfig().sparse_k, help="slots gathered per position")
    p.add_argument("--sparse-tol", type=float, default=ConverterConfig().sparse_tol, help="largest dropped mass")
    p.add_argument("--snrs", type=float, nargs="+", default=[0.5, 4.0, 40.0, 400.0], help="fixed SNRs of the sweep")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where to run (default: cuda when available, else cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16 = autocast")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own)")
    return p.parse_args(argv)


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
    conv_config = ConverterConfig(anchor_dim=a.anchor_dim, sparse_k=a.sparse_k, sparse_tol=a.sparse_tol)
    t0 = time.perf_counter()
    den = DSLDenoiser.build(config, conv_config).to(device).eval()  # the sparse converter, as initialised
    build_s = time.perf_counter() - t0

    def twin(cfg, **params):
        """A converter with ``den``'s parameters (some replaced) under settings ``cfg``."""
        conv = Converter(a.vocab, cfg).to(device).eval()
        conv.load_state_dict(den.converter.state_dict())
        with torch.no_grad():
            for name, fill in params.items():
                fill(getattr(conv, name))
        return conv

    def bayes_bias(b):
        b.zero_()
        b[-1] = -30.0

    dense_den = DSLDenoiser(den.backbone, twin(attrs.evolve(conv_config, sparse_k=0))).eval()  # shares the backbone
    bayes = twin(conv_config, log_beta=lambda b: b.zero_(), bias=bayes_bias)  # beta = 1

    g = torch.Generator().manual_seed(0)
    B, L = a.batch, a.seq_len
    tokens = torch.randint(0, a.vocab, (B, L), generator=g)
    # Finite SNRs as in DSL's continuous training branch: log-normal (mu 1.4, sigma 0.55), capped at 40.
    finite_gamma = (1.4 + 0.55 * torch.randn(B, L, generator=g)).exp().clamp(max=40)
    endpoint_gamma = torch.where(torch.rand(B, L, generator=g) < 0.5, math.inf, 0.0)
    table = den.table.to("cpu")

    def state(gamma):
        s = SNRState.from_tokens(tokens, gamma, table, g)
        return SNRState(*(getattr(s, f).to(device) for f in ("gamma", "z", "tokens", "fixed", "confidence")))

    finite, endpoint = state(finite_gamma), state(endpoint_gamma)
    sweep = {gamma: state(torch.full((B, L), gamma)) for gamma in a.snrs}
    ids = torch.where(torch.isinf(endpoint.gamma), endpoint.tokens, a.vocab).to(device)
    E = den.backbone.vocab_embed.embedding
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.dtype == "bfloat16")

    def alone(conv, s):
        return lambda: conv(s.z, s.gamma, s.tokens, E)

    variants = {
        "mdlm": ("backbone on token ids (MDLM, no converter)", lambda: den.backbone(den.backbone.vocab_embed(ids))),
        "endpoint": ("DSL, endpoint state (converter gathers rows)", lambda: den.logits(endpoint)),
        "finite": ("DSL, every position at finite SNR, dense converter", lambda: dense_den.logits(finite)),
        "converter": ("dense converter alone, same state", alone(dense_den.converter, finite)),
        "finite_sparse": ("DSL, same state, sparse converter", lambda: den.logits(finite)),
        "converter_sparse": ("sparse converter alone, same state", alone(den.converter, finite)),
    }
    kinds = {"dense": dense_den.converter, "sparse": den.converter, "bayes_sparse": bayes}
    for gamma, s in sweep.items():
        for kind, conv in kinds.items():
            variants[f"{kind}@{gamma:g}"] = (f"{kind} converter alone, gamma = {gamma:g}", alone(conv, s))
    def flat(s):
        return s.z.reshape(B * L, -1)  # (B L, d)

    with torch.no_grad(), autocast:
        jobs = {name: (lambda _seed, fn=fn: fn()) for name, (_, fn) in variants.items()}
        times = {name: t["seconds"] for name, t in round_robin(jobs, reps, device=device, warmup=warmup,
                                                               log=False).items()}
        fallback = {"lognormal": den.converter.certify(flat(finite)).dense.float().mean().item()}
        for gamma, s in sweep.items():
            fallback[f"sparse@{gamma:g}"] = den.converter.certify(flat(s)).dense.float().mean().item()
            fallback[f"bayes_sparse@{gamma:g}"] = bayes.certify(flat(s)).dense.float().mean().item()
    results = {name: {"what": what, "seconds": median(times[name]), "tokens_per_s": B * L / median(times[name]),
                      "all_seconds": times[name]} for name, (what, _) in variants.items()}

    def ratio(num, den_):  # per round, then the median: the two ran back to back, so load hits both alike
        return median([n / d for n, d in zip(times[num], times[den_], strict=True)])

    def decomposed(conv):  # converter / (converter + backbone), the backbone timed as `mdlm` in the same round
        return median([c / (c + m) for c, m in zip(times[conv], times["mdlm"], strict=True)])

    share, share_sparse = ratio("converter", "finite"), ratio("converter_sparse", "finite_sparse")
    overhead = median([f / m - 1 for f, m in zip(times["finite"], times["mdlm"], strict=True)])
    overhead_sparse = median([f / m - 1 for f, m in zip(times["finite_sparse"], times["mdlm"], strict=True)])
    sweep_rows = [{"gamma": gamma, "converter": kind, "seconds": results[f"{kind}@{gamma:g}"]["seconds"],
                   "share": decomposed(f"{kind}@{gamma:g}"), "fallback": fallback.get(f"{kind}@{gamma:g}")}
                  for gamma in a.snrs for kind in kinds]

    summary = {
        "device": describe_device(device), "torch": torch.__version__, "dtype": a.dtype, "quick": a.quick,
        "warmup": warmup, "reps": reps, "build_seconds": build_s,
        "sizes": {"vocab": a.vocab, "anchor_dim": a.anchor_dim, "hidden": a.hidden, "heads": a.heads,
                  "cond_dim": a.cond_dim, "n_blocks": a.n_blocks, "seq_len": L, "batch": B,
                  "parameters": sum(p.numel() for p in den.parameters())},
        "sparse": {"k": a.sparse_k, "tol": a.sparse_tol},
        "results": results, "converter_share": share, "finite_over_mdlm": overhead, "flop_share": flop_share(a),
        "converter_share_sparse": share_sparse, "finite_sparse_over_mdlm": overhead_sparse,
        "fallback_lognormal": fallback["lognormal"],
        "decomposed_share": {"dense": decomposed("converter"), "sparse": decomposed("converter_sparse")},
        "sweep": sweep_rows, "target_share": 0.15,
    }
    main_rows = ["mdlm", "endpoint", "finite", "converter", "finite_sparse", "converter_sparse"]
    lines = [(f"device: {summary['device']} | torch {torch.__version__} | {a.dtype} | "
              f"V={a.vocab} d={a.anchor_dim} hidden={a.hidden} heads={a.heads} n_blocks={a.n_blocks} L={L} "
              f"batch={B} | {summary['sizes']['parameters'] / 1e6:.1f} M parameters | sparse_k={a.sparse_k} "
              f"sparse_tol={a.sparse_tol:g} | median of {reps} after {warmup} warm-up\n"),
             "| variant | what runs | ms / forward | tokens / s |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {results[name]['what']} | {1e3 * results[name]['seconds']:.0f} | "
              f"{results[name]['tokens_per_s']:,.0f} |" for name in main_rows]
    lines.append(
        f"\nlog-normal SNRs (DSL's training draw): converter share of a finite-SNR forward {100 * share:.1f}% dense, "
        f"{100 * share_sparse:.1f}% sparse ({100 * fallback['lognormal']:.0f}% of positions fell back to the dense "
        f"product); target < 15%; FLOP estimate of the dense share {100 * flop_share(a):.1f}%; "
        f"conv / (conv + backbone) {100 * summary['decomposed_share']['dense']:.1f}% dense, "
        f"{100 * summary['decomposed_share']['sparse']:.1f}% sparse. Finite-SNR forward vs MDLM forward: "
        f"{100 * overhead:+.1f}% dense, {100 * overhead_sparse:+.1f}% sparse.\n")
    lines += ["| gamma | converter | fell back to dense | converter ms | share of a finite forward |",
              "|---:|---|---:|---:|---:|"]
    names = {"dense": "dense", "sparse": "sparse, as initialised", "bayes_sparse": "sparse, Bayes-calibrated"}
    def fell_back(r):
        return "all (dense)" if r["fallback"] is None else f"{100 * r['fallback']:.0f}%"

    lines += [f"| {r['gamma']:g} | {names[r['converter']]} | {fell_back(r)} | {1e3 * r['seconds']:.0f} | "
              f"{100 * r['share']:.1f}% |" for r in sweep_rows]
    text = "\n".join(lines)
    print(text)
    write(a.out, "dit_throughput_quick" if a.quick else "dit_throughput", summary, text,
          lambda path: plot(summary, path))


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["mdlm", "endpoint", "finite", "finite_sparse"]
    rates = [summary["results"][n]["tokens_per_s"] for n in names]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax.barh(names, rates, color=["#888888", "#4C72B0", "#DD8452", "#55A868"])
    for y, r in enumerate(rates):
        ax.text(r, y, f" {r:,.0f}", va="center")
    s = summary["sizes"]
    ax.set_xlabel("tokens / s (forward)")
    ax.set_xlim(0, max(rates) * 1.3)
    ax.set_title(f"DSL DiT, {s['n_blocks']} blocks, hidden {s['hidden']}, V {s['vocab']}, L {s['seq_len']}\n"
                 f"{summary['device']}, {summary['dtype']}: converter share (log-normal SNRs) "
                 f"{100 * summary['converter_share']:.1f}% dense, "
                 f"{100 * summary['converter_share_sparse']:.1f}% sparse",
                 fontsize=8)
    styles = {"dense": ("#DD8452", "dense"), "sparse": ("#55A868", "sparse, as initialised"),
              "bayes_sparse": ("#8172B2", "sparse, Bayes-calibrated")}
    for kind, (color, label) in styles.items():
        rows = [r for r in summary["sweep"] if r["converter"] == kind]
        bx.plot([r["gamma"] for r in rows], [100 * r["share"] for r in rows], "o-", color=color, label=label)
    bx.axhline(100 * summary["target_share"], color="k", ls="--", lw=1, label="target")
    bx.set_xscale("log")
    bx.set_xlabel("SNR gamma (every position)")
    bx.set_ylabel("converter / (converter + backbone), %")
    bx.set_ylim(bottom=0)
    bx.legend(fontsize=8)
    bx.set_title(f"sparse_k = {summary['sparse']['k']}, sparse_tol = {summary['sparse']['tol']:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
