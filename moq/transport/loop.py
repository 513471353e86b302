"""Event loop helpers: uvloop with a high-resolution clock.

uvloop's ``loop.time()`` ticks in whole milliseconds (libuv's cached ``uv_now``).  aioquic
paces packets from ``loop.time()``, so a 1 ms clock starves its pacer (DESIGN.md: one bulk
stream fell from 25 MB/s to 1.6 MB/s).  :class:`HighResUVLoop` returns ``time.monotonic()``
instead; uvloop derives ``call_at`` delays from ``self.time()``, so timers keep working
(libuv may fire a timer up to ~1 ms early, which aioquic tolerates: it uses
``max(timer_at, loop.time())``).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, but keep asyncio usable
    uvloop = None

T = TypeVar("T")

if uvloop is not None:

    class HighResUVLoop(uvloop.Loop):  # type: ignore[misc,name-defined]
        """uvloop with a ``time.monotonic()`` clock (same CLOCK_MONOTONIC base as libuv)."""

        def time(self) -> float:
            return time.monotonic()

else:  # pragma: no cover
    HighResUVLoop = None  # type: ignore[assignment,misc]


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A fresh loop: high-resolution uvloop when available and wanted, else asyncio's default."""
    if use_uvloop and HighResUVLoop is not None:
        return HighResUVLoop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a new loop (``asyncio.Runner``) and return its result."""
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop), debug=debug) as runner:
        return runner.run(main)


def settle_heap() -> None:
    """Call once a long-running server has started: move everything allocated so far (modules,
    classes, configuration: ~50k objects, ~25 ms per full collection on a small VM) out of the
    garbage collector's reach, so that a full collection, which the churn of connections
    triggers, scans only live session state instead of stalling the event loop for the whole
    startup heap."""
    gc.collect()
    gc.freeze()
