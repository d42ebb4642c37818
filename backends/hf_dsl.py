"""A DSL converter in front of any masked LM that takes ``inputs_embeds``: the layout of the authors' DSL-LLaDA port.

A masked LM reads ``[MASK]`` or clean tokens only (:class:`~snrpaths.backends.hf.MaskedLM`). With this converter it
reads every per-token SNR state, so every path runs on it (ramps, hybrids, the path-integral NLL), and the trainer
can fine-tune it (:class:`DSLMaskedLM` is a :class:`snrpaths.denoiser.Trainable`). For a model of ``V`` ids (all of
them: the converter is the checkpoint's, special ids included) with input width ``H``:

    K   = [x_0 .. x_{V-1} ; 0]                                  (V + 1, d)  keys, the last slot [MASK] (zero key)
    q_i = softmax_v(beta <z_i, K_v> + b_v)   in float32         (V + 1,)    v over the V ids and [MASK]
    h_i = W q_i + c                                             (H,)        backbone_embedding = Linear(V + 1 -> H)
    logits = model(inputs_embeds = [words(prefix) ; h ; words(suffix)])[span]   restricted to the samplable ids

with ``z_i`` ``(d,)`` the evidence of sampled position ``i``. The math of ``q`` and of the mixture (float32 softmax,
chunking, the certified sparse gather) is :class:`~snrpaths.backends.converter.Converter`'s, with the columns of
``W`` as its embedding table; since ``sum_v q_iv = 1``, ``W q_i + c = sum_v q_iv (W_v + c)``, a mixture of rows.

**Endpoints.** A clean position (``gamma = inf``) gets ``q = onehot(s_i)``, so ``h_i = W_{s_i} + c``: the limit of
``q`` as ``gamma -> inf`` (``beta <z, x_v>`` grows as ``beta gamma`` for ``v = s_i`` and as ``beta gamma <x_{s_i},
x_v>`` with ``<x_{s_i}, x_v> < 1`` for the others). A position at ``gamma = 0`` is read at ``z = 0``: ``q =
softmax(b)``, the softmax of the bias (``Converter.soft_mask``), which is what the checkpoint was trained on and is
continuous in gamma at 0. So a ``[MASK]`` position is *not* fed the model's own ``[MASK]`` embedding; a fresh
converter (:meth:`MaskedLMConverter.fresh`) starts with ``W_v`` the model's word embedding of ``v`` (the ``[MASK]``
slot's column its ``[MASK]`` embedding) and ``c = 0``, so clean positions are fed exactly what the plain model reads.

**Prompts.** Fixed (prompt) positions and the framing tokens keep the model's own word embeddings, ``words(s_i)``;
only sampled positions go through the converter. In training (the trainer passes no prompt) every position does.

**The layout** (the keys of the authors' port, read from their public code, so their released checkpoints load):
``noise_embed.weight`` ``(V, d)`` frozen random unit rows (``d = 100`` in their release), ``converter.logit_bias``
``(V + 1,)`` (initialised at 0 but ``log V`` for ``[MASK]``), scalar ``converter.beta``,
``converter.backbone_embedding.weight`` ``(H, V + 1)`` and ``.bias`` ``(H,)``, next to the backbone's own keys in
the folder's safetensors weights (``model.safetensors``, or shards listed by ``model.safetensors.index.json``;
pickled ``pytorch_model.bin`` weights are not searched).
:func:`converter_files` finds them, :func:`read_converter` checks every key's shape and values before anything is
built, :func:`save_pretrained` writes a folder in this layout (plus our converter settings in ``dsl_converter.json``,
which a folder without it reads as the authors' ``AUTHORS``).

The channel's anchors are the converter's: ``table`` is the rows of ``noise_embed`` at the samplable ids, in sampler
order, so the evidence the runner (or the trainer) builds is the evidence the converter reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import attrs
import safetensors
import safetensors.torch
import torch
from torch import nn

from snrpaths import validate
from snrpaths.errors import SNRPathError, SNRTypeError, ShapeError
from snrpaths.files import replace_files
from snrpaths.geometry import TokenTable
from snrpaths.state import SNRState

from .converter import Converted, Converter, ConverterConfig, log_beta_from
from .hf import MaskedLM, _check_folder, import_transformers, read_folder

NOISE, BIAS, BETA = "noise_embed.weight", "converter.logit_bias", "converter.beta"
WEIGHT, OFFSET = "converter.backbone_embedding.weight", "converter.backbone_embedding.bias"
#: The converter's keys in a checkpoint's weights, with their shapes (V ids, d anchor dimensions, width H).
KEYS = {NOISE: "[V, d]", BIAS: "[V + 1]", BETA: "[] (a scalar)", WEIGHT: "[H, V + 1]", OFFSET: "[H]"}
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
#: Our converter settings beside the weights (the head, the sparse mixture's); absent in the authors' folders.
SETTINGS = "dsl_converter.json"
#: The authors' converter: d = 100 frozen anchors, b_mask = log V (p([MASK] | z = 0) = 1/2), no evidence head.
AUTHORS = ConverterConfig(anchor_dim=100, learn_anchors=False, mask_prob=0.5, head="plain")
#: The prior a calibrated converter gives each id the sampler never draws (special ids): log b = -18.4.
UNSAMPLED_PRIOR = 1e-8
#: How far a stored anchor's norm may be from 1 (bf16 storage rounds each entry by up to 2^-9 relative).
NORM_TOL = 1e-2


class MaskedLMConverter(Converter):
    """The converter of the module docstring: :class:`Converter`'s ``q`` over ``V + 1`` slots (frozen anchors
    ``anchor_weight``, ``log_beta``, ``bias``), then ``backbone_embedding`` (``Linear(V + 1 -> H)``, with bias).

    Args:
        vocab_size: ``V``, the model's ids (the rows of ``noise_embed``).
        hidden: ``H``, the model's input width.
        config: its settings; ``learn_anchors`` must be False (the anchors are frozen in this layout).
        seed: seeds the random anchors.
    """

    soft_mask = True  # gamma = 0 is read at z = 0 (module docstring)

    def __init__(self, vocab_size: int, hidden: int, config: ConverterConfig = AUTHORS, seed: int = 0):
        if not isinstance(config, ConverterConfig):
            raise SNRTypeError(f"'config' must be a ConverterConfig (got {type(config).__name__})")
        if config.learn_anchors:
            raise SNRPathError("the DSL-LLaDA layout keeps its anchors (noise_embed) frozen: give a ConverterConfig "
                               "with learn_anchors=False")
        super().__init__(validate.integer("vocab_size", vocab_size), config, seed)
        # zeros, drawing nothing (no global RNG, no (V + 1) x H random init): W and c come from a file
        # (read_converter), the model's word embeddings (fresh) or a state dict
        self.backbone_embedding = nn.Linear(vocab_size + 1, validate.integer("hidden", hidden), device="meta")
        self.backbone_embedding.to_empty(device="cpu")
        with torch.no_grad():
            self.backbone_embedding.weight.zero_()
            self.backbone_embedding.bias.zero_()
        # the model ids of the sampler's tokens, in sampler order: set by DSLMaskedLM (not saved: the folder's
        # tokenizer gives them)
        self.register_buffer("samplable", torch.arange(vocab_size), persistent=False)

    @classmethod
    def fresh(cls, words: torch.Tensor, mask_id: int, config: ConverterConfig = AUTHORS,
              seed: int = 0) -> "MaskedLMConverter":
        """A new converter for a model whose word embeddings are ``words`` ``(V, H)``: ``W_v = words_v``, the
        ``[MASK]`` slot's column ``words_{mask_id}``, ``c = 0``, so a clean position is fed exactly its word
        embedding; random anchors from ``seed``, ``beta = 1 / sqrt(d)``, ``b_mask`` from ``config.mask_prob``."""
        if not isinstance(words, torch.Tensor) or words.ndim != 2:
            raise ShapeError(f"'words' must be the model's (V, H) word embeddings (got "
                             f"{getattr(words, 'shape', words)})")
        V, H = words.shape
        converter = cls(V, H, config, seed).to(words.device)
        with torch.no_grad():
            converter.backbone_embedding.weight.copy_(torch.cat([words, words[validate.integer("mask_id", mask_id, 0,
                                                                 high=V - 1)][None]]).T)
            converter.backbone_embedding.bias.zero_()
        return converter

    @property
    def anchors(self) -> torch.Tensor:
        """``(V', d)`` the channel's anchors: the keys of the samplable ids, in sampler order."""
        return self.key_anchors.index_select(0, self.samplable)

    def forward(self, z: torch.Tensor, gamma: torch.Tensor,  # type: ignore[override]
                tokens: torch.Tensor) -> Converted:
        """``h`` ``(B, L, H)`` (module docstring) and the evidence head's term, from ``z`` ``(B, L, d)``, ``gamma``
        ``(B, L)`` and the clean positions' *model* ids ``tokens`` ``(B, L)``."""
        linear = self.backbone_embedding
        converted = super().forward(z, gamma, tokens, linear.weight.T)  # (V + 1, H): the columns of W as rows
        return attrs.evolve(converted, h=converted.h + linear.bias.to(converted.h.dtype))

    @torch.no_grad()
    def calibrate(self, prior: torch.Tensor, mask_prob: float | None = None) -> None:
        """:meth:`Converter.calibrate` from a prior ``(V',)`` over the *samplable* ids (what the trainer measures):
        each id the sampler never draws gets ``UNSAMPLED_PRIOR``, the samplable ones share the rest."""
        n = self.samplable.numel()
        if not isinstance(prior, torch.Tensor) or tuple(prior.shape) != (n,):
            raise ShapeError(f"'prior' must be a tensor of shape [{n}] over the samplable ids (got "
                             f"{list(getattr(prior, 'shape', [])) or type(prior).__name__})")
        rest = self.vocab_size - n
        full = torch.full((self.vocab_size,), UNSAMPLED_PRIOR, dtype=torch.float64, device=prior.device)
        full[self.samplable.to(prior.device)] = prior.double() * (1 - rest * UNSAMPLED_PRIOR)
        super().calibrate(full, mask_prob)


class DSLMaskedLM(MaskedLM, nn.Module):
    """A masked LM behind a DSL converter: a :class:`MaskedLM` (the same id maps, framing, text in and out) that
    reads finite-SNR states, and a :class:`snrpaths.denoiser.Trainable` (module docstring for the math).

    Args:
        model: a masked LM taking ``inputs_embeds`` (``[B, N, H]``) and exposing ``get_input_embeddings()``.
        converter: a :class:`MaskedLMConverter` over the model's ``V`` ids and width ``H``.
        train_backbone: let the trainer update the model's own weights too (default: the converter only; the
            model's parameters get ``requires_grad = False``).
        the others: as :class:`MaskedLM`.
    """

    reads_finite_snr = True  # the converter reads soft evidence (snrpaths.denoiser.FiniteSNR)

    def __init__(self, model: Any, converter: MaskedLMConverter, *, mask_id: int, seq_len: int,
                 samplable: Sequence[int] | None = None, shift: bool = False, prefix: Sequence[int] = (),
                 suffix: Sequence[int] = (), tokenizer: Any = None, max_len: int | None = None,
                 train_backbone: bool = False):
        nn.Module.__init__(self)
        MaskedLM.__init__(self, model, mask_id=mask_id, seq_len=seq_len, samplable=samplable, shift=shift,
                          prefix=prefix, suffix=suffix, tokenizer=tokenizer, max_len=max_len)
        self.eval()  # as MaskedLM leaves the model (a Module starts in training mode); the trainer switches it
        if not isinstance(converter, MaskedLMConverter):
            raise SNRTypeError(f"'converter' must be a MaskedLMConverter (got {type(converter).__name__})")
        words = _words(model)
        if converter.vocab_size != self.model_vocab or converter.backbone_embedding.out_features != words.shape[1]:
            raise ShapeError(f"the converter maps {converter.vocab_size} ids to width "
                             f"{converter.backbone_embedding.out_features}; the model has V = {self.model_vocab} ids "
                             f"and width H = {words.shape[1]}")
        self.converter = converter.to(self.device)
        self.converter.samplable = self._to_model
        self.train_backbone = validate.boolean("train_backbone", train_backbone)
        self.model.requires_grad_(self.train_backbone)
        self._table_key: tuple | None = None

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, seq_len: int | None = None, shift: bool = False,
                        train_backbone: bool = False, config: ConverterConfig | None = None,
                        seed: int = 0) -> "DSLMaskedLM":
        """A local folder (as :meth:`MaskedLM.from_pretrained`) with its converter read from its weights (checked
        key by key: :func:`read_converter`), or, for a folder without one, a fresh converter
        (:meth:`MaskedLMConverter.fresh` with ``config``, default ``AUTHORS``, and ``seed``) to fine-tune."""
        folder = _check_folder(folder)
        files = converter_files(folder)  # a bad index or a partial converter fails before the model loads
        if files is not None and config is not None:
            raise SNRPathError(f"the folder {str(folder)!r} holds a converter; 'config' is for a fresh one (leave it "
                               "out)")
        with _quiet_transformers():  # its load report lists the converter's keys as unexpected: they are read below
            model, options = read_folder(folder, seq_len, shift)
        if files is None:
            converter = MaskedLMConverter.fresh(_words(model).detach(), options["mask_id"], config or AUTHORS, seed)
        else:
            converter = read_converter(folder, files, model)
        return cls(model, converter, **options, train_backbone=train_backbone)

    # -- the Denoiser protocol -------------------------------------------------------------------------------------

    @property
    def table(self) -> TokenTable:
        """The channel's anchors, the converter's ``noise_embed`` rows of the samplable ids (rebuilt only when
        they change: loaded weights, a move)."""
        w = self.converter.anchor_weight
        key = (w.data_ptr(), w._version, w.device, w.dtype, self.converter.samplable.data_ptr())
        if key != self._table_key:
            self._table, self._table_key = TokenTable(self.converter.anchors.detach()), key
        return self._table

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V']`` logits over the samplable ids of any state (module docstring); no gradient, no dropout."""
        self._check_state(state)
        if not self.training:
            with torch.no_grad():
                return self._predict(state.z, state.gamma, state.tokens, state.fixed)
        self.eval()  # a call from inside a training run (the trainer's evidence curve): dropout off for it
        try:
            return self.logits(state)
        finally:
            self.train()

    def forward(self, z: torch.Tensor, gamma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, V']`` differentiable logits from plain tensors, every position through the converter: ``z``
        ``[B, L, d]``, ``gamma`` ``[B, L]`` in ``[0, inf]``, ``tokens`` ``[B, L]`` sampler ids, read where
        ``gamma = inf`` (the trainer's entry point, :class:`snrpaths.denoiser.Trainable`)."""
        return self._predict(z, gamma, tokens, None)

    def _predict(self, z, gamma, tokens, fixed):
        self._check_inputs(z, gamma, tokens)
        B, L = gamma.shape
        clean = torch.isinf(gamma)
        if bool((clean & ((tokens < 0) | (tokens >= self.vocab_size))).any()):
            raise SNRPathError(f"'tokens' holds clean (gamma = inf) ids outside the sampler's "
                               f"[0, {self.vocab_size - 1}]")
        ids = self._to_model[torch.where(clean, tokens, 0)]  # (B, L) model ids, read where clean
        fast = None if torch.is_grad_enabled() else self._fast  # set_forward's options; a trainer's pass runs eagerly
        with contextlib.nullcontext() if fast is None else fast.autocast(gamma.device):  # the softmax stays float32
            converted = self.converter(z, gamma, ids)
            words = self.model.get_input_embeddings()
            h = converted.h.to(words.weight.dtype)  # (B, L, H)
            if fixed is not None:  # prompt positions keep the model's own embeddings
                h = torch.where(fixed.unsqueeze(-1), words(ids), h)
            prefix, suffix = (words(f).expand(B, -1, -1) for f in self._frame)
            embeds = torch.cat([prefix, h, suffix], dim=1)
            out = self.model(inputs_embeds=embeds) if fast is None else fast(embeds)
        out = out if isinstance(out, torch.Tensor) else out.logits
        n = len(self.prefix) + L + len(self.suffix)
        if tuple(out.shape) != (B, n, self.model_vocab):
            raise ShapeError(f"the model returned logits of shape {list(out.shape)} for inputs_embeds of "
                             f"{[B, n, h.shape[-1]]}; expected {[B, n, self.model_vocab]}")
        start = len(self.prefix) - self.shift
        return converted.added_to(out[:, start:start + L]).index_select(-1, self._to_model)

    def _check_inputs(self, z, gamma, tokens) -> None:
        """Shapes and dtypes only (the converter checks the SNRs' values)."""
        for name, t in (("z", z), ("gamma", gamma), ("tokens", tokens)):
            if not isinstance(t, torch.Tensor):
                raise SNRTypeError(f"{name!r} must be a torch.Tensor (got {type(t).__name__})")
        if gamma.ndim != 2 or gamma.shape[1] != self.seq_len:
            raise ShapeError(f"'gamma' must have shape [B, {self.seq_len}] (got {list(gamma.shape)})")
        B, L = gamma.shape
        d = self.converter.config.anchor_dim
        if tuple(z.shape) != (B, L, d) or tuple(tokens.shape) != (B, L):
            raise ShapeError(f"'z' and 'tokens' must have shapes [{B}, {L}, {d}] and [{B}, {L}] (got "
                             f"{list(z.shape)} and {list(tokens.shape)})")
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise ShapeError(f"'tokens' must hold integer ids (got dtype {tokens.dtype})")
        if not z.is_floating_point() or not gamma.is_floating_point():
            raise ShapeError(f"'z' and 'gamma' must be floating point (got {z.dtype} and {gamma.dtype})")
        for name, t in (("z", z), ("gamma", gamma), ("tokens", tokens)):
            if t.device != self.device:
                raise SNRPathError(f"{name!r} is on {t.device} but the denoiser is on {self.device}; move one of them")

    def to(self, *args: Any, **kwargs: Any) -> "DSLMaskedLM":
        """As ``nn.Module.to`` (the model and the converter, in place); returns itself."""
        nn.Module.to(self, *args, **kwargs)
        return MaskedLM.to(self, self.converter.anchor_weight.device)

    # -- persistence, for the trainer (snrpaths.denoiser.Trainable) --------------------------------------------

    def save(self, folder: str | os.PathLike) -> Path:
        """Write this denoiser to ``folder`` in the authors' layout (:func:`save_pretrained`)."""
        return save_pretrained(self, folder)

    def describe(self) -> dict:
        """The model's config, the converter's settings and the sampler's ids, as JSON values (no tokenizer: the
        saved folder holds it)."""
        return {"kind": "masked_lm_dsl", "model": json.loads(self.model.config.to_json_string()),
                "converter": attrs.asdict(self.converter.config), "mask_id": self.mask_id, "seq_len": self.seq_len,
                "samplable": list(self.samplable), "shift": self.shift, "prefix": list(self.prefix),
                "suffix": list(self.suffix), "train_backbone": self.train_backbone}

    @classmethod
    def from_description(cls, description: dict, where: str) -> "DSLMaskedLM":
        """A freshly initialised denoiser of a :meth:`describe` dict (``transformers``' ``from_config``), which
        its state dict loads into; ``where`` names the source in errors."""
        need = ("model", "converter", "mask_id", "seq_len", "samplable", "shift", "prefix", "suffix", "train_backbone")
        if not isinstance(description, dict) or description.get("kind") != "masked_lm_dsl" or not set(need) <= set(
                description):
            raise SNRPathError(f"{where} does not describe a DSLMaskedLM (kind 'masked_lm_dsl' with {', '.join(need)})")
        transformers = import_transformers()
        settings = dict(description["model"])
        model = transformers.AutoModelForMaskedLM.from_config(
            transformers.AutoConfig.for_model(settings.pop("model_type"), **settings))
        converter = MaskedLMConverter(*_sizes(model), ConverterConfig(**description["converter"]))
        options = {k: description[k] for k in need[2:]}
        return cls(model, converter, **options)


def stream_ids(den: MaskedLM, text: str) -> tuple[torch.Tensor, int]:
    """``(N,)`` int64 sampler ids of ``text`` as one stream (tokenized with no framing tokens, for the trainer), and
    how many of its tokens were left out because the sampler never draws them (``[UNK]``, special tokens)."""
    tokenizer = den._need_tokenizer("stream_ids")
    if not isinstance(text, str):
        raise SNRTypeError(f"'text' must be a string (got {type(text).__name__})")
    ids = den._from_model()[torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.int64)]
    kept = ids[ids >= 0]
    return kept, ids.numel() - kept.numel()


def converter_files(folder: str | os.PathLike) -> dict[str, Path] | None:
    """Which file holds each converter key in a folder's safetensors weights (``model.safetensors`` first, as
    ``transformers`` reads it, else the shards ``model.safetensors.index.json`` lists); None where they hold none.

    Raises :class:`SNRPathError` for an index that is not JSON or lists no ``weight_map``, a weights file that is
    not safetensors, and weights that hold some converter keys but not all (naming the first missing key and its
    shape)."""
    folder = Path(folder)
    if (folder / SINGLE).is_file():
        where = dict.fromkeys(_keys_of(folder / SINGLE), folder / SINGLE)
    elif (folder / INDEX).is_file():
        where = _index(folder / INDEX)
    else:
        return None
    found = [k for k in KEYS if k in where]
    missing = [k for k in KEYS if k not in where]
    if not found:
        return None
    if missing:
        raise SNRPathError(f"the weights in {str(folder)!r} hold the DSL converter keys {found} but not "
                           f"{missing[0]!r} (shape {KEYS[missing[0]]}); a DSL-LLaDA checkpoint has all of "
                           f"{list(KEYS)}")
    for key in KEYS:
        if not where[key].is_file():
            raise SNRPathError(f"the weights index of {str(folder)!r} puts {key!r} in {str(where[key])!r}, which is "
                               "missing")
    return {k: where[k] for k in KEYS}


def _index(index: Path) -> dict[str, Path]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise SNRPathError(f"{str(index)!r} is not a safetensors index (a JSON object with a 'weight_map': "
                           f"{type(err).__name__}: {err})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SNRPathError(f"{str(index)!r}: 'weight_map' must map each key to a file name")
    return {k: index.parent / v for k, v in weight_map.items()}


def _keys_of(file: Path) -> list[str]:
    try:
        with safetensors.safe_open(file, "pt") as f:
            return list(f.keys())
    except (OSError, safetensors.SafetensorError) as err:
        raise SNRPathError(f"cannot read the weights file {str(file)!r}: {err}") from None


def read_converter(folder: str | os.PathLike, files: dict[str, Path], model: Any) -> MaskedLMConverter:
    """The converter stored in ``files`` (:func:`converter_files`) for ``model``, every key's shape checked against
    the model (``V = config.vocab_size``, ``H`` its input width) before any tensor is read: a wrong one is a
    :class:`ShapeError` naming the key, the shape expected and found, and the file. Then the values: unit-norm
    anchors (within ``NORM_TOL``), a positive finite ``beta``. Settings from ``dsl_converter.json`` when the folder
    has one, else ``AUTHORS`` (``anchor_dim`` is the stored ``d``)."""
    V, H = _sizes(model)
    shapes = {BIAS: [V + 1], WEIGHT: [H, V + 1], OFFSET: [H]}
    tensors = {}
    for key, file in files.items():
        with safetensors.safe_open(file, "pt") as f:
            if key not in f.keys():
                raise SNRPathError(f"the weights index of {str(folder)!r} puts {key!r} in {str(file)!r}, which does "
                                   "not hold it")
            found = list(f.get_slice(key).get_shape())
            ok = {NOISE: len(found) == 2 and found[0] == V and found[1] >= 1, BETA: found in ([], [1])}.get(
                key, found == shapes.get(key))
            if not ok:
                expected = {NOISE: f"[{V}, d]", BETA: KEYS[BETA]}.get(key, str(shapes.get(key)))
                layout = "" if key == BETA else f" ({KEYS[key]} for V = {V} ids, H = {H})"
                raise ShapeError(f"{key!r} in {str(file)!r} has shape {found}; expected {expected}{layout}")
            tensors[key] = f.get_tensor(key)
    noise = tensors[NOISE].double()
    norms = noise.norm(dim=1)
    bad = torch.nonzero(~((norms - 1).abs() <= NORM_TOL)).flatten()
    if bad.numel():
        raise SNRPathError(f"{NOISE!r} rows must be unit vectors (row {int(bad[0])} has norm {float(norms[bad[0]]):g})")
    config = _settings(Path(folder), noise.shape[1])
    converter = MaskedLMConverter(V, H, config).to(_words(model).device)
    with torch.no_grad():
        converter.anchor_weight.copy_(tensors[NOISE])
        converter.log_beta.copy_(log_beta_from(tensors[BETA].float(), BETA))
        converter.bias.copy_(tensors[BIAS])
        converter.backbone_embedding.weight.copy_(tensors[WEIGHT])
        converter.backbone_embedding.bias.copy_(tensors[OFFSET])
    return converter


def _settings(folder: Path, d: int) -> ConverterConfig:
    file = folder / SETTINGS
    stored = {}
    if file.is_file():
        try:
            stored = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise SNRPathError(f"cannot read the converter settings {str(file)!r}: {err}") from None
    fields = {f.name for f in attrs.fields(ConverterConfig)}
    if not isinstance(stored, dict) or set(stored) - fields:
        raise SNRPathError(f"{str(file)!r} must be a JSON object with keys among {sorted(fields)}")
    return ConverterConfig(**{**attrs.asdict(AUTHORS), **stored, "anchor_dim": d, "learn_anchors": False})


def save_pretrained(den: DSLMaskedLM, folder: str | os.PathLike, *, max_shard_size: int | str | None = None) -> Path:
    """Write ``den`` to ``folder`` in the authors' layout: the model's own ``save_pretrained`` files with the
    converter's keys added (into ``model.safetensors``, or as one more shard listed in the index), the tokenizer,
    and ``dsl_converter.json``; all files whole under temporary names first, ``config.json`` renamed in last
    (:func:`snrpaths.files.replace_files`). Weight files of an earlier, differently sharded save are removed after.
    The weights pass through memory once. ``max_shard_size`` is the model's ``save_pretrained`` option (e.g.
    ``"5GB"``; default: its own)."""
    if not isinstance(den, DSLMaskedLM):
        raise SNRTypeError(f"'den' must be a DSLMaskedLM (got {type(den).__name__})")
    with tempfile.TemporaryDirectory() as tmp:
        den.model.save_pretrained(tmp, **({} if max_shard_size is None else {"max_shard_size": max_shard_size}))
        if den.tokenizer is not None:
            den.tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    stored = converter_tensors(den.converter)
    if SINGLE in files:
        files[SINGLE] = safetensors.torch.save({**safetensors.torch.load(files[SINGLE]), **stored}, {"format": "pt"})
    else:  # sharded: the converter is one more shard of the index
        shard = "model-dsl-converter.safetensors"
        index = json.loads(files[INDEX])
        index["weight_map"].update(dict.fromkeys(stored, shard))
        files[shard] = safetensors.torch.save(stored, {"format": "pt"})
        files[INDEX] = (json.dumps(index, indent=2) + "\n").encode()
    settings = {k: v for k, v in attrs.asdict(den.converter.config).items() if k not in ("anchor_dim", "learn_anchors")}
    files[SETTINGS] = (json.dumps(settings, indent=2) + "\n").encode()
    files["config.json"] = files.pop("config.json")  # last in, first out: a config always has its weights
    folder = replace_files(folder, files, first_out="config.json")
    for stale in [*folder.glob("model*.safetensors"), *folder.glob("pytorch_model*.bin*"), folder / INDEX]:
        if stale.name not in files:
            stale.unlink(missing_ok=True)
    return folder


def converter_tensors(converter: MaskedLMConverter) -> dict[str, torch.Tensor]:
    """The converter's weights under the authors' keys (``converter.beta = exp(log_beta)``), contiguous on the CPU."""
    tensors = {NOISE: converter.anchor_weight, BIAS: converter.bias, BETA: converter.beta,
               WEIGHT: converter.backbone_embedding.weight, OFFSET: converter.backbone_embedding.bias}
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _words(model: Any) -> torch.Tensor:
    """The model's ``(V, H)`` input word embeddings (``get_input_embeddings().weight``)."""
    get = getattr(model, "get_input_embeddings", None)
    words = get() if callable(get) else None
    if not isinstance(getattr(words, "weight", None), torch.Tensor) or words.weight.ndim != 2:
        raise SNRTypeError(f"a DSL converter feeds the model's inputs_embeds: {type(model).__name__} must expose its "
                           "word embeddings as get_input_embeddings() (an nn.Embedding)")
    return words.weight


@contextlib.contextmanager
def _quiet_transformers():
    """``transformers`` logs errors only inside the block."""
    logging = import_transformers().logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def _sizes(model: Any) -> tuple[int, int]:
    """``(V, H)``: the model's ids (its config's ``vocab_size``, else its word embeddings' rows) and input width."""
    words = _words(model)
    return getattr(getattr(model, "config", None), "vocab_size", None) or words.shape[0], words.shape[1]
