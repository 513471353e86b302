"""Serving local tracks to peers: SUBSCRIBE (with filters), FETCH (standalone and
joining) from the track cache, TRACK_STATUS and SUBSCRIBE_NAMESPACE.

`Publisher` is a `RequestHandler` for any number of connections: a publishing client
attaches it to its relay connection, a server attaches it to every accepted session.
"""

from __future__ import annotations

import structlog

from .connection import Connection
from .errors import RequestErrorCode
from .fanout import SubscriberSink, accept_update, sink_state, subscription_start
from .model.track import Track
from .session import events as ev
from .session.requests import end_before_start
from .wire import control as c
from .wire.data import EndOfRange, FetchObject
from .wire.types import GroupOrder, Location, Parameters, TrackNamespace

log = structlog.get_logger(__name__)


class Publisher:
    """Serves tracks under one or more namespaces to every connection it is attached to."""

    def __init__(self) -> None:
        self.tracks: dict[tuple[TrackNamespace, bytes], Track] = {}
        self._sinks: dict[tuple[int, int], tuple[Track, SubscriberSink]] = {}  # (id(conn), rid)
        self._ns_subs: dict[tuple[int, int], tuple[Connection, TrackNamespace]] = {}
        self.connections: set[Connection] = set()

    # --- local tracks -------------------------------------------------------------------
    def add_track(self, track: Track) -> Track:
        is_new = not self._has_namespace(track.namespace)
        self.tracks[(track.namespace, track.name)] = track
        for (_, rid), (conn, prefix) in list(self._ns_subs.items()):
            if is_new and track.namespace[: len(prefix)] == prefix and not conn.is_closed:
                conn.send_namespace(rid, track.namespace[len(prefix):])
        return track

    def create_track(self, namespace: TrackNamespace, name: bytes, **kwargs) -> Track:
        return self.add_track(Track(namespace, name, **kwargs))

    def _has_namespace(self, ns: TrackNamespace) -> bool:
        return any(t.namespace == ns for t in self.tracks.values())

    def namespaces(self) -> set[TrackNamespace]:
        return {t.namespace for t in self.tracks.values()}

    # --- RequestHandler -----------------------------------------------------------------
    def on_request(self, conn: Connection, event: ev.IncomingRequest) -> None:
        self.connections.add(conn)
        msg = event.message
        if isinstance(event, ev.SubscribeRequested):
            self._subscribe(conn, event.request_id, msg)  # type: ignore[arg-type]
        elif isinstance(event, ev.FetchRequested):
            self._fetch(conn, event.request_id, msg)  # type: ignore[arg-type]
        elif isinstance(event, ev.TrackStatusRequested):
            track = self.tracks.get((msg.track_namespace, msg.track_name))  # type: ignore[attr-defined]
            if track is None:
                conn.reject(event.request_id, RequestErrorCode.DOES_NOT_EXIST, "no such track")
            else:
                conn.accept(event.request_id, Parameters(largest_object=track.largest), track.properties)
        elif isinstance(event, ev.SubscribeNamespaceRequested):
            prefix = msg.track_namespace_prefix  # type: ignore[attr-defined]
            conn.accept(event.request_id)
            self._ns_subs[(id(conn), event.request_id)] = (conn, prefix)
            for ns in sorted(self.namespaces()):
                if ns[: len(prefix)] == prefix:
                    conn.send_namespace(event.request_id, ns[len(prefix):])
        elif isinstance(event, ev.PublishNamespaceRequested | ev.PublishRequested):
            conn.reject(event.request_id, RequestErrorCode.UNINTERESTED, "not a relay")
        else:
            conn.reject(event.request_id, RequestErrorCode.NOT_SUPPORTED, "not supported")

    def _subscribe(self, conn: Connection, rid: int, msg: c.Subscribe) -> None:
        track = self.tracks.get((msg.track_namespace, msg.track_name))
        if track is None:
            conn.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
            return
        largest = track.largest
        window = subscription_start(track, msg.parameters)
        if isinstance(window, str):
            conn.reject(rid, RequestErrorCode.INVALID_RANGE, window)
            return
        start, end_group = window
        if track.ended is not None:
            conn.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "track ended")
            return
        conn.accept_subscribe(rid, largest=largest, track_properties=track.properties)
        sink = SubscriberSink(conn, rid, start, end_group, joining=largest, **sink_state(msg.parameters))
        self._sinks[(id(conn), rid)] = (track, sink)
        track.add_sink(sink)
        log.info("subscribe_accepted", track=repr(track), request_id=rid, start=tuple(start), peer=conn.transport.peer)

    def _fetch(self, conn: Connection, rid: int, msg: c.Fetch) -> None:
        if msg.standalone is not None:
            s = msg.standalone
            track = self.tracks.get((s.track_namespace, s.track_name))
            start, end = s.start, s.end
        else:
            j = msg.joining
            entry = self._sinks.get((id(conn), j.joining_request_id))  # type: ignore[union-attr]
            if entry is None:
                conn.reject(rid, RequestErrorCode.INVALID_JOINING_REQUEST_ID, "not a subscription")
                return
            track, sink = entry
            if sink.joining is None:
                conn.reject(rid, RequestErrorCode.INVALID_RANGE, "no objects published yet")
                return
            start, end = joining_range(msg, sink.joining)
        if track is None:
            conn.reject(rid, RequestErrorCode.DOES_NOT_EXIST, "no such track")
            return
        serve_cached_fetch(conn, rid, track, start, end, msg.parameters.group_order == GroupOrder.DESCENDING)

    async def push(self, conn: Connection, track: Track, *, timeout: float | None = 10.0) -> int:
        """PUBLISH `track` to the peer (push mode) and feed it once PUBLISH_OK arrives;
        returns the request id.  Objects written from now on are forwarded."""
        self.connections.add(conn)
        if (track.namespace, track.name) not in self.tracks:
            self.add_track(track)
        rid = conn.publish(track.namespace, track.name, Parameters(largest_object=track.largest), track.properties)
        largest = track.largest
        start = Location(largest.group, largest.object + 1) if largest else Location(0, 0)
        sink = SubscriberSink(conn, rid, start, joining=largest)
        self._sinks[(id(conn), rid)] = (track, sink)
        try:
            ok = await conn.wait_response(rid, timeout)
        except BaseException:
            self._sinks.pop((id(conn), rid), None)
            raise
        sink.update(Parameters(forward=ok.parameters.forward, subscriber_priority=ok.parameters.subscriber_priority))
        track.add_sink(sink)
        log.info("publish_accepted", track=repr(track), request_id=rid, peer=conn.transport.peer)
        return rid

    def on_cancelled(self, conn: Connection, request_id: int, error_code: int) -> None:
        entry = self._sinks.pop((id(conn), request_id), None)
        if entry is not None:
            track, sink = entry
            track.remove_sink(sink)
            log.info("unsubscribed", track=repr(track), request_id=request_id, code=error_code)
        self._ns_subs.pop((id(conn), request_id), None)

    def on_update(self, conn: Connection, event: ev.RequestUpdateReceived) -> None:
        entry = self._sinks.get((id(conn), event.request_id))
        accept_update(conn, event, entry[1] if entry else None)

    def on_closed(self, conn: Connection) -> None:
        for key in [k for k in self._sinks if k[0] == id(conn)]:
            track, sink = self._sinks.pop(key)
            track.remove_sink(sink)
        for key in [k for k in self._ns_subs if k[0] == id(conn)]:
            del self._ns_subs[key]
        self.connections.discard(conn)

    def finish(self) -> None:
        for track in self.tracks.values():
            if track.ended is None:
                track.finish()


def joining_range(msg: c.Fetch, joining: Location) -> tuple[Location, Location]:
    """[start, end) of a joining fetch from the subscription's Joining Location
    (§ Joining Fetch Range Calculation)."""
    j = msg.joining
    if msg.fetch_type == c.FetchType.RELATIVE_JOINING:
        start = Location(max(0, joining.group - j.joining_start), 0)  # type: ignore[union-attr]
    else:
        start = Location(j.joining_start, 0)  # type: ignore[union-attr]
    return start, Location(joining.group, joining.object + 1)


def cache_covers(track: Track, start: Location) -> bool:
    oldest = track.oldest_cached()
    return track.largest is not None and oldest is not None and oldest <= start


def serve_cached_fetch(conn: Connection, rid: int, track: Track, start: Location, end: Location,
                       descending: bool) -> None:
    """Answer a FETCH of [start, end) from the track's cache: FETCH_OK, then the objects on
    one fetch stream in the requested group order (§ Fetch Handling)."""
    largest = track.largest
    if end_before_start(start, end):  # never echo it: a FETCH_OK End before the Start is fatal to our peer
        conn.reject(rid, RequestErrorCode.INVALID_RANGE, "End Location before Start Location")
        return
    if largest is None or start > largest:
        conn.reject(rid, RequestErrorCode.INVALID_RANGE, "nothing published in that range")
        return
    cap = Location(largest.group, largest.object + 1)
    end_excl = Location(end.group + 1, 0) if end.object == 0 else end
    if end_excl > cap:
        end = cap
    conn.accept_fetch(rid, end, end_of_track=track.ended is not None and end == cap, track_properties=track.properties)
    oldest = track.oldest_cached()
    if oldest is not None and start < oldest and not descending and oldest.object > 0:
        conn.send_fetch_object(rid, EndOfRange(oldest.group, oldest.object - 1, unknown=True))
    for obj in track.range(start, end, descending):
        conn.send_fetch_object(rid, FetchObject(
            obj.group_id, obj.subgroup_id, obj.object_id,
            obj.priority if obj.priority is not None else track.priority, obj.payload, obj.properties,
        ))
    conn.end_fetch(rid)


__all__ = ["Publisher", "SubscriberSink"]
