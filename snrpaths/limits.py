"""Bounds on the work one call may plan, checked before it starts: a request that would exhaust memory or run for
days fails at once, naming the limit and how to raise it, instead of after hours or with the machine swapping.

Four numbers, read at every check, so raising one is an assignment (``snrpaths.limits.MAX_LOGITS = 2**33``):

* :data:`MAX_LOGITS`: logit entries one denoiser call may return, ``rows x seq_len x vocab_size`` (``rows`` is
  :func:`~snrpaths.sample`'s ``batch``, or an estimator's ``batch_size`` when the work spans several calls). The
  logits are the dominant allocation; the runner and the estimators make a few working copies of them, some in
  float64 (twice the size), so plan for peak memory of several times the limit's 8 GiB.
* :data:`MAX_WORK`: positions evaluated by one call of ``sample`` or an estimator, ``rows x seq_len`` summed over
  every planned denoiser row (``sample``: ``steps x batch x seq_len``; ``roar``: ``B x n_orders x L x L``; ...).
  It bounds the time (each row is one sequence through the denoiser) and the tables materialised up front
  (ROAR's order masks, a ``trace``: about 24 bytes per position-step, 6 GiB at the default).
* :data:`MAX_STEPS`: steps (and positions) of one compiled program: the compiler builds one value per step.
* :data:`MAX_NODES`: Radau nodes per piece of a path integral (:func:`snrpaths.nll.path_integral`): building the
  rule costs ``O(n^3)`` time and ``O(n^2)`` memory (2 s at 1024 nodes, out of reach at a million).

The defaults admit every size the paper reports (OpenWebText: ``T = L = 1024``, batch 32 of a 50,257-token
vocabulary) and every benchmark of this repository, and refuse requests orders of magnitude past them.
"""

from __future__ import annotations

from .errors import LimitError

#: Logit entries (``rows x seq_len x vocab_size``) in one denoiser call: 2**31, 8 GiB as float32.
MAX_LOGITS = 2**31
#: Positions evaluated by one ``sample`` or estimator call (``rows x seq_len`` over all planned rows): 2**28.
MAX_WORK = 2**28
#: Steps, and positions, of one compiled program: 2**20.
MAX_STEPS = 2**20
#: Radau nodes per piece of a path integral: 1024.
MAX_NODES = 1024


def check_logits(where: str, rows: int, seq_len: int, vocab_size: int, remedy: str) -> None:
    """Raise :class:`LimitError` when one call of ``rows`` rows would return more than :data:`MAX_LOGITS` logits."""
    size = rows * seq_len * vocab_size
    if size > MAX_LOGITS:
        raise LimitError(f"{where}: one denoiser call would return {rows} x {seq_len} x {vocab_size} = {size:,} "
                         f"logits, above snrpaths.limits.MAX_LOGITS = {MAX_LOGITS:,} ({4 * MAX_LOGITS / 2**30:.0f} "
                         f"GiB as float32); {remedy}, or raise snrpaths.limits.MAX_LOGITS")


def check_work(where: str, rows: int, seq_len: int, detail: str, remedy: str) -> None:
    """Raise :class:`LimitError` when ``rows`` denoiser rows of ``seq_len`` positions exceed :data:`MAX_WORK`;
    ``detail`` says how ``rows`` was counted, e.g. ``"8 steps x 64 rows"``."""
    size = rows * seq_len
    if size > MAX_WORK:
        raise LimitError(f"{where}: {detail} x {seq_len} positions = {size:,} position evaluations, above "
                         f"snrpaths.limits.MAX_WORK = {MAX_WORK:,}; {remedy}, or raise snrpaths.limits.MAX_WORK")


def check_steps(where: str, steps: int, what: str = "steps") -> None:
    """Raise :class:`LimitError` when a program would have more than :data:`MAX_STEPS` ``what``."""
    if steps > MAX_STEPS:
        raise LimitError(f"{where}: the program would have {steps:,} {what}, above snrpaths.limits.MAX_STEPS = "
                         f"{MAX_STEPS:,}; raise snrpaths.limits.MAX_STEPS to compile it")


def check_nodes(where: str, n_nodes: int) -> None:
    """Raise :class:`LimitError` when a quadrature rule of ``n_nodes`` nodes exceeds :data:`MAX_NODES`."""
    if n_nodes > MAX_NODES:
        raise LimitError(f"{where}: n_nodes={n_nodes:,} is above snrpaths.limits.MAX_NODES = {MAX_NODES:,} (the "
                         "Radau rule costs O(n^3) to build; the integrand is smooth, so a few dozen nodes usually "
                         "suffice); lower n_nodes, or raise snrpaths.limits.MAX_NODES")
