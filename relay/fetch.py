"""FETCH and TRACK_STATUS at the relay: the requests that ask about a track's past or state.

A FETCH (draft-18 § FETCH, § Fetch Handling) is validated in full, served from the track's cache
when it covers the range, else sent upstream once for every identical FETCH in flight (merged).
A TRACK_STATUS is answered from a live track, else from the negative cache, else upstream.

A downstream FETCH is checked before anything goes upstream: an End Location before the Start
(standalone, or an absolute joining fetch that starts after its subscription's Joining Location)
is refused with INVALID_RANGE here, because a publisher that echoed it in FETCH_OK would oblige
this relay to close the *publisher's* session (§ FETCH_OK).  Upstream refusals reach the
downstream peer with a generic reason (relay/guard.py); the upstream's own text is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from moq.broadcast import cache_covers, joining_range, serve_cached_fetch
from moq.connection import Connection, FetchResult, RequestRejectedError
from moq.errors import LocalUsageError, RequestErrorCode, SessionClosedError
from moq.session.requests import end_before_start
from moq.wire import control as c
from moq.wire.data import FetchObject
from moq.wire.types import GroupOrder, Parameters

from .guard import public_reason

if TYPE_CHECKING:
    from .relay import Relay

log = structlog.get_logger("relay.fetch")


@dataclass(eq=False)
class UpstreamFetch:
    """One FETCH sent upstream, serving every identical downstream FETCH (merged)."""

    key: tuple
    waiters: list[tuple[Connection, int]] = field(default_factory=list)
    objects: list[FetchObject] = field(default_factory=list)
    ok: c.FetchOk | None = None


class FetchRouter:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.inflight: dict[tuple, UpstreamFetch] = {}

    def handle(self, conn: Connection, rid: int, msg: c.Fetch) -> None:
        relay = self.relay
        descending = msg.parameters.group_order == GroupOrder.DESCENDING
        if msg.standalone is not None:
            s = msg.standalone
            key, start, end = (s.track_namespace, s.track_name), s.start, s.end
            if end_before_start(start, end):
                relay.refuse(conn, rid, RequestErrorCode.INVALID_RANGE, "End Location before Start Location", "fetch")
                return
            rt = relay.tracks.get(key)
        else:
            jrid = msg.joining.joining_request_id  # type: ignore[union-attr]
            rt = relay.downstream.get((id(conn), jrid))
            sink = rt.sinks.get((id(conn), jrid)) if rt else None
            if rt is None or sink is None:
                relay.refuse(conn, rid, RequestErrorCode.INVALID_JOINING_REQUEST_ID, "not a subscription", "fetch")
                return
            if sink.joining is None:
                relay.refuse(conn, rid, RequestErrorCode.INVALID_RANGE, "no objects published yet", "fetch")
                return
            key = rt.full_name
            start, end = joining_range(msg, sink.joining)
            if end_before_start(start, end):
                relay.refuse(conn, rid, RequestErrorCode.INVALID_RANGE, "Joining Start after the Joining Location",
                              "fetch")
                return
        if rt is not None and cache_covers(rt.track, start):
            serve_cached_fetch(conn, rid, rt.track, start, end, descending)
            return
        if rt is not None and rt.state == "live" and rt.track.largest is not None and start > rt.track.largest:
            relay.refuse(conn, rid, RequestErrorCode.INVALID_RANGE, "nothing published in that range", "fetch")
            return
        cached = relay.negative.get(*key)
        if cached is not None:
            relay.refuse_cached(conn, rid, cached, "fetch")
            return
        upstream = rt.source_conn if rt is not None and rt.source_conn is not None else relay.route(key[0])
        if upstream is None or upstream is conn:
            relay.refuse(conn, rid, RequestErrorCode.DOES_NOT_EXIST, "no publisher for this track", "fetch")
            return
        fkey = (key, start, end, descending)
        fetch = self.inflight.get(fkey)
        if fetch is not None:  # merge with the identical fetch in flight
            fetch.waiters.append((conn, rid))
            if fetch.ok is not None:
                self._start_answer(conn, rid, fetch)
            return
        source = relay.upstream_source(conn)
        if not relay.limiter.start_upstream(source):
            relay.refuse_busy(conn, rid, "fetch")
            return
        fetch = self.inflight[fkey] = UpstreamFetch(fkey, [(conn, rid)])
        relay.spawn(self._run(upstream, fetch, msg.parameters.group_order, source))

    def forget(self, conn: Connection) -> None:
        """The session closed: stop sending it what merged fetches bring."""
        for fetch in self.inflight.values():
            fetch.waiters = [w for w in fetch.waiters if w[0] is not conn]

    @staticmethod
    def _start_answer(conn: Connection, rid: int, fetch: UpstreamFetch) -> None:
        ok = fetch.ok
        if not conn.is_live(rid):
            return
        conn.accept_fetch(rid, ok.end_location, end_of_track=ok.end_of_track,  # type: ignore[union-attr]
                          track_properties=ok.track_properties)  # type: ignore[union-attr]
        for obj in fetch.objects:
            conn.send_fetch_object(rid, obj)

    def _refuse_all(self, fetch: UpstreamFetch, code: int, reason: str) -> None:
        for conn, rid in fetch.waiters:
            if conn.is_live(rid):
                self.relay.refuse(conn, rid, code, reason, "fetch")

    async def _run(self, upstream: Connection, fetch: UpstreamFetch, order: int | None, source: str | None) -> None:
        (ns, name), start, end, _ = fetch.key
        try:
            try:
                res: FetchResult = await upstream.fetch(ns, name, start, end, Parameters(group_order=order))
            except RequestRejectedError as exc:
                log.debug("upstream_refused", request="fetch", code=exc.code, upstream_reason=exc.reason,
                          peer=upstream.transport.peer)
                self.relay.negative.put(ns, name, exc.code)
                self._refuse_all(fetch, *public_reason(exc.code))
                return
            except (SessionClosedError, TimeoutError, ConnectionError) as exc:
                log.debug("upstream_failed", request="fetch", error=str(exc), peer=upstream.transport.peer)
                self._refuse_all(fetch, RequestErrorCode.TIMEOUT, "upstream unavailable")
                return
            fetch.ok = c.FetchOk(res.end_of_track, res.end_location or end)
            for conn, rid in fetch.waiters:
                self._start_answer(conn, rid, fetch)
            async for obj in res:
                item = FetchObject(obj.group_id, obj.subgroup_id, obj.object_id, obj.publisher_priority,
                                   obj.payload, obj.properties)
                fetch.objects.append(item)
                for conn, rid in fetch.waiters:
                    if conn.is_live(rid):
                        conn.send_fetch_object(rid, item)
            for conn, rid in fetch.waiters:
                if conn.is_live(rid):
                    conn.end_fetch(rid)
        except (SessionClosedError, ConnectionError, LocalUsageError):
            for conn, rid in fetch.waiters:
                if conn.is_live(rid):
                    conn.cancel(rid)
        finally:
            self.inflight.pop(fetch.key, None)
            self.relay.limiter.end_upstream(source)


def track_status(relay: Relay, conn: Connection, rid: int, msg: c.TrackStatus) -> None:
    """§ TRACK_STATUS: what a SUBSCRIBE_OK would say, without a subscription."""
    key = (msg.track_namespace, msg.track_name)
    rt = relay.tracks.get(key)
    if rt is not None and rt.state == "live":
        conn.accept(rid, Parameters(largest_object=rt.track.largest), rt.track.properties)
        return
    cached = relay.negative.get(*key)
    if cached is not None:
        relay.refuse_cached(conn, rid, cached, "track_status")
        return
    upstream = relay.route(msg.track_namespace)
    if upstream is None or upstream is conn:
        relay.refuse(conn, rid, RequestErrorCode.DOES_NOT_EXIST, "no publisher for this track", "track_status")
        return
    source = relay.upstream_source(conn)
    if not relay.limiter.start_upstream(source):
        relay.refuse_busy(conn, rid, "track_status")
        return

    async def ask() -> None:
        try:
            ok = await upstream.track_status(*key)
        except RequestRejectedError as exc:
            log.debug("upstream_refused", request="track_status", code=exc.code, upstream_reason=exc.reason,
                      peer=upstream.transport.peer)
            relay.negative.put(*key, exc.code)
            if conn.is_live(rid):
                relay.refuse(conn, rid, *public_reason(exc.code), "track_status")
            return
        except (SessionClosedError, TimeoutError, ConnectionError) as exc:
            log.debug("upstream_failed", request="track_status", error=str(exc), peer=upstream.transport.peer)
            if conn.is_live(rid):
                relay.refuse(conn, rid, RequestErrorCode.TIMEOUT, "upstream unavailable", "track_status")
            return
        finally:
            relay.limiter.end_upstream(source)
        if conn.is_live(rid):
            conn.accept(rid, Parameters(largest_object=ok.parameters.largest_object), ok.track_properties)

    relay.spawn(ask())


__all__ = ["FetchRouter", "UpstreamFetch", "track_status"]
