"""Which held-out plays a study may tune on, and which it scores on: never the same.

The corpus holds three validation plays (``snrpaths.data.load_corpus``: documents 9, 19 and 29 of 38 in sorted
order). The first is for choosing settings (the hybrid sweep); the other two are the held-out text every reported
result is scored against (the text study). Nothing is trained on any of them.
"""

from __future__ import annotations

from snrpaths.data import SEPARATOR, load_corpus

ROLES = ("tune", "score")


def held_out(role: str) -> tuple[tuple[str, ...], str]:
    """The names of the validation plays for ``role`` and their text, joined as the corpus joins documents."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES} (got {role!r})")
    corpus = load_corpus()
    chosen = slice(0, 1) if role == "tune" else slice(1, None)
    return corpus.valid_names[chosen], SEPARATOR.join(corpus.valid[chosen])
