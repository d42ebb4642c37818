"""Values a user writes as a literal inside a path (``'confidence'``, ``(2, 0, 1)``): their ``repr`` is that literal,
so printing a path and parsing it back gives an equal path."""

from __future__ import annotations

from typing import Any


class TypedRepr:
    """Mixin: ``repr(value) == repr(value.typed())``, the literal a user types for the value (default: its ``name``).
    An attrs class that uses it must say ``repr=False``, or attrs writes its own ``repr`` over this one."""

    __slots__ = ()

    def typed(self) -> Any:
        """What a user types for this value: its ``name`` unless the value is written another way."""
        return self.name

    def __repr__(self) -> str:
        return repr(self.typed())
