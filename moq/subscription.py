"""What a subscription or fetch delivers: a bounded queue of received objects, read as an
async iterator, or handed synchronously to an `ObjectListener` (a relay's hot path).

The Connection feeds these (`deliver`, `finish`); applications iterate them or `close()`
them.  The queue is our own rather than asyncio.Queue so that its end can always be
queued past the bound and seen by every reader, without reaching into asyncio's insides.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .session import events as ev
from .wire.types import Location, Parameters

if TYPE_CHECKING:
    from .connection import Connection

DEFAULT_QUEUE = 10_000


class ObjectListener(Protocol):
    """Synchronous receiver of a subscription's objects (a relay's hot path): called from
    the transport callback, so it must not block."""

    def on_object(self, event: ev.ObjectReceived) -> None: ...
    def on_stream_end(self, event: ev.DataStreamEnded) -> None: ...
    def on_done(self, stream: ObjectStream) -> None: ...


class ObjectQueue:
    """A bounded FIFO of received objects that can be ended: the end is never refused by
    the bound, and once ended every reader (now or later) sees it."""

    __slots__ = ("items", "maxsize", "ended", "_getters")

    def __init__(self, maxsize: int = DEFAULT_QUEUE) -> None:
        self.items: deque = deque()
        self.maxsize = maxsize
        self.ended = False
        self._getters: deque[asyncio.Future] = deque()

    def put(self, item) -> bool:
        """Queue `item`; False (dropped) when full or ended."""
        if self.ended or len(self.items) >= self.maxsize:
            return False
        self.items.append(item)
        self._wake_one()
        return True

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def end(self) -> None:
        self.ended = True
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def get(self):
        """The next item, or None once the queue is ended and drained."""
        while not self.items:
            if self.ended:
                return None
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and self.items:  # pass our wake-up on
                    self._wake_one()
                raise
        return self.items.popleft()

    def qsize(self) -> int:
        return len(self.items)


@dataclass(eq=False)
class ObjectStream:
    """Objects of one subscription or fetch, as an async iterator with a bounded queue."""

    conn: Connection
    request_id: int
    queue: ObjectQueue = field(default_factory=ObjectQueue)
    ended: bool = False
    dropped: int = 0
    error: BaseException | None = None
    listener: ObjectListener | None = None

    def deliver(self, item) -> None:
        """An object for this stream (called by the Connection)."""
        if self.ended:
            return
        if self.listener is not None:
            self.listener.on_object(item)
        elif not self.queue.put(item):
            self.dropped += 1

    def finish(self, error: BaseException | None = None) -> None:
        """No more objects (called by the Connection, or by close())."""
        if not self.ended:
            self.ended = True
            self.error = error
            if self.listener is not None:
                self.listener.on_done(self)
            self.queue.end()

    def __aiter__(self) -> AsyncIterator[ev.ObjectReceived]:
        return self

    async def __anext__(self) -> ev.ObjectReceived:
        item = await self.queue.get()
        if item is None:
            if self.error is not None:
                raise self.error
            raise StopAsyncIteration
        return item


@dataclass(eq=False)
class Subscription(ObjectStream):
    """A track we subscribed to (SUBSCRIBE) or accepted (PUBLISH)."""

    track_alias: int = 0
    parameters: Parameters = field(default_factory=Parameters)
    track_properties: tuple = ()
    done: ev.PublishDoneReceived | None = None
    streams_ended: int = 0
    #: subgroup streams that ended in a reset (or that we abandoned): (group, subgroup, code),
    #: the latest ones; the objects after the last one received are lost
    resets: deque = field(default_factory=lambda: deque(maxlen=1024))

    @property
    def largest(self) -> Location | None:
        return self.parameters.largest_object

    def close(self) -> None:
        """Unsubscribe (cancel the request stream)."""
        if not self.ended:
            self.conn.cancel(self.request_id)
            self.finish()

    def maybe_finish(self) -> None:
        if self.done is not None and self.streams_ended >= self.done.stream_count:
            self.finish()


@dataclass(eq=False)
class FetchResult(ObjectStream):
    end_of_track: bool = False
    end_location: Location | None = None

    def close(self) -> None:
        if not self.ended:
            self.conn.cancel(self.request_id)
            self.finish()
