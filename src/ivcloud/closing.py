"""``ClosesOnExit``: ``async with thing:`` for objects whose end is ``await thing.aclose()``.

Streams, uploads and media sources on both ends of a session (``ivcloud.client`` and
``ivcloud.device``, which may not import each other) are async-closed resources; this one
mixin gives them the same ``async with`` behaviour instead of each spelling it out. It has
no dependencies so any layer may import it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["ClosesOnExit"]


class ClosesOnExit(ABC):
    """Entering yields the object itself; leaving (normally or by an exception, which is
    never swallowed) awaits :meth:`aclose`."""

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Release the resource; must be safe to call more than once."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
