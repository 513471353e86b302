"""The session's output queue: transport actions waiting for the adapter, in order.

A relay writes one object to many sessions while it handles another session's input.
Rather than make every writer remember to flush, the queue tells its owner once when it
goes from empty to non-empty (`wake`), so the adapter can carry out a whole burst of
writes in one pass per event-loop turn.
"""

from __future__ import annotations

from collections.abc import Callable

from . import events as ev


class Outbox:
    __slots__ = ("_items", "wake")

    def __init__(self) -> None:
        self._items: list[ev.Action] = []
        #: called (with no arguments) when the first action lands in an empty queue
        self.wake: Callable[[], None] | None = None

    def append(self, action: ev.Action) -> None:
        items = self._items
        if not items and self.wake is not None:
            self.wake()
        items.append(action)

    def take(self) -> list[ev.Action]:
        """Everything queued so far; the queue is empty afterwards."""
        out, self._items = self._items, []
        return out

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)
