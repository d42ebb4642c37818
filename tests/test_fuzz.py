"""Bad input, as a new user would type it: nothing but the library's error family may escape.

Fuzzes ``parse_path`` (random text, mutated valid expressions, deep nesting, huge numbers, non-ASCII digits) and
every public constructor and operator (numpy and torch scalars and arrays, wrong keyword names and counts). Every
path that is accepted must round-trip through ``repr`` and compile or fail with :class:`SNRPathError`.

The examples are few and derandomized (tests/conftest.py); ``HYPOTHESIS_PROFILE=dev`` explores more.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snrpaths import Path, SNRPathError, parse_path

#: Valid expressions: the seeds of the mutation fuzzer, and the left operands of the operator fuzzer.
VALID = (
    "ar()", "roar()", "mdm(8)", "mdm(8, remask='cap', eta=0.01)", "mdm(4, schedule='cosine', remask='confidence')",
    "mdm(8, remask='loop', t_on=0.6, t_off=0.1, alpha_on=0.8)", "hybrid(4, 4, switch='mask')",
    "ramp(4, schedule='loglinear', form='sample') >> switch('commit')", "reveal(count=2, order='entropy')",
    "reveal(4, order=(3, 2, 1, 0), count=1)", "on(slice(0, 2), ar()) | on((2, 3), roar())",
    "remask('rescale') & reveal(4, schedule='linear', exact=True)", "ar() >> remask(positions=[0, 1]) >> roar()",
    "Path.ramp(2, gamma_max=8.0) >> Path.mdm(3, top_p=0.9, temperature=0.5)",
    "reveal(4, order='confidence', threshold=0.9)", "reveal(order='entropy', count=1, entropy_bound=0.5)",
    "blocks(2, mdm(2))", "blocks(4, reveal(2, order='confidence', threshold=0.5)) >> ar()",
    "ramp(4, temperature=0.5, top_k=2, top_p=0.9, noise=0.1, solver='heun') >> renoise(2.0) >> ramp(2) >> ar()",
    "hybrid(2, 2, ramp_temperature=0.5, ramp_top_k=3, noise=0.0, solver='heun')",
)
CONSTRUCTORS = ("reveal", "remask", "ramp", "switch", "on", "blocks", "renoise", "ar", "roar", "mdm", "hybrid")
KEYWORDS = ("steps", "order", "count", "schedule", "temperature", "top_p", "exact", "policy", "eta", "t_on", "t_off",
            "alpha_on", "positions", "gamma_max", "form", "kappa", "gamma_min", "mode", "path", "remask", "switch",
            "T_cont", "T_mdm", "threshold", "entropy_bound", "n", "inner", "adaptive", "polcy", "step", "foo",
            "top_k", "noise", "solver", "gamma", "ramp_temperature", "ramp_top_k", "ramp_top_p")
WORDS = ("random", "left-to-right", "confidence", "margin", "entropy", "linear", "cosine", "logit", "loglinear",
         "mean", "sample", "keep", "commit", "mask", "cap", "rescale", "loop", "confdence", "", "ramp(2)", "euler",
         "heun")
SEQ_LEN = 8

# -- what a user might pass ----------------------------------------------------------------------------------------

_numbers = st.one_of(
    st.integers(-3, 40), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from([10**30, -(10**30), 1e308, 5e-324, 0.5, 1.0, 0.0, 2**63]),
)
_scalars = st.one_of(
    _numbers, st.none(), st.sampled_from(WORDS), st.text(max_size=5),
    _numbers.filter(lambda v: not isinstance(v, int) or abs(v) < 2**62).map(lambda v: np.array(v)[()]),
    st.integers(-2, 40).map(np.int64), st.floats(0, 1).map(np.float32),
    st.integers(-2, 40).map(torch.tensor), st.floats(-1, 2).map(torch.tensor),
)
_containers = st.one_of(
    st.lists(st.integers(-2, 10), max_size=5).map(tuple), st.lists(st.integers(0, 10), max_size=5),
    st.lists(st.integers(0, 9), max_size=5).map(np.array), st.lists(st.integers(0, 9), max_size=5).map(torch.tensor),
    st.builds(slice, st.sampled_from([None, 0, 1, -1, 2.5]), st.sampled_from([None, 3, 8, -1, 100]),
              st.sampled_from([None, 1, 2, 0, -1])),
    st.builds(range, st.integers(0, 4), st.integers(0, 10)), st.sets(st.integers(0, 9), max_size=3),
    st.just({"a": 1}), st.sampled_from(VALID).map(parse_path),
)
values = st.one_of(_scalars, _containers)


def _escape(build: Callable[[], Any]) -> str | None:
    """``None`` when ``build`` returns a path that round-trips and compiles, or raises the library's error;
    otherwise a one-line description of what escaped."""
    try:
        path = build()
    except SNRPathError:
        return None
    except RecursionError:  # its message varies with the depth reached; the kind is what matters
        return "RecursionError"
    except Exception as err:  # noqa: BLE001 - the whole point: report any other exception
        return f"{type(err).__name__} building: {err}"[:200]
    if not isinstance(path, Path):
        return f"returned {type(path).__name__}, not a Path"
    try:
        again = parse_path(repr(path))
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__} re-parsing its repr: {err}"[:200]
    if again != path:
        return f"repr does not round-trip: {path!r}"
    if max(map(int, re.findall(r"\d+", repr(path))), default=0) > 4096:
        return None  # a legitimately long program: compiling it is a benchmark, not a fuzz case
    try:
        path.compile(SEQ_LEN)
    except SNRPathError:
        return None
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__} compiling: {err}"[:200]
    return None


# -- the parser ----------------------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(list("()[],=|&>.'\" _-+eE0123456789abcdmprstvy") + ["\u0663", "\uff13", "\u00b2", "\u00e9"])


@st.composite
def mutated(draw) -> str:
    """A valid expression with a few characters inserted, deleted or replaced."""
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "number"]))
        if kind == "number":
            piece = draw(st.sampled_from(["9" * 5000, "1e400", "1e-400", "-0", "\u0663", "\uff13\uff12", "0x10",
                                          "1_000", "nan", "inf", str(2**64), "." * 3]))
            text = text[:at] + piece + text[at:]
        elif kind == "insert":
            text = text[:at] + draw(_ALPHABET) + text[at:]
        else:
            text = text[:at] + (draw(_ALPHABET) if kind == "replace" else "") + text[at + 1:]
    return text


@st.composite
def nested(draw) -> str:
    """An expression nested ``depth`` levels deep, in one of the ways the grammar nests."""
    depth = draw(st.sampled_from([10, 300, 1000, 5000]))
    inner = draw(st.sampled_from(["ar()", "mdm(4)"]))
    form = draw(st.sampled_from(["parens", "on", "list", "arg"]))
    if form == "parens":
        return "(" * depth + inner + ")" * depth
    if form == "on":
        return "on(slice(0, None), " * depth + inner + ")" * depth
    if form == "list":
        return "reveal(order=" + "[" * depth + "0" + "]" * depth + ", count=1)"
    return "on(" * depth + "(0,)" + ", ar())" * depth


parser_inputs = st.one_of(st.text(max_size=40), st.text(_ALPHABET, max_size=40), mutated(), nested())


@given(parser_inputs)
def test_parse_path_raises_only_the_library_error(text):
    assert _escape(lambda: parse_path(text)) is None


# -- the constructors and operators ----------------------------------------------------------------------------------


@st.composite
def constructor_calls(draw) -> tuple[str, tuple, dict]:
    name = draw(st.sampled_from(CONSTRUCTORS))
    args = tuple(draw(st.lists(values, max_size=3)))
    kwargs = draw(st.dictionaries(st.sampled_from(KEYWORDS), values, max_size=3))
    return name, args, kwargs


#: Each constructor's own arguments: calls that name only these reach the value checks.
SIGNATURES = {
    "reveal": ("steps", "order", "count", "schedule", "temperature", "top_p", "exact", "threshold", "entropy_bound"),
    "remask": ("policy", "eta", "t_on", "t_off", "alpha_on", "positions"),
    "ramp": ("steps", "gamma_max", "schedule", "form", "kappa", "gamma_min"),
    "switch": ("mode",), "on": ("positions", "path"), "blocks": ("n", "inner"), "ar": (), "roar": (),
    "mdm": ("steps", "schedule", "remask", "eta", "t_on", "t_off", "alpha_on", "top_p", "temperature"),
    "hybrid": ("T_cont", "T_mdm", "switch", "gamma_max", "form", "remask", "eta", "top_p"),
}


@st.composite
def well_formed_calls(draw) -> tuple[str, tuple, dict]:
    """A call naming only the constructor's own arguments, the first positionally: the values are the fuzz."""
    name = draw(st.sampled_from(CONSTRUCTORS))
    names = SIGNATURES[name]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names))) if names else []
    given_ = {key: draw(values) for key in chosen}
    if names and names[0] in given_ and draw(st.booleans()):
        return name, (given_.pop(names[0]),), given_
    return name, (), given_


@given(st.one_of(constructor_calls(), well_formed_calls()))
def test_constructors_raise_only_the_library_error(call):
    name, args, kwargs = call
    assert _escape(lambda: getattr(Path, name)(*args, **kwargs)) is None


@given(st.sampled_from(VALID).map(parse_path), st.sampled_from([">>", "|", "&", "r>>", "r|", "r&"]), values)
def test_operators_raise_only_the_library_error(path, op, other):
    apply = {">>": lambda a, b: a >> b, "|": lambda a, b: a | b, "&": lambda a, b: a & b}[op.lstrip("r")]
    assert _escape(lambda: apply(other, path) if op.startswith("r") else apply(path, other)) is None


@settings(max_examples=10)
@given(st.sampled_from(CONSTRUCTORS[:7]), st.sampled_from(KEYWORDS), values)
def test_path_classes_built_directly_validate(name, keyword, value):
    """A subclass called directly with one field replaced fails with the library's error or gives a valid path."""
    import attrs

    base = {"reveal": Path.reveal(count=1), "remask": Path.remask(positions=(0,)), "ramp": Path.ramp(2),
            "switch": Path.switch(), "on": Path.on((0,), Path.ar()), "blocks": Path.blocks(2, Path.ar()),
            "renoise": Path.renoise(1.0)}[name]
    fields = attrs.asdict(base, recurse=False)
    if keyword not in fields:
        return
    assert _escape(lambda: type(base)(**(fields | {keyword: value})) >> Path.mdm(2)) is None
