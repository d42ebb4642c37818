"""The DSL denoiser: converter front end + MDLM-layout DiT, as a :class:`snrpaths.Denoiser`.

    p_theta(s_i | z) = softmax_v( DiT(converter(z, gamma, tokens))_i (v) + [0 < gamma_i < inf] z_i . x_v ),

``v`` over the V real tokens; the second term is the evidence head (``converter.config.head = "evidence"``, DESIGN.md
section 4b: ``log p(s_i = v | z) = z_i . x_v + log p(s_i = v | z_{-i}) + const`` for any joint, so the backbone only
has to learn the leave-one-out part). Under ``head = "plain"`` (the paper's form) it is absent. At the endpoints
(``gamma_i`` 0 or inf) both heads give the backbone's logits bit for bit, so an MDLM checkpoint is exactly MDLM there.

Two entry points, one computation: ``logits(state)`` for the runner (an :class:`snrpaths.SNRState`, no gradient,
no dropout) and ``forward(z, gamma, tokens)`` on plain tensors for a trainer (gradients, dropout in training mode).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from snrpaths import validate
from snrpaths.data import Tokenizer, prompt_ids, tokenizer_from_config
from snrpaths.errors import SNRPathError, SNRTypeError, ShapeError
from snrpaths.geometry import TokenTable
from snrpaths.state import SNRState

from .converter import Converter, ConverterConfig
from .dit import DiT, DiTConfig
from .fast import FastForward, check_options


class DSLDenoiser(nn.Module):
    """A DiT denoiser queried on any per-token SNR state.

    Args:
        backbone: the DiT (its ``vocab_embed`` is the converter's table ``E``).
        converter: anchors, ``beta`` and ``b``; its vocabulary must match the backbone's.
        tokenizer: optional JSON-able description of the tokenizer, stored with the checkpoint. With one, the
            denoiser carries its text (:class:`snrpaths.denoiser.TextCodec`): ``snrpaths.sample(path, denoiser,
            prompt="ROMEO:")`` takes a text prompt and fills ``Result.text``, exactly as ``snrpaths sample`` does.
    """

    reads_finite_snr = True  # the converter reads soft evidence (snrpaths.denoiser.FiniteSNR)
    caches_blocks = True  # the DiT keeps every block's keys and values (snrpaths.denoiser.BlockCaching)

    def __init__(self, backbone: DiT, converter: Converter, tokenizer: dict | None = None):
        super().__init__()
        if converter.vocab_size != backbone.config.vocab_size:
            raise ShapeError(
                f"the converter has {converter.vocab_size} anchors; the backbone has V = {backbone.config.vocab_size}"
            )
        self.backbone = backbone
        self.converter = converter
        self.tokenizer = tokenizer
        self._table_key: tuple | None = None
        self._table: TokenTable | None = None
        self._fast: FastForward | None = None  # set_forward's options for logits(); None: plain float32, eager
        self._refresh: FastForward | None = None  # the same options for refresh_cache
        self._codec: tuple[dict, Tokenizer] | None = None

    @classmethod
    def build(
        cls,
        backbone: DiTConfig,
        converter: ConverterConfig = ConverterConfig(),
        *,
        seed: int = 0,
        tokenizer: dict | None = None,
    ) -> "DSLDenoiser":
        """A freshly initialised denoiser (MDLM's initialisation for the DiT); ``seed`` fixes every weight without
        touching torch's global RNG."""
        seed = validate.seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU generator only: fork_rng restores just that one
            dit = DiT(backbone)
        return cls(dit, Converter(backbone.vocab_size, converter, seed=seed), tokenizer)

    # -- persistence, for the trainer (snrpaths.denoiser.Trainable) --------------------------------------------
    # The file format lives in backends/checkpoint.py, which builds on this module: it is imported when used.

    def save(self, folder: str | os.PathLike) -> Path:
        """Write this denoiser to ``folder`` in our format (:func:`snrpaths.backends.save`)."""
        from .checkpoint import save

        return save(self, folder)

    def describe(self) -> dict:
        """Its architecture, converter settings and tokenizer, as our ``config.json`` holds them
        (:func:`snrpaths.backends.checkpoint.describe`)."""
        from .checkpoint import describe

        return describe(self)

    @classmethod
    def from_description(cls, description: dict, where: str) -> "DSLDenoiser":
        """A freshly initialised denoiser of a :meth:`describe` dict, checked as ``load`` checks a config.json
        (:func:`snrpaths.backends.checkpoint.from_description`)."""
        from .checkpoint import from_description

        return from_description(description, where)

    # -- text in, text out (snrpaths.denoiser.TextCodec) -------------------------------------------------------

    def text_tokenizer(self) -> Tokenizer:
        """The tokenizer its ``tokenizer`` entry describes (built once, again only if the entry changes), checked
        against the vocabulary: ids in, text out, with no guess about the encoding."""
        if self.tokenizer is None:
            raise SNRPathError("this denoiser records no tokenizer, so it cannot turn text into ids or ids into text; "
                               "give prompts as token ids and decode with the tokenizer it was trained with")
        if self._codec is None or self._codec[0] != self.tokenizer:
            tokenizer = tokenizer_from_config(self.tokenizer)
            if tokenizer.vocab_size != self.vocab_size:
                raise SNRPathError(f"the denoiser has a vocabulary of {self.vocab_size} but its tokenizer has "
                                   f"{tokenizer.vocab_size} ids: they do not belong together")
            self._codec = (dict(self.tokenizer), tokenizer)
        return self._codec[1]

    def encode_prompts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """``[B, L]`` prompt ids of ``B`` texts: each text's tokens first, ``-1`` (free) after them
        (:func:`snrpaths.data.prompt_ids`, as ``snrpaths sample --prompt``); a text of ``L`` tokens or more is
        refused."""
        tokenizer = self.text_tokenizer()
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise SNRTypeError(f"'texts' must be a string or a non-empty sequence of strings (got {texts!r:.80})")
        rows = torch.stack([prompt_ids(tokenizer, text, self.seq_len) for text in texts])
        return rows.to(self.converter.anchor_weight.device)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """The texts of ``[B, L]`` (or one ``[N]``) token ids, each id in ``[0, V)``."""
        tokenizer = self.text_tokenizer()
        tokens = validate.token_ids("tokens", tokens, self.vocab_size, ndims=(1, 2))
        return [tokenizer.decode(row) for row in (tokens[None] if tokens.ndim == 1 else tokens).cpu()]

    # -- the Denoiser protocol -------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backbone.config.vocab_size

    @property
    def seq_len(self) -> int:
        return self.backbone.config.seq_len

    @property
    def table(self) -> TokenTable:
        """The unit-norm anchors as a :class:`TokenTable` (a detached copy, rebuilt only when the anchors change)."""
        w = self.converter.anchor_weight
        try:
            version = w._version  # moves on every in-place (optimizer) update
        except RuntimeError:  # an inference tensor (loaded under torch.inference_mode) has no version: rebuild
            version = None
        key = (version, w.data_ptr(), w.device, w.dtype)
        if version is None or key != self._table_key:
            self._table = TokenTable(self.converter.anchors.detach())
            self._table_key = key
        return self._table

    def set_forward(self, precision: str = "fp32", compile: bool | str = False) -> "DSLDenoiser":
        """Run :meth:`logits` under ``precision`` (``'fp32'``, or ``'bf16'`` autocast around the converter and the
        backbone: the converter's softmax stays float32) and, with ``compile``, the backbone through
        ``torch.compile`` with static shapes (:mod:`snrpaths.backends.fast`); returns itself. The cached passes
        follow: :meth:`refresh_cache` under the same precision and compiled as its own graph, :meth:`cached_logits`
        under the same precision, eagerly. ``set_forward()`` restores the plain forward. :meth:`forward` (training)
        is not affected."""
        device = self.backbone.vocab_embed.embedding.device
        check_options(precision, compile, device)
        plain = precision == "fp32" and compile is False
        self._fast = None if plain else FastForward(lambda h: self.backbone(h, dropout=0.0), precision=precision,
                                                    compile=compile, device=device)
        # the cached refresh: its own graph under compile, so that its logits are the compiled logits(state)'s
        self._refresh = None if plain else FastForward(self.backbone.refresh, precision=precision, compile=compile,
                                                       device=device)
        return self

    @property
    def forward_options(self) -> dict:
        """``{"precision": ..., "compile": ...}``: what :meth:`set_forward` chose."""
        return {"precision": "fp32", "compile": False} if self._fast is None else self._fast.options

    def logits(self, state: SNRState) -> torch.Tensor:
        """``(B, L, V)`` unnormalised logits of ``p(s_i = v | z)``; no gradient, no dropout, train or eval mode."""
        if not isinstance(state, SNRState):
            raise SNRTypeError(f"'state' must be an SNRState (got {type(state).__name__})")
        with torch.no_grad():
            return self._predict(state.z, state.gamma, state.tokens, dropout=0.0)

    # -- the training entry point ------------------------------------------------------------------------------

    def forward(self, z: torch.Tensor, gamma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, L, V)`` logits from plain tensors, differentiable.

        Args:
            z: ``(B, L, d)`` evidence ``gamma x + sqrt(gamma) eps`` (read where ``0 < gamma < inf``).
            gamma: ``(B, L)`` SNRs in ``[0, inf]``: 0 is ``[MASK]``, inf is clean.
            tokens: ``(B, L)`` integer ids, read only where ``gamma = inf``: a trainer may pass the whole target
                sequence.
        """
        return self._predict(z, gamma, tokens, dropout=None)

    # -- cached block decoding (snrpaths.denoiser.BlockCaching) -----------------------------------------------------

    def refresh_cache(self, state: SNRState, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, cache)``: ``logits(state)`` bit for bit, and the DiT's keys and values of every position in
        every block, ``(B, n_blocks, 2, n_heads, L, head_dim)`` (:meth:`DiT.refresh`). ``active`` is not read: the
        cache holds every position, so one serves both the prefix and the dual cache."""
        self._check_state(state)
        with torch.no_grad(), self._autocast(state.z.device):
            converted = self._convert(state.z, state.gamma, state.tokens)
            logits, cache = self.backbone.refresh(converted.h) if self._refresh is None else self._refresh(converted.h)
        return converted.added_to(logits), cache

    def cached_logits(self, state: SNRState, active: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
        """``(B, A, V)`` logits of the ``active`` positions ``(A,)``: the converter on their evidence alone (it is
        per position), then the DiT on those positions, attending over ``cache`` (:meth:`DiT.cached`)."""
        self._check_state(state)
        with torch.no_grad(), self._autocast(state.z.device):
            converted = self._convert(state.z[:, active], state.gamma[:, active], state.tokens[:, active])
            logits = self.backbone.cached(converted.h, active, cache)
        return converted.added_to(logits.float())

    # -- the computation ---------------------------------------------------------------------------------------

    def _check_state(self, state: SNRState) -> None:
        if not isinstance(state, SNRState):
            raise SNRTypeError(f"'state' must be an SNRState (got {type(state).__name__})")
        self._check_inputs(state.z, state.gamma, state.tokens)

    def _autocast(self, device: torch.device):
        """:meth:`set_forward`'s precision context (bfloat16 autocast or nothing), for the cached passes."""
        return contextlib.nullcontext() if self._fast is None else self._fast.autocast(device)

    def _convert(self, z, gamma, tokens):
        return self.converter(z, gamma, tokens, self.backbone.vocab_embed.embedding)  # E: (V + 1, H)

    def _predict(self, z, gamma, tokens, dropout):
        self._check_inputs(z, gamma, tokens)
        fast = self._fast if dropout == 0.0 else None  # set_forward's options serve logits() only
        with contextlib.nullcontext() if fast is None else fast.autocast(z.device):
            converted = self._convert(z, gamma, tokens)
            logits = self.backbone(converted.h, dropout=dropout) if fast is None else fast(converted.h)  # (B, L, V)
        return converted.added_to(logits)

    def _check_inputs(self, z, gamma, tokens) -> None:
        """Shapes, dtypes and devices only: no values are read here, so no host sync."""
        for name, t in (("z", z), ("gamma", gamma), ("tokens", tokens)):
            if not isinstance(t, torch.Tensor):
                raise SNRTypeError(f"{name!r} must be a torch.Tensor (got {type(t).__name__})")
        if gamma.ndim != 2:
            raise ShapeError(f"'gamma' must have shape [B, L] (got {list(gamma.shape)})")
        B, L = gamma.shape
        d = self.converter.config.anchor_dim
        if L != self.seq_len:
            raise ShapeError(f"the state has L = {L} positions; this denoiser is built for seq_len = {self.seq_len}")
        if tuple(z.shape) != (B, L, d):
            raise ShapeError(f"'z' must have shape [{B}, {L}, {d}] (batch, seq_len, anchor_dim) (got {list(z.shape)})")
        if tuple(tokens.shape) != (B, L):
            raise ShapeError(f"'tokens' must have shape [{B}, {L}] (got {list(tokens.shape)})")
        if not z.is_floating_point() or not gamma.is_floating_point():
            raise ShapeError(f"'z' and 'gamma' must be floating point (got {z.dtype} and {gamma.dtype})")
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise ShapeError(f"'tokens' must hold integer ids (got dtype {tokens.dtype})")
        device = self.backbone.vocab_embed.embedding.device
        for name, t in (("z", z), ("gamma", gamma), ("tokens", tokens)):
            if t.device != device:
                raise SNRPathError(f"{name!r} is on {t.device} but the denoiser is on {device}; move one of them")
