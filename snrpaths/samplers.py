"""Sampler specs as a user types them: a built-in name (``MDLM``, ``ReMDM-conf``: the samplers every study compares)
or any path expression, one mechanism for ``snrpaths compare`` and every ``snrpaths bench`` study.

* A built-in name stands for its path at a budget of ``T`` denoiser calls (:data:`BUILTIN`, :data:`ADAPTIVE`);
  ``NAME@T`` fixes the budget (``MDLM@16`` is ``mdm(16)``).
* ``{T}`` inside an expression stands for the budget: ``"ramp({T}) >> switch('commit')"`` is a family a study runs at
  each of its budgets; an expression without it is one path, the same at every budget.
* Brace lists expand, as in a shell: ``"mdm({4,8,16})"`` is three specs, ``mdm(4)``, ``mdm(8)``, ``mdm(16)``
  (:func:`expand`); a brace with no comma (``{T}``) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .errors import SNRPathError, one_of
from .parse import parse_path
from .path import Path

#: name -> path expression at budget ``T``; the ReMDM rows are MDLM with each ReMDM remasking strategy.
BUILTIN: dict[str, Callable[[int], str]] = {
    "AR": lambda T: "ar()",
    "ROAR": lambda T: "roar()",
    "MDLM": lambda T: f"mdm({T})",
    **{f"ReMDM-{short}": (lambda T, mode=mode: f"mdm({T}, remask='{mode}')")
       for short, mode in (("cap", "cap"), ("rescale", "rescale"), ("conf", "confidence"), ("loop", "loop"))},
}
OWN_NFE = ("AR", "ROAR")  # these cost L calls whatever the budget
#: the adaptive reveals (issue 17): a linear clock of ``T`` steps as the floor, plus every position whose confidence
#: reaches 0.9 (Fast-dLLM), or positions in increasing entropy while the step's summed entropy stays within 1 nat;
#: ``T`` bounds their calls, and they stop calling once every position is revealed
ADAPTIVE: dict[str, Callable[[int], str]] = {
    "threshold 0.9": lambda T: f"reveal({T}, order='confidence', threshold=0.9)",
    "entropy bound 1": lambda T: f"reveal({T}, order='entropy', entropy_bound=1.0)",
}

#: A brace list with at least one comma and no nested braces: ``{4,8,16}``.
_BRACES = re.compile(r"\{([^{}]*,[^{}]*)\}")
_BUDGET = re.compile(r"^(?P<name>.+)@(?P<budget>[0-9]+)$")


def expand(text: str) -> list[str]:
    """Shell brace expansion, left brace first: ``"hybrid({2,4}, {4,8})"`` gives four specs, in order
    ``hybrid(2, 4), hybrid(2, 8), hybrid(4, 4), hybrid(4, 8)``. Items are stripped of surrounding spaces."""
    match = _BRACES.search(text)
    if match is None:
        return [text]
    head, tail = text[:match.start()], text[match.end():]
    return [spec for item in match.group(1).split(",") for spec in expand(head + item.strip() + tail)]


def sampler(spec: str, names: Mapping[str, Callable[[int], str]] | None = None) -> Callable[[int], str]:
    """The path expression of ``spec`` at a budget ``T``: ``names[spec](T)`` for a known name (default
    :data:`BUILTIN` and :data:`ADAPTIVE`), else ``spec`` itself with ``{T}`` replaced by ``T``.

    An expression is parsed now, at a budget of 2 (raising the parser's error naming ``spec`` and the valid names),
    so a study refuses a bad spec before any work."""
    names = {**BUILTIN, **ADAPTIVE} if names is None else names
    if not isinstance(spec, str):
        raise SNRPathError(f"a sampler is a name or a path expression (got {type(spec).__name__})")
    if spec in names:
        return names[spec]
    _parse(spec.replace("{T}", "2"), spec, names)
    return lambda T: spec.replace("{T}", str(T))


def resolve(spec: str, seq_len: int, names: Mapping[str, Callable[[int], str]] | None = None) -> Path:
    """One path from ``spec``: ``NAME@T`` a built-in at budget ``T``; ``NAME`` a built-in at the budget
    ``seq_len`` (one call per position, as AR and ROAR); anything else a path expression, which may not contain
    ``{T}`` (it names no budget here)."""
    names = {**BUILTIN, **ADAPTIVE} if names is None else names
    at = _BUDGET.match(spec)
    if at is not None and at["name"] in names:
        return parse_path(names[at["name"]](int(at["budget"])))
    if spec in names:
        return parse_path(names[spec](seq_len))
    if "{T}" in spec:
        raise SNRPathError(f"{spec!r}: {{T}} stands for a study's budget; here give the calls, e.g. "
                           f"{spec.replace('{T}', '16')!r}, or a list, {spec.replace('{T}', '{8,16,32}')!r}")
    return _parse(spec, spec, {**names, "NAME@T": None})


def _parse(text: str, spec: str, names: Mapping[str, object]) -> Path:
    """``parse_path(text)``; its error says what ``spec`` could have been: a name (a spec with no call in it is
    taken for a mistyped name), or a path expression (the parser's message, with its caret picture)."""
    try:
        return parse_path(text)
    except SNRPathError as err:
        if "(" not in spec:
            raise SNRPathError(f"{one_of('sampler', spec, tuple(names))}, or a path expression such as "
                               f"\"mdm(16)\"") from None
        raise SNRPathError(f"sampler {spec!r} is not a path expression: {err}") from None
