"""The judges ``snrpaths compare --judge`` (and :func:`snrpaths.compare`) name, built on backends: this module fills
:data:`snrpaths.comparison.JUDGES` when imported, and :mod:`snrpaths.comparison` imports it by name on first use (the
command line may pick a backend; the core may not).

* ``toy:NAME``: an exact toy joint (``markov``, ``random``, ``parity``, ``two-bit``; options ``vocab``, ``length``,
  ``toy_seed``), judged by its exact likelihood (:meth:`Judge.exact`: ``gap``, ``invalid``).
* ``hmm``: an exact hidden Markov model with structural zeros, ``ExactHMM.random(..., stationary=True)`` as the HMM
  study draws it (options ``states``, ``vocab``, ``length``, ``successors``, ``emissions``, ``hmm_seed``), judged
  exactly (``gap``, ``invalid``, ``invalid_pairs``).
* ``text`` or ``text:CHECKPOINT``: a shipped checkpoint with its tokenizer (default ``tiny-shakespeare-dsl``),
  judged by the samples' bits per character under the reference LM (``gen-bpc``, as the text study) and their
  unigram entropy.
* ``checkpoint:NAME_OR_FOLDER`` (or a bare folder) and ``mlm:FOLDER`` (a masked LM, option ``seq_len``): no
  reference, so the judge measures what the model itself can: its own NLL of its samples (``self-nll``) and their
  unigram entropy; neither ranks samplers alone (a collapsed sampler scores a low ``self-nll``).
"""

from __future__ import annotations

import math

import torch

from . import validate
from .cli_toys import TOYS, make_toy
from .comparison import Judge, JudgeKind, Metric, register_judge
from .errors import SNRPathError

ENTROPY = Metric("entropy", "bits", "", "unigram entropy of the samples' pooled tokens (a drop shows repetition)")
GEN_BPC = Metric("gen-bpc", "bits/char", "lower", "NLL of the decoded samples under SmolLM2-135M per character")
SELF_NLL = Metric("self-nll", "bits/token", "",
                  "the sampling model's own NLL of its samples (ROAR, 16 random steps, seed 0)")
#: random steps of the ROAR estimate behind ``self-nll``
SELF_NLL_STEPS = 16
DEFAULT_TEXT = "tiny-shakespeare-dsl"


def _no_arg(kind: str, arg: str) -> None:
    if arg:
        raise SNRPathError(f"judge {kind!r} takes nothing after ':' (got {kind}:{arg})")


def toy_judge(name: str, *, vocab: int = 3, length: int = 4, toy_seed: int = 0) -> Judge:
    if not name:
        raise SNRPathError(f"judge 'toy' needs a toy's name: toy:NAME with NAME one of {', '.join(TOYS)}")
    validate.choice("toy", name, TOYS)
    toy = make_toy(name, vocab, length, toy_seed)
    return Judge.exact(toy, f"toy:{name} (V={toy.vocab_size}, L={toy.seq_len}, exact)")


def hmm_judge(arg: str, *, states: int = 16, vocab: int = 16, length: int = 64, successors: int = 4,
              emissions: int = 4, hmm_seed: int = 0) -> Judge:
    from snrpaths.backends.hmm import ExactHMM  # the CLI is an application: it may pick a backend

    _no_arg("hmm", arg)
    hmm = ExactHMM.random(states, vocab, length, seed=hmm_seed, successors=successors, emissions=emissions,
                          stationary=True)
    return Judge.exact(hmm, f"hmm (K={states}, V={vocab}, L={length}, successors={successors}, "
                            f"emissions={emissions}, seed={hmm_seed}, exact)")


def text_judge(checkpoint: str) -> Judge:
    from snrpaths.backends.text import load_with_tokenizer

    from .quality import GenerativePerplexity, require, unigram_entropy

    require(["gen-bpc"])  # a missing package is said before the model loads
    checkpoint = checkpoint or DEFAULT_TEXT
    denoiser, tokenizer = load_with_tokenizer(checkpoint)
    lm = GenerativePerplexity()

    def score(tokens: torch.Tensor) -> dict[str, float]:
        texts = [tokenizer.decode(row) for row in tokens.tolist()]
        return {"gen-bpc": lm.scores(texts)["gen-bpc"], "entropy": unigram_entropy(tokens)}

    return Judge(f"text:{checkpoint} (gen. bits/char under SmolLM2-135M)", denoiser, (GEN_BPC, ENTROPY), score)


def self_judge(name: str, denoiser) -> Judge:
    """A model judged by itself: ``self-nll`` (ROAR, :data:`SELF_NLL_STEPS` steps) and ``entropy``."""
    from .nll import roar_steps
    from .quality import unigram_entropy

    def score(tokens: torch.Tensor) -> dict[str, float]:
        nll = roar_steps(denoiser, tokens, n_steps=SELF_NLL_STEPS, seed=0)
        return {"self-nll": float(nll.nll.mean()) / (tokens.shape[1] * math.log(2)), "entropy": unigram_entropy(tokens)}

    return Judge(f"{name} (no reference: judged by itself)", denoiser, (SELF_NLL, ENTROPY), score)


def checkpoint_judge(name: str) -> Judge:
    from snrpaths.backends.checkpoint import load

    if not name:
        raise SNRPathError("judge 'checkpoint' needs a shipped name or a folder: checkpoint:NAME_OR_FOLDER")
    return self_judge(f"checkpoint:{name}", load(name))


def mlm_judge(folder: str, *, seq_len: int | None = None) -> Judge:
    from snrpaths.backends.hf import MaskedLM

    if not folder:
        raise SNRPathError("judge 'mlm' needs a masked LM folder: mlm:FOLDER")
    return self_judge(f"mlm:{folder}", MaskedLM.from_pretrained(folder, seq_len=seq_len))


register_judge("toy", JudgeKind(f"toy:NAME (NAME: {', '.join(TOYS)})", toy_judge, ("vocab", "length", "toy_seed")))
register_judge("hmm", JudgeKind("hmm", hmm_judge, ("states", "vocab", "length", "successors", "emissions", "hmm_seed")))
register_judge("text", JudgeKind(f"text[:CHECKPOINT] (default {DEFAULT_TEXT})", text_judge))
register_judge("checkpoint", JudgeKind("checkpoint:NAME_OR_FOLDER", checkpoint_judge))
register_judge("mlm", JudgeKind("mlm:FOLDER", mlm_judge, ("seq_len",)))
