"""The trainer: AdamW with warm-up and cosine decay, gradient clipping, EMA weights, periodic validation, atomic
checkpoints, exact resume, and data parallelism under ``torchrun`` (gloo on CPU, NCCL on GPUs).

A run lives in one folder ``out``:

* ``checkpoint.pt``: everything needed to continue exactly (weights, EMA, optimizer, step, the data generator's and
  every process's dropout generator's states, the settings, and the model's description), written atomically every
  ``save_every`` steps and at the end;
* ``manifest.json``: the SHA-256 of the checkpoint, of the one before it (kept as ``checkpoint.prev.pt``) and of
  ``model/``'s files; a resume never reads a damaged checkpoint (:mod:`snrpaths.integrity`);
* ``model/``: the EMA weights as the model saves itself (:meth:`snrpaths.denoiser.Trainable.save`; for the DiT backend
  what ``snrpaths.backends.load`` reads and what gets shipped);
* ``log.jsonl``: one JSON line per validation (step, training loss, tokens/s, validation bits per character, and the
  evidence curve at ``EVIDENCE_GAMMAS``: the model's cross-entropy with every position at that SNR beside the
  context-free Bayes rule's, :func:`snrpaths.diagnostics.evidence_curve`).

Crash safety: a checkpoint writes ``model/`` first, as a whole new folder swapped in (:func:`snrpaths.files.replace_folder`),
then ``checkpoint.pt``, whose rename commits it. A resume reads ``checkpoint.pt`` only (:func:`checkpoint_model` gives the
architecture), so a kill at any moment leaves a resumable folder: before the commit the previous checkpoint stands
(``model/`` may already hold the newer export, which the rerun writes again, identically, when it passes that step);
the next start rolls back a swap cut between its renames, removes temporaries, and cuts ``log.jsonl`` back to the
steps the checkpoint had seen.

Determinism: the global batch (windows and corruption) is drawn from one ``torch.Generator`` seeded with ``seed``,
identically on every process, and each process keeps its rows; dropout uses torch's default generator (and the GPU's),
seeded from ``seed`` and the process rank. All are checkpointed, so a resumed run continues the same streams, and the
parameters are trained in memory of their own (:func:`_fresh_memory`), so it ends with the same weights bit for bit on
the same machine and thread count.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import attrs
import torch
import torch.distributed as dist

from . import validate
from .data import fixed_windows, random_windows
from .denoiser import EvidenceConverter, Trainable, require
from .diagnostics import evidence_curve, unigram_prior
from .errors import SNRPathError, SNRTypeError
from .files import check_writable, clean_temporaries, replace_folder, write_jsonl
from .integrity import commit_checkpoint, good_checkpoint
from .objectives import OBJECTIVES, Corruption, Objective, loss, per_row, roar_validation
from .progress import Meter
from .reprs import Z95, format_estimate
from .shards import Processes

CHECKPOINT, MODEL_DIR, LOG = "checkpoint.pt", "model", "log.jsonl"
#: SNRs of the evidence curve logged with each validation, on at most EVIDENCE_WINDOWS validation windows.
EVIDENCE_GAMMAS, EVIDENCE_WINDOWS = (1.0, 4.0, 16.0), 64
LN2 = math.log(2)


_POSITIVE = validate.field(validate.integer)
_COUNT = validate.field(validate.integer, low=0)
_RATE = validate.field(validate.number, low=0.0, high=math.inf, high_open=True, phrase="a finite number >= 0")
_UNIT = validate.field(validate.number, low=0.0, high=1.0)


@attrs.frozen
class TrainConfig:
    """Optimisation settings. ``batch`` is the global batch: under torchrun each of ``W`` processes takes
    ``batch / W`` rows of the same drawn batch."""

    steps: int = attrs.field(default=2000, converter=_POSITIVE)  # optimizer steps in the whole run
    batch: int = attrs.field(default=64, converter=_POSITIVE)  # sequences per step, all processes together
    lr: float = attrs.field(default=1e-3, converter=_RATE)  # peak learning rate
    warmup: int = attrs.field(default=100, converter=_COUNT)  # linear warm-up steps from 0 to lr
    min_lr_ratio: float = attrs.field(default=0.1, converter=_UNIT)  # cosine decay to lr * this (1: constant)
    weight_decay: float = attrs.field(default=0.01, converter=_RATE)  # on matrices, never on anchors
    grad_clip: float = attrs.field(default=1.0, converter=_RATE)  # max global grad norm (0: no clipping)
    ema: float = attrs.field(default=0.999, converter=_UNIT)  # EMA decay of the evaluated and exported weights
    eval_every: int = attrs.field(default=250, converter=_POSITIVE)  # steps between validations
    eval_rows: int = attrs.field(default=256, converter=_POSITIVE)  # validation windows (fixed, spread over the text)
    save_every: int = attrs.field(default=250, converter=_POSITIVE)  # steps between checkpoints
    seed: int = attrs.field(default=0, converter=validate.field(validate.seed))
    # learning-rate multiplier of the converter's scalars (log beta, b): Adam moves a parameter about lr per step, so
    # at lr alone a gate that must travel several nats (b_mask) barely moves in a fine-tune (DESIGN.md 4b). 200 was
    # the smallest of 1 / 10 / 50 / 200 / 1000 at the plateau of the evidence curve in 250-step DSL fine-tunes of
    # the first MDLM checkpoint (README, "Reading the evidence")
    converter_lr_mult: float = attrs.field(default=200.0, converter=_RATE)
    # a run whose objective reaches finite SNRs (DSL, Covering, a path with a ramp) starts with the converter at the
    # context-free Bayes rule of the training stream (Converter.calibrate)
    calibrate: bool = attrs.field(default=True, converter=validate.field(validate.boolean))

    def lr_at(self, step: int) -> float:
        """``lr * min(1, (step + 1) / warmup)`` during warm-up, then cosine from ``lr`` to ``lr * min_lr_ratio``."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# -- EMA ----------------------------------------------------------------------------------------------------------


class EMA:
    """Shadow weights ``w_ema <- a_n w_ema + (1 - a_n) w`` of every floating parameter and buffer, with the warm-up
    ``a_n = min(decay, (1 + n) / (10 + n))`` at update ``n``: without it the shadow of a run of N steps would keep
    ``decay^N`` of the initial weights (16% at decay 0.999 and N = 1800)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        a = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1 - a)
        self.updates += 1

    @contextlib.contextmanager
    def swapped(self, model: torch.nn.Module):
        """Inside the block the model holds the EMA weights; its own weights come back on exit, even on error."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(live, strict=False)


# -- the run ------------------------------------------------------------------------------------------------------


@attrs.frozen(eq=False, repr=False)
class TrainResult:
    """``model`` (holding the EMA weights), the last step, the final validation bits per character (mean, standard
    error), training tokens per second (all processes), and where the run's files are."""

    model: torch.nn.Module
    step: int
    valid_bpc: tuple[float, float] | None
    tokens_per_s: float
    out: Path

    def __repr__(self) -> str:
        """``TrainResult(step 1500, validation 2.31 ± 0.04 bits/char, 51234 tokens/s, in runs/x; ± 95%)``."""
        bpc = "no validation" if self.valid_bpc is None else \
            f"validation {format_estimate(self.valid_bpc[0], Z95 * self.valid_bpc[1])} bits/char"
        return (f"TrainResult(step {self.step}, {bpc}, {self.tokens_per_s:.0f} tokens/s, in {str(self.out)}; "
                "± 95%)")


def train(
    model: Trainable,
    objective: Objective,
    train_tokens: torch.Tensor,
    valid_tokens: torch.Tensor,
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = True,
    progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a :class:`snrpaths.denoiser.Trainable`: a :class:`snrpaths.backends.DSLDenoiser`) on random
    windows of the ``(N,)`` token stream ``train_tokens`` with ``objective`` (any of
    :data:`snrpaths.objectives.OBJECTIVES`); validate on fixed windows of ``valid_tokens``. A model that is not
    Trainable, or an objective that cannot train it (:meth:`~snrpaths.objectives.Objective.check`), is refused before
    anything runs.

    Args:
        out: the run folder (see the module docstring); created if missing.
        resume: continue from ``out/checkpoint.pt`` when it exists (the settings must match); False starts afresh.
        callback: called as ``callback(step, metrics)`` after every step (``step`` counts completed steps).
    Returns:
        the model with its EMA weights loaded, and what the run measured.
    """
    require("model", model, Trainable)
    require("model.converter", model.converter, EvidenceConverter)
    if not isinstance(objective, Objective):
        raise SNRTypeError(f"'objective' must be one of snrpaths.objectives.OBJECTIVES ({', '.join(OBJECTIVES)}), "
                           f"e.g. DSL() (got {objective!r})")
    objective.check(model, config.save_every)
    procs = Processes.from_env()
    out = Path(out)
    if procs.rank == 0:
        clean_temporaries(out)  # a model/ swap cut between its renames is rolled back, temporaries go
        check_writable(out, "'out'")  # a read-only or full folder is refused before any step, not at the first save
    model = model.to(procs.device).train()
    _fresh_memory(model)
    L, d = model.seq_len, model.converter.config.anchor_dim
    train_tokens, valid_tokens = _check_tokens(model, train_tokens, "train"), _check_tokens(model, valid_tokens, "valid")
    valid = fixed_windows(valid_tokens, config.eval_rows, L)
    generator = torch.Generator().manual_seed(config.seed)
    # dropout's generator: different on every process; mod 2^64 as torch folds a negative seed, so any valid seed works
    torch.manual_seed((config.seed * 1_000_003 + procs.rank) % 2**64)
    prior = unigram_prior(train_tokens, model.vocab_size)
    if objective.finite_snr(model.seq_len) and config.calibrate:
        # before the EMA copies the weights; a resumed run then overwrites all of it with its checkpoint
        model.converter.calibrate(prior.to(procs.device))
    groups = param_groups(model, config.weight_decay, config.converter_lr_mult)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))
    ema = EMA(model, config.ema)
    settings = {"train": attrs.asdict(config), "objective": objective.settings()}
    step = _resume(out / CHECKPOINT, model, ema, optimizer, generator, settings, procs) if resume else 0
    if procs.rank == 0:
        _trim_log(out, step)
    net = model
    if procs.world > 1:
        # Some parameters get no gradient in a step (the converter under MDLM, or a shard that is all ROAR).
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    rows = procs.rows(config.batch)
    bar = Meter(config.steps, "step", f"train {settings['objective']['name']}", progress and procs.rank == 0,
                initial=step, dynamic_ncols=True)
    metrics, tokens_per_s, bpc, started, done = {}, 0.0, None, time.perf_counter(), 0
    with contextlib.closing(bar):
        while step < config.steps:
            tokens = random_windows(train_tokens, config.batch, L, generator)  # (B, L), the same on every process
            corruption = objective.draw(tokens, generator, d, model=model, step=step)[rows].to(procs.device)
            value = _step(net, model, optimizer, ema, corruption, config, step)
            step, done = step + 1, done + 1
            tokens_per_s = done * config.batch * L / (time.perf_counter() - started)
            metrics = {"step": step, "loss": value, "lr": config.lr_at(step - 1), "tokens_per_s": tokens_per_s}
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_s:.0f}")
            bar.update()
            if step % config.eval_every == 0 or step == config.steps:
                bpc = evaluate(model, ema, valid, procs, seed=config.seed)
                metrics.update(valid_bpc=bpc[0], valid_bpc_se=bpc[1])
                evidence = _evidence(model, ema, valid, prior, config.seed) if procs.rank == 0 else {}
                metrics.update(evidence)
                curve = ", ".join(f"{g:g}: {m:.2f}/{r:.2f}" for g, m, r in zip(
                    EVIDENCE_GAMMAS, evidence.get("evidence_model_bits", ()), evidence.get("evidence_rule_bits", ())))
                bar.note(f"step {step}: loss {value:.4f}, valid {bpc[0]:.4f} ± {bpc[1]:.4f} bits/char, "
                          f"{tokens_per_s:.0f} tokens/s" + (f"; CE model/rule at gamma {curve}" if curve else ""))
                _log(out, metrics, procs)
            if step % config.save_every == 0 or step == config.steps:
                _save(out, step, model, ema, optimizer, generator, settings, procs)
            if callback is not None:
                callback(step, metrics)
    ema_model = _export(model, ema)
    return TrainResult(ema_model, step, bpc, tokens_per_s, out)


def _step(net, model, optimizer, ema, corruption: Corruption, config: TrainConfig, step: int) -> float:
    for group in optimizer.param_groups:
        group["lr"] = config.lr_at(step) * group["lr_mult"]
    optimizer.zero_grad(set_to_none=True)
    value = loss(net, corruption)
    value.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    ema.update(model)
    return float(value.detach())


#: The converter's scalars: the gate between evidence and [MASK] (DESIGN.md 4b), with their own learning rate.
CONVERTER_SCALARS = ("converter.log_beta", "converter.bias")


def param_groups(model: torch.nn.Module, weight_decay: float, converter_lr_mult: float = 1.0) -> list[dict]:
    """Weight decay on matrices only; never on the anchors (only their direction counts: decay would just shrink the
    raw vectors and raise their effective learning rate), biases, norms or scalars. The converter's scalars
    (``CONVERTER_SCALARS``) form a third group whose learning rate is ``converter_lr_mult`` times the schedule's."""
    decay, rest, gate = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in CONVERTER_SCALARS:
            gate.append(p)
        else:
            (decay if p.ndim >= 2 and not name.endswith("anchor_weight") else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": rest, "weight_decay": 0.0, "lr_mult": 1.0},
            {"params": gate, "weight_decay": 0.0, "lr_mult": converter_lr_mult}]


@torch.no_grad()
def evaluate(model, ema: EMA | None, windows: torch.Tensor, procs: Processes = Processes(), seed: int = 0,
             batch: int = 64) -> tuple[float, float]:
    """Validation bits per character by the ROAR estimator, with the EMA weights swapped in (eval mode):

        bpc = mean_b r_b / ln 2,   r_b = mean over masked positions of CE on row b at a random ROAR state

    ``r_b`` is unbiased for the model's negative log-likelihood per position of window ``b`` (random orders and
    steps); the error bar is the standard error ``std_b(r_b) / sqrt(n) / ln 2``. The ROAR states come from a
    generator seeded with ``seed``, so every validation of a run scores the same states.
    """
    generator = torch.Generator().manual_seed((seed + 1) % 2**64)
    swap = ema.swapped(model) if ema is not None else contextlib.nullcontext(model)
    terms = []
    was_training = model.training
    with swap:
        model.eval()
        chunks = windows.split(batch)
        for i, chunk in enumerate(chunks):
            corruption = roar_validation(chunk, generator, model.converter.config.anchor_dim)  # drawn on every rank
            if i % procs.world == procs.rank:
                terms.append(per_row(model, corruption.to(procs.device)).double().cpu())
    model.train(was_training)
    r = torch.cat(terms) if terms else torch.zeros(0, dtype=torch.float64)
    sums = procs.sum(torch.stack([r.sum(), r.pow(2).sum(), torch.tensor(float(len(r)), dtype=torch.float64)]))
    total, squares, n = sums.tolist()
    mean = total / n
    var = max(squares / n - mean**2, 0.0) * n / max(n - 1, 1)
    return mean / LN2, math.sqrt(var / n) / LN2


def _evidence(model, ema: EMA, windows: torch.Tensor, prior: torch.Tensor, seed: int) -> dict:
    """The evidence curve of the EMA weights at ``EVIDENCE_GAMMAS`` (every position at gamma): lists of the model's
    and the context-free rule's cross-entropies in bits, and their paired difference's standard error."""
    was_training = model.training
    with ema.swapped(model):
        model.eval()
        curve = evidence_curve(model, windows[:EVIDENCE_WINDOWS], EVIDENCE_GAMMAS, prior=prior, layouts=("all",), seed=seed)
    model.train(was_training)
    return {"evidence_gammas": list(EVIDENCE_GAMMAS), "evidence_model_bits": [r.model.mean for r in curve.rows],
            "evidence_rule_bits": [r.rule.mean for r in curve.rows], "evidence_diff_se": [r.diff.se for r in curve.rows]}


# -- checkpoints --------------------------------------------------------------------------------------------------


def _save(out: Path, step, model, ema: EMA, optimizer, generator, settings, procs: Processes) -> None:
    rng = _rng_states(procs)  # a collective under torchrun: every process takes part
    if procs.rank != 0:
        return
    out.mkdir(parents=True, exist_ok=True)
    # The export first, whole (a new folder swapped in), then the training state, whose atomic rename commits the
    # checkpoint. Resume reads checkpoint.pt alone, so it never sees a step whose export is not on disk; a kill between
    # the two leaves model/ one checkpoint ahead, and the rerun (bit-identical) writes the same folder again. The
    # reverse order would let a kill after the last checkpoint.pt leave model/ a checkpoint behind for good: the rerun
    # finds the run finished.
    with ema.swapped(model):
        replace_folder(out / MODEL_DIR, model.save)
    exported = tuple(f"{MODEL_DIR}/{p.name}" for p in sorted((out / MODEL_DIR).iterdir()))
    state = {"step": step, "model": model.state_dict(), "ema": ema.shadow, "ema_updates": ema.updates,
             "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "rng": rng,
             "settings": json.dumps(settings), "denoiser": json.dumps(model.describe())}
    # hashed into manifest.json with the export; the checkpoint it replaces is kept as checkpoint.prev.pt
    commit_checkpoint(out / CHECKPOINT, lambda f: torch.save(state, f), exported)


def _rng_states(procs: Processes) -> list[dict]:
    """Every process's dropout generators: torch's default (CPU) one, and the GPU's on CUDA, in rank order."""
    mine = {"cpu": torch.get_rng_state()}
    if procs.device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(procs.device)
    if procs.world == 1:
        return [mine]
    everyone = [None] * procs.world
    dist.all_gather_object(everyone, mine)
    return everyone


def _read_checkpoint(path: Path, mmap: bool = False) -> dict:
    # mmap only to read a part: the optimizer keeps the loaded tensors as its state, which must own their memory
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # a damaged file: say which, do not guess
        raise SNRPathError(f"cannot read the checkpoint {path} ({str(e).splitlines()[0]})") from None
    missing = [k for k in ("step", "model", "ema", "ema_updates", "optimizer", "generator", "settings")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise SNRPathError(f"the checkpoint {path} lacks {missing}; it was not written by snrpaths.train")
    return state


def checkpoint_model(out: str | os.PathLike, kind: type) -> Trainable:
    """A freshly initialised model of the architecture and tokenizer that ``out/checkpoint.pt`` was written for: the
    model to hand :func:`train` to resume that run (which then restores every weight). ``kind`` is the
    :class:`~snrpaths.denoiser.Trainable` class that wrote it (e.g. :class:`snrpaths.backends.DSLDenoiser`), whose
    ``from_description`` rebuilds the recorded :meth:`~snrpaths.denoiser.Trainable.describe`. Reads ``checkpoint.pt``
    only (a checkpoint written before it described its model: the description ``out/model/config.json`` holds)."""
    if not callable(getattr(kind, "from_description", None)):
        raise SNRTypeError(f"'kind' must be a Trainable class with a from_description classmethod, e.g. "
                           f"snrpaths.backends.DSLDenoiser (got {kind!r})")
    out = Path(out)
    path = good_checkpoint(out / CHECKPOINT, say=False)  # the one train() will resume from (and say so)
    if path is None:
        raise SNRPathError(f"{out} holds no {CHECKPOINT}")
    state = _read_checkpoint(path, mmap=True)
    if "denoiser" in state:
        return kind.from_description(json.loads(state["denoiser"]), f"{out / CHECKPOINT} 'denoiser'")
    config = out / MODEL_DIR / "config.json"
    try:
        description = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise SNRPathError(f"{out / CHECKPOINT} records no model and {config} cannot be read ({e})") from None
    return kind.from_description(description, str(config))


def _resume(path: Path, model, ema: EMA, optimizer, generator, settings, procs: Processes = Processes()) -> int:
    path = good_checkpoint(path)  # never a damaged file: the one before it, or an error naming it
    if path is None:
        return 0
    state = _read_checkpoint(path)
    saved = json.loads(state["settings"])
    if saved != json.loads(json.dumps(settings)):
        changed = sorted(f"{group}.{k}" for group in settings for k in settings[group]
                         if saved.get(group, {}).get(k) != settings[group][k])
        raise SNRPathError(f"{path} was written with other settings ({', '.join(changed)}); resume with the same "
                           f"settings, or start afresh in another folder")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise SNRPathError(f"{path} holds a model of another shape ({str(e).splitlines()[0]})") from None
    ema.shadow = {k: v.to(ema.shadow[k].device).clone() for k, v in state["ema"].items()}
    ema.updates = int(state["ema_updates"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    rng = state.get("rng")
    if rng is None:  # written before every process's generators were kept: rank 0's for all
        torch.set_rng_state(state["torch_rng"])
    elif procs.rank < len(rng):  # (a run resumed on more processes than it had starts the new ones from their seeds)
        torch.set_rng_state(rng[procs.rank]["cpu"])
        if "cuda" in rng[procs.rank] and procs.device.type == "cuda":
            torch.cuda.set_rng_state(rng[procs.rank]["cuda"], procs.device)
    return int(state["step"])


def _trim_log(out: Path, step: int) -> None:
    """Keep the log lines of steps up to ``step``, the checkpoint resumed (or 0, a fresh start): the rerun writes the
    later ones again. A line cut short by a kill goes too."""
    path = out / LOG
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(record)
    if len(kept) != len(lines):
        write_jsonl(path, kept)


def _log(out: Path, metrics: dict, procs: Processes) -> None:
    if procs.rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / LOG, "a") as f:
                f.write(json.dumps(metrics) + "\n")
                f.flush()
                os.fsync(f.fileno())  # on disk before the checkpoint that follows it
        except OSError as err:  # a torn last line is cut off on resume (_trim_log)
            raise SNRPathError(f"cannot write {str(out / LOG)!r}: {err.strerror or err}") from None


def _fresh_memory(model: torch.nn.Module) -> None:
    """Move every parameter and buffer into memory of its own, freshly allocated (aligned as the allocator aligns).

    CPU matrix kernels (MKL's, oneDNN's) may round differently depending on where their operands sit in memory. A
    model loaded from a file keeps its tensors where the file put them (safetensors: offsets of 8 bytes), while a model
    built in memory has fresh allocations: without this, a run resumed through the CLI (which loaded ``model/``) or
    started from ``--init`` drifted from the uninterrupted run by a few float32 ulps per resume.
    """
    with torch.no_grad():
        for module in model.modules():
            for name, p in module._parameters.items():
                if p is not None:
                    p.data = p.data.clone(memory_format=torch.contiguous_format)
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = b.clone(memory_format=torch.contiguous_format)


def _export(model, ema: EMA):
    model.load_state_dict(ema.shadow, strict=False)
    return model.eval()


def _check_tokens(model, tokens: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 1 or tokens.is_floating_point():
        raise SNRPathError(f"{name!r} tokens must be a 1-D integer tensor (a token stream)")
    if len(tokens) and (int(tokens.min()) < 0 or int(tokens.max()) >= model.vocab_size):
        raise SNRPathError(f"the {name} tokens hold ids in [{int(tokens.min())}, {int(tokens.max())}]; the model's "
                           f"vocabulary has {model.vocab_size} ids: the tokenizer does not match the checkpoint")
    return tokens.long()
