"""Continuous paths on learned denoisers (issue 25): where their error grows, how close to exact a model must be, and
what path-matched training and drift guards change, judged exactly by an HMM.

The judge is an exact HMM (DESIGN.md 4c; K = V = 16, L = 64 by default): every sample's ``P(s)`` is exact, so the
invalid rate (``P(s) = 0``), the impossible-neighbour rate and the generation gap ``E_Q[-log2 P(s)] / L - H(P) / L``
need no reference LM. One learned model, a DiT trained with the MDLM objective (the *init*), is fine-tuned with
each objective for the same number of steps. Parts:

(a) **Trajectories.** ``snrpaths.diagnostics.trajectory``: per call of mdm / hybrid / ramp at each budget, the KL
    from the exact posterior to the model's on the states the sampler visits, bits per position the call can change.
(b) **Crossover.** ``Interpolated(hmm, init, w, mode)`` for ``w`` from 0 (exact) to 1 (the init), geometric and
    mixture: the first weight at which each continuous path stops beating ``mdm(T)`` at equal calls.
(c) **Training for the paths.** The init fine-tuned with DSL, Covering, PathStates(hybrid), on-policy PathStates with
    the exact HMM as teacher, and a DSL + PathStates mixture: KL by layout and SNR, trajectory KL along the hybrid,
    and the sampling cells.
(d) **Drift guards and correctors** on validation seeds: the hybrid with ramp temperature, top-k, noise scale, Heun
    steps, a lower hand-over and ``renoise`` correctors, beside masked diffusion with its own temperature / top-p.
(e) **The tuner** (``snrpaths.tune``, family ``hybrid``, metric ``hmm``) on validation seeds.

Selection and scoring never share data: every setting (the path's and masked diffusion's own temperature / top-p)
is chosen on validation seeds (``VALID_SEED``) by the tuner's ``hmm`` score ``|gap| + 10 * invalid`` plus a charge
for lost (or gained) diversity, :func:`selection_score`; the chosen rows are then scored on held-out seeds (``seed``)
with ``n`` samples. Diversity: the entropy of the samples' neighbouring pairs (plug-in, Miller-Madow corrected)
beside the truth's exact pair entropy: without its charge, sharpening (a low temperature, a small noise scale) wins
the tuner's score by collapsing the distribution (the charge was added after the first validation grid showed it).
The target of the issue: a learned model and a continuous path that beat ``mdm(T)``
at T = 16 and 32 on invalid rate, impossible pairs and gap with non-overlapping 95% intervals.

Runs (``--runs``, default ``benchmarks/results/.continuous_runs``) resume; finished cells are kept in a partial file
so an interrupted study continues where it stopped. ``--quick`` runs everything tiny (about a minute).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import sys
import tempfile
import time

import torch
from snrpaths.progress import track

from snrpaths import parse_path, sample
from snrpaths.backends import Interpolated
from snrpaths.backends.hmm import ExactHMM
from snrpaths.benchmarks import _hmm_learned as learned
from snrpaths.benchmarks._results import RESULTS, Record, write
from snrpaths.diagnostics import trajectory
from snrpaths.objectives import DSL, MDLM, Covering, Mixture, PathStates
from snrpaths.quality import exact_quality
from snrpaths.reprs import Z95
from snrpaths.train import LOG, TrainConfig, train
from snrpaths.tuning import tune

LN2 = math.log(2)
VALID_SEED = 1000
#: bits of pair entropy a sampler may lose or gain against the truth before its selection score pays for it: 7 s.e.
#: of the plug-in estimate at 256 samples (256 exact samples give 6.973 ± 0.014 against the exact 6.978)
DIVERSITY = 0.1
#: sampler -> path expression at a budget of ``T`` calls (the HMM study's rows)
PATHS = {
    "mdm": lambda T: f"mdm({T})",
    "hybrid": lambda T: f"hybrid({T // 2}, {T - T // 2})",
    "ramp": lambda T: f"ramp({T - 1}) >> switch('commit')",
}
CONTINUOUS = ("hybrid", "ramp")
FULL = {"states": 16, "vocab": 16, "seq_len": 64, "successors": 4, "emissions": 4, "seed": 0,
        "hidden": 64, "cond_dim": 32, "blocks": 2, "heads": 4, "batch": 32, "init_steps": 12000, "init_lr": 3e-3,
        "tune_steps": 3000, "tune_lr": 1e-3, "stream_factor": 2, "eval_rows": 256, "n": 512, "valid_n": 256,
        "budgets": (16, 32), "weights": (0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0), "trajectory_n": 256,
        "kl_n": 128, "nll_n": 64, "eval_batch": 128, "trials": 40, "refresh": 125, "rollouts": 8}
QUICK = {**FULL, "states": 8, "vocab": 8, "seq_len": 16, "hidden": 32, "cond_dim": 16, "blocks": 1, "heads": 2,
         "batch": 8, "init_steps": 12, "tune_steps": 6, "eval_rows": 8, "n": 32, "valid_n": 32, "budgets": (8,),
         "weights": (0.0, 0.5, 1.0),
         "trajectory_n": 16, "kl_n": 8, "nll_n": 4, "eval_batch": 32, "trials": 3, "refresh": 1, "rollouts": 4}
#: the settings a training run depends on (its folder's tag hashes them)
TRAIN_SETTINGS = ("states", "vocab", "seq_len", "successors", "emissions", "seed", "hidden", "cond_dim", "blocks",
                  "heads", "batch", "init_steps", "init_lr", "tune_steps", "tune_lr", "stream_factor", "eval_rows",
                  "refresh", "rollouts")


# -- the judge and its diversity measure ------------------------------------------------------------------------------


def build_hmm(args) -> ExactHMM:
    return ExactHMM.random(args.states, args.vocab, args.seq_len, seed=args.seed, successors=args.successors,
                           emissions=args.emissions, stationary=True)


def pair_law(hmm: ExactHMM) -> torch.Tensor:
    """``[V, V]`` the exact law of a neighbouring pair under the stationary chain:
    ``P(a, b) = sum_{h, h'} pi(h) B(h, a) T(h, h') B(h', b)``."""
    return (hmm.initial[:, None] * hmm.emission).T @ hmm.transition @ hmm.emission


def pair_entropy(tokens: torch.Tensor, vocab: int, boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """Plug-in entropy (bits) of the samples' neighbouring pairs ``(s_i, s_i+1)`` pooled over positions, with the
    Miller-Madow correction ``(m - 1) / (2 N ln 2)`` (``m`` pairs seen, ``N`` counted), and its bootstrap standard
    error over samples (``boot`` resamples; 0: none, NaN)."""
    codes = (tokens[:, :-1] * vocab + tokens[:, 1:]).long()  # [n, L-1]

    def entropy(rows: torch.Tensor) -> float:
        counts = torch.bincount(codes[rows].reshape(-1), minlength=vocab * vocab).double()
        p = counts / counts.sum()
        seen = p > 0
        return float(-(p[seen] * p[seen].log2()).sum()) + (int(seen.sum()) - 1) / (2 * counts.sum().item() * LN2)

    n = tokens.shape[0]
    if boot == 0:
        return entropy(torch.arange(n)), math.nan
    g = torch.Generator().manual_seed(seed)
    draws = torch.tensor([entropy(torch.randint(0, n, (n,), generator=g)) for _ in range(boot)])
    return entropy(torch.arange(n)), float(draws.std())


# -- training -------------------------------------------------------------------------------------------------------


def objectives(args, hmm: ExactHMM) -> dict:
    """Fine-tune name -> objective (the init's MDLM run comes first)."""
    hybrid = parse_path(PATHS["hybrid"](max(args.budgets)))
    return {"DSL": DSL(), "Covering": Covering(), "PathStates": PathStates(hybrid),
            "OnPolicy": PathStates(hybrid, policy="model", teacher=hmm, refresh=args.refresh, rollouts=args.rollouts),
            "Mixture": Mixture((DSL(), 0.5), (PathStates(hybrid), 0.5))}


def run_folder(runs: pathlib.Path, args) -> pathlib.Path:
    return runs / f"K{args.states}-V{args.vocab}-L{args.seq_len}-{learned.settings_tag(args, TRAIN_SETTINGS)}"


def _train(model, objective, hmm: ExactHMM, valid: torch.Tensor, steps: int, lr: float, args, out: pathlib.Path,
           seed: int):
    stream = hmm.sample_run(args.stream_factor * steps * args.batch * hmm.seq_len, torch.Generator().manual_seed(seed))
    interval = steps if args.quick else max(1, steps // 8)  # quick: one validation, at the end
    config = TrainConfig(steps=steps, batch=args.batch, lr=lr, warmup=min(100, steps // 10), eval_every=interval,
                         save_every=interval, eval_rows=args.eval_rows, seed=args.seed)
    started = time.perf_counter()
    result = train(model, objective, stream, valid, config, out, progress=not args.quick)
    log = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    return result.model, {"steps": steps, "lr": lr, "objective": repr(objective), "log": log,
                          "seconds_this_session": time.perf_counter() - started}


def train_models(hmm: ExactHMM, args, folder: pathlib.Path) -> tuple[dict, dict]:
    """The init (MDLM from scratch), then every fine-tune from it; each resumed from ``folder``."""
    valid = hmm.sample_run(args.eval_rows * hmm.seq_len, torch.Generator().manual_seed(args.seed + 10))
    init, info = _train(learned.fresh_model(hmm, args), MDLM(), hmm, valid, args.init_steps, args.init_lr, args,
                        folder / "init", args.seed + 11)
    models, infos = {"init": init}, {"init": info}
    for i, (name, objective) in enumerate(objectives(args, hmm).items()):
        models[name], infos[name] = _train(copy.deepcopy(init), objective, hmm, valid, args.tune_steps, args.tune_lr,
                                           args, folder / name, args.seed + 12 + i)
    return models, infos


# -- cells ----------------------------------------------------------------------------------------------------------


def cell(denoiser, hmm: ExactHMM, entropy, expression: str, n: int, seed: int) -> dict:
    """One sampler's ``n`` samples at ``seed``, judged by ``hmm``: the exact quality, the pair entropy and the tuner's
    ``hmm`` score ``|gap| + 10 invalid``."""
    start = time.perf_counter()
    result = sample(parse_path(expression), denoiser, batch=n, seed=seed)
    q = exact_quality(hmm, result.tokens, entropy)
    h, h_se = pair_entropy(result.tokens, hmm.vocab_size, seed=seed)
    score = (0.0 if q.n_valid == 0 else abs(q.gap)) + 10 * q.invalid
    return {"path": expression, "seed": seed, "n": n, "nfe": result.nfe, **q.to_dict(), "pair_entropy": h,
            "pair_entropy_se": h_se, "score": score, "seconds": time.perf_counter() - start}


def guards(T: int, mdm_tail: str = "", quick: bool = False) -> dict[str, str]:
    """Continuous paths with drift guards and correctors at a budget of ``T`` calls, by name (part (d)): hand-over
    SNR x ramp temperature x noise scale, for the hybrid (``T // 2`` ramp steps, then masked diffusion with
    ``mdm_tail``, e.g. ``", temperature=0.8, top_p=0.9"``: masked diffusion's own setting, chosen on validation) and
    the committed ramp; and per hand-over SNR a hybrid whose ramp averages the top 4 tokens, a Heun hybrid (two calls
    a step: half the ramp's steps) and a predictor-corrector hybrid (ramp, ``renoise`` to a quarter of the hand-over
    SNR, ramp again, masked diffusion).
    ``quick``: a corner of the grid."""
    a, b = T // 2, T - T // 2
    tail = f" >> switch('keep') >> mdm({b}{mdm_tail})"
    rows = {}
    for g in (40.0, 8.0)[: 1 if quick else 2]:
        for temp in (1.0, 0.85, 0.7)[: 2 if quick else 3]:
            for noise in (1.0, 0.9, 0.75, 0.5, 0.25)[: 1 if quick else 5]:
                guard = f"gamma_max={g:g}, temperature={temp}, noise={noise}"
                rows[f"hybrid g{g:g} t{temp} n{noise}"] = f"ramp({a}, {guard}){tail}"
                rows[f"ramp g{g:g} t{temp} n{noise}"] = f"ramp({T - 1}, {guard}) >> switch('commit')"
        # the authors' truncation of the mean (top-k of V = 16: a state emits 4 tokens here)
        rows[f"hybrid g{g:g} top_k 4"] = f"ramp({a}, gamma_max={g:g}, top_k=4){tail}"
        half = max(a // 2, 1)
        rows[f"hybrid heun g{g:g}"] = (f"ramp({half}, gamma_max={g:g}, solver='heun') >> switch('keep') >> "
                                       f"mdm({T - 2 * half}{mdm_tail})")
        if a >= 2:
            rows[f"hybrid renoise g{g:g}"] = (f"ramp({half}, gamma_max={g:g}) >> renoise({g / 4:g}) >> "
                                              f"ramp({a - half}, gamma_max={g:g}){tail}")
    return rows


def mdm_settings(T: int, quick: bool = False) -> dict[str, str]:
    """Masked diffusion with its own temperature and top-p (part (d)'s baseline, chosen like the paths' settings)."""
    temps, tops = (((1.0, 0.7), (1.0,)) if quick else
                   ((1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5), (1.0, 0.95, 0.9)))
    return {f"mdm t{t} p{p}": f"mdm({T}, temperature={t}, top_p={p})" for t in temps for p in tops}


def mdm_phase(expression: str) -> str:
    """``", temperature=t, top_p=p"`` of an :func:`mdm_settings` expression, for the hybrid's masked-diffusion phase."""
    return expression[expression.index(","):-1]


def selection_score(row: dict, truth_pair_entropy: float) -> float:
    """What every setting is chosen by, on validation seeds: the tuner's ``hmm`` score ``|gap| + 10 invalid`` plus
    ``10 max(0, |H2(Q) - H2(P)| - DIVERSITY)``, the samples' pair entropy against the truth's. Without the diversity
    term sharpening wins by collapse: on the chosen fine-tune, ``mdm(16, temperature=0.5, top_p=0.9)`` scored 1.08 with
    pair entropy 5.61 bits against the truth's 6.98, and ramps with ``noise=0.25`` 0.47 at 3.31 bits."""
    excess = max(0.0, abs(row["pair_entropy"] - truth_pair_entropy) - DIVERSITY)
    return row["score"] + 10 * excess


def best(rows: dict[str, dict], truth_pair_entropy: float) -> str:
    """The name of the row of lowest :func:`selection_score` (ties: the first)."""
    return min(rows, key=lambda name: selection_score(rows[name], truth_pair_entropy))


def interval(row: dict, key: str) -> tuple[float, float]:
    """The 95% interval of ``row[key]``; for the gap, of ``|gap|`` (closer to 0 is better: a sampler that collapses
    onto likely sequences goes below 0). NaN (no valid sample) gives ``(nan, nan)``, which beats nothing."""
    lo, hi = row[key] - Z95 * row[f"{key}_se"], row[key] + Z95 * row[f"{key}_se"]
    if key == "gap":
        lo, hi = (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
    return lo, hi


def beats(path_row: dict, mdm_row: dict, key: str) -> bool:
    """Whether the path's 95% interval for ``key`` lies wholly below masked diffusion's (lower is better)."""
    return interval(path_row, key)[1] < interval(mdm_row, key)[0]


METRICS = ("invalid", "invalid_pairs", "gap")
#: what the JSON keeps of every validation cell of a search (part (d))
VALIDATION_FIELDS = ("invalid", "invalid_se", "invalid_pairs", "invalid_pairs_se", "gap", "gap_se", "pair_entropy",
                     "score", "nfe")


# -- parts ----------------------------------------------------------------------------------------------------------


class Study:
    """The parts of the study over one judge and one set of trained models; every cell goes through ``record``."""

    def __init__(self, args, hmm: ExactHMM, models: dict, record: Record, tag: str):
        self.args, self.hmm, self.models, self.record, self.tag = args, hmm, models, record, tag
        self.entropy = hmm.entropy_rate(n=4096 if not args.quick else 512, seed=args.seed + 1)
        law = pair_law(hmm)
        self.truth_pair_entropy = float(-(law[law > 0] * law[law > 0].log2()).sum())

    def cell(self, label: str, denoiser, expression: str, held_out: bool) -> dict:
        n, seed = (self.args.n, self.args.seed) if held_out else (self.args.valid_n, VALID_SEED)
        key = f"{self.tag}|cell|{label}|{expression}|{n}|{seed}"
        return self.record.get(key, lambda: {"denoiser": label, **cell(denoiser, self.hmm, self.entropy, expression,
                                                                          n, seed)})

    def trajectories(self, labels) -> list[dict]:
        """Part (a): per-call KL along each default path, for the exact HMM (0 by construction) and the models."""
        rows = []
        dens = {"exact": self.hmm, **{k: self.models[k] for k in labels}}
        for label, den in dens.items():
            for T in self.args.budgets:
                for name, path in PATHS.items():
                    key = f"{self.tag}|trajectory|{label}|{path(T)}|{self.args.trajectory_n}"
                    rows.append(self.record.get(key, lambda: {
                        "denoiser": label, "sampler": name, "budget": T, "path": path(T),
                        "rows": json.loads(trajectory(parse_path(path(T)), den, self.hmm,
                                                      batch=self.args.trajectory_n, seed=self.args.seed).to_json())}))
        return rows

    def crossover(self) -> list[dict]:
        """Part (b): the default paths on ``Interpolated(hmm, init, w, mode)``, held-out seeds."""
        rows = []
        for mode in ("geometric", "mixture"):
            for w in self.args.weights:
                den = Interpolated(self.hmm, self.models["init"], w, mode=mode)
                for T in self.args.budgets:
                    for name, path in PATHS.items():
                        row = self.cell(f"init {mode} w={w:g}", den, path(T), held_out=True)
                        rows.append({**row, "mode": mode, "weight": w, "sampler": name, "budget": T})
        return rows

    def defaults(self) -> list[dict]:
        """Part (c)'s sampling cells: the default paths on every model, held-out seeds."""
        return [{**self.cell(label, den, path(T), held_out=True), "sampler": name, "budget": T}
                for label, den in self.models.items() for T in self.args.budgets for name, path in PATHS.items()]

    def chosen_finetune(self) -> str:
        """The fine-tune whose default hybrid scores best on validation seeds at the largest budget: the model part (d)
        searches beside the init (chosen without held-out data)."""
        T = max(self.args.budgets)
        scores = {label: self.cell(label, den, PATHS["hybrid"](T), held_out=False)["score"]
                  for label, den in self.models.items() if label != "init"}
        return min(scores, key=scores.get)

    def guarded(self, labels) -> list[dict]:
        """Part (d): on validation seeds, every masked-diffusion setting, then every guard row (the hybrid's
        masked-diffusion phase at masked diffusion's choice); the best of each on held-out seeds."""
        out = []
        for label in labels:
            for T in self.args.budgets:
                mdm = self.search(label, T, "mdm", mdm_settings(T, self.args.quick))
                tail = mdm_phase(mdm["path"])
                out += [mdm, self.search(label, T, "continuous", guards(T, tail, self.args.quick))]
        return out

    def search(self, label: str, T: int, kind: str, rows: dict[str, str]) -> dict:
        """The held-out row of the setting of ``rows`` (name -> expression) that :func:`best` picks on validation
        seeds, with the whole search (``searched``)."""
        den = self.models[label]
        valid = {name: self.cell(label, den, expr, held_out=False)
                 for name, expr in track(list(rows.items()), "cell", f"{label} T={T} {kind}",
                                         not self.args.quick)}
        name = best(valid, self.truth_pair_entropy)
        searched = [{"setting": k, "selection_score": selection_score(v, self.truth_pair_entropy),
                     **{m: v[m] for m in (*VALIDATION_FIELDS, "path")}} for k, v in valid.items()]
        return {**self.cell(label, den, rows[name], held_out=True), "denoiser": label, "kind": kind, "budget": T,
                "setting": name, "valid_score": selection_score(valid[name], self.truth_pair_entropy),
                "searched": searched}

    def tuning_metric(self, tokens: torch.Tensor) -> float:
        """The tuner's objective: :func:`selection_score` of the trial's samples (no bootstrap)."""
        q = exact_quality(self.hmm, tokens, self.entropy)
        row = {"score": (0.0 if q.n_valid == 0 else abs(q.gap)) + 10 * q.invalid,
               "pair_entropy": pair_entropy(tokens, self.hmm.vocab_size, boot=0)[0]}
        return selection_score(row, self.truth_pair_entropy)

    def tuned(self, labels) -> list[dict]:
        """Part (e): the tuner on the hybrid family, validation seeds; the best path on held-out seeds."""
        out = []
        for label in labels:
            den = self.models[label]
            for T in self.args.budgets:
                key = f"{self.tag}|tune|{label}|{T}|{self.args.trials}|{self.args.valid_n}|diverse"
                best_path = self.record.get(key, lambda: {"path": repr(tune(
                    "hybrid", den, nfe=T, metric=self.tuning_metric, trials=self.args.trials, seed=VALID_SEED,
                    n=self.args.valid_n, progress=not self.args.quick).best)})["path"]
                out.append({**self.cell(label, den, best_path, held_out=True), "denoiser": label, "kind": "tuned",
                            "budget": T, "setting": best_path})
        return out


# -- tables ---------------------------------------------------------------------------------------------------------


def _pct(row: dict, key: str) -> str:
    return f"{100 * row[key]:.1f} ± {100 * Z95 * row[f'{key}_se']:.1f}"


def _gap(row: dict) -> str:
    return "—" if math.isnan(row["gap"]) else f"{row['gap']:+.3f} ± {Z95 * row['gap_se']:.3f}"


def quality_cells(row: dict) -> str:
    """invalid % | impossible pairs % | gap | pair entropy, each ± its 95% half-width."""
    return (f"{_pct(row, 'invalid')} | {_pct(row, 'invalid_pairs')} | {_gap(row)} | "
            f"{row['pair_entropy']:.3f} ± {Z95 * row['pair_entropy_se']:.3f}")


QUALITY_HEAD = "invalid % | impossible pairs % | gap (bits/token) | pair entropy (bits)"


def training_table(infos: dict, entropy_bits: float) -> str:
    out = [f"Training (validation ROAR bits/token on the EMA weights; entropy rate {entropy_bits:.3f}):\n",
           "| model | objective | steps | lr | valid bits/token |", "|---|---|---:|---:|---:|"]
    for name, info in infos.items():
        last = [r for r in info["log"] if "valid_bpc" in r]
        valid = f"{last[-1]['valid_bpc']:.4f} ± {last[-1]['valid_bpc_se']:.4f}" if last else "—"
        out.append(f"| {name} | `{info['objective']}` | {info['steps']} | {info['lr']:g} | {valid} |")
    return "\n".join(out)


def _kl_value(call: dict) -> float:
    """A call's mean KL from the JSON of a trajectory ("inf" when the model gave 0 where the truth did not)."""
    value = call["kl_mean"]
    return math.nan if value is None else float(value)


def _kl(call: dict) -> str:
    se = call["kl_se"]
    return f"{_kl_value(call):.3f}" + ("" if se is None else f" ± {float(se):.3f}")


def trajectory_table(rows: list[dict]) -> str:
    """KL per free position (bits) at five points of each path: the first call, a quarter, half, three quarters, the
    last call; and the largest."""
    out = ["Trajectory KL(exact || model) per position a call can change, bits ± s.e. over rows, on the states each "
           "sampler visits with that model (calls at 0, 1/4, 1/2, 3/4 and the end of the run):\n",
           "| model | sampler | T | first | 1/4 | 1/2 | 3/4 | last | max |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        calls = r["rows"]["rows"]
        if not calls:
            continue
        picks = [calls[min(len(calls) - 1, round(q * (len(calls) - 1)))] for q in (0, 0.25, 0.5, 0.75, 1)]
        cells = [_kl(c) for c in picks]
        out.append(f"| {r['denoiser']} | {r['sampler']} | {r['budget']} | " + " | ".join(cells)
                   + f" | {max(_kl_value(c) for c in calls):.3f} |")
    return "\n".join(out)


def crossover_weight(rows: list[dict], mode: str, sampler: str, T: int, key: str) -> str:
    """The grid's first weight after the largest one at which the path beats ``mdm(T)`` (non-overlapping 95%
    intervals), with the weights where mdm beats the path; 'never won' / 'won at every weight' at the ends."""
    weights = sorted({r["weight"] for r in rows if r["mode"] == mode})
    at = {(r["weight"], r["sampler"]): r for r in rows if r["mode"] == mode and r["budget"] == T}
    wins = [w for w in weights if beats(at[(w, sampler)], at[(w, "mdm")], key)]
    losses = [w for w in weights if beats(at[(w, "mdm")], at[(w, sampler)], key)]
    lost = f" (mdm better at {', '.join(f'{w:g}' for w in losses)})" if losses else ""
    if not wins:
        return "never won" + lost
    after = [w for w in weights if w > max(wins)]
    return ("won at every weight" if not after else f"{after[0]:g}") + lost


def crossover_table(rows: list[dict], budgets) -> str:
    out = ["Crossover: the default paths on Interpolated(exact HMM, init, w), held-out seeds; cells " + QUALITY_HEAD
           + " (± 95% half-widths):\n",
           "| mode | w | T | sampler | " + QUALITY_HEAD + " |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['weight']:g} | {r['budget']} | {r['sampler']} | {quality_cells(r)} |")
    out += ["", "Crossover weight: the first weight of the grid after the last one at which each continuous path beats "
            "mdm(T) at equal calls (95% intervals not overlapping), per metric; in brackets the weights where mdm(T) "
            "beats the path:\n",
            "| mode | T | sampler | " + " | ".join(METRICS) + " |", "|---|---:|---|---:|---:|---:|"]
    for mode in ("geometric", "mixture"):
        for T in budgets:
            for sampler in CONTINUOUS:
                ws = [crossover_weight(rows, mode, sampler, T, key) for key in METRICS]
                out.append(f"| {mode} | {T} | {sampler} | " + " | ".join(ws) + " |")
    return "\n".join(out)


def quality_table(rows: list[dict], title: str, label_keys=("denoiser", "sampler", "budget")) -> str:
    out = [title + "\n", "| " + " | ".join(label_keys) + " | " + QUALITY_HEAD + " | calls |",
           "|" + "---|" * len(label_keys) + "---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append("| " + " | ".join(f"`{r[k]}`" if k in ("setting", "path") else str(r[k]) for k in label_keys)
                   + f" | {quality_cells(r)} | {r['nfe']} |")
    return "\n".join(out)


def search_table(rows: list[dict], top: int = 6) -> str:
    """Part (d)'s searches on validation seeds: per model, budget and kind the ``top`` settings by selection score, and
    the best of each corrector (top-k, Heun, renoise) beside them."""
    out = ["(d) The searches on validation seeds (n = 256), best first by the selection score; then the best setting "
           "of each corrector:\n",
           "| model | T | kind | path | selection score | invalid % | impossible pairs % | gap | pair entropy |",
           "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ranked = sorted(r["searched"], key=lambda v: v["selection_score"])
        extra = [next((v for v in ranked if word in v["setting"]), None) for word in ("top_k", "heun", "renoise")]
        for v in ranked[:top] + [v for v in extra if v is not None and v not in ranked[:top]]:
            out.append(f"| {r['denoiser']} | {r['budget']} | {r['kind']} | `{v['path']}` | "
                       f"{v['selection_score']:.3f} | {100 * v['invalid']:.1f} | {100 * v['invalid_pairs']:.2f} | "
                       f"{v['gap']:+.3f} | {v['pair_entropy']:.3f} |")
    return "\n".join(out)


def target_table(rows: list[dict], budgets) -> str:
    """Per model and budget: does the best continuous setting (chosen on validation) beat the best masked-diffusion
    setting (chosen the same way) on held-out seeds, metric by metric?"""
    out = ["Target check (held-out seeds; both settings chosen on validation seeds): does the continuous path beat "
           "masked diffusion with its own temperature / top-p? (yes = 95% intervals do not overlap)\n",
           "| model | T | continuous | masked diffusion | " + " | ".join(METRICS) + " |",
           "|---|---:|---|---|---|---|---|"]
    by = {(r["denoiser"], r["budget"], r["kind"]): r for r in rows}
    for (label, T, kind), r in by.items():
        if kind != "mdm":
            continue
        for other in ("continuous", "tuned"):
            c = by.get((label, T, other))
            if c is None:
                continue
            verdict = ["yes" if beats(c, r, key) else ("LOSES" if beats(r, c, key) else "tie") for key in METRICS]
            out.append(f"| {label} | {T} | `{c['path']}` | `{r['path']}` | " + " | ".join(verdict) + " |")
    return "\n".join(out)


# -- plot -----------------------------------------------------------------------------------------------------------


def plot(parts: dict, args, out: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = max(args.budgets)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    ax = axes[0, 0]
    for r in parts["trajectories"]:
        if r["budget"] != T or r["denoiser"] not in ("init", parts["chosen"]):
            continue
        calls = r["rows"]["rows"]
        x = [(i + 1) / len(calls) for i in range(len(calls))]
        style = "-" if r["denoiser"] == "init" else "--"
        color = {"mdm": "C0", "hybrid": "C1", "ramp": "C2"}[r["sampler"]]
        ax.plot(x, [max(_kl_value(c), 1e-5) for c in calls], style, color=color, marker=".",
                label=f"{r['sampler']}, {r['denoiser']}")
    ax.set_yscale("log")
    ax.set(xlabel="call / calls of the run", ylabel="KL(exact || model) per changeable position, bits",
           title=f"(a) where the error grows, T = {T}")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for mode, style in (("geometric", "-o"), ("mixture", "--s")):
        for sampler, color in (("mdm", "C0"), ("hybrid", "C1"), ("ramp", "C2")):
            rs = sorted((r for r in parts["crossover"] if r["mode"] == mode and r["sampler"] == sampler
                         and r["budget"] == T), key=lambda r: r["weight"])
            ax.errorbar([r["weight"] for r in rs], [100 * r["invalid_pairs"] for r in rs],
                        yerr=[100 * Z95 * r["invalid_pairs_se"] for r in rs], fmt=style, color=color, ms=3, capsize=2,
                        label=f"{sampler}, {mode}")
    ax.set(xlabel="weight of the learned model (0 = exact)", ylabel="impossible neighbours, %",
           title=f"(b) crossover, T = {T}")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    labels = list(dict.fromkeys(r["denoiser"] for r in parts["defaults"]))
    for j, sampler in enumerate(PATHS):
        rs = {r["denoiser"]: r for r in parts["defaults"] if r["sampler"] == sampler and r["budget"] == T}
        ax.bar([i + 0.27 * (j - 1) for i in range(len(labels))], [100 * rs[k]["invalid_pairs"] for k in labels],
               0.27, yerr=[100 * Z95 * rs[k]["invalid_pairs_se"] for k in labels], label=sampler, capsize=2)
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.set(ylabel="impossible neighbours, %", title=f"(c) fine-tunes, default paths, T = {T}")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    rows = parts["guarded"] + parts["tuned"]
    keys = list(dict.fromkeys((r["denoiser"], r["budget"]) for r in rows))
    for j, kind in enumerate(("mdm", "continuous", "tuned")):
        rs = {(r["denoiser"], r["budget"]): r for r in rows if r["kind"] == kind}
        xs = [i + 0.27 * (j - 1) for i, k in enumerate(keys) if k in rs]
        ax.bar(xs, [100 * rs[k]["invalid_pairs"] for k in keys if k in rs], 0.27,
               yerr=[100 * Z95 * rs[k]["invalid_pairs_se"] for k in keys if k in rs], capsize=2,
               label={"mdm": "mdm, own temperature / top-p", "continuous": "best guarded continuous",
                      "tuned": "tuned hybrid"}[kind])
    ax.set_xticks(range(len(keys)), [f"{a}\nT={b}" for a, b in keys], fontsize=8)
    ax.set(ylabel="impossible neighbours, % (held-out)", title="(d, e) chosen on validation, scored held-out")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snrpaths bench continuous", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and grids (about a minute)")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS,
                        help="results folder for the JSON, table and plot (default: benchmarks/results)")
    parser.add_argument("--runs", type=pathlib.Path,
                        help="where training runs are kept and resumed (default OUT/.continuous_runs; --quick: a "
                             "temporary folder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    for key in ("init_steps", "tune_steps", "n", "valid_n", "trials"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, help=f"default {FULL[key]}")
    parser.add_argument("--budgets", type=int, nargs="+", help=f"call budgets (default {FULL['budgets']})")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.runs is None and not args.quick:
        args.runs = args.out / ".continuous_runs"
    if min(args.budgets) < 4 or min(args.n, args.valid_n) < 2:
        parser.error("every budget must be at least 4 (the ramp and the hybrid need two stages) and --n, --valid-n "
                     "at least 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    stem = "continuous_quick" if args.quick else "continuous"
    record = Record(args.out / f".{stem}.partial.jsonl")
    hmm = build_hmm(args)
    if not args.quick:
        print("continuous study: about 2 h of one core from scratch (training the init 15 min, five fine-tunes 55 min, "
              "the searches and cells 50 min); it resumes where it stopped", file=sys.stderr, flush=True)
    runs = tempfile.TemporaryDirectory(prefix="continuous_runs_") if args.runs is None else None
    folder = run_folder(pathlib.Path(runs.name if runs else args.runs), args)
    try:
        models, infos = train_models(hmm, args, folder)
    finally:
        if runs is not None:
            runs.cleanup()
    for model in models.values():
        model.eval()
    tag = learned.settings_tag(args, (*TRAIN_SETTINGS, "n", "valid_n", "trajectory_n", "trials"))
    study = Study(args, hmm, models, record, tag)
    entropy_bits = study.entropy[0] / LN2
    truth_pair_entropy = study.truth_pair_entropy
    tokens = hmm.sample(max(args.kl_n, args.nll_n), torch.Generator().manual_seed(args.seed + 20))
    measured = {label: learned.measure(argparse.Namespace(model=m), hmm, tokens, args)
                for label, m in models.items()}
    chosen = study.chosen_finetune()
    parts = {"chosen": chosen, "guarded": study.guarded([chosen]), "tuned": study.tuned([chosen]),
             "crossover": study.crossover(), "defaults": study.defaults(),
             "trajectories": study.trajectories(list(models))}
    text = "\n\n".join([
        f"# Continuous paths on learned denoisers (exact HMM K = {args.states}, V = {args.vocab}, L = {args.seq_len}; "
        f"entropy rate {entropy_bits:.3f} bits/token, exact pair entropy {truth_pair_entropy:.3f} bits)",
        training_table(infos, entropy_bits), learned.kl_table(measured),
        learned.likelihood_table(measured, entropy_bits),
        trajectory_table(parts["trajectories"]), crossover_table(parts["crossover"], args.budgets),
        quality_table(parts["defaults"], f"(c) Default paths on every model, held-out seeds, n = {args.n}:"),
        f"(d) The fine-tune searched beside the init (best default hybrid on validation seeds): **{chosen}**.",
        quality_table(parts["guarded"] + parts["tuned"], f"(d, e) The best setting of each kind, chosen on "
                      f"validation seeds (n = {args.valid_n}) by |gap| + 10 invalid + 10 max(0, |pair entropy - "
                      f"{truth_pair_entropy:.3f}| - {DIVERSITY}), scored on held-out seeds "
                      f"(n = {args.n}):", ("denoiser", "budget", "kind", "path")),
        target_table(parts["guarded"] + parts["tuned"], args.budgets), search_table(parts["guarded"])])
    print(text)
    data = {"settings": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
            "entropy_rate_bits": entropy_bits, "pair_entropy_bits": truth_pair_entropy,
            "training": infos, "measured": {k: m.to_dict() for k, m in measured.items()}, **parts}
    write(args.out, stem, data, text, lambda path: plot(parts, args, path))
    record.partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
