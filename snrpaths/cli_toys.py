"""The exact toy joints the command line samples (``snrpaths toy --toy NAME``, ``snrpaths tune --toy NAME``), as a
registry of values: each :class:`Toy` builds its joint from the flags, so a new toy is one entry of ``TOYS`` and an
unknown name fails where it is looked up. Shared by ``cli`` and ``cli_tune``, below both."""

from __future__ import annotations

from typing import Any, Callable

import attrs

from . import validate
from .errors import SNRPathError


@attrs.frozen
class Toy:
    """A toy joint the command line offers: ``build(ExactToy, vocab, length, seed)`` makes it (``vocab`` and
    ``seed`` may go unread: the parity and two-bit joints have none)."""

    name: str
    build: Callable[[Any, int, int, int], Any]

    def make(self, vocab: int, length: int, seed: int) -> Any:
        """The :class:`snrpaths.backends.toy.ExactToy` of this joint over ``vocab`` tokens and ``length`` positions."""
        from snrpaths.backends.toy import ExactToy  # the CLI is an application: it may pick a backend

        return self.build(ExactToy, vocab, length, seed)


#: The toys by the name typed after ``--toy``; random joints are Dirichlet draws of concentration 0.5.
TOYS: dict[str, Toy] = {t.name: t for t in (
    Toy("markov", lambda exact, vocab, length, seed: exact.markov(vocab, length, seed=seed, concentration=0.5)),
    Toy("random", lambda exact, vocab, length, seed: exact.random(vocab, length, seed=seed, concentration=0.5)),
    Toy("parity", lambda exact, vocab, length, seed: exact.parity(length)),
    Toy("two-bit", lambda exact, vocab, length, seed: exact.two_bit()),
)}


def make_toy(name: str, vocab: int, length: int, seed: int) -> Any:
    """The toy ``--toy name`` with ``--vocab``, ``--length`` and its seed, each checked first (errors name the flag)."""
    toy = TOYS[validate.choice("--toy", name, TOYS)]
    for flag, value in (("--vocab", vocab), ("--length", length)):
        if value < 1:
            raise SNRPathError(f"{flag} must be a positive integer (got {value})")
    return toy.make(vocab, length, seed)
