"""Any masked language model as a denoiser: Hugging Face masked LMs and LLaDA / Dream-style models.

A masked LM reads endpoint states only: each position is ``[MASK]`` (``gamma = 0``) or a clean token
(``gamma = inf``), never soft evidence. :class:`MaskedLM` puts such a model behind the :class:`snrpaths.Denoiser`
protocol and declares ``reads_finite_snr = False``, so a path that would show it a finite-SNR state (a ramp, a
hybrid, the path-integral NLL) is refused before any call, naming the stage (:class:`snrpaths.denoiser.FiniteSNR`);
every endpoint path (``ar()``, ``roar()``, ``mdm(T, remask=...)``, ``reveal(...)``, ``blocks(...)``) runs.

Two vocabularies. The model's ``V`` ids include special tokens (padding, separators, ``[CLS]``, the mask itself) that
must never be sampled; the sampler sees only the ``V'`` *samplable* ids, numbered ``0..V'-1`` in the order given, and
the wrapper maps them both ways: ``sampler id k <-> model id samplable[k]``. So ``vocab_size = V'``, the anchors
``table`` are ``V'`` random unit vectors (``TokenTable.random(V', anchor_dim, seed)``: an endpoint model never reads
them, but the protocol's ``table`` must exist), and

    logits(state)[b, i, k] = model(ids)[b, p + i - shift, samplable[k]],
    ids = prefix ++ [mask_id if gamma_{b,j} = 0 else samplable[tokens_{b,j}] for j < L] ++ suffix,

``p = len(prefix)``. ``prefix`` / ``suffix`` are the framing tokens the model was trained with around a text (BERT's
``[CLS]`` ... ``[SEP]``, read off the tokenizer by :meth:`MaskedLM.from_pretrained`); they are fixed, never sampled,
and not among the ``L`` positions. ``shift=True`` is for Dream-style models, which predict token ``i`` at position
``i - 1`` (they need at least one framing token, e.g. BOS, before the span).

Lengths and batches. ``seq_len`` is the sampling length ``L`` the user asks for (at most the model's positions less
the framing). Every row has the same ``L`` positions and no padding: a batch of text prompts of different lengths
puts each prompt first and leaves the rest of its row free, for the path to fill, so no attention mask is needed
(the model is called on ``ids`` alone, as ``model(ids)``, and its output's ``logits`` are read, or the output itself
when it is a tensor).

``transformers`` is an optional extra (``pip install 'snrpaths[hf]'``), imported here only when a folder is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from snrpaths.denoiser import require_finite_snr
from snrpaths.errors import SNRPathError, SNRTypeError, ShapeError
from snrpaths.geometry import TokenTable
from snrpaths.state import UNKNOWN, SNRState
from snrpaths import validate

from .fast import FastForward, check_options

#: The files a saved model's weights may be in (single file or sharded index, safetensors or pickle).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: The files a saved tokenizer is read from (a fast tokenizer's JSON, or a WordPiece / SentencePiece vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model")
#: How one free position is written in a text prompt when the tokenizer has no mask token.
MARKER = "[MASK]"


class MaskedLM:
    """A masked language model queried on endpoint states (see the module docstring for the id maps and framing).

    Args:
        model: a ``torch.nn.Module`` mapping ``[B, N]`` input ids to ``[B, N, V]`` logits (or an output with
            ``.logits``): an ``AutoModelForMaskedLM`` or a LLaDA / Dream-style model object. It is put in eval mode
            (dropout off: the same seed must give the same samples).
        mask_id: the model's ``[MASK]`` id, in ``[0, V)``.
        seq_len: ``L``, the positions sampled.
        samplable: the model ids that may be sampled, in sampler order (default: every id but ``mask_id``, the
            framing ids and the tokenizer's special ids).
        shift: logits for position ``i`` come from model position ``i - 1`` (Dream-style).
        prefix, suffix: fixed framing ids around the span (e.g. ``[CLS]`` and ``[SEP]``).
        tokenizer: a Hugging Face tokenizer, for text in and out (:meth:`encode_prompts`, :meth:`decode`).
        max_len: the model's most positions (default: ``model.config.max_position_embeddings`` when it has one).
        anchor_dim, seed: the random anchor table's dimension and seed.
        precision, compile: how :meth:`logits` runs the model: ``'fp32'`` or ``'bf16'`` (autocast), and
            ``torch.compile`` (``True``, a backend name, or ``False``) with static shapes, batches padded to a power
            of two (:mod:`snrpaths.backends.fast`; also :meth:`set_forward`).

    Every argument is checked before the first sampling call; the model's output shape is checked once at
    construction, on one probe row, and on every call.
    """

    reads_finite_snr = False  # endpoint-only (snrpaths.denoiser.FiniteSNR)
    exact_posterior = False

    def __init__(self, model: Any, *, mask_id: int, seq_len: int, samplable: Sequence[int] | None = None,
                 shift: bool = False, prefix: Sequence[int] = (), suffix: Sequence[int] = (), tokenizer: Any = None,
                 max_len: int | None = None, anchor_dim: int = 32, seed: int = 0, precision: str = "fp32",
                 compile: bool | str = False):
        if not isinstance(model, torch.nn.Module):
            raise SNRTypeError(f"'model' must be a torch.nn.Module mapping input ids to logits (got "
                               f"{type(model).__name__})")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.seq_len = validate.integer("seq_len", seq_len)
        self.shift = validate.boolean("shift", shift)
        self.prefix, self.suffix = _ids("prefix", prefix), _ids("suffix", suffix)
        if self.shift and not self.prefix:
            raise SNRPathError("shift=True reads position i's logits at position i - 1, so the span needs at least "
                               "one framing token before it: give prefix=(bos_id,)")
        self.mask_id = validate.integer("mask_id", mask_id, 0)
        config = getattr(model, "config", None)
        if getattr(config, "vocab_size", None) is not None:  # before the probe call: an id past V would crash it
            self._check_vocab(config.vocab_size)
        self._check_length(max_len if max_len is not None else getattr(config, "max_position_embeddings", None))
        self.device = next(model.parameters(), torch.empty(0)).device
        check_options(precision, compile, self.device)
        self.model_vocab = self._probe()
        self._check_vocab(self.model_vocab)
        self.samplable = self._samplable(samplable)
        self._to_model = torch.tensor(self.samplable, dtype=torch.int64, device=self.device)  # [V']
        self._frame = (torch.tensor(self.prefix, dtype=torch.int64, device=self.device),
                       torch.tensor(self.suffix, dtype=torch.int64, device=self.device))
        self.vocab_size = len(self.samplable)
        self._table = TokenTable.random(self.vocab_size, validate.integer("anchor_dim", anchor_dim),
                                        validate.seed("seed", seed)).to(self.device)
        self.set_forward(precision, compile)

    def set_forward(self, precision: str = "fp32", compile: bool | str = False) -> "MaskedLM":
        """Run the model in :meth:`logits` under ``precision`` (``'fp32'``, or ``'bf16'`` autocast) and, with
        ``compile``, through ``torch.compile`` with static shapes (:mod:`snrpaths.backends.fast`); returns itself."""
        self._fast = FastForward(self._forward, precision=precision, compile=compile, device=self.device)
        return self

    @property
    def forward_options(self) -> dict:
        """``{"precision": ..., "compile": ...}``: what :meth:`set_forward` chose."""
        return self._fast.options

    # -- construction checks -----------------------------------------------------------------------------------------

    def _check_vocab(self, vocab: int) -> None:
        """The mask id and the framing ids are model ids, in ``[0, vocab)``."""
        validate.integer("mask_id", self.mask_id, 0, high=vocab - 1)
        bad = [v for v in (*self.prefix, *self.suffix) if v >= vocab]
        if bad:
            raise SNRPathError(f"the framing ids {bad} lie outside the model's vocabulary [0, {vocab - 1}]")

    def _check_length(self, max_len: int | None) -> None:
        need = len(self.prefix) + self.seq_len + len(self.suffix)
        if max_len is not None and need > max_len:
            raise SNRPathError(f"seq_len={self.seq_len} with {len(self.prefix) + len(self.suffix)} framing tokens "
                               f"needs {need} positions; the model has at most {max_len}: seq_len <= "
                               f"{max_len - need + self.seq_len}")

    def _probe(self) -> int:
        """The model's ``V``, from one ``[1, N]`` row of id 0: the output must be ``[1, N, V]`` floating point."""
        n = len(self.prefix) + self.seq_len + len(self.suffix)
        logits = self._forward(torch.zeros(1, n, dtype=torch.int64, device=self.device))
        if logits.ndim != 3 or tuple(logits.shape[:2]) != (1, n) or logits.shape[2] < 2:
            raise ShapeError(f"the model maps [1, {n}] input ids to an output of shape {list(logits.shape)}; a masked "
                             f"LM must give [B, N, V] logits, here [1, {n}, V] with V >= 2")
        if not logits.is_floating_point():
            raise ShapeError(f"the model's logits have dtype {logits.dtype}; they must be floating point")
        return int(logits.shape[2])

    def _samplable(self, samplable: Sequence[int] | None) -> tuple[int, ...]:
        never = {self.mask_id, *self.prefix, *self.suffix, *getattr(self.tokenizer, "all_special_ids", ())}
        if samplable is None:
            return tuple(v for v in range(self.model_vocab) if v not in never)
        ids = _ids("samplable", samplable)
        bad = sorted({v for v in ids if v >= self.model_vocab} | (set(ids) & never))
        if bad or len(set(ids)) != len(ids) or len(ids) < 2:
            raise SNRPathError(f"'samplable' must be at least 2 distinct model ids in [0, {self.model_vocab - 1}], "
                               f"none of them the mask id {self.mask_id}, a framing id or a special token (got "
                               f"{len(ids)} ids; bad: {bad[:8]})")
        return ids

    # -- the Denoiser protocol -------------------------------------------------------------------------------------

    @property
    def table(self) -> TokenTable:
        """The ``V'`` anchors the channel builds evidence from: random, as an endpoint model never reads them."""
        return self._table

    def logits(self, state: SNRState) -> torch.Tensor:
        """``[B, L, V']`` logits over the samplable ids: the model's own logits at the span (module docstring)."""
        self._check_state(state)
        clean = state.clean
        if bool((~clean & (state.gamma != 0)).any()):
            require_finite_snr(self, "a state with positions at finite SNR")
        inner = torch.where(clean, self._to_model[state.tokens.clamp_min(0)], self.mask_id)  # [B, L] model ids
        B = inner.shape[0]
        prefix, suffix = (f.expand(B, -1) for f in self._frame)
        ids = torch.cat([prefix, inner, suffix], dim=1)
        out = self._fast(ids)
        if tuple(out.shape) != (*ids.shape, self.model_vocab):
            raise ShapeError(f"the model returned logits of shape {list(out.shape)} for input ids of shape "
                             f"{list(ids.shape)}; expected {[*ids.shape, self.model_vocab]}")
        start = len(self.prefix) - self.shift
        return out[:, start:start + self.seq_len].index_select(-1, self._to_model)

    def _check_state(self, state: SNRState) -> None:
        if not isinstance(state, SNRState):
            raise SNRTypeError(f"'state' must be an SNRState (got {type(state).__name__})")
        if state.seq_len != self.seq_len:
            raise ShapeError(f"the state has L = {state.seq_len} positions; this denoiser samples seq_len = "
                             f"{self.seq_len}")

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits of ``[B, N]`` input ids, or of ``[B, N, H]`` input embeddings (a DSL converter's)."""
        with torch.no_grad():
            out = self.model(inputs_embeds=x) if x.is_floating_point() else self.model(x)
        return out if isinstance(out, torch.Tensor) else out.logits

    def to(self, device: torch.device | str) -> "MaskedLM":
        """This denoiser on ``device`` (the model moved in place, as ``nn.Module.to`` does); returns itself."""
        self.model.to(device)
        self.device = torch.device(device)
        self._to_model = self._to_model.to(self.device)
        self._frame = tuple(f.to(self.device) for f in self._frame)
        self._table = self._table.to(self.device)
        return self

    # -- text ------------------------------------------------------------------------------------------------------

    def encode_prompts(self, texts: str | Sequence[str], marker: str | None = None) -> torch.Tensor:
        """``[B, L]`` sampler ids of ``B`` text prompts, ``-1`` where free, for :func:`snrpaths.sample`.

        Each text is tokenized (no framing tokens) and put first in its row; every ``marker`` in it (default: the
        tokenizer's mask token, e.g. ``[MASK]``) is one free position (infilling), and the positions after the text
        are free (the path continues it). A text longer than ``L`` tokens, or one holding a token that may not be
        sampled (``[UNK]``, a separator), is refused naming the prompt.
        """
        tokenizer = self._need_tokenizer("encode_prompts")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise SNRTypeError(f"'texts' must be a string or a non-empty sequence of strings (got {texts!r:.80})")
        marker = marker or getattr(tokenizer, "mask_token", None) or MARKER
        lookup = self._from_model()
        rows = [self._encode_one(k, text, marker, lookup) for k, text in enumerate(texts)]
        prompt = torch.full((len(rows), self.seq_len), UNKNOWN, dtype=torch.int64)
        for k, row in enumerate(rows):
            prompt[k, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return prompt.to(self.device)

    def _from_model(self) -> torch.Tensor:
        """``(V,)`` the sampler id of each model id, ``UNKNOWN`` for the ids never sampled (``samplable`` inverted)."""
        lookup = torch.full((self.model_vocab,), UNKNOWN, dtype=torch.int64)
        lookup[list(self.samplable)] = torch.arange(self.vocab_size)
        return lookup

    def _encode_one(self, k: int, text: str, marker: str, lookup: torch.Tensor) -> list[int]:
        row: list[int] = []
        for j, piece in enumerate(text.split(marker)):
            row += [UNKNOWN] * (j > 0)
            ids = self.tokenizer(piece, add_special_tokens=False)["input_ids"] if piece.strip() else []
            sampler = lookup[torch.tensor(ids, dtype=torch.int64)].tolist() if ids else []
            if UNKNOWN in sampler:
                bad = ids[sampler.index(UNKNOWN)]
                raise SNRPathError(f"prompt {k} ({text!r:.60}) holds the token {self.tokenizer.decode([bad])!r} (id "
                                   f"{bad}), which may not be sampled (a special or unknown token); rephrase it")
            row += sampler
        if len(row) > self.seq_len:
            raise SNRPathError(f"prompt {k} ({text!r:.60}) has {len(row)} tokens; it must fit seq_len = {self.seq_len}"
                               " (build the MaskedLM with a larger seq_len, up to the model's positions)")
        return row

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """The texts of ``[B, L]`` (or one ``[L]``) sampler ids in ``[0, V')``."""
        tokenizer = self._need_tokenizer("decode")
        tokens = validate.token_ids("tokens", tokens, self.vocab_size, ndims=(1, 2))
        model_ids = self._to_model.cpu()[tokens.reshape(-1, tokens.shape[-1]).cpu()]
        return [tokenizer.decode(row.tolist()) for row in model_ids]

    def _need_tokenizer(self, what: str) -> Any:
        if self.tokenizer is None:
            raise SNRPathError(f"{what} needs the tokenizer: build the MaskedLM with tokenizer=..., or load it with "
                               "MaskedLM.from_pretrained(folder)")
        return self.tokenizer

    # -- loading -----------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, seq_len: int | None = None, shift: bool = False,
                        anchor_dim: int = 32, seed: int = 0, precision: str = "fp32",
                        compile: bool | str = False) -> "MaskedLM":
        """A local folder saved by ``save_pretrained`` (weights, ``config.json`` and a tokenizer), loaded with
        ``local_files_only=True``: never a hub. The mask id and the framing come from the tokenizer (the ids it
        adds around a text); ``seq_len`` defaults to the model's positions less the framing, at most 128.

        A folder whose safetensors weights hold the DSL-LLaDA converter's keys (``noise_embed.weight``, ...) gives a
        :class:`~snrpaths.backends.hf_dsl.DSLMaskedLM`, which reads finite-SNR states (its anchors are the
        checkpoint's; ``anchor_dim`` and ``seed`` are not used); every other folder an endpoint-only ``MaskedLM``.
        ``precision`` and ``compile`` as in the constructor, checked before anything is read."""
        check_options(precision, compile)
        folder = _check_folder(folder)
        from .hf_dsl import DSLMaskedLM, converter_files

        if cls is MaskedLM and converter_files(folder) is not None:
            return DSLMaskedLM.from_pretrained(folder, seq_len=seq_len, shift=shift).set_forward(precision, compile)
        model, options = read_folder(folder, seq_len, shift)
        return cls(model, **options, anchor_dim=anchor_dim, seed=seed, precision=precision, compile=compile)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({type(self.model).__name__}, V={self.model_vocab}, samplable={self.vocab_size}"
                f", L={self.seq_len}, mask_id={self.mask_id}{', shift=True' if self.shift else ''})")


def read_folder(folder: Path, seq_len: int | None, shift: bool) -> tuple[Any, dict]:
    """The model of a checked local folder and the :class:`MaskedLM` arguments its tokenizer gives (mask id,
    framing, ``seq_len``'s default: the model's positions less the framing, at most 128)."""
    transformers = import_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.mask_token_id is None:
        raise SNRPathError(f"the tokenizer in {str(folder)!r} has no mask token; a masked LM needs one")
    model = transformers.AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True)
    prefix, suffix = _framing(tokenizer)
    if seq_len is None:
        room = getattr(model.config, "max_position_embeddings", 128 + len(prefix) + len(suffix))
        seq_len = min(128, room - len(prefix) - len(suffix))
    return model, dict(mask_id=tokenizer.mask_token_id, seq_len=seq_len, shift=shift, prefix=prefix,
                       suffix=suffix, tokenizer=tokenizer)


def import_transformers():
    """The ``transformers`` module, or the error saying how to install the optional extra."""
    try:
        import transformers
    except ImportError:
        raise SNRPathError("masked LMs from folders need the optional extra 'hf': pip install 'snrpaths[hf]' "
                           "(or: pip install transformers)") from None
    return transformers


def _ids(name: str, value: Sequence[int]) -> tuple[int, ...]:
    return () if len(value) == 0 else validate.int_tuple(name, value)


def _check_folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise SNRPathError(f"{str(folder)!r} is not a folder; MaskedLM.from_pretrained reads a local folder written by "
                           "save_pretrained (never a hub name)")
    names = {p.name for p in path.iterdir()}
    for what, files in (("config", ("config.json",)), ("weights", WEIGHT_FILES), ("tokenizer", TOKENIZER_FILES)):
        if not names & set(files):
            raise SNRPathError(f"the folder {str(folder)!r} has no {what} (one of {', '.join(files)}); save the model "
                               "and its tokenizer there with save_pretrained")
    return path


def _framing(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids the tokenizer puts before and after a text (``[CLS]`` and ``[SEP]`` for BERT), found by encoding one
    probe text with and without them."""
    probe = "a"
    inner = tokenizer(probe, add_special_tokens=False)["input_ids"]
    outer = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(outer) - len(inner) + 1):
        if outer[start:start + len(inner)] == inner:
            return tuple(outer[:start]), tuple(outer[start + len(inner):])
    return (), ()


def save_random(folder: str | os.PathLike, words: Sequence[str], *, arch: str = "bert", hidden: int = 32,
                layers: int = 2, heads: int = 2, max_len: int = 64, seed: int = 0, intermediate: int | None = None
                ) -> Path:
    """Write a randomly initialised masked LM (``"bert"`` or ``"modernbert"``) and a word-level tokenizer over
    ``words`` (plus ``[PAD] [UNK] [CLS] [SEP] [MASK]``, ids 0-4, and BERT's ``[CLS] text [SEP]`` framing) to
    ``folder``, built from their configs with no download: for tests, the gallery and the speed study, where no real
    checkpoint can be fetched. ``seed`` fixes every weight without touching torch's global generator;
    ``intermediate`` is the feed-forward width (default ``2 * hidden``; BERT-base has ``4 * hidden``)."""
    transformers = import_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    arch = validate.choice("arch", arch, ("bert", "modernbert"))
    seed = validate.seed("seed", seed)
    special = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    vocab = {w: i for i, w in enumerate(dict.fromkeys((*special, *words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()  # joins words with spaces, punctuation attached
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]")
    sizes = dict(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=validate.integer("intermediate", intermediate or 2 * hidden),
                 max_position_embeddings=max_len, pad_token_id=0)
    if arch == "bert":
        config, make = transformers.BertConfig(**sizes), transformers.BertForMaskedLM
    else:
        config = transformers.ModernBertConfig(**sizes, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3)
        make = transformers.ModernBertForMaskedLM
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only: fork_rng restores just that one
        model = make(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
