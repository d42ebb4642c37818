"""Text in, text out: a checkpoint with the tokenizer it was trained with."""

from __future__ import annotations

import os

from snrpaths.data import Tokenizer, tokenizer_from_config
from snrpaths.errors import SNRPathError

from .checkpoint import load
from .dsl import DSLDenoiser


def load_with_tokenizer(checkpoint: str | os.PathLike) -> tuple[DSLDenoiser, Tokenizer]:
    """``(denoiser, tokenizer)`` from a shipped name or a checkpoint folder whose recorded tokenizer matches its
    vocabulary: ids in, text out, with no guess about the encoding."""
    denoiser = load(checkpoint)
    if denoiser.tokenizer is None:
        raise SNRPathError(f"the checkpoint {str(checkpoint)!r} records no tokenizer, so its ids cannot be decoded")
    tokenizer = tokenizer_from_config(denoiser.tokenizer)
    if tokenizer.vocab_size != denoiser.vocab_size:
        raise SNRPathError(f"the checkpoint {str(checkpoint)!r} has a vocabulary of {denoiser.vocab_size} but its "
                           f"tokenizer has {tokenizer.vocab_size} ids: they do not belong together")
    return denoiser, tokenizer
