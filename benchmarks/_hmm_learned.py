"""Part (b) of the exact HMM study: learned denoisers trained on fresh samples of the HMM, judged by the HMM itself.

Data. The study's HMM starts at the stationary law of its chain, so every window of ``L`` tokens of one long run is an
exact draw from ``P`` (:meth:`snrpaths.backends.ExactHMM.sample_run`). Each training run reads a fresh run of its
own, ``stream_factor`` times as long as the tokens it will see (random windows then rarely cover a token twice: no
corpus to overfit); validation reads another run; the measurements use i.i.d. exact samples (``ExactHMM.sample``).

Models. A DiT denoiser (:class:`snrpaths.backends.DSLDenoiser`, evidence head) trained with the MDLM objective,
then fine-tuned from it with DSL's (the trainer starts the converter at the context-free Bayes rule). Its anchors are
frozen at the HMM's token table, so the exact posterior, both models and every sampler see the same evidence ``z``:
the KL below is between two posteriors of one state, and a path's numbers with the exact denoiser (part (a)) and
with a model differ only by the denoiser. Runs live in ``runs/<settings tag>/{mdlm,dsl}`` and resume (``train``).

Measurements per model (:func:`measure`), against the truth:

    KL_gamma = mean_i KL(p(s_i | z) || p_theta(s_i | z))    bits, per SNR, layouts "all" and "half"
                                                             (snrpaths.diagnostics.evidence_curve, reference = HMM)
    ROAR - exact = mean_b [ROAR_b - (-log2 P(s_b))] / L      bits/token, paired over held-out samples s_b
                                                             (snrpaths.nll.roar, one random order per sample)

and (in ``hmm_study``) the sampler cells of part (a), judged by ``exact_quality``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import pathlib
import time

import attrs
import torch
from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser
from snrpaths.backends.hmm import ExactHMM

from snrpaths.diagnostics import DEFAULT_GAMMAS, EvidenceCurve, Estimate, evidence_curve
from snrpaths.nll import roar
from snrpaths.objectives import DSL, MDLM
from snrpaths.state import SNRState
from snrpaths.train import LOG, TrainConfig, train

LN2 = math.log(2)
#: Run name -> (objective, what it starts from).
RUNS = {"MDLM": (MDLM(), "fresh"), "DSL": (DSL(), "MDLM")}
#: The settings that define a training run (the folder's tag hashes their values).
TRAIN_SETTINGS = ("states", "vocab", "seq_len", "successors", "emissions", "seed", "hidden", "cond_dim", "blocks",
                  "heads", "batch", "mdlm_steps", "dsl_steps", "mdlm_lr", "dsl_lr", "stream_factor", "eval_rows")


@attrs.frozen(eq=False)
class Trained:
    """A finished run: the model (EMA weights), its folder, its validation log, and the data it read."""

    name: str
    model: DSLDenoiser
    out: pathlib.Path
    log: tuple[dict, ...]
    steps: int
    lr: float
    tokens_seen: int
    stream_tokens: int

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def summary(self) -> dict:
        last = self.log[-1] if self.log else {}
        return {"name": self.name, "objective": type(RUNS[self.name][0]).__name__, "init": RUNS[self.name][1],
                "out": str(self.out), "steps": self.steps, "lr": self.lr, "parameters": self.parameters,
                "tokens_seen": self.tokens_seen, "stream_tokens": self.stream_tokens,
                "tokens_per_s": last.get("tokens_per_s"), "valid_bits": last.get("valid_bpc"),
                "valid_bits_se": last.get("valid_bpc_se"), "log": list(self.log)}


def settings_tag(args, names) -> str:
    """A short hash of the settings ``names`` of ``args``: what a kept result was computed under."""
    return hashlib.sha1(json.dumps({k: getattr(args, k) for k in names}, sort_keys=True).encode()).hexdigest()[:10]


def run_folder(runs: pathlib.Path, args) -> pathlib.Path:
    """``runs/K..-V..-L..-<tag>``: the tag hashes every setting that defines the runs, so a changed setting trains
    afresh in another folder instead of resuming a run that read other data."""
    return runs / f"K{args.states}-V{args.vocab}-L{args.seq_len}-{settings_tag(args, TRAIN_SETTINGS)}"


def fresh_model(hmm: ExactHMM, args) -> DSLDenoiser:
    """A DiT denoiser for ``hmm``'s ``V`` and ``L`` with its anchors frozen at the HMM's table. No dropout: every
    window is fresh data."""
    backbone = DiTConfig(vocab_size=hmm.vocab_size, seq_len=hmm.seq_len, hidden=args.hidden, cond_dim=args.cond_dim,
                         n_blocks=args.blocks, n_heads=args.heads, dropout=0.0)
    model = DSLDenoiser.build(backbone, ConverterConfig(anchor_dim=hmm.table.dim, learn_anchors=False), seed=args.seed)
    with torch.no_grad():
        model.converter.anchor_weight.copy_(hmm.table.anchors)
    return model


def train_models(hmm: ExactHMM, args, folder: pathlib.Path) -> list[Trained]:
    """The MDLM run, then the DSL fine-tune of its result, each resumed from ``folder`` where it stopped."""
    valid = hmm.sample_run(args.eval_rows * hmm.seq_len, torch.Generator().manual_seed(args.seed + 10))
    mdlm = _train("MDLM", fresh_model(hmm, args), hmm, valid, args.mdlm_steps, args.mdlm_lr, args,
                  folder / "mdlm", args.seed + 11)
    dsl = _train("DSL", copy.deepcopy(mdlm.model), hmm, valid, args.dsl_steps, args.dsl_lr, args, folder / "dsl",
                 args.seed + 12)
    return [mdlm, dsl]


def _train(name: str, model: DSLDenoiser, hmm: ExactHMM, valid: torch.Tensor, steps: int, lr: float, args,
           out: pathlib.Path, seed: int) -> Trained:
    seen = steps * args.batch * hmm.seq_len
    stream = hmm.sample_run(args.stream_factor * seen, torch.Generator().manual_seed(seed))
    interval = max(1, steps // 8)  # eight validations (and checkpoints) per run; warm-up: a tenth, at most 100 steps
    config = TrainConfig(steps=steps, batch=args.batch, lr=lr, warmup=min(100, steps // 10), eval_every=interval,
                         save_every=interval, eval_rows=args.eval_rows, seed=args.seed)
    result = train(model, RUNS[name][0], stream, valid, config, out, progress=not args.quick)
    log = tuple(json.loads(line) for line in (out / LOG).read_text().splitlines())
    return Trained(name, result.model, out, log, steps, lr, seen, len(stream))


def token_law(hmm: ExactHMM) -> torch.Tensor:
    """``[V]`` the law of every token under the stationary chain, ``pi B``: the context-free rule's exact prior."""
    return hmm.initial @ hmm.emission


@attrs.frozen
class EndpointRow:
    """The endpoint denoiser (gamma = 0) in one layout, bits per [MASK] position, means over windows: the context-free
    rule's cross-entropy, the model's, and the exact KL from the Bayes posterior to the model's."""

    layout: str
    rule: Estimate
    model: Estimate
    kl: Estimate


@attrs.frozen(eq=False)
class Measured:
    """One model against the truth: its endpoint rows (gamma = 0) and evidence curve with exact KL, and ROAR NLL beside
    ``-log2 P`` (bits/token: ``roar``, ``exact`` and their paired difference ``gap``, each a mean over samples with
    its standard error)."""

    endpoint: list[EndpointRow]
    curve: EvidenceCurve
    nll: dict[str, Estimate]
    n: int
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        return {"endpoint": [attrs.asdict(r) for r in self.endpoint], "evidence": self.curve.to_dict(),
                "nll": {k: attrs.asdict(v) for k, v in self.nll.items()}, "nll_n": self.n, "seconds": self.seconds}


def endpoint_rows(model, hmm: ExactHMM, tokens: torch.Tensor, seed: int, batch: int) -> list[EndpointRow]:
    """KL at gamma = 0 (which the evidence curve, a measure of reading evidence, leaves out): on ``tokens`` ``[N, L]``
    exact samples, layout 'all' puts every position at [MASK] (the prior marginals) and 'half' a random half, the
    rest clean (the states masked diffusion decodes from). Per window, the mean over its [MASK] positions ``M`` of
    ``KL(p(s_i | z) || p_theta(s_i | z)) = sum_v p (log2 p - log2 p_theta)``, and of the cross-entropies
    ``-log2 p_theta(s_i | z)`` and ``-log2 (pi B)(s_i)`` (the context-free rule)."""
    keep = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(seed)) < 0.5
    rule = -token_law(hmm).log()[tokens] / LN2  # [N, L]
    rows = []
    for layout, prompt in (("all", torch.full_like(tokens, -1)), ("half", torch.where(keep, tokens, -1))):
        kl, ce = [], []
        for part in torch.split(torch.arange(len(tokens)), batch):
            exact = hmm.logits(SNRState.from_prompt(prompt[part], hmm.table)).log_softmax(-1)
            with torch.no_grad():
                learned = model.logits(SNRState.from_prompt(prompt[part], model.table)).double().log_softmax(-1)
            p = exact.exp()
            kl.append(torch.where(p > 0, p * (exact - learned), 0.0).sum(-1) / LN2)
            ce.append(-learned.gather(-1, tokens[part, :, None]).squeeze(-1) / LN2)
        masked = prompt < 0
        per_window = [(v * masked).sum(1) / masked.sum(1).clamp_min(1) for v in (rule, torch.cat(kl), torch.cat(ce))]
        rows.append(EndpointRow(layout, Estimate.of(per_window[0]), Estimate.of(per_window[2]),
                                Estimate.of(per_window[1])))
    return rows


def measure(trained: Trained, hmm: ExactHMM, tokens: torch.Tensor, args) -> Measured:
    """The evidence curve with exact KL (both layouts) on ``tokens[:kl_n]``, and ROAR NLL (one random order per
    sample) against ``-log2 P`` on ``tokens[:nll_n]`` (``[N, L]`` exact samples)."""
    start = time.perf_counter()
    endpoint = endpoint_rows(trained.model, hmm, tokens[:args.kl_n], args.seed + 30, args.eval_batch)
    curve = evidence_curve(trained.model, tokens[:args.kl_n], DEFAULT_GAMMAS, prior=token_law(hmm), reference=hmm,
                           seed=args.seed, batch=args.eval_batch, progress=not args.quick)
    middle = time.perf_counter()
    sample = tokens[:args.nll_n]
    model_bits = roar(trained.model, sample, n_orders=1, seed=args.seed, batch_size=args.eval_batch,
                      progress=not args.quick).bits_per_token
    exact_bits = -hmm.log_prob(sample) / (hmm.seq_len * LN2)
    nll = {"roar": Estimate.of(model_bits), "exact": Estimate.of(exact_bits),
           "gap": Estimate.of(model_bits - exact_bits)}
    return Measured(endpoint, curve, nll, len(sample),
                    {"evidence": middle - start, "roar": time.perf_counter() - middle})


# -- tables -----------------------------------------------------------------------------------------------------------


def _pm(e: Estimate | None, digits: int = 3) -> str:
    return "—" if e is None else f"{e.mean:.{digits}f} ± {e.se:.{digits}f}"


def training_table(trained: list[Trained], entropy_bits: float) -> str:
    out = [f"Training (each run reads a fresh HMM run of its own, at random offsets: a token of the stream lies in "
           "seen / stream windows on average; validation ROAR bits/token by the trainer, on the EMA weights, beside "
           f"the entropy rate {entropy_bits:.4f}; minutes at the last session's tokens/s):\n",
           "| model | objective | from | parameters | steps | peak lr | tokens seen | stream tokens | seen / stream | "
           "tokens/s | minutes | valid bits/token |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in trained:
        s = t.summary()
        rate = s["tokens_per_s"]
        minutes = "—" if not rate else f"{t.tokens_seen / rate / 60:.1f}"
        valid = "—" if s["valid_bits"] is None else f"{s['valid_bits']:.4f} ± {s['valid_bits_se']:.4f}"
        out.append(f"| {t.name} | {s['objective']} | {s['init']} | {s['parameters']:,} | {t.steps} | {t.lr:g} | "
                   f"{t.tokens_seen:,} | {t.stream_tokens:,} | {t.tokens_seen / t.stream_tokens:.2f} | "
                   f"{'—' if not rate else f'{rate:.0f}'} | {minutes} | {valid} |")
    return "\n".join(out)


def likelihood_table(measured: dict[str, Measured], entropy_bits: float) -> str:
    n = next(iter(measured.values())).n
    out = [f"Likelihood of {n} held-out exact samples, bits/token ± s.e. (ROAR: one random order per sample, L calls; "
           f"exact: -log2 P(s) / L; entropy rate {entropy_bits:.4f}):\n",
           "| model | ROAR NLL | exact NLL | ROAR - exact (paired) |", "|---|---:|---:|---:|"]
    for name, m in measured.items():
        out.append(f"| {name} | {_pm(m.nll['roar'], 4)} | {_pm(m.nll['exact'], 4)} | {_pm(m.nll['gap'], 4)} |")
    return "\n".join(out)


def kl_table(measured: dict[str, Measured]) -> str:
    """One line per (layout, SNR): the context-free rule's CE, and each model's CE and exact KL (the same windows and
    noise for every model: the anchors are shared and the curve is seeded)."""
    names = list(measured)
    first = measured[names[0]].curve
    out = [f"Exact KL from the Bayes posterior to each model's, bits per scored position ± s.e. over "
           f"{first.windows} held-out samples (layout 'all': every position at gamma; 'half': a random half at "
           "gamma, the rest clean), beside the cross-entropies (CE) of the model and of the context-free Bayes rule; "
           "gamma = 0 is the endpoint denoiser (scored on the [MASK] positions):\n",
           "| layout | gamma | rule CE | " + " | ".join(f"{n} CE | {n} KL" for n in names) + " |",
           "|---|---:|---:|" + "---:|---:|" * len(names)]
    for i, row in enumerate(first.rows):
        if i == 0 or row.layout != first.rows[i - 1].layout:  # gamma = 0 heads its layout
            at_zero = {n: next(r for r in measured[n].endpoint if r.layout == row.layout) for n in names}
            cells = [f"{_pm(at_zero[n].model)} | {_pm(at_zero[n].kl, 4)}" for n in names]
            out.append(f"| {row.layout} | 0 | {_pm(at_zero[names[0]].rule)} | " + " | ".join(cells) + " |")
        cells = [f"{_pm(measured[n].curve.rows[i].model)} | {_pm(measured[n].curve.rows[i].kl, 4)}" for n in names]
        out.append(f"| {row.layout} | {row.gamma:g} | {_pm(row.rule)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- plots ------------------------------------------------------------------------------------------------------------


def plot_training(ax, trained: list[Trained], entropy_bits: float) -> None:
    """Validation ROAR bits/token against steps, the fine-tune continuing the MDLM run's axis."""
    offset = 0
    for t in trained:
        pts = [(offset + r["step"], r["valid_bpc"], r["valid_bpc_se"]) for r in t.log if "valid_bpc" in r]
        if pts:
            step, bits, se = zip(*pts)
            ax.errorbar(step, bits, yerr=se, fmt="-o", ms=3, capsize=2, label=f"{t.name} ({RUNS[t.name][1]})")
        offset += t.steps
    ax.axhline(entropy_bits, color="k", ls="--", lw=1, label="entropy rate (exact)")
    ax.set_xlabel("training step (fine-tune after MDLM)")
    ax.set_ylabel("validation ROAR bits/token")
    ax.legend(fontsize=7)


def plot_kl(ax, measured: dict[str, Measured]) -> None:
    for i, (name, m) in enumerate(measured.items()):
        for layout, style in (("all", "-o"), ("half", "--s")):
            rows = [r for r in m.curve.rows if r.layout == layout]
            ax.errorbar([r.gamma for r in rows], [r.kl.mean for r in rows], yerr=[r.kl.se for r in rows], fmt=style,
                        color=f"C{i}", ms=3, capsize=2, label=f"{name}, {layout}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SNR gamma")
    ax.set_ylabel("KL(exact || model), bits per position")
    ax.legend(fontsize=7)
