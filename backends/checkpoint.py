"""Loading and saving DSL denoisers, from local files only (never a hub).

Three forms are read, and the first two start a fresh converter (``ConverterConfig``, seeded anchors):

* an MDLM Hugging Face snapshot folder: ``config.json`` with ``model_type: mdlm`` and ``model.safetensors`` (or
  ``pytorch_model.bin``) holding ``backbone.*`` keys;
* an MDLM Lightning ``.ckpt``: the same keys under ``state_dict``, and optionally EMA weights in
  ``ckpt["ema"]["shadow_params"]``, listed in the backbone's parameter order (buffers excluded);
* our own folder: ``model.safetensors`` (``backbone.*`` and ``converter.*``) and ``config.json`` with
  ``format: snrpaths.dsl`` and sections ``backbone``, ``converter`` (anchor settings and the output ``head``
  included) and ``tokenizer``. A converter section without ``head`` was written before the evidence head existed and
  loads as ``head = "plain"``, unchanged; weights holding ``converter.beta`` (before ``beta = exp(log_beta)``) load
  too.

A fresh converter put in front of an MDLM checkpoint uses ``ConverterConfig()``, whose head is ``"evidence"``: it
changes nothing on endpoint states, so the checkpoint still behaves exactly as MDLM there.

Nothing from a checkpoint is ever executed: safetensors, or ``torch.load(weights_only=True)`` where every class or
function the pickle names beyond tensors and containers (a Lightning checkpoint pickles its hydra config and
tokenizer) is replaced by an inert placeholder that is built but never run.

Nothing is built before it is checked. Every config value is type- and range-checked (a wrong type is an
:class:`SNRTypeError`, a wrong value an :class:`SNRPathError`, each naming the file and the entry); the parameter
memory the config describes (:func:`parameter_count`, 4 bytes each) is refused above ``max_bytes`` (``MAX_BYTES``,
8 GiB, unless the caller raises it) before any module or tensor exists; a safetensors header is matched against the
model's keys, shapes and dtypes before any tensor is read; and a pickled state dict's keys and entries are checked
(strings, tensors, shapes) before any size is read off them.

Shipped checkpoints are folders of our form in ``backends/checkpoints/<name>/``: ``load(name)`` finds them there, so
adding one is adding a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import attrs
import safetensors.torch
import torch

from snrpaths import validate
from snrpaths.errors import ShapeError, SNRPathError, SNRTypeError
from snrpaths.files import replace_files, sha256

from .converter import Converter, ConverterConfig, log_beta_from
from .dit import DiT, DiTConfig
from .dsl import DSLDenoiser
from .fast import check_options

FORMAT, VERSION = "snrpaths.dsl", 1
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
#: Where shipped checkpoints live, one folder per name (package data).
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
#: The fields an MDLM config.json must have.
MDLM_FIELDS = ("vocab_size", "model_length", "hidden_dim", "cond_dim", "n_blocks", "n_heads")
#: The most parameter memory ``load`` builds unless its caller passes a larger ``max_bytes``: 2^31 float32 numbers
#: (MDLM's OpenWebText model holds 170 M).
MAX_BYTES = 8 * 2**30
#: The most blocks a checkpoint may declare: each is a handful of Python modules, built before any weight is read.
MAX_BLOCKS = 1024
#: The largest config.json read (ours are under 1 kB).
MAX_CONFIG_BYTES = 2**20


def known_names() -> tuple[str, ...]:
    """Names ``load`` resolves without a path: the folders of ``CHECKPOINT_DIR`` that hold a ``config.json``."""
    if not CHECKPOINT_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in CHECKPOINT_DIR.iterdir() if (p / CONFIG_NAME).is_file()))


def load(
    name_or_path: str | os.PathLike,
    *,
    seq_len: int | None = None,
    ema: bool | None = None,
    converter: ConverterConfig | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int = MAX_BYTES,
    precision: str = "fp32",
    compile: bool | str = False,
) -> DSLDenoiser:
    """A :class:`DSLDenoiser` in eval mode from a shipped name, our folder, an MDLM HF folder or a Lightning ``.ckpt``.

    Args:
        seq_len: overrides the stored sequence length (rotary positions work at any length); required for a
            Lightning checkpoint, whose length lives only in its pickled config.
        ema: use EMA weights: ``None`` when present, ``True`` requires them, ``False`` ignores them.
        converter, seed: the fresh converter put in front of an MDLM checkpoint (default ``ConverterConfig()``).
        device, dtype: where and in which floating dtype to put the weights (default: as stored, on the CPU).
        max_bytes: the most parameter memory to build (the config's :func:`parameter_count` x 4 bytes); a checkpoint
            describing more is refused before anything is allocated.
        precision, compile: how :meth:`DSLDenoiser.logits` runs: ``'fp32'`` or ``'bf16'`` (autocast), and
            ``torch.compile`` of the backbone (``True``, a backend name, or ``False``); see
            :mod:`snrpaths.backends.fast`. Checked before anything is read.
    """
    check_options(precision, compile, device)
    max_bytes = validate.integer("max_bytes", max_bytes)
    seed = validate.seed("seed", seed)
    seq_len = validate.integer("seq_len", seq_len, allow_none=True)
    validate.boolean("ema", ema, allow_none=True)
    if converter is not None and not isinstance(converter, ConverterConfig):
        raise SNRTypeError(f"'converter' must be a ConverterConfig (got {type(converter).__name__})")
    path = _resolve(name_or_path)
    if path.is_file() and path.suffix == ".ckpt":
        model = _load_lightning(path, seq_len, ema, converter, seed, max_bytes)
        return model.to(device=device, dtype=dtype).eval().set_forward(precision, compile)
    if path.is_file() and path.name not in (CONFIG_NAME, WEIGHTS_NAME, "pytorch_model.bin"):
        raise SNRPathError(
            f"{path} is not a checkpoint file: give a Lightning .ckpt, or a folder holding {CONFIG_NAME} and weights"
        )
    folder = path if path.is_dir() else path.parent
    config = _read_json(folder / CONFIG_NAME)
    if ema:
        raise SNRPathError(f"ema=True but {folder} holds no EMA weights (only Lightning .ckpt files carry them)")
    if config.get("format") == FORMAT:
        if converter is not None:
            raise SNRPathError(f"{folder} has its own converter; 'converter' applies to MDLM checkpoints only")
        model = _load_ours(folder, config, seq_len, max_bytes)
    elif config.get("model_type") == "mdlm":
        model = _load_mdlm_folder(folder, config, seq_len, converter, seed, max_bytes)
    else:
        raise SNRPathError(
            f"{folder / CONFIG_NAME} is neither an snrpaths checkpoint (format: {FORMAT!r}) nor an MDLM snapshot "
            f"(model_type: 'mdlm') (got format={config.get('format')!r}, model_type={config.get('model_type')!r})"
        )
    return model.to(device=device, dtype=dtype).eval().set_forward(precision, compile)


def save(denoiser: DSLDenoiser, folder: str | os.PathLike) -> Path:
    """Write ``denoiser`` to ``folder`` in our format (:func:`snrpaths.files.replace_files`: both files whole under
    temporary names, then renamed in).

    The config is written last and removed first, once both new files are whole on disk: a folder whose config is
    present always has matching weights, and a failed write leaves the old folder as it was. The config records the SHA-256 of the weights and of its own content (``"sha256"``), which ``load`` checks, so a damaged
    file is an error naming it, never different weights. A failed write (a read-only folder, a full disk) is an
    :class:`SNRPathError` naming the file and the cause. To replace a whole folder at once, write it with
    :func:`snrpaths.files.replace_folder` (as the trainer does).
    """
    if not isinstance(denoiser, DSLDenoiser):
        raise SNRTypeError(f"'denoiser' must be a DSLDenoiser (got {type(denoiser).__name__})")
    config = describe(denoiser)
    try:
        json.dumps(config)
    except TypeError as e:
        raise SNRPathError(f"the denoiser's 'tokenizer' must be JSON-serialisable ({e})") from None
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in denoiser.state_dict().items()}
    # bytes, then a plain write: safetensors' own writer reports a full disk in its own words, or not at all
    data = safetensors.torch.save(tensors, {"format": FORMAT})
    config["sha256"] = {WEIGHTS_NAME: hashlib.sha256(data).hexdigest()}
    config["sha256"][CONFIG_NAME] = _content_hash(config)
    # Both files whole before any old one goes; the old config goes first and the new one comes last, so a config
    # always has its weights, and a failed write (a full disk) puts the old files back.
    replace_files(folder, {WEIGHTS_NAME: data, CONFIG_NAME: (json.dumps(config, indent=2) + "\n").encode()},
                  first_out=CONFIG_NAME)
    return folder


def _content_hash(config: dict) -> str:
    """The SHA-256 of a config's content in canonical JSON, without its own entry ``sha256["config.json"]`` (the
    weights' hash included): any change to a value, however the file is spaced, changes it."""
    own = {**config, "sha256": {k: v for k, v in config.get("sha256", {}).items() if k != CONFIG_NAME}}
    return hashlib.sha256(json.dumps(own, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _verify(folder: Path, config: dict) -> None:
    """Check the hashes a folder's config records (a folder without them, written by other tools, passes)."""
    recorded = config.get("sha256")
    if recorded is None:
        return
    where = folder / CONFIG_NAME
    if not (isinstance(recorded, dict) and all(isinstance(v, str) for v in recorded.values())
            and recorded.get(CONFIG_NAME) == _content_hash(config)):
        raise SNRPathError(f"{where} is damaged: its content does not match the SHA-256 it records; restore the "
                           "folder, or save the model again (edited on purpose: remove its \"sha256\" entry)")
    weights = folder / WEIGHTS_NAME
    if WEIGHTS_NAME in recorded and weights.is_file() and sha256(weights) != recorded[WEIGHTS_NAME]:
        raise SNRPathError(f"{weights} is damaged: its SHA-256 differs from the one {where} records; restore the "
                           "folder, or save the model again")


def describe(denoiser: DSLDenoiser) -> dict:
    """What our ``config.json`` holds for ``denoiser``: its architecture, converter settings and tokenizer."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "backbone": attrs.asdict(denoiser.backbone.config),
        "converter": attrs.asdict(denoiser.converter.config),
        "tokenizer": denoiser.tokenizer,
    }


def from_description(config: dict, where: str) -> DSLDenoiser:
    """A freshly initialised denoiser of the architecture ``config`` (a :func:`describe` dict) gives, checked as
    ``load`` checks a config.json; ``where`` names the source in errors."""
    backbone, conv, tokenizer = _our_configs(config, where)
    return DSLDenoiser.build(backbone, conv, tokenizer=tokenizer)


# -- the three forms ----------------------------------------------------------------------------------------------


def _our_configs(config: dict, where: str) -> tuple[DiTConfig, ConverterConfig, dict | None]:
    version = config.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise SNRPathError(f"{where} is format version {_short(version)}; snrpaths reads version {VERSION}")
    backbone = _build_config(DiTConfig, config.get("backbone"), f"{where} 'backbone'")
    section = config.get("converter")
    if isinstance(section, dict) and "head" not in section:
        section = {**section, "head": "plain"}  # saved before the evidence head existed: keep its logits
    conv = _build_config(ConverterConfig, section, f"{where} 'converter'")
    tokenizer = config.get("tokenizer")
    if tokenizer is not None and not isinstance(tokenizer, dict):
        raise SNRTypeError(f"{where} 'tokenizer' must be a JSON object or null (got {type(tokenizer).__name__})")
    return backbone, conv, tokenizer


def _load_ours(folder: Path, config: dict, seq_len: int | None, max_bytes: int) -> DSLDenoiser:
    where = str(folder / CONFIG_NAME)
    _verify(folder, config)
    backbone, conv, tokenizer = _our_configs(config, where)
    if seq_len is not None:
        backbone = attrs.evolve(backbone, seq_len=seq_len)
    _check_size(backbone, conv.anchor_dim, max_bytes, where)
    with torch.device("meta"):  # no time spent initialising weights that are about to be replaced
        model = DSLDenoiser(DiT(backbone), Converter(backbone.vocab_size, conv), tokenizer)
    weights = _read_safetensors(folder / WEIGHTS_NAME, _shapes(model), upgrade=True)
    model.load_state_dict(_upgrade(weights, str(folder / WEIGHTS_NAME)), assign=True)
    return model


def _load_mdlm_folder(folder, config, seq_len, converter, seed, max_bytes) -> DSLDenoiser:
    where = folder / CONFIG_NAME
    missing = [k for k in MDLM_FIELDS if k not in config]
    if missing:
        raise SNRPathError(f"{where} lacks the MDLM fields {missing}; it needs {list(MDLM_FIELDS)}")
    for k in MDLM_FIELDS:
        _check_type(config[k], "int", k, str(where))
    fields = dict(
        vocab_size=config["vocab_size"] - 1,  # MDLM counts [MASK] in vocab_size
        seq_len=config["model_length"] if seq_len is None else seq_len,
        hidden=config["hidden_dim"],
        cond_dim=config["cond_dim"],
        n_blocks=config["n_blocks"],
        n_heads=config["n_heads"],
        dropout=config.get("dropout", 0.1),
    )
    backbone = _build_config(DiTConfig, fields, str(where))
    converter = converter or ConverterConfig()
    _check_size(backbone, converter.anchor_dim, max_bytes, str(where))
    with torch.device("meta"):
        expected = {"backbone." + k: v for k, v in _shapes(DiT(backbone)).items()}
    if (folder / WEIGHTS_NAME).is_file():
        weights = _read_safetensors(folder / WEIGHTS_NAME, expected)
    elif (folder / "pytorch_model.bin").is_file():
        weights = _state_dict(_torch_load(folder / "pytorch_model.bin"), folder / "pytorch_model.bin")
    else:
        raise SNRPathError(f"{folder} has no weights: expected {WEIGHTS_NAME} (or pytorch_model.bin)")
    return _mdlm_model(backbone, weights, str(folder), converter, seed)


def _load_lightning(path: Path, seq_len, ema, converter, seed, max_bytes) -> DSLDenoiser:
    ckpt = _torch_load(path)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise SNRPathError(f"{path} has no 'state_dict' mapping; is it a Lightning checkpoint?")
    # Other LightningModule parts (noise schedule, metrics) are not the model; every backbone.* key must fit.
    state = _state_dict(state, f"{path} 'state_dict'", prefix="backbone.")
    weights = {k: v for k, v in state.items() if k.startswith("backbone.")}
    backbone = _infer_config(weights, path, seq_len)
    converter = converter or ConverterConfig()
    _check_size(backbone, converter.anchor_dim, max_bytes, f"{path} (sizes read off its tensors)")
    with torch.device("meta"):
        names = ["backbone." + n for n, _ in DiT(backbone).named_parameters()]
    ema_state = ckpt.get("ema")
    shadow = ema_state.get("shadow_params") if isinstance(ema_state, dict) else None
    if ema and shadow is None:
        raise SNRPathError(f"ema=True but {path} has no EMA weights (ckpt['ema']['shadow_params'])")
    if shadow is not None and ema is not False:
        weights.update(_ema_weights(shadow, names, weights, len(state) - len(weights), path))
    return _mdlm_model(backbone, weights, str(path), converter, seed)


def _ema_weights(shadow, names, weights, n_other, path) -> dict:
    """MDLM's EMA keeps one shadow tensor per parameter of ``chain(backbone, noise)``, in order, no buffers."""
    if not isinstance(shadow, (list, tuple)) or not (len(names) <= len(shadow) <= len(names) + n_other):
        n = len(shadow) if isinstance(shadow, (list, tuple)) else type(shadow).__name__
        raise SNRPathError(f"{path}: EMA has {n} shadow parameters; the backbone has {len(names)} parameters")
    bad = [
        f"{name} is {list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}, "
        f"expected {list(weights[name].shape)}"
        for name, t in zip(names, shadow)
        if name in weights and (not isinstance(t, torch.Tensor) or t.shape != weights[name].shape)
    ]
    if bad:
        raise SNRPathError(f"{path}: EMA shadow parameters do not line up with the backbone:\n  " + "\n  ".join(bad))
    return dict(zip(names, shadow))


def _mdlm_model(backbone: DiTConfig, weights: dict, source: str, converter: ConverterConfig, seed) -> DSLDenoiser:
    with torch.device("meta"):
        dit = DiT(backbone)
    expected = {"backbone." + k: v for k, v in _shapes(dit).items()}
    _check_keys(expected, _entries(weights), source)
    dit.load_state_dict({k.removeprefix("backbone."): v for k, v in weights.items()}, assign=True)
    return DSLDenoiser(dit, Converter(backbone.vocab_size, converter, seed=seed))


def _infer_config(weights: dict, path: Path, seq_len: int | None) -> DiTConfig:
    """A Lightning checkpoint's sizes, read off tensor shapes (its config is pickled hydra, which we do not run)."""
    needed = {"backbone.vocab_embed.embedding": 2, "backbone.sigma_map.mlp.0.weight": 2,
              "backbone.rotary_emb.inv_freq": 1, "backbone.blocks.0.mlp.0.weight": 2}
    missing = [k for k in needed if k not in weights]
    if missing:
        raise SNRPathError(f"{path}: cannot read the architecture off the state_dict; missing keys {missing}")
    if seq_len is None:
        raise SNRPathError(
            f"{path} is a Lightning checkpoint: pass seq_len=... (its training length, 1024 for MDLM on "
            "OpenWebText), which it stores only inside its pickled config"
        )
    for k, ndim in needed.items():
        shape = tuple(weights[k].shape)
        if len(shape) != ndim or 0 in shape:
            raise ShapeError(f"{path}: {k} must be a non-empty {ndim}-D tensor to size the model (got {list(shape)})")
    rows, hidden = weights["backbone.vocab_embed.embedding"].shape
    blocks = {int(m.group(1)) for k in weights if (m := re.match(r"backbone\.blocks\.(\d{1,9})\.", k))}
    head_dim = 2 * weights["backbone.rotary_emb.inv_freq"].numel()
    cond_dim, freq_dim = weights["backbone.sigma_map.mlp.0.weight"].shape
    fields = dict(vocab_size=rows - 1, seq_len=seq_len, hidden=hidden, cond_dim=cond_dim, n_blocks=max(blocks) + 1,
                  n_heads=max(1, hidden // head_dim), freq_dim=freq_dim,
                  mlp_ratio=max(1, weights["backbone.blocks.0.mlp.0.weight"].shape[0] // hidden))
    return _build_config(DiTConfig, fields, f"{path} (sizes read off its tensors)")


def parameter_count(backbone: DiTConfig, anchor_dim: int = 0) -> int:
    """Numbers in a denoiser's state dict (parameters and buffers) from its sizes alone, nothing built: the DiT, and
    with ``anchor_dim`` the converter (anchors, ``log_beta``, ``bias``)."""
    V, H, C, F, r = backbone.vocab_size, backbone.hidden, backbone.cond_dim, backbone.freq_dim, backbone.mlp_ratio
    embedding = (V + 1) * H
    sigma_map = F * C + C + C * C + C
    rotary = (backbone.head_dim + 1) // 2
    block = 2 * H + 4 * H * H + (2 * r * H * H + r * H + H) + (6 * H * C + 6 * H)
    final = H + (V + 1) * (H + 1) + (2 * H * C + 2 * H)
    converter = V * anchor_dim + 1 + (V + 1) if anchor_dim else 0
    return embedding + sigma_map + rotary + backbone.n_blocks * block + final + converter


def _check_size(backbone: DiTConfig, anchor_dim: int, max_bytes: int, where: str) -> None:
    if backbone.n_blocks > MAX_BLOCKS:
        raise SNRPathError(f"{where} declares {backbone.n_blocks} blocks; snrpaths builds at most {MAX_BLOCKS}")
    n = parameter_count(backbone, anchor_dim)
    if 4 * n > max_bytes:
        raise SNRPathError(
            f"{where} describes a model of {n:,} parameters ({4 * n / 2**30:.3g} GiB in float32), above the limit "
            f"of {max_bytes / 2**30:.3g} GiB; if that is meant, pass load(..., max_bytes=...) a larger number of bytes"
        )


# -- reading and writing files ------------------------------------------------------------------------------------


def _resolve(name_or_path) -> Path:
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise SNRTypeError(f"'name_or_path' must be a checkpoint name or a path (got {type(name_or_path).__name__})")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if isinstance(name_or_path, str) and name_or_path in known_names():
        return CHECKPOINT_DIR / name_or_path
    raise SNRPathError(
        f"{str(name_or_path)!r} is neither an existing path nor a known checkpoint name; known names: {known_names()}"
    )


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SNRPathError(f"{path} not found: a checkpoint folder needs a {CONFIG_NAME}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise SNRPathError(f"{path} has {size:,} bytes; a checkpoint's {CONFIG_NAME} has a few hundred (at most "
                           f"{MAX_CONFIG_BYTES:,} are read)")
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # bad syntax or encoding, digits beyond int's limit, absurd nesting
        raise SNRPathError(f"{path} is not valid JSON ({_cut(str(e) or type(e).__name__, 200)})") from None
    if not isinstance(config, dict):
        raise SNRPathError(f"{path} must hold a JSON object (got {type(config).__name__})")
    return config


#: safetensors dtype names of floating types (the others: integers and booleans).
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4")


def _read_safetensors(path: Path, expected: dict[str, torch.Size], upgrade: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose header (names, shapes, dtypes) matches ``expected``, checked before
    any tensor is read. ``upgrade``: accept our earlier ``converter.beta`` (any one-number shape) for ``log_beta``."""
    if not path.is_file():
        raise SNRPathError(f"{path.parent} has no weights: expected {WEIGHTS_NAME}")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
            entries = {k: (shape, dtype in _FLOAT_DTYPES, dtype) for k, (shape, dtype) in header.items()}
            if upgrade and "converter.beta" in entries and "converter.log_beta" not in entries:
                shape, floating, dtype = entries.pop("converter.beta")
                entries["converter.log_beta"] = ((), floating, dtype) if math.prod(shape) == 1 else (shape, floating,
                                                                                                   dtype)
            _check_keys(expected, entries, str(path))
            return {k: f.get_tensor(k) for k in header}
    except (safetensors.SafetensorError, OSError, ValueError) as e:
        if isinstance(e, SNRPathError):
            raise
        raise SNRPathError(f"{path} is not a readable safetensors file ({_cut(str(e), 200)})") from None


def _state_dict(obj, where, prefix: str = "") -> dict:
    """``obj`` checked as a state dict: a dict with string keys, whose entries under ``prefix`` are tensors."""
    if not isinstance(obj, dict):
        raise SNRTypeError(f"{where} must hold a dict of tensors (got {type(obj).__name__})")
    keys = [k for k in obj if not isinstance(k, str)]
    if keys:
        raise SNRTypeError(f"{where} has keys that are not strings: {_short(keys[:5])}")
    bad = [f"{k} ({type(v).__name__})" for k, v in obj.items() if k.startswith(prefix) and not isinstance(v,
                                                                                                          torch.Tensor)]
    if bad:
        raise SNRTypeError(f"{where} has entries that are not tensors: " + "; ".join(bad[:20]) +
                           (" ..." if len(bad) > 20 else ""))
    return obj


class _Inert:
    """Stands in for every class or function a checkpoint's pickle names beyond tensors and containers."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _torch_load(path: Path):
    """``torch.load(weights_only=True)`` with unknown globals mapped to ``_Inert``: their code never runs."""
    try:
        foreign = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        with torch.serialization.safe_globals([(_Inert, name) for name in foreign]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except MemoryError:
        raise
    except Exception as e:  # a damaged archive fails in many ways (RuntimeError, UnpicklingError, EOFError, ...)
        raise SNRPathError(
            f"cannot load {path} safely ({str(e).splitlines()[0]}). snrpaths never runs code from a checkpoint; "
            "in a trusted environment, re-save just the tensors: torch.save({'state_dict': ck['state_dict'], "
            "'ema': ck.get('ema')}, 'clean.ckpt')"
        ) from None


# -- checks -----------------------------------------------------------------------------------------------------------


def _upgrade(weights: dict, source: str) -> dict:
    """Our weights of an earlier layout in today's names: ``converter.beta`` becomes ``converter.log_beta``."""
    if "converter.beta" in weights and "converter.log_beta" not in weights:
        weights = dict(weights)
        weights["converter.log_beta"] = log_beta_from(weights.pop("converter.beta"), f"{source}: converter.beta")
    return weights


def _shapes(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in module.state_dict().items()}


def _entries(weights: dict) -> dict:
    """``name -> (shape, floating, dtype)`` of loaded tensors, or the type's name for anything else."""
    return {k: (tuple(v.shape), v.is_floating_point(), str(v.dtype).removeprefix("torch."))
            if isinstance(v, torch.Tensor) else type(v).__name__ for k, v in weights.items()}


def _check_keys(expected: dict[str, torch.Size], entries: dict, source: str) -> None:
    """One error listing every missing, unexpected, mis-shaped, non-floating or non-tensor entry (``entries`` as
    :func:`_entries` gives them)."""
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    wrong = []
    for k in sorted(set(expected) & set(entries)):
        entry, want = entries[k], list(expected[k])
        if isinstance(entry, str):
            wrong.append(f"{k} is {entry}, expected a tensor {want}")
        elif not entry[1]:
            wrong.append(f"{k} is {entry[2]} {list(entry[0])}, expected floating {want}")
        elif tuple(entry[0]) != tuple(want):
            wrong.append(f"{k} is {list(entry[0])}, expected {want}")
    problems = [(f"missing ({len(missing)})", missing), (f"unexpected ({len(unexpected)})",
                                                                 [_cut(k, 80) for k in unexpected]),
                (f"wrong shape or dtype ({len(wrong)})", wrong)]
    lines = [f"  {title}: " + "; ".join(items[:20]) + (" ..." if len(items) > 20 else "")
             for title, items in problems if items]
    if lines:
        raise SNRPathError(f"{source} does not fit the model its config describes:\n" + "\n".join(lines))


#: The JSON types a config field of each annotated type accepts.
_JSON_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def _check_type(value, kind: str, name: str, where: str) -> None:
    """An :class:`SNRTypeError` naming ``where`` and ``name`` unless ``value`` is JSON of the field's ``kind``; a
    non-finite number is a wrong value (``SNRPathError``)."""
    if kind not in _JSON_TYPES:
        return
    ok = {"int": type(value) is int, "float": type(value) in (int, float), "bool": type(value) is bool,
          "str": type(value) is str}[kind]
    if not ok:
        raise SNRTypeError(f"{where}: {name!r} must be {_JSON_TYPES[kind]} (got {_short(value)})")
    if kind == "float" and not math.isfinite(value):
        raise SNRPathError(f"{where}: {name!r} must be a finite number (got {value!r})")


def _build_config(cls, fields, where: str):
    if not isinstance(fields, dict):
        raise SNRTypeError(f"{where} must be a JSON object (got {type(fields).__name__})")
    names = {a.name for a in attrs.fields(cls)}
    unknown = sorted(set(fields) - names, key=str)
    if unknown:
        raise SNRPathError(f"{where} has unknown fields {_short(unknown)}; valid fields are {sorted(names)}")
    missing = [a.name for a in attrs.fields(cls) if a.default is attrs.NOTHING and a.name not in fields]
    if missing:
        raise SNRPathError(f"{where} lacks the fields {missing}")
    for a in attrs.fields(cls):
        if a.name in fields:
            _check_type(fields[a.name], a.type if isinstance(a.type, str) else a.type.__name__, a.name, where)
    try:
        return cls(**fields)
    except SNRTypeError as e:
        raise SNRTypeError(f"{where}: {e}") from None
    except SNRPathError as e:
        raise SNRPathError(f"{where}: {e}") from None


def _short(value) -> str:
    """``repr(value)`` in at most 80 characters: a config value can be a megabyte of text."""
    return _cut(repr(value), 80)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
