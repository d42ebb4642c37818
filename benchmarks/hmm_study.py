"""Exact HMM study (issue 14): the error each path adds at L = 256, (a) with the exact denoiser, (b) with learned ones.

(a) A random hidden Markov model with structural zeros (``ExactHMM.random(..., stationary=True)``: K states, V
tokens, each state moving to ``--successors`` states, one of them its next state on a cycle through all states, and
emitting ``--emissions`` tokens; started at its stationary law) is its own exact Bayes denoiser, so every error is the
path's. Each built-in sampler runs at NFE budgets 8, 32, 128 (``--budgets``; AR and ROAR at L = 256) and its samples are judged by the true model
(:func:`snrpaths.quality.exact_quality`): generative NLL gap ``E_Q[-log2 P(s)] / L - H(P) / L`` in bits per token
and the invalid rate (samples with ``P(s) = 0``), each ± 1 standard error. The zero-error control is stochastic
localization with tokens drawn from the exact joint posterior (``ExactHMM.sample_posterior``): exact at every
budget, its gap and invalid rate show the study's noise floor. The hand-over question: the hybrid at one budget
(``--handover-budget``, 32) with hand-over SNRs gamma_max = 0.5, 2, 8 beside the default 40, and with ``switch('mask')``.

(b) An MDLM-objective DiT and its DSL fine-tune, trained on fresh runs of the same HMM (``benchmarks/_hmm_learned.py``;
runs kept in ``--runs`` and resumed), judged against the truth: per SNR the exact KL from the Bayes posterior to the
model's, ROAR NLL against the exact NLL, and the sampler cells of (a) at ``--learned-budgets`` beside the exact
denoiser's. ``--no-learned`` runs (a) alone.

Speed: one ``logits`` call of the exact HMM against one of part (b)'s DiT (random weights, same V and L) on the same
finite-SNR state of ``--speed-batch`` rows (64 by default, the issue's size), alternating after a warm-up.

Part (b)'s training runs in a second process beside part (a) (``--jobs 2``, the default: two cores, one thread
each); ``--jobs 1`` runs the parts one after the other. Finished sampler cells are appended to
``.<stem>.partial.jsonl`` beside the outputs; a rerun with the same settings reuses them (and the finished training
runs), and the file goes once the outputs are written.

    python benchmarks/hmm_study.py --quick    # under a minute: K = V = 16, L = 64, a DiT of 22k parameters
    python benchmarks/hmm_study.py            # K = V = 64, L = 256
"""

from __future__ import annotations

import argparse
import contextlib
import math
import pathlib
import statistics
import tempfile
import time

import torch
from tqdm.auto import tqdm

from snrpaths.backends.hmm import ExactHMM
from snrpaths.benchmarks import _hmm_learned as learned
from snrpaths.benchmarks._results import RESULTS, Record, write
from snrpaths.progress import track
from snrpaths.benchmarks._samplers import BUILTIN, OWN_NFE
from snrpaths.benchmarks._timing import round_robin

from snrpaths import Path, SNRState, parse_path, sample
from snrpaths.channel import localize
from snrpaths.quality import exact_quality

CONTROL = "SL joint posterior"
EXACT = "exact"
#: sampler name -> path expression for a budget of ``T`` calls (AR and ROAR cost L calls and run once).
SAMPLERS = {
    **BUILTIN,
    "ramp+commit": lambda T: f"ramp({max(T - 1, 1)}) >> switch('commit')",
    "hybrid": lambda T: f"hybrid({max(T // 2, 1)}, {max(T - T // 2, 1)})",
}
#: the hand-over question: the hybrid at one budget (``--handover-budget``) under other hand-over SNRs than the
#: default gamma_max = 40, and with the ramp's state dropped at the hand-over (``switch('mask')``)
HANDOVER = {
    **{f"hybrid γ{g:g}": (lambda T, g=g: f"hybrid({max(T // 2, 1)}, {max(T - T // 2, 1)}, gamma_max={g})")
       for g in (0.5, 2.0, 8.0)},
    "hybrid mask": lambda T: f"hybrid({max(T // 2, 1)}, {max(T - T // 2, 1)}, switch='mask')",
}
#: denoiser -> (line, marker) in the plots
STYLES = {EXACT: ("-", "o"), "MDLM": (":", "x"), "DSL": ("--", "^")}
# budgets 8, 32, 128 keep the full run under an hour on 2 cores: at n = 256 one exact call costs about 0.75 s, and
# 16, 64 and 256 would add about 45 minutes (``--budgets 8 16 32 64 128 256``)
FULL = {"states": 64, "vocab": 64, "seq_len": 256, "n": 256, "budgets": (8, 32, 128), "handover_budget": 32,
        "entropy_n": 4096,
        # part (b): a DiT of 147k parameters, 4000 MDLM + 1500 DSL steps of 32 x 256 tokens: 45 M tokens, about 22
        # minutes at the 35k tokens/s measured on one busy core (a 4x wider model learned more per step but 2.5x slower)
        "hidden": 64, "cond_dim": 32, "blocks": 2, "heads": 4, "batch": 32, "mdlm_steps": 4000, "dsl_steps": 1500,
        "mdlm_lr": 3e-3, "dsl_lr": 1e-3, "stream_factor": 2, "eval_rows": 256, "learned_n": 64,
        "learned_budgets": (8, 32, 128), "kl_n": 128, "nll_n": 64, "eval_batch": 64, "speed_batch": 64}
QUICK = {"states": 16, "vocab": 16, "seq_len": 64, "n": 64, "budgets": (8, 32), "handover_budget": 8, "entropy_n": 512,
         "hidden": 32, "cond_dim": 16, "blocks": 1, "heads": 2, "batch": 8, "mdlm_steps": 10, "dsl_steps": 10,
         "mdlm_lr": 3e-3, "dsl_lr": 1e-3, "stream_factor": 2, "eval_rows": 8, "learned_n": 16, "learned_budgets": (8,),
         "kl_n": 16, "nll_n": 4, "eval_batch": 64, "speed_batch": 8}
#: timed rounds of the speed row (after one warm-up round), each one call of both denoisers
SPEED_REPEATS = 5
#: the settings an exact cell's numbers depend on (besides its sampler and budget); a learned cell's add the runs'
EXACT_SETTINGS = ("states", "vocab", "seq_len", "successors", "emissions", "seed", "entropy_n", "n")
LEARNED_SETTINGS = (*learned.TRAIN_SETTINGS, "entropy_n", "learned_n")


def localization_control(hmm: ExactHMM, n: int, steps: int, seed: int) -> torch.Tensor:
    """``[n, L]`` samples by ``steps`` stochastic-localization steps on the ramp's schedule, each moving ``z`` toward
    the anchors of a sequence drawn from the exact joint posterior, then one last joint-posterior draw (``steps``
    calls of ``sample_posterior`` in all, counted as NFE): exact in law at any ``steps``."""
    g = torch.Generator().manual_seed(seed)
    state = SNRState.masked(n, hmm.seq_len, hmm.table)
    ramp = Path.ramp(max(steps - 1, 1))  # the built-in ramp's schedule and defaults
    levels = [ramp.schedule.gamma(k / ramp.steps, ramp.gamma_max, ramp.kappa, ramp.gamma_min)
              for k in range(1, steps)]
    for level in levels:
        target = hmm.table.embed(hmm.sample_posterior(state, g))
        gamma = torch.full_like(state.gamma, float(level))
        state = SNRState(gamma, localize(state.z, state.gamma, gamma, target, g), state.tokens, state.fixed,
                         state.confidence)
    return hmm.sample_posterior(state, g)


def build_hmm(args) -> ExactHMM:
    return ExactHMM.random(args.states, args.vocab, args.seq_len, seed=args.seed, successors=args.successors,
                           emissions=args.emissions, stationary=True)


def cells(budgets, handover_budget: int, control: bool) -> list[tuple[str, int | None]]:
    """(sampler, budget) pairs; AR and ROAR once, with budget None (they cost L calls); the hand-over variants at
    ``handover_budget`` alone."""
    pairs = [(name, None if name in OWN_NFE else budget) for name in SAMPLERS for budget in budgets]
    return (list(dict.fromkeys(pairs)) + [(name, handover_budget) for name in HANDOVER]
            + ([(CONTROL, budget) for budget in budgets] if control else []))


def sweep(label: str, denoiser, hmm: ExactHMM, entropy, pairs, n: int, args, record: Record,
          tag: str | None = None) -> list[dict]:
    """One row per (sampler, budget) of ``denoiser``'s ``n`` samples judged by ``hmm`` (reused from ``record``);
    ``tag`` names the settings the rows depend on (default: part (a)'s for the exact denoiser, (b)'s otherwise)."""
    tag = tag or learned.settings_tag(args, EXACT_SETTINGS if label == EXACT else LEARNED_SETTINGS)
    rows = []
    for name, budget in track(list(pairs), "cell", f"samplers, {label} denoiser"):
        row = record.get(f"{tag}|{label}|{name}|{budget}",
                         lambda: _cell(label, denoiser, hmm, entropy, name, budget, n, args.seed))
        tqdm.write(f"{label:>6} {name:>20} T={budget or '-':<4} nfe={row['nfe']:<4} gap={row['gap']:+.4f} ± "
                   f"{row['gap_se']:.4f} invalid={row['invalid']:.3f} ± {row['invalid_se']:.3f} pairs="
                   f"{row.get('invalid_pairs', math.nan):.4f}")
        rows.append(row)
    return rows


def _cell(label, denoiser, hmm, entropy, name, budget, n, seed) -> dict:
    start = time.perf_counter()
    if name == CONTROL:
        tokens, nfe, path = localization_control(hmm, n, budget, seed), budget, CONTROL
    else:
        path = parse_path({**SAMPLERS, **HANDOVER}[name](budget or hmm.seq_len))
        result = sample(path, denoiser, batch=n, seed=seed)
        tokens, nfe, path = result.tokens, result.nfe, repr(path)
    q = exact_quality(hmm, tokens, entropy)
    return {"denoiser": label, "sampler": name, "budget": budget or nfe, "path": path, "nfe": nfe, **q.to_dict(),
            "seconds": time.perf_counter() - start}


def _train_only(args, folder: pathlib.Path) -> None:
    """Part (b)'s training, in a process of its own (see :func:`training_beside`)."""
    torch.set_num_threads(args.threads)
    learned.train_models(build_hmm(args), args, folder)


@contextlib.contextmanager
def training_beside(args, folder: pathlib.Path):
    """With ``--jobs 2``, part (b)'s runs train in a second process while part (a) samples in this one (both one
    thread: two cores busy); on leaving, wait for it. The runs are resumable folders, so part (b) then only loads
    them, and an interrupted study resumes both. A fresh (spawned) process, not a fork of this one: a forked child
    cannot reuse its parent's OpenMP pool."""
    if args.jobs < 2 or args.no_learned:
        yield
        return
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_train_only, args=(args, folder), name="hmm-train")
    child.start()
    try:
        yield
    except BaseException:
        child.terminate()
        raise
    finally:
        child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the training process stopped with exit code {child.exitcode}; a rerun resumes it")


def run_learned(hmm: ExactHMM, entropy, args, record: Record, folder: pathlib.Path):
    """Part (b): the trained runs (resumed, or loaded when finished), their measurements against the truth, and
    their sampler rows."""
    trained = learned.train_models(hmm, args, folder)
    tokens = hmm.sample(max(args.kl_n, args.nll_n), torch.Generator().manual_seed(args.seed + 20))
    measured = {t.name: learned.measure(t, hmm, tokens, args) for t in trained}
    pairs = cells(args.learned_budgets, args.handover_budget, control=False)
    # the exact denoiser again, at the learned cells' sample count, so that every denoiser of (b) has its pair rate
    exact_tag = learned.settings_tag(argparse.Namespace(**{**vars(args), "n": args.learned_n}), EXACT_SETTINGS)
    rows = sweep(EXACT, hmm, hmm, entropy, pairs, args.learned_n, args, record, tag=exact_tag)
    rows += [row for t in trained for row in sweep(t.name, t.model, hmm, entropy, pairs, args.learned_n, args, record)]
    return trained, measured, rows


# -- tables -----------------------------------------------------------------------------------------------------------


def _cell_text(row: dict | None) -> str:
    if row is None:
        return "—"
    se = "—" if math.isnan(row["gap_se"]) else f"{row['gap_se']:.3f}"  # NaN with fewer than two valid samples
    gap = "—" if math.isnan(row["gap"]) else f"{row['gap']:+.3f} ± {se}"
    return f"{gap} ({100 * row['invalid']:.1f}% ± {100 * row['invalid_se']:.1f})"


def _pair_text(row: dict | None) -> str:
    return "—" if row is None else f"{100 * row['invalid_pairs']:.2f} ± {100 * row['invalid_pairs_se']:.2f}"


def grid(rows: list[dict], labels: list[str], budgets, cell=_cell_text) -> list[str]:
    """Markdown lines: one row per (sampler, denoiser in ``labels``) that has cells, one column per budget (AR and
    ROAR in the column of their L calls), each written by ``cell``; a denoiser column only when there are several."""
    budgets = sorted(budgets)
    many = len(labels) > 1
    out = ["| sampler | " + ("denoiser | " if many else "") + " | ".join(f"T={b}" for b in budgets) + " |",
           "|---|" + ("---|" if many else "") + "---:|" * len(budgets)]
    for name in [*SAMPLERS, *HANDOVER, CONTROL]:
        for label in labels:
            by_budget = {r["budget"]: r for r in rows if r["sampler"] == name and r["denoiser"] == label}
            if by_budget:
                out.append(f"| {name} | " + (f"{label} | " if many else "")
                           + " | ".join(cell(by_budget.get(b)) for b in budgets) + " |")
    return out


CELLS = ("Cells: gen. NLL gap to the entropy rate, bits/token ± s.e. (invalid rate ± s.e.); columns = NFE budget "
         "(AR and ROAR in the column of their L calls).\n")
PAIR_CELLS = ("Cells: impossible neighbours, % of the pairs (s_i, s_i+1) with P = 0, ± s.e. over samples (a per-token "
              "measure: a sample is invalid as soon as one pair is); columns as above.\n")


def logits_speed(hmm: ExactHMM, args) -> dict:
    """Median seconds of one ``logits`` call, the exact HMM against a random-weight DiT of part (b)'s size, both on
    ``args.speed_batch`` exact samples with every position at gamma = 4 (finite SNR: the costlier case for both; the
    HMM's forward-backward is ``O(L K^2 + L K V)`` per row whatever the evidence), alternating after a warm-up."""
    tokens = hmm.sample(args.speed_batch, torch.Generator().manual_seed(args.seed + 2))
    dit = learned.fresh_model(hmm, args).eval()

    def job(den):
        gamma = torch.full(tokens.shape, 4.0, dtype=den.table.anchors.dtype)
        state = SNRState.from_tokens(tokens, gamma, den.table, torch.Generator().manual_seed(args.seed + 3))

        def call(seed: int) -> int:
            with torch.no_grad():
                den.logits(state)
            return 1
        return call

    times = round_robin({"ExactHMM.logits": job(hmm), "DiT logits": job(dit)}, SPEED_REPEATS, warmup=1, log=False)
    median = {name: statistics.median(t["seconds"]) for name, t in times.items()}
    return {"batch": args.speed_batch, "parameters": sum(p.numel() for p in dit.parameters()),
            "median_s": median, "ratio": median["ExactHMM.logits"] / median["DiT logits"]}


def speed_line(speed: dict, args) -> str:
    ms = {name: 1e3 * s for name, s in speed["median_s"].items()}
    return (f"Speed: one `ExactHMM.logits` call at batch {speed['batch']}, L = {args.seq_len}, K = {args.states}, "
            f"V = {args.vocab} takes {ms['ExactHMM.logits']:.1f} ms against {ms['DiT logits']:.1f} ms for part (b)'s "
            f"DiT ({speed['parameters']:,} parameters, hidden {args.hidden}, {args.blocks} blocks) on the same "
            f"finite-SNR state: **ratio {speed['ratio']:.2f}** (target <= 1; medians of {SPEED_REPEATS}, "
            f"{args.threads} torch thread(s)).")


def table(rows: list[dict], args, entropy: tuple[float, float], part_b=None, speed: dict | None = None) -> str:
    h, h_se = (v / math.log(2) for v in entropy)
    exact = [r for r in rows if r["denoiser"] == EXACT]
    out = [f"Exact HMM study: K = {args.states}, V = {args.vocab}, L = {args.seq_len}, successors {args.successors}, "
           f"emissions {args.emissions}, seed {args.seed}, stationary start; entropy rate {h:.4f} ± {h_se:.4f} "
           f"bits/token from {args.entropy_n} exact samples.\n",
           f"(a) The exact denoiser, {args.n} samples per cell. " + CELLS,
           *grid(exact, [EXACT], {r["budget"] for r in exact})]
    if speed is not None:
        out += ["", speed_line(speed, args)]
    if part_b is not None:
        trained, measured, learned_rows = part_b
        model = trained[0].model.backbone.config
        out += [f"\n(b) Learned denoisers: a DiT (hidden {model.hidden}, blocks {model.n_blocks}, heads "
                f"{model.n_heads}, anchors frozen at the HMM's table) trained with the MDLM objective, then "
                f"fine-tuned with DSL's; batch {args.batch} x L.\n", learned.training_table(trained, h), "",
                learned.likelihood_table(measured, h), "", learned.kl_table(measured), "",
                f"Samplers with each denoiser at equal NFE ({args.learned_n} samples per cell). " + CELLS]
        budgets = {r["budget"] for r in learned_rows}
        out += grid(learned_rows, [EXACT, *measured], budgets)
        out += ["", "The same samples, per token. " + PAIR_CELLS, *grid(learned_rows, [EXACT, *measured], budgets,
                                                                       _pair_text)]
    return "\n".join(out)


# -- plot -------------------------------------------------------------------------------------------------------------


RATES = {"invalid": "invalid rate (P(s) = 0)", "invalid_pairs": "impossible neighbours (P(s_i, s_i+1) = 0)"}


def nfe_panels(gap_ax, invalid_ax, rows: list[dict], rate: str = "invalid") -> None:
    """Gap and ``rate`` (a key of ``RATES``) against NFE: a colour per sampler, a line style and marker per denoiser
    (``STYLES``)."""
    for i, name in enumerate([*SAMPLERS, CONTROL]):
        labelled = False
        for label, (line, marker) in STYLES.items():
            pts = sorted((r["nfe"], r["gap"], r["gap_se"], r[rate], r[rate + "_se"]) for r in rows
                         if r["sampler"] == name and r["denoiser"] == label)
            if not pts:
                continue
            nfe, gap, gap_se, invalid, invalid_se = zip(*pts)
            style = dict(fmt=marker if name in OWN_NFE else line + marker, ms=3, capsize=2,
                         color="k" if name == CONTROL else f"C{i % 10}", label=None if labelled else name)
            gap_ax.errorbar(nfe, gap, yerr=gap_se, **style)
            invalid_ax.errorbar(nfe, invalid, yerr=invalid_se, **style)
            labelled = True
    present = [label for label in STYLES if any(r["denoiser"] == label for r in rows)]
    if len(present) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color="k", ls=STYLES[label][0], marker=STYLES[label][1], ms=4) for label in present]
        gap_ax.legend(handles, present, title="denoiser", fontsize=7)
    for ax, label in ((gap_ax, "gen. NLL gap to the entropy rate (bits/token)"),
                      (invalid_ax, RATES[rate])):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("denoiser calls actually made (NFE)")
        ax.set_ylabel(label)
    invalid_ax.legend(fontsize=6)


def plot(rows: list[dict], entropy, part_b, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    exact = [r for r in rows if r["denoiser"] == EXACT]
    if part_b is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        nfe_panels(*axes, exact)
        fig.suptitle("Exact HMM study: the error each path adds with the exact Bayes denoiser")
    else:
        trained, measured, learned_rows = part_b
        fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
        nfe_panels(axes[0, 0], axes[0, 1], exact)
        axes[0, 0].set_title("(a) exact denoiser")
        learned.plot_training(axes[0, 2], trained, entropy[0] / math.log(2))
        learned.plot_kl(axes[1, 0], measured)
        nfe_panels(axes[1, 1], axes[1, 2], learned_rows, rate="invalid_pairs")
        axes[1, 1].set_title("(b) the exact denoiser and the learned ones at equal NFE")
        fig.suptitle("Exact HMM study: the error each path adds, with the exact denoiser and with learned ones")
    fig.savefig(out, dpi=120)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snrpaths bench hmm", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = V = 16, L = 64, tiny models (about a minute)")
    sizes = {"states": "hidden states K", "vocab": "tokens V", "seq_len": "L", "n": "samples per exact cell",
             "entropy_n": "exact samples for the entropy rate", "speed_batch": "rows of the speed row's state"}
    learned_sizes = {"hidden": "DiT width", "cond_dim": "DiT conditioning width", "blocks": "DiT blocks",
                     "heads": "attention heads", "batch": "training batch (windows)", "mdlm_steps": "MDLM steps",
                     "dsl_steps": "DSL fine-tune steps", "stream_factor": "training stream / tokens seen",
                     "eval_rows": "validation windows", "learned_n": "samples per learned cell",
                     "kl_n": "held-out samples of the KL curve", "nll_n": "held-out samples scored by ROAR",
                     "eval_batch": "rows per model call when measuring"}
    for key, what in sizes.items():
        parser.add_argument("--" + key.replace("_", "-"), type=int, help=f"{what} (default {FULL[key]})")
    parser.add_argument("--successors", type=int, default=4, help="states each state can move to (default 4)")
    parser.add_argument("--emissions", type=int, default=4, help="tokens each state can emit (default 4)")
    parser.add_argument("--budgets", type=int, nargs="+", help=f"NFE budgets (default {FULL['budgets']})")
    parser.add_argument("--handover-budget", type=int,
                        help=f"budget of the hand-over cells, among --budgets (default {FULL['handover_budget']})")
    parser.add_argument("--seed", type=int, default=0, help="seeds every random choice of the study (default: 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: small ops, shared cores)")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2),
                        help="2 (default): part (b)'s training runs in a second process beside part (a); 1: one after "
                             "the other")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    group = parser.add_argument_group("part (b), learned denoisers")
    group.add_argument("--no-learned", action="store_true", help="run part (a) alone")
    group.add_argument("--runs", type=pathlib.Path,
                       help="where training runs are kept and resumed (default OUT/.hmm_study_runs; --quick: a "
                            "temporary folder)")
    for key, what in learned_sizes.items():
        group.add_argument("--" + key.replace("_", "-"), type=int, help=f"{what} (default {FULL[key]})")
    for key, what in (("mdlm_lr", "peak learning rate of the MDLM run"),
                      ("dsl_lr", "peak learning rate of the DSL fine-tune")):
        group.add_argument("--" + key.replace("_", "-"), type=float, help=f"{what} (default {FULL[key]})")
    group.add_argument("--learned-budgets", type=int, nargs="+",
                       help=f"NFE budgets of the learned cells, among --budgets (default {FULL['learned_budgets']})")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.runs is None and not args.quick:
        args.runs = args.out / ".hmm_study_runs"
    if args.n < 2 or args.learned_n < 2 or min(args.budgets) < 1 or args.speed_batch < 1:
        parser.error("--n and --learned-n must be at least 2, every budget and --speed-batch at least 1")
    if args.handover_budget not in args.budgets or not (args.no_learned or args.handover_budget in args.learned_budgets):
        parser.error(f"--handover-budget {args.handover_budget} must be among --budgets {args.budgets} (and "
                     f"--learned-budgets {args.learned_budgets}): the hand-over cells stand beside the default hybrid's")
    if not args.no_learned and not set(args.learned_budgets) <= set(args.budgets):
        parser.error(f"--learned-budgets {args.learned_budgets} must be among --budgets {args.budgets}: each learned "
                     "cell stands beside the exact denoiser's")
    if min(args.kl_n, args.nll_n) < 2 or min(args.mdlm_steps, args.dsl_steps, args.stream_factor) < 1:
        parser.error("--kl-n and --nll-n must be at least 2, the step counts and --stream-factor at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    stem = "hmm_study_quick" if args.quick else "hmm_study"
    partial = args.out / f".{stem}.partial.jsonl"
    # learned cells from before the pair rate existed are computed again; part (a)'s exact cells do not need it
    record = Record(partial, accept=lambda row: row["denoiser"] == EXACT or "invalid_pairs" in row)
    hmm = build_hmm(args)
    entropy = hmm.entropy_rate(n=args.entropy_n, seed=args.seed + 1)
    speed = logits_speed(hmm, args)
    runs = contextlib.nullcontext(args.runs) if args.runs else tempfile.TemporaryDirectory(prefix="hmm_study_runs_")
    with runs as folder:  # quick mode without --runs: a temporary folder, gone once the models are in memory
        folder = learned.run_folder(pathlib.Path(folder), args)
        with training_beside(args, folder):
            rows = sweep(EXACT, hmm, hmm, entropy, cells(args.budgets, args.handover_budget, control=True), args.n,
                         args, record)
        part_b = None if args.no_learned else run_learned(hmm, entropy, args, record, folder)
    text = table(rows, args, entropy, part_b, speed)
    print(text)
    data = {"settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
            "entropy_rate_nats": entropy, "speed": speed, "rows": rows + (part_b[2] if part_b else [])}
    if part_b:
        trained, measured, _ = part_b
        data["learned"] = {t.name: {**t.summary(), **measured[t.name].to_dict()} for t in trained}
    write(args.out, stem, data, text, lambda path: plot(rows, entropy, part_b, path))
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
