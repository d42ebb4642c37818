"""Path tuning: the tuned hybrid against the default hybrid and ReMDM at equal calls, tuned on validation data and
scored on held-out data.

For each model and call budget T, :func:`snrpaths.tune` searches two families at T calls: the hybrid (split, hand-over
SNR, switch mode, ramp schedule) and masked diffusion (clock, ReMDM policy in none / cap / rescale / confidence /
loop, eta), each with the family's default path as trial 0. Then every row is scored on held-out data: MDLM
``mdm(T)`` and ReMDM-cap ``mdm(T, remask='cap')`` (the defaults), the best masked-diffusion path found (the best
ReMDM), the default hybrid ``hybrid(T // 2, T - T // 2)`` and the tuned hybrid.

* **Exact toy joints** (``ExactToy``): tuned on the total variation to the empirical law of validation sequences drawn
  from ``P`` (one set, seed 2000) with one sampling seed (1000) for every trial; scored as the total variation to the
  true ``P`` itself, with other sampling seeds (0, 1, ...). Mean ± s.e. over the held-out seeds.
* **Text** (the DSL fine-tune ``tiny-shakespeare-dsl``): tuned on gen. bits/char under SmolLM2 of samples drawn with
  seed 1000; scored with seeds 0, 1, ... (the text study's), beside held-out windows of the two scoring plays
  (``benchmarks/_plays.py``). Bits/char of samples reads no reference text, so here the held-out data are the
  sampling seeds, and the plays give the human row only.

Tuning trials are kept in an SQLite file and scored cells in a ``.partial.jsonl`` file beside the outputs, so an
interrupted run continues where it stopped when rerun with the same options.

    snrpaths bench path-tuning --quick          # toy part only, seconds
    snrpaths bench path-tuning                  # toy and text parts (text: ~10 min at 1 thread)
"""

from __future__ import annotations

import argparse
import math
import pathlib
import types

import torch
from snrpaths.backends.toy import ExactToy
from snrpaths.benchmarks._results import RESULTS, Record, write
from snrpaths.progress import track

from snrpaths import parse_path, sample, tune
from snrpaths.errors import SNRPathError
from snrpaths.testing.stats import empirical_tv

TUNE_SEED, DATA_SEED = 1000, 2000  # held-out sampling seeds start at 0
PARTS = ("toy", "text")
CHECKPOINT = "tiny-shakespeare-dsl"
FULL = {"toy": {"budgets": (4, 8, 16), "trials": 30, "n": 4000, "validation": 20_000, "score_n": 20_000, "seeds": 3},
        "text": {"budgets": (32,), "trials": 16, "n": 16, "score_n": 32, "seeds": 3}}
QUICK = {"toy": {"budgets": (4,), "trials": 5, "n": 1000, "validation": 4000, "score_n": 2000, "seeds": 2},
         "text": {"budgets": (8,), "trials": 3, "n": 4, "score_n": 4, "seeds": 2}}
#: Row name -> how its path is had: a family's default, a family's tuned best, or a fixed expression at T.
ROWS = {"MDLM": ("default", "mdm"), "ReMDM-cap": ("fixed", "mdm({T}, remask='cap')"),
        "MDM/ReMDM tuned": ("tuned", "mdm"), "hybrid default": ("default", "hybrid"),
        "hybrid tuned": ("tuned", "hybrid")}
HUMAN = "held-out text"


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stem = "path_tuning_quick" if args.quick else "path_tuning"
    storage = args.out / f".{stem}.tune.db"
    args.out.mkdir(parents=True, exist_ok=True)
    record = Record(args.out / f".{stem}.partial.jsonl")
    panels = []
    for part in args.parts:
        sizes = (QUICK if args.quick else FULL)[part]
        for name, model in _models(part, args.quick).items():
            for budget in sizes["budgets"]:
                panels.append(_panel(part, name, model, budget, sizes, storage, record))
    text = _tables(panels, args)
    print(text)
    write(args.out, stem, {"settings": _settings(args), "panels": panels}, text, lambda p: _plot(panels, p))
    storage.unlink(missing_ok=True)
    record.partial.unlink(missing_ok=True)


def _parse(argv):
    p = argparse.ArgumentParser(prog="snrpaths bench path-tuning", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one small toy, one budget, few trials (seconds; toy only "
                                                        "unless --parts says otherwise)")
    p.add_argument("--parts", nargs="+", choices=PARTS, help="which parts to run (default: toy text; quick: toy)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", type=pathlib.Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    if args.parts is None:
        args.parts = ("toy",) if args.quick else PARTS
    if "text" in args.parts:
        from snrpaths.quality import require

        require(["gen-bpc"])  # the reference LM's packages, checked before any tuning
    return args


def _models(part: str, quick: bool) -> dict:
    if part == "text":
        from snrpaths.backends.text import load_with_tokenizer

        return {CHECKPOINT: load_with_tokenizer(CHECKPOINT)}
    if quick:
        return {"markov V3 L3": ExactToy.markov(3, 3, seed=0, concentration=0.5)}
    return {"markov V3 L4": ExactToy.markov(3, 4, seed=0, concentration=0.5),
            "dirichlet V3 L4": ExactToy.random(3, 4, seed=1, concentration=0.3)}


def _panel(part: str, name: str, model, budget: int, sizes: dict, storage: pathlib.Path, record: Record) -> dict:
    """Tune both families on validation data at ``budget`` calls, then score every row on held-out seeds."""
    denoiser = model if part == "toy" else model[0]
    if part == "toy":
        data, metric = denoiser.sample(sizes["validation"], torch.Generator().manual_seed(DATA_SEED)), "tv"
    else:
        data, metric = None, "bits"
    tuned = {family: tune(family, denoiser, budget, metric, data=data, trials=sizes["trials"], seed=TUNE_SEED,
                          n=sizes["n"], storage=storage, study_name=f"{name}|{budget}|{family}", progress=True)
             for family in ("mdm", "hybrid")}
    score = _toy_score(denoiser) if part == "toy" else _text_score(*model)
    seeds = range(sizes["seeds"])
    rows = []
    for row, (kind, what) in ROWS.items():
        path, validation = _row_path(kind, what, budget, tuned)
        cells = [record.get(f"{name}|{path!r}|{seed}|{sizes['score_n']}", lambda seed=seed: score(path, sizes["score_n"], seed))
                 for seed in track(list(seeds), "seed", f"{name} T={budget} {row}", leave=False)]
        rows.append({"row": row, "path": repr(path), "validation": validation, **_summary(cells)})
    if part == "text":
        rows.append({"row": HUMAN, "path": "", "validation": None,
                     **_summary(_human(model[1], denoiser.seq_len, sizes, record))})
    return {"part": part, "model": name, "budget": budget, "metric": metric, "sizes": sizes, "rows": rows,
            "trials": {family: list(t.trials) for family, t in tuned.items()}}


def _row_path(kind: str, what: str, budget: int, tuned: dict):
    """A row's path and its validation value (``None`` for a row that was not among the trials)."""
    if kind == "fixed":
        return parse_path(what.format(T=budget)), None
    result = tuned[what]
    return (result.default, result.default_value) if kind == "default" else (result.best, result.value)


def _toy_score(toy: ExactToy):
    def score(path, n: int, seed: int) -> dict:
        result = sample(path, toy, batch=n, seed=seed)
        return {"value": empirical_tv(toy.probs, result.tokens), "nfe": result.nfe}

    return score


def _text_score(denoiser, tokenizer):
    from snrpaths.quality import GenerativePerplexity

    lm = GenerativePerplexity()

    def score(path, n: int, seed: int) -> dict:
        with torch.no_grad():  # not inference_mode: DSLDenoiser.table reads the version counter of its anchors
            result = sample(path, denoiser, batch=n, seed=seed)
        texts = [tokenizer.decode(row) for row in result.tokens.tolist()]
        return {"value": lm.bits_per_character(texts), "nfe": result.nfe, "example": texts[0]}

    return score


def _human(tokenizer, L: int, sizes: dict, record: Record) -> list[dict]:
    """Bits/char of held-out windows of the scoring plays, one set of ``score_n`` windows per held-out seed."""
    from snrpaths.benchmarks.text_quality import held_out_text
    from snrpaths.quality import GenerativePerplexity

    settings = types.SimpleNamespace(reference=2, seeds=sizes["seeds"], n=sizes["score_n"], seed=0)
    _, (_, windows) = held_out_text(tokenizer, "score", settings, L)

    def score(seed: int) -> dict:
        return {"value": GenerativePerplexity().bits_per_character([tokenizer.decode(w) for w in windows[seed]]),
                "nfe": 0}

    return [record.get(f"{HUMAN}|{seed}|{sizes['score_n']}", lambda seed=seed: score(seed))
            for seed in range(sizes["seeds"])]


def _summary(cells: list[dict]) -> dict:
    values = [c["value"] for c in cells]
    mean = sum(values) / len(values)
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)) if len(values) > 1 \
        else math.nan
    return {"mean": mean, "se": se, "values": values, "nfe": sum(c["nfe"] for c in cells) / len(cells),
            **({"example": cells[0]["example"]} if "example" in cells[0] else {})}


def _fmt(mean: float, se: float) -> str:
    return f"{mean:.4f}" + ("" if math.isnan(se) else f" ± {se:.4f}")


def _tables(panels: list[dict], args) -> str:
    parts = ["Path tuning: each family tuned at T calls on validation data (toys: TV to the empirical law of "
             "validation sequences; text: gen. bits/char), one sampling seed for all trials; every row scored on "
             "held-out data (toys: TV to the true P; text: gen. bits/char, other seeds). Held-out: mean ± s.e. over "
             "seeds; lower is better."]
    for panel in panels:
        sizes = panel["sizes"]
        unit = "TV to P" if panel["part"] == "toy" else "gen. bits/char"
        val = "TV to validation law" if panel["part"] == "toy" else "gen. bits/char, tuning seed"
        parts.append(f"\n**{panel['model']}, T = {panel['budget']} calls** ({sizes['trials']} trials per family of "
                     f"{sizes['n']} samples; held-out {sizes['seeds']} seeds x {sizes['score_n']} samples)\n")
        parts += [f"| sampler | path | validation ({val}) | held-out ({unit}) | calls made |",
                  "|---|---|---:|---:|---:|"]
        for row in panel["rows"]:
            validation = "—" if row["validation"] is None else f"{row['validation']:.4f}"
            parts.append(f"| {row['row']} | `{row['path']}` | {validation} | {_fmt(row['mean'], row['se'])} | "
                         f"{row['nfe']:.1f} |")
        parts.append(_verdict(panel))
    return "\n".join(parts)


def _verdict(panel: dict) -> str:
    """Tuned hybrid against the default hybrid and against ReMDM-cap on held-out data, paired by seed."""
    by = {row["row"]: row for row in panel["rows"]}
    lines = []
    for other in ("hybrid default", "ReMDM-cap", "MDM/ReMDM tuned"):
        diffs = [a - b for a, b in zip(by["hybrid tuned"]["values"], by[other]["values"])]
        mean = sum(diffs) / len(diffs)
        se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))
        word = "better" if mean < -2 * se else "worse" if mean > 2 * se else "a tie"
        lines.append(f"vs {other} {mean:+.4f} ± {se:.4f} ({word})")
    return "\nTuned hybrid, held-out, paired by seed: " + "; ".join(lines) + "."


def _settings(args) -> dict:
    return {"quick": args.quick, "parts": list(args.parts), "threads": torch.get_num_threads(),
            "tune_seed": TUNE_SEED, "data_seed": DATA_SEED}


def _plot(panels: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 3.4 * len(panels)), 3.6), constrained_layout=True,
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        rows = panel["rows"]
        x = range(len(rows))
        ax.errorbar(x, [r["mean"] for r in rows], yerr=[0 if math.isnan(r["se"]) else r["se"] for r in rows],
                    fmt="o", capsize=3, color="C0", label="held-out")
        ax.scatter([i for i, r in enumerate(rows) if r["validation"] is not None],
                   [r["validation"] for r in rows if r["validation"] is not None], marker="x", color="C1",
                   label="validation")
        ax.set_xticks(list(x), [r["row"] for r in rows], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("TV to P" if panel["part"] == "toy" else "gen. bits/char")
        ax.set_title(f"{panel['model']}, T = {panel['budget']}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Tuned vs default paths at equal calls (lower is better)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    try:
        main()
    except SNRPathError as err:
        raise SystemExit(f"path_tuning: error: {err}") from None
