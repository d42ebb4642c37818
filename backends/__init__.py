"""Implementations of the :class:`snrpaths.Denoiser` protocol, installed as ``snrpaths.backends``.

The core never imports this package; backends depend on the core's protocol only.

* :class:`ExactToy`: exact Bayes denoisers of enumerable joints, the ground truth of the property tests.
* :class:`ExactHMM`: the exact Bayes denoiser of a hidden Markov model, exact at any length (DESIGN 4c).
* :class:`Interpolated`: an exact denoiser and a model combined per position at a weight (geometric or mixture):
  model quality as a dial (DESIGN 4d).
* :class:`MaskedLM`: any masked language model (Hugging Face masked LMs, LLaDA / Dream-style models) on endpoint
  states; ``MaskedLM.from_pretrained(folder)`` needs the optional extra ``hf`` (``transformers``), imported then.
* :class:`DSLMaskedLM`: a masked LM behind the DSL-LLaDA converter (``hf_dsl``), reading any per-token SNR state and
  trainable; ``MaskedLM.from_pretrained`` returns one for a folder whose weights hold the converter's keys.
* :class:`DSLDenoiser`: the DSL converter in front of an MDLM-layout :class:`DiT`; :func:`load` reads MDLM
  checkpoints (HF snapshot folders, Lightning ``.ckpt``) and our own format, :func:`save` writes ours.
"""

from .checkpoint import known_names, load, save
from .converter import Converter, ConverterConfig
from .dit import DiT, DiTConfig
from .dsl import DSLDenoiser
from .hf import MaskedLM
from .hf_dsl import DSLMaskedLM
from .hmm import ExactHMM
from .interpolated import Interpolated
from .text import load_with_tokenizer
from .toy import ExactToy

__all__ = [
    "Converter",
    "ConverterConfig",
    "DSLDenoiser",
    "DSLMaskedLM",
    "DiT",
    "DiTConfig",
    "ExactHMM",
    "ExactToy",
    "Interpolated",
    "MaskedLM",
    "known_names",
    "load",
    "load_with_tokenizer",
    "save",
]
