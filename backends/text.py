"""Text in, text out: a checkpoint with the tokenizer it was trained with."""

from __future__ import annotations

import os

from snrpaths.data import Tokenizer
from snrpaths.errors import SNRPathError

from .checkpoint import load
from .dsl import DSLDenoiser


def load_with_tokenizer(checkpoint: str | os.PathLike) -> tuple[DSLDenoiser, Tokenizer]:
    """``(denoiser, tokenizer)`` from a shipped name or a checkpoint folder whose recorded tokenizer matches its
    vocabulary: ids in, text out, with no guess about the encoding. The denoiser carries the same tokenizer
    (:meth:`DSLDenoiser.text_tokenizer`), so ``load(checkpoint)`` alone already takes text prompts and gives text."""
    denoiser = load(checkpoint)
    try:
        return denoiser, denoiser.text_tokenizer()
    except SNRPathError as err:
        raise SNRPathError(f"the checkpoint {str(checkpoint)!r}: {err}") from None
