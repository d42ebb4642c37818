"""Cached block decoding (issue 26): Fast-dLLM's prefix and dual key/value caches against the uncached run.

* **Speed.** ``blocks(32, mdm(16))`` (blocks of 32 positions, 16 calls each) at L = 1024, batch 1, on a DiT of the
  shipped text checkpoint's sizes (V = 82, d = 48, hidden 128, 4 blocks of 4 heads, cond 64) with random weights:
  uncached, ``cache='prefix'`` and ``cache='dual'``, timed round-robin in one run. Tokens/s is ``batch x L`` over
  the seconds of a whole sample; the ratios are what the cache buys on this device, the runner's own per-step work
  included.
* **Quality.** The shipped ``tiny-shakespeare-dsl`` (L = 128) sampling ``blocks(4, mdm(16))`` uncached and with
  each cache, from the same seeds (the same streams: a sample changes only where the cached logits move a draw).
  Generation bits/char of every sample under SmolLM2 (the text study's judge), and the paired difference cached -
  uncached with its standard error over samples. And the agreement of logits: at every cached call of the first
  32 rows, sampled again, the uncached logits of the same state, compared over the block's unrevealed positions
  (those the call reveals from): ``|log p_cached - log p_uncached|`` (mean and max over positions and tokens), the total variation between the
  two distributions (mean and max over positions) and how often their most likely tokens agree.

    snrpaths bench block-cache            # ~12 minutes on 1 thread of a shared machine (OMP_NUM_THREADS=1)
    snrpaths bench block-cache --quick    # seconds: toy sizes, no reference LM
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics

import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser
from snrpaths.backends.text import load_with_tokenizer
from snrpaths.benchmarks._results import RESULTS, write
from snrpaths.benchmarks._timing import describe_device, round_robin

from snrpaths import Path, SNRState, sample

CACHES = (None, "prefix", "dual")
FULL = {"seq_len": 1024, "blocks": 32, "steps": 16, "rounds": 2, "n": 192, "compare": 32, "judge": True}
QUICK = {"seq_len": 64, "blocks": 4, "steps": 4, "rounds": 1, "n": 2, "compare": 2, "judge": False}
#: the text checkpoint's path: blocks of 32 positions at L = 128, as at L = 1024, with the speed path's 16 calls each
TEXT_BLOCKS, TEXT_STEPS = 4, 16


def cached(n: int, steps: int, cache: str | None) -> Path:
    return Path.blocks(n, Path.mdm(steps), cache=cache)


def label(cache: str | None) -> str:
    return "uncached" if cache is None else cache


# -- speed -----------------------------------------------------------------------------------------------------------


def speed(plan: dict, seed: int) -> tuple[list[dict], int]:
    """Tokens/s of every cache on the random DiT, round-robin, ``plan['rounds']`` timed rounds after a warm-up
    call of each kind (a whole warm-up round would cost as much as a timed one); and the DiT's parameter count."""
    config = DiTConfig(82, seq_len=plan["seq_len"], hidden=128, cond_dim=64, n_blocks=4, n_heads=4, dropout=0.0)
    den = DSLDenoiser.build(config, ConverterConfig(anchor_dim=48), seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a fresh DiT's adaLN and head are zero: draw them, so positions read each other
        for p in den.backbone.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    paths = {label(c): cached(plan["blocks"], plan["steps"], c) for c in CACHES}
    jobs = {name: (lambda s, p=p: sample(p, den, batch=1, seed=s).nfe) for name, p in paths.items()}
    with torch.no_grad():
        warm_up(den)
        times = round_robin(jobs, plan["rounds"], seed=seed)
    base = times["uncached"]["seconds"]
    rows = []
    for name, p in paths.items():
        seconds = times[name]["seconds"]
        rows.append({"cache": name, "path": repr(p), "seconds": statistics.median(seconds), "all_seconds": seconds,
                     "nfe": times[name]["nfe"], "tokens_per_s": plan["seq_len"] / statistics.median(seconds),
                     # per round, then the median: the variants of a round ran back to back, under the same load
                     "speedup": statistics.median(b / s for b, s in zip(base, seconds, strict=True))})
    return rows, sum(p.numel() for p in den.parameters())


def warm_up(den: DSLDenoiser) -> None:
    """One call of each kind the runs make: full, refresh, and cached on a block of 32."""
    state = SNRState.masked(1, den.seq_len, den.table)
    active = torch.arange(min(32, den.seq_len))
    den.logits(state)
    den.cached_logits(state, active, den.refresh_cache(state, active)[1])


# -- quality ---------------------------------------------------------------------------------------------------------


class Compared:
    """``den`` whose every cached call is also made uncached on the same state, and the two compared over the
    block's unrevealed positions: the first ``block`` active positions (the block, under either cache)."""

    caches_blocks = True

    def __init__(self, den, block: int):
        self.den, self.block = den, block
        self.vocab_size, self.seq_len, self.table = den.vocab_size, den.seq_len, den.table
        self.diffs: list[torch.Tensor] = []  # [n, V] |delta log p| at each compared position
        self.tvs: list[torch.Tensor] = []
        self.agree: list[torch.Tensor] = []

    def logits(self, state):
        return self.den.logits(state)

    def refresh_cache(self, state, active):
        return self.den.refresh_cache(state, active)

    def cached_logits(self, state, active, cache):
        out = self.den.cached_logits(state, active, cache)
        block = active[:self.block]
        open_ = ~state.clean[:, block]  # [B, block]
        mine = out[:, :self.block].double().log_softmax(-1)[open_]  # [n, V]
        exact = self.den.logits(state)[:, block].double().log_softmax(-1)[open_]
        self.diffs.append((mine - exact).abs())
        self.tvs.append(0.5 * (mine.exp() - exact.exp()).abs().sum(-1))
        self.agree.append(mine.argmax(-1) == exact.argmax(-1))
        return out

    def summary(self) -> dict:
        if not self.diffs:
            return {}
        diffs, tvs = torch.cat(self.diffs), torch.cat(self.tvs)
        return {"positions": len(tvs), "mean_abs_dlogp": float(diffs.mean()), "max_abs_dlogp": float(diffs.max()),
                "mean_tv": float(tvs.mean()), "max_tv": float(tvs.max()),
                "top1_agreement": float(torch.cat(self.agree).double().mean())}


def quality(plan: dict, seed: int) -> list[dict]:
    """Samples of the text checkpoint with each cache from the same seed, (with the judge) every sample's generation
    bits/char, and the agreement of the logits over the first ``plan['compare']`` rows (sampled again, every cached
    call also made uncached: the comparison doubles their cost)."""
    den, tokenizer = load_with_tokenizer("tiny-shakespeare-dsl")
    den.eval()
    block = den.seq_len // TEXT_BLOCKS
    rows = []
    for cache in CACHES:
        compared = Compared(den, block)
        path = cached(TEXT_BLOCKS, TEXT_STEPS, cache)
        with torch.no_grad():
            result = sample(path, den, batch=plan["n"], seed=seed)
            sample(path, compared, batch=plan["compare"], seed=seed)  # the first rows again, each call compared
        texts = [tokenizer.decode(row) for row in result.tokens]
        rows.append({"cache": label(cache), "path": repr(path), "nfe": result.nfe, "texts": texts,
                     "tokens": result.tokens.tolist(), **compared.summary()})
    if plan["judge"]:
        from snrpaths.quality import GenerativePerplexity

        judge = GenerativePerplexity(batch_size=64)
        for row in rows:
            row["bpc"] = [nll / (math.log(2) * len(t)) for nll, t in zip(judge.nll_each(row["texts"]), row["texts"])]
    base = rows[0]
    for row in rows:
        row["same_tokens"] = float(torch.tensor(row["tokens"]).eq(torch.tensor(base["tokens"])).double().mean())
        if "bpc" in row:
            delta = [c - u for c, u in zip(row["bpc"], base["bpc"], strict=True)]
            row |= {"gen_bpc": statistics.fmean(row["bpc"]), "gen_bpc_se": _se(row["bpc"]),
                    "delta_bpc": statistics.fmean(delta), "delta_bpc_se": _se(delta)}
    return rows


def _se(xs: list[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")


# -- report ----------------------------------------------------------------------------------------------------------


def table(plan: dict, fast: list[dict], params: int, text: list[dict], device: str) -> str:
    out = [f"**Speed** (`blocks({plan['blocks']}, mdm({plan['steps']}), cache=...)`, L = {plan['seq_len']}, batch 1, "
           f"random-weight DiT: V = 82, d = 48, hidden 128, 4 blocks x 4 heads, {params / 1e6:.2f} M parameters; "
           f"{device}; median of {plan['rounds']} round-robin rounds)\n",
           "| cache | calls | seconds / sample | tokens / s | speed-up vs uncached |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['cache']} | {r['nfe'][0]} | {r['seconds']:.2f} | {r['tokens_per_s']:.1f} | {r['speedup']:.2f}x |"
            for r in fast]
    out += [f"\n**Quality** (shipped `tiny-shakespeare-dsl`, L = 128, `blocks({TEXT_BLOCKS}, mdm({TEXT_STEPS}), "
            f"cache=...)`, {plan['n']} samples from the same seeds; logits compared at every cached call of the first "
            f"{plan['compare']} over the block's unrevealed positions)\n",
            "| cache | gen. bits/char | Δ vs uncached (± s.e.) | same tokens | mean \\|Δ log p\\| | max \\|Δ log p\\| | "
            "mean TV | max TV | top-1 agreement |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in text:
        bpc = f"{r['gen_bpc']:.3f} ± {r['gen_bpc_se']:.3f}" if "gen_bpc" in r else "—"
        delta = "—" if "delta_bpc" not in r or r["cache"] == "uncached" else \
            f"{r['delta_bpc']:+.3f} ± {r['delta_bpc_se']:.3f}"
        agree = ["—"] * 5 if "positions" not in r else [
            f"{r['mean_abs_dlogp']:.4f}", f"{r['max_abs_dlogp']:.3f}", f"{r['mean_tv']:.4f}", f"{r['max_tv']:.3f}",
            f"{100 * r['top1_agreement']:.1f}%"]
        out.append(f"| {r['cache']} | {bpc} | {delta} | {100 * r['same_tokens']:.1f}% | {' | '.join(agree)} |")
    return "\n".join(out)


def plot(fast: list[dict], text: list[dict], out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    names = [r["cache"] for r in fast]
    axes[0].bar(names, [r["tokens_per_s"] for r in fast], color=["C0", "C1", "C2"])
    for i, r in enumerate(fast):
        axes[0].annotate(f"{r['speedup']:.2f}x", (i, r["tokens_per_s"]), ha="center", va="bottom")
    axes[0].set_ylabel("tokens / s (batch 1)")
    axes[0].set_title(fast[0]["path"].replace("cache=None", ""), fontsize=9)
    judged = [r for r in text if "delta_bpc" in r and r["cache"] != "uncached"]
    if judged:
        axes[1].errorbar([r["cache"] for r in judged], [r["delta_bpc"] for r in judged],
                         yerr=[2 * r["delta_bpc_se"] for r in judged], fmt="o", capsize=4, color="C3")
        axes[1].axhline(0.0, color="k", lw=0.8)
        axes[1].axhline(0.02, color="C3", ls="--", lw=0.8, label="goal: at most 0.02 lost")
        axes[1].set_ylabel("Δ gen. bits/char vs uncached (± 2 s.e.)")
        axes[1].legend(fontsize=8)
    else:
        axes[1].bar([r["cache"] for r in text], [r.get("top1_agreement", 1.0) for r in text], color=["C0", "C1", "C2"])
        axes[1].set_ylabel("top-1 agreement with the uncached logits")
    axes[1].set_title("tiny-shakespeare-dsl, blocks(4, mdm(16))", fontsize=9)
    fig.suptitle("Cached block decoding: Fast-dLLM's prefix and dual caches")
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="snrpaths bench block-cache", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, one round, two samples, no reference LM")
    parser.add_argument("--n", type=int, default=None, help="text samples per cache (default 192, quick 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = (QUICK if args.quick else FULL) | ({"n": args.n} if args.n else {})
    device = describe_device(torch.device("cpu"))
    fast, params = speed(plan, args.seed)
    text = quality(plan, args.seed)
    report = table(plan, fast, params, text, device)
    print(report)
    data = {"device": device, "torch": torch.__version__, "plan": plan, "parameters": params, "speed": fast,
            "quality": [{k: v for k, v in r.items() if k != "tokens"} for r in text]}
    write(args.out, "block_cache_quick" if args.quick else "block_cache", data, report, lambda p: plot(fast, text, p))


if __name__ == "__main__":
    main()
