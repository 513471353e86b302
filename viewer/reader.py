"""One subscribed track of moq-view (plus its joining FETCH): objects measured on arrival,
reset subgroup streams counted as gaps, fetched objects handed on before the live ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from moq.connection import FetchResult, RequestRejectedError, Subscription
from moq.errors import MoQError, SessionClosedError
from moq.media.loc import LocProperties
from moq.session import events as ev
from moq.wire.data import ObjectStatus
from moq.wire.types import EMPTY_PARAMETERS, Parameters, TrackNamespace

from .stats import TrackStats

if TYPE_CHECKING:
    from .subscribe import Viewer

log = structlog.get_logger("viewer.subscribe")

REQUEST_TIMEOUT = 10.0
AUDIO_JOIN_GROUPS = 1  # a recorded audio track's joining FETCH goes back this many groups (moq-publish: ~1 s each)
# MSF § Catalog: the catalog subscription SHOULD have a higher subscriber priority (lower value) than media
CATALOG_PARAMETERS = Parameters(subscriber_priority=0)


@dataclass(slots=True)
class Received:
    """One measured object."""

    track: str
    group: int
    subgroup: int | None
    object: int
    payload: bytes | memoryview
    props: LocProperties | None
    latency_ms: float | None
    arrival_us: int  # wall clock, µs since the epoch
    fetched: bool

    def json(self) -> dict:
        return {"track": self.track, "group": self.group, "subgroup": self.subgroup, "object": self.object,
                "bytes": len(self.payload),
                "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3)}



class TrackReader:
    """One subscribed track (plus its joining fetch, if any)."""

    def __init__(self, viewer: Viewer, name: str, namespace: TrackNamespace, kind: str, *, visible: bool,
                 join: bool) -> None:
        self.viewer = viewer
        self.name = name
        self.namespace = namespace
        self.kind = kind
        self.visible = visible  # reported and measured (the catalog read only for metadata is not)
        self.join = join
        self.stats: TrackStats | None = viewer.stats.track(name, kind) if visible else None
        self.sub: Subscription | None = None
        self.fetch: FetchResult | None = None
        self.pending: list[Received] | None = None  # subscription objects held until the fetch is done
        self.task: asyncio.Task | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.failed = False

    async def open(self) -> None:
        conn = self.viewer.conn
        params = CATALOG_PARAMETERS if self.kind == "catalog" else EMPTY_PARAMETERS
        self.sub = await conn.subscribe(self.namespace, self.name.encode(), params, timeout=REQUEST_TIMEOUT)
        if self.join and self.sub.largest is not None:
            try:  # audio groups are shorter than a GOP: go back far enough to cover the video's
                back = AUDIO_JOIN_GROUPS if self.kind == "audio" else 0
                self.fetch = await conn.joining_fetch(self.sub, back, timeout=REQUEST_TIMEOUT)
                self.pending = []
            except (RequestRejectedError, TimeoutError) as exc:
                log.info("joining_fetch_failed", track=self.name, error=str(exc))

    async def run(self) -> None:
        assert self.sub is not None
        fetch_task = asyncio.create_task(self._read_fetch()) if self.fetch is not None else None
        try:
            async for obj in self.sub:
                self._on(obj, False)
            self.drain_resets()
            done = self.sub.done
            self.end_reason = "track ended" if done is None else \
                f"{done.reason or 'track ended'} (PUBLISH_DONE {done.status_code:#x})"
        except (SessionClosedError, ConnectionError, MoQError) as exc:
            self.end_reason = f"connection lost: {exc}"
            self.failed = True
        except Exception as exc:  # a bug in a consumer: end this track visibly, keep the rest
            log.exception("track_reader_failed", track=self.name)
            self.end_reason = f"internal error: {exc!r}"
            self.failed = True
        finally:
            if fetch_task is not None:
                if not fetch_task.done():
                    fetch_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch_task
            if not self.viewer.closing:
                self.ended_at = time.monotonic()
                self.viewer.reader_ended(self)

    async def _read_fetch(self) -> None:
        assert self.fetch is not None
        try:
            async for obj in self.fetch:
                self._on(obj, True)
        except (SessionClosedError, ConnectionError, MoQError) as exc:
            log.info("joining_fetch_ended", track=self.name, error=str(exc))
        finally:
            pending, self.pending = self.pending or [], None
            for rx in pending:
                self.viewer.media_received(rx)

    def drain_resets(self) -> None:
        """Count the subgroup streams that were reset (lost media) and report them."""
        resets = self.sub.resets if self.sub is not None else None
        while resets:
            group, subgroup, code = resets.popleft()
            if self.stats is not None and self.stats.reset(group, subgroup, code):
                self.viewer.gap_found({"track": self.name, "group": group, "subgroup": subgroup, "gap": "reset",
                                       "code": code})

    def _on(self, obj: ev.ObjectReceived, fetched: bool) -> None:
        if self.sub is not None and self.sub.resets:
            self.drain_resets()
        if obj.status != ObjectStatus.NORMAL:
            return
        now = time.monotonic()
        now_us = time.time_ns() // 1000
        props = None
        if obj.properties:
            try:
                props = LocProperties.decode(obj.properties)
            except MoQError:
                props = None
        ts = props.wallclock_us() if props is not None else None
        latency = (now_us - ts) / 1000.0 if ts is not None else None
        rx = Received(self.name, obj.group_id, obj.subgroup_id, obj.object_id, obj.payload, props, latency, now_us,
                      fetched)
        if self.kind == "catalog":
            self.viewer.catalog_received(rx)
        if self.stats is None:
            return
        if not self.stats.record(obj.group_id, obj.object_id, len(obj.payload), latency, ts, now):
            return  # a duplicate
        self.viewer.object_received(rx)
        if self.kind in ("video", "audio"):
            if self.pending is not None and not fetched:
                self.pending.append(rx)
            else:
                self.viewer.media_received(rx)

    def close(self) -> None:
        for s in (self.fetch, self.sub):
            if s is not None and not s.conn.is_closed:
                s.close()
