"""``parse_path``: the inverse of ``repr(path)``, a recursive-descent parser (never ``eval``).

Grammar (Python's precedence: ``|`` binds loosest, then ``&``, then ``>>``)::

    expr    := and ("|" and)*
    and     := shift ("&" shift)*
    shift   := primary (">>" primary)*
    primary := "(" expr ")" | ["Path" "."] NAME "(" [arg ("," arg)*] [","] ")"
    arg     := [NAME "="] value
    value   := NUMBER | STRING | None | True | False | "[" values "]" | "(" values ")" | slice(...) | expr
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from .errors import SNRPathError
from .path import CONSTRUCTORS as _CONSTRUCTORS
from .path import Path, Span
_LITERALS = {"None": None, "True": True, "False": False}
#: How deep expressions, calls and brackets may nest: far beyond any sampler, well within Python's recursion limit.
MAX_DEPTH = 100
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<string>'[^'\\]*'|"[^"\\]*")
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>>>|[()\[\],=|&.])
""", re.VERBOSE)


class PathSyntaxError(SNRPathError):
    """A path expression that does not parse; the message points at the offending character."""


def parse_path(text: str) -> Path:
    """Parse a path expression such as ``"ramp(16) >> mdm(32, remask='confidence')"`` into a :class:`Path`."""
    if not isinstance(text, str):
        raise PathSyntaxError(f"parse_path needs a string (got {type(text).__name__})")
    parser = _Parser(text)
    path = parser.expr()
    parser.expect_end()
    return path


class _Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.i, self.depth = text, _tokenize(text), 0, 0

    # -- token stream --

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        if self.peek()[1] == value and self.peek()[0] in ("op", "name"):
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            self.fail(f"expected {value!r}")

    def expect_end(self) -> None:
        if self.peek()[0] != "end":
            self.fail("unexpected text after the path")

    def fail(self, message: str, at: int | None = None) -> None:
        kind, value, pos = self.peek()
        at = pos if at is None else at
        found = "the end" if kind == "end" else repr(value)
        raise PathSyntaxError(f"{message}, found {found} at character {at}:\n  {self.text}\n  {' ' * at}^")

    # -- grammar --

    @contextlib.contextmanager
    def nested(self):
        """One level deeper; a clear error past ``MAX_DEPTH`` instead of Python's RecursionError."""
        if self.depth >= MAX_DEPTH:
            self.fail(f"the expression nests deeper than {MAX_DEPTH} levels")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def expr(self) -> Path:
        with self.nested():
            left = self.conj()
            while self.accept("|"):
                left = left | self.conj()
            return left

    def conj(self) -> Path:
        left = self.shift()
        while self.accept("&"):
            at = self.peek()[2]
            right = self.shift()
            left = self.call_checked(lambda: left & right, at)
        return left

    def shift(self) -> Path:
        left = self.primary()
        while self.accept(">>"):
            left = left >> self.primary()
        return left

    def primary(self) -> Path:
        if self.accept("("):
            inner = self.expr()
            self.expect(")")
            return inner
        kind, name, at = self.peek()
        if kind != "name":
            self.fail("expected a path such as mdm(32) or ramp(16)")
        self.take()
        if name == "Path":
            self.expect(".")
            kind, name, at = self.take()
        if name not in _CONSTRUCTORS:
            self.i -= 1
            self.fail(f"unknown path {name!r}; known: {', '.join(_CONSTRUCTORS)}")
        args, kwargs = self.arguments()
        return self.call_checked(lambda: _CONSTRUCTORS[name](*args, **kwargs), at)

    def call_checked(self, build, at: int) -> Path:
        try:
            return build()
        except SNRPathError as err:
            raise PathSyntaxError(f"{err}\n  {self.text}\n  {' ' * at}^") from None

    def arguments(self) -> tuple[list, dict]:
        self.expect("(")
        args, kwargs = [], {}
        while not self.accept(")"):
            if self.peek()[0] == "name" and self.peek(1)[1] == "=":
                key = self.take()[1]
                self.take()
                if key in kwargs:
                    self.i -= 2
                    self.fail(f"argument {key!r} given twice")
                kwargs[key] = self.value()
            elif kwargs:
                self.fail("positional argument after a keyword argument")
            else:
                args.append(self.value())
            if not self.accept(","):
                self.expect(")")
                break
        return args, kwargs

    def value(self) -> Any:
        kind, text, at = self.peek()
        if kind == "number":
            self.take()
            if any(c in text for c in ".eE"):
                return float(text)
            try:
                return int(text)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                self.i -= 1
                self.fail("an integer with too many digits")
        if kind == "string":
            self.take()
            return text[1:-1]
        if kind == "name" and text in _LITERALS:
            self.take()
            return _LITERALS[text]
        if kind == "name" and text == "slice":
            self.take()
            args, kwargs = self.arguments()
            if kwargs or not 1 <= len(args) <= 3 or not all(a is None or isinstance(a, int) for a in args):
                self.fail("slice(...) takes one to three integers")
            return self.call_checked(lambda: Span(*((0, *args) if len(args) == 1 else args)), at)
        if text == "[" or (text == "(" and self.peek(1)[0] in ("number", "op") and self.peek(1)[1] != "("):
            return self.sequence("]" if self.take()[1] == "[" else ")")
        return self.expr()

    def sequence(self, close: str) -> tuple:
        items = []
        with self.nested():
            while not self.accept(close):
                items.append(self.value())
                if not self.accept(","):
                    self.expect(close)
                    break
        return tuple(items)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise PathSyntaxError(f"unexpected character {text[pos]!r} at character {pos}:\n  {text}\n  {' ' * pos}^")
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(("end", "", len(text)))
    return tokens
