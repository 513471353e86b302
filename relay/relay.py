"""The relay (draft-18 § Relays): routes requests between sessions and fans objects out.

One `Relay` serves every session of the process as their `RequestHandler`.  Publishers
announce namespaces (PUBLISH_NAMESPACE) or push tracks (PUBLISH); a SUBSCRIBE for a track
is routed to the publisher of the longest matching namespace, with one upstream
subscription per track however many subscribers it has (dropped when the last leaves).
Each track keeps its latest groups (`Track`), which serves joining and standalone
FETCHes; other FETCHes go upstream, identical concurrent ones merged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine

import structlog

from moq.connection import Connection, RequestRejectedError, Subscription
from moq.errors import PublishDoneCode, RequestErrorCode, SessionClosedError, SessionErrorCode, StreamResetCode
from moq.fanout import SubscriberSink, accept_update, sink_state, subscription_start
from moq.model.track import Track
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.types import Location, Parameters, TrackNamespace, namespace_to_str

from . import namespaces
from .auth import AUTH_CLOSE_CODES, Authorizer, namespace_takeover, track_takeover
from .config import RelayConfig
from .fetch import FetchRouter, UpstreamFetch, track_status
from .guard import NegativeCache, RefusalLog, RequestLimiter, public_reason, refuse_update, source_of, strike
from .metrics import RelayMetrics
from .upstream import UpstreamLink

log = structlog.get_logger(__name__)

FullName = tuple[TrackNamespace, bytes]
Key = tuple[int, int]  # (id(connection), request_id)


_REFUSAL = {
    RequestErrorCode.DOES_NOT_EXIST: "not_found",
    RequestErrorCode.UNAUTHORIZED: "unauthorized",
    RequestErrorCode.MALFORMED_AUTH_TOKEN: "unauthorized",
    RequestErrorCode.EXPIRED_AUTH_TOKEN: "unauthorized",
    RequestErrorCode.EXCESSIVE_LOAD: "subscriber_limit",
    RequestErrorCode.GOING_AWAY: "draining",
    RequestErrorCode.INVALID_RANGE: "invalid_range",
    RequestErrorCode.INVALID_JOINING_REQUEST_ID: "invalid_request",
    RequestErrorCode.TIMEOUT: "upstream_unavailable",
}
_SESSION_REFUSAL = {**_REFUSAL, RequestErrorCode.EXCESSIVE_LOAD: "request_limit"}


def _name(ns: TrackNamespace, name: bytes) -> str:
    return f"{namespace_to_str(ns)}:{name.decode('utf-8', 'replace')}"


class RelayTrack:
    """A track as the relay holds it: its cache, its source and its subscribers."""

    def __init__(self, relay: Relay, ns: TrackNamespace, name: bytes) -> None:
        cfg = relay.config
        self.relay = relay
        self.track = Track(ns, name, max_groups=cfg.cache_groups_per_track, max_bytes=cfg.cache_bytes)
        self.source: Subscription | None = None  # upstream SUBSCRIBE, or a PUBLISH we accepted
        self.source_conn: Connection | None = None
        self.pushed = False  # the source is a PUBLISH (the publisher decides when it ends)
        self.state = "pending"
        self.waiters: list[tuple[Connection, int, Parameters]] = []
        self.sinks: dict[Key, SubscriberSink] = {}

    @property
    def full_name(self) -> FullName:
        return self.track.namespace, self.track.name

    # ObjectListener: the source's objects, synchronously
    def on_object(self, e: ev.ObjectReceived) -> None:
        relay, m = self.relay, self.relay.metrics
        size = len(e.payload)
        before = self.track.cache_bytes
        sent = self.track.write(e.group_id, e.object_id, e.payload, subgroup_id=e.subgroup_id,
                                properties=e.properties, status=e.status, priority=e.publisher_priority)
        relay.cache_total += self.track.cache_bytes - before
        if relay.cache_total > relay.config.cache_bytes:
            relay.evict()
        m.objects_in.inc()
        m.bytes_in.inc(size)
        if sent:
            m.objects_out.inc(sent)
            m.bytes_out.inc(sent * size)

    def on_stream_end(self, e: ev.DataStreamEnded) -> None:
        if e.fetch or e.group_id is None or e.subgroup_id is None:
            return
        if e.reset_code is None:
            self.track.end_subgroup(e.group_id, e.subgroup_id)
        else:
            self.track.reset_subgroup(e.group_id, e.subgroup_id, e.reset_code)

    def on_done(self, stream) -> None:
        self.relay.source_ended(self, stream)


class Relay:
    def __init__(self, config: RelayConfig, metrics: RelayMetrics | None = None, auth: Authorizer | None = None
                 ) -> None:
        self.config = config
        self.metrics = metrics or RelayMetrics()
        self.auth = auth or Authorizer()  # disabled: everyone may publish and watch (relay/auth.py)
        self.tracks: dict[FullName, RelayTrack] = {}
        self.announced: dict[TrackNamespace, list[tuple[Connection, int]]] = {}
        self.ns_subs: dict[Key, tuple[Connection, int, TrackNamespace, set[TrackNamespace]]] = {}
        self.track_subs: dict[Key, tuple[Connection, int, TrackNamespace]] = {}
        self.downstream: dict[Key, RelayTrack] = {}
        self.fetcher = FetchRouter(self)
        self.fetches: dict[tuple, UpstreamFetch] = self.fetcher.inflight
        self.connections: set[Connection] = set()
        clock = time.monotonic
        self.limiter = RequestLimiter(config.max_requests_per_second, config.max_requests_per_second_per_source,
                                      config.max_upstream_requests_per_source, clock)
        self.negative = NegativeCache(config.negative_cache_ttl, clock)
        self.refusals = RefusalLog()
        self.trusted: set[int] = set()  # id() of sessions exempt from the request limits (worker links)
        self.upstream: UpstreamLink | None = None
        self.drain_deadline: float | None = None  # loop time at which draining ends
        self._tasks: set[asyncio.Task] = set()
        self.cache_total = 0  # payload bytes cached over all tracks (bounded by config.cache_bytes)
        self.metrics.cache_bytes.set_function(lambda: self.cache_total)
        self.metrics.tracks.set_function(lambda: len(self.tracks))
        self.metrics.subscriptions.set_function(lambda: len(self.downstream))
        self.metrics.sessions.set_function(lambda: len(self.connections))

    # --- plumbing ----------------------------------------------------------------------
    def spawn(self, coro: Coroutine) -> None:
        """Run a request's follow-up as a task owned by the relay (cancelled on drain)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refuse(self, conn: Connection, rid: int, code: int, reason: str, what: str, metric: str | None = None) -> None:
        """REQUEST_ERROR for a peer request: counted by `metric` (else by code), logged in the
        aggregated refusal summary (a debug line each)."""
        metric = metric or _REFUSAL.get(code, f"code_{int(code):#x}")
        self.refusals.record(metric, source_of(conn.transport.peer), request=what, request_id=rid, code=int(code),
                             reason=reason)
        self.metrics.requests_refused.labels(reason=metric).inc()
        conn.reject(rid, code, reason)

    _refuse = refuse

    def refuse_cached(self, conn: Connection, rid: int, code: int, what: str) -> None:
        """Refused again from the negative cache (an upstream refusal of this track, seconds ago)."""
        self.metrics.negative_cache_hits.inc()
        self.refuse(conn, rid, *public_reason(code), what)

    def refuse_busy(self, conn: Connection, rid: int, what: str) -> None:
        """Too many of this source's requests are waiting on upstream answers."""
        self.refuse(conn, rid, RequestErrorCode.EXCESSIVE_LOAD, "too many requests waiting upstream", what,
                    "upstream_pending")

    def upstream_source(self, conn: Connection) -> str | None:
        """The key under which `conn`'s requests waiting upstream are capped (None: not capped)."""
        if self._from_parent(conn) or id(conn) in self.trusted:
            return None
        return source_of(conn.transport.peer)

    def trust(self, conn: Connection) -> None:
        """Exempt a session from the request limits (a --workers link from another worker)."""
        self.trusted.add(id(conn))

    def _admit(self, conn: Connection) -> str | None:
        """None if the peer may make one more request (or update) now, else the refusal reason.
        Our --upstream parent and trusted links are not limited."""
        if self._from_parent(conn) or id(conn) in self.trusted:
            return None
        return self.limiter.admit(id(conn), source_of(conn.transport.peer))

    def _strike(self, conn: Connection) -> None:
        strike(self, conn)

    def evict(self) -> None:
        """Over the relay-wide cache budget: drop the oldest groups of the largest caches."""
        while self.cache_total > self.config.cache_bytes:
            biggest = max(self.tracks.values(), key=lambda t: t.track.cache_bytes, default=None)
            if biggest is None or not biggest.track.groups:
                return
            before = biggest.track.cache_bytes
            biggest.track.evict_oldest()
            self.cache_total -= before - biggest.track.cache_bytes

    def _forget_track(self, rt: RelayTrack) -> None:
        if self.tracks.get(rt.full_name) is rt:
            del self.tracks[rt.full_name]
            self.cache_total -= rt.track.cache_bytes

    def route(self, ns: TrackNamespace) -> Connection | None:
        """The publisher of the longest announced namespace that is a prefix of `ns`,
        else the parent relay (if this relay has one)."""
        for n in range(len(ns), -1, -1):
            for conn, _ in self.announced.get(ns[:n], ()):
                if not conn.is_closed:
                    return conn
        if self.upstream is not None and self.upstream.conn is not None and not self.upstream.conn.is_closed:
            return self.upstream.conn
        return None

    _route = route

    def from_parent(self, conn: Connection | None) -> bool:
        """`conn` is this relay's --upstream link (its parent's session)."""
        return self.upstream is not None and conn is not None and conn is self.upstream.conn

    _from_parent = from_parent

    def local_namespaces(self) -> set[TrackNamespace]:
        """Namespaces announced to this relay by its own sessions (not learned from the parent)."""
        names = {ns for ns, pubs in self.announced.items() if any(not self._from_parent(c) for c, _ in pubs)}
        names.update(rt.track.namespace for rt in self.tracks.values()
                     if rt.pushed and not self._from_parent(rt.source_conn))
        return names

    def start_upstream(self, url: str, fingerprint: str | None, token: str | None = None) -> None:
        self.upstream = UpstreamLink(self, url, fingerprint, token)
        self.spawn(self.upstream.run())

    # --- RequestHandler ------------------------------------------------------------------
    def on_request(self, conn: Connection, event: ev.IncomingRequest) -> None:
        if conn.is_closed:
            return
        self.connections.add(conn)
        msg, rid = event.message, event.request_id
        limited = self._admit(conn)
        if limited is not None:  # before any routing or authorization: a flood costs only its sender
            self.refuse(conn, rid, RequestErrorCode.EXCESSIVE_LOAD, "request rate limit", type(msg).__name__, limited)
            self._strike(conn)
            return
        if self.auth.enabled and not self._from_parent(conn):  # the one authorization point, before routing
            refusal = self.auth.check(conn, msg)
            if refusal is not None:
                if not conn.is_closed:
                    self.refuse(conn, rid, refusal.code, refusal.reason, type(msg).__name__)
                return
        if isinstance(msg, c.Subscribe):
            self._subscribe(conn, rid, msg)
        elif isinstance(msg, c.Publish):
            self._publish(conn, rid, msg)
        elif isinstance(msg, c.PublishNamespace):
            self._announce(conn, rid, msg.track_namespace)
        elif isinstance(msg, c.SubscribeNamespace):
            self._subscribe_namespace(conn, rid, msg.track_namespace_prefix)
        elif isinstance(msg, c.SubscribeTracks):
            self._subscribe_tracks(conn, rid, msg.track_namespace_prefix)
        elif isinstance(msg, c.Fetch):
            self._fetch(conn, rid, msg)
        elif isinstance(msg, c.TrackStatus):
            self._track_status(conn, rid, msg)

    def on_update(self, conn: Connection, event: ev.RequestUpdateReceived) -> None:
        key = (id(conn), event.request_id)
        if not conn.is_live(event.request_id):
            return
        rt = self.downstream.get(key)
        limited = self._admit(conn)
        if limited is None:
            accept_update(conn, event, rt.sinks.get(key) if rt else None)
            return
        refuse_update(self, conn, event, rt.sinks.get(key) if rt else None, limited)

    def on_cancelled(self, conn: Connection, request_id: int, error_code: int) -> None:
        key = (id(conn), request_id)
        rt = self.downstream.pop(key, None)
        if rt is not None:
            self._detach(rt, key)
            return
        for ns, pubs in list(self.announced.items()):
            if (conn, request_id) in pubs:
                pubs.remove((conn, request_id))
                self._namespace_gone(ns)
        if self.ns_subs.pop(key, None) is not None and self.upstream is not None:
            self.upstream.sync_watches()
        self.track_subs.pop(key, None)

    def on_refused(self, conn: Connection, e: ev.RequestRefused) -> None:
        """The session refused a request by itself (request limit, GOAWAY, ...)."""
        reason = _SESSION_REFUSAL.get(e.error_code, f"code_{e.error_code:#x}")
        self.metrics.requests_refused.labels(reason=reason).inc()
        self.refusals.record(reason, source_of(conn.transport.peer), request=type(e.message).__name__,
                             request_id=e.request_id, code=e.error_code)

    def on_stream_refused(self, conn: Connection, e: ev.DataStreamRefused) -> None:
        """The session stopped reading a data stream that broke a limit (an object over
        --max-object-size, too much data for unknown aliases)."""
        reason = "object_too_large" if e.limit == "max_object_size" else "stream_limit"
        self.metrics.requests_refused.labels(reason=reason).inc()
        self.refusals.record(reason, source_of(conn.transport.peer), stream_id=e.stream_id,
                             request_id=e.request_id, detail=e.reason)

    def on_closed(self, conn: Connection) -> None:
        closed = conn.closed_info
        if (closed is not None and not closed.by_peer and closed.error_code not in (0, 0x1, 0x10)
                and closed.error_code not in AUTH_CLOSE_CODES):  # those count as "unauthorized"
            self.metrics.requests_refused.labels(reason="protocol").inc()
        self.auth.forget(conn)
        self.connections.discard(conn)
        cid = id(conn)
        self.limiter.forget(cid)
        self.trusted.discard(cid)
        for key in [k for k in self.downstream if k[0] == cid]:
            self._detach(self.downstream.pop(key), key)
        for key in [k for k in self.ns_subs if k[0] == cid]:
            del self.ns_subs[key]
        if self.upstream is not None and not self._from_parent(conn):
            self.upstream.sync_watches()
        for key in [k for k in self.track_subs if k[0] == cid]:
            del self.track_subs[key]
        for ns, pubs in list(self.announced.items()):
            kept = [p for p in pubs if p[0] is not conn]
            if len(kept) != len(pubs):
                self.announced[ns] = kept
                self._namespace_gone(ns)
        for rt in [t for t in self.tracks.values() if t.source_conn is conn]:
            self._end_track(rt, PublishDoneCode.TRACK_ENDED, "publisher disconnected")
        self.fetcher.forget(conn)

    # --- subscriptions -------------------------------------------------------------------
    def _subscribe(self, conn: Connection, rid: int, msg: c.Subscribe) -> None:
        key = (msg.track_namespace, msg.track_name)
        what = f"subscribe {_name(*key)}"
        rt = self.tracks.get(key)
        if rt is not None and len(rt.sinks) + len(rt.waiters) >= self.config.max_subscribers_per_track:
            self._refuse(conn, rid, RequestErrorCode.EXCESSIVE_LOAD, "too many subscribers for this track", what)
            return
        if rt is not None and rt.state == "live":
            self._attach(rt, conn, rid, msg.parameters)
            return
        if rt is not None:
            rt.waiters.append((conn, rid, msg.parameters))
            return
        cached = self.negative.get(*key)
        if cached is not None:
            self.refuse_cached(conn, rid, cached, what)
            return
        upstream = self._route(msg.track_namespace)
        if upstream is None:
            self._refuse(conn, rid, RequestErrorCode.DOES_NOT_EXIST, "no publisher for this namespace", what)
            return
        if upstream is conn:
            self._refuse(conn, rid, RequestErrorCode.DOES_NOT_EXIST, "the track's publisher is this session", what)
            return
        source = self.upstream_source(conn)
        if not self.limiter.start_upstream(source):
            self.refuse_busy(conn, rid, what)
            return
        rt = self.tracks[key] = RelayTrack(self, *key)
        rt.waiters.append((conn, rid, msg.parameters))
        rt.source_conn = upstream
        self.spawn(self._open_upstream(rt, upstream, source))

    async def _open_upstream(self, rt: RelayTrack, upstream: Connection, source: str | None) -> None:
        ns, name = rt.full_name
        try:
            sub = await upstream.subscribe(ns, name, listener=rt)
        except RequestRejectedError as exc:
            log.debug("upstream_refused", request="subscribe", track=_name(ns, name), code=exc.code,
                      upstream_reason=exc.reason, peer=upstream.transport.peer)
            self.negative.put(ns, name, exc.code)
            self._fail_waiters(rt, *public_reason(exc.code))
            return
        except (SessionClosedError, TimeoutError, ConnectionError) as exc:
            log.debug("upstream_failed", request="subscribe", track=_name(ns, name), error=str(exc),
                      peer=upstream.transport.peer)
            self._fail_waiters(rt, RequestErrorCode.TIMEOUT, "upstream unavailable")
            return
        finally:
            self.limiter.end_upstream(source)
        if self.tracks.get(rt.full_name) is not rt or rt.state != "pending":
            sub.close()
            return
        rt.source, rt.state = sub, "live"
        rt.track.properties = sub.track_properties
        if sub.largest is not None and (rt.track.largest is None or sub.largest > rt.track.largest):
            rt.track.largest = sub.largest
        log.info("upstream_subscribed", track=_name(ns, name), peer=upstream.transport.peer,
                 largest=tuple(rt.track.largest) if rt.track.largest else None)
        waiters, rt.waiters = rt.waiters, []
        for conn, rid, params in waiters:
            if conn.is_live(rid):
                self._attach(rt, conn, rid, params)
        self._release_if_unused(rt)

    def _fail_waiters(self, rt: RelayTrack, code: int, reason: str) -> None:
        self._forget_track(rt)
        rt.state = "ended"
        waiters, rt.waiters = rt.waiters, []
        for conn, rid, _ in waiters:
            if conn.is_live(rid):
                self._refuse(conn, rid, code, reason, f"subscribe {_name(*rt.full_name)}")

    def _attach(self, rt: RelayTrack, conn: Connection, rid: int, params: Parameters) -> None:
        window = subscription_start(rt.track, params)
        if isinstance(window, str):
            self._refuse(conn, rid, RequestErrorCode.INVALID_RANGE, window, f"subscribe {_name(*rt.full_name)}")
            return
        start, end_group = window
        largest = rt.track.largest
        conn.accept_subscribe(rid, largest=largest, track_properties=rt.track.properties)
        sink = SubscriberSink(conn, rid, start, end_group, joining=largest,
                              max_backlog=self.config.subscriber_queue_bytes, on_drop=self.metrics.dropped_groups.inc,
                              backlog_seconds=self.config.subscriber_queue_seconds, **sink_state(params))
        key = (id(conn), rid)
        rt.sinks[key] = sink
        self.downstream[key] = rt
        rt.track.add_sink(sink)
        log.info("subscribe_accepted", track=_name(*rt.full_name), request_id=rid, peer=conn.transport.peer,
                 start=tuple(start), subscribers=len(rt.sinks))

    def _detach(self, rt: RelayTrack, key: Key) -> None:
        sink = rt.sinks.pop(key, None)
        if sink is not None:
            rt.track.remove_sink(sink)
        self._release_if_unused(rt)

    def _release_if_unused(self, rt: RelayTrack) -> None:
        """The last subscriber left: end the upstream subscription (not a pushed track)."""
        if rt.sinks or rt.waiters or rt.pushed or rt.state != "live":
            return
        self._forget_track(rt)
        rt.state = "ended"
        if rt.source is not None:
            rt.source.listener = None
            rt.source.close()
        log.info("upstream_released", track=_name(*rt.full_name))

    def source_ended(self, rt: RelayTrack, stream) -> None:
        if rt.state != "live":  # pending: _open_upstream reports the refusal with its own code
            return
        done = getattr(stream, "done", None)
        if done is not None:
            self._end_track(rt, done.status_code, done.reason or "track ended")
        else:  # the source's session died: its open subgroups will never end, so they must not look complete
            for gid, group in list(rt.track.groups.items()):
                for sg in sorted(group.open_subgroups):
                    rt.track.reset_subgroup(gid, sg, StreamResetCode.SESSION_CLOSED)
            self._end_track(rt, PublishDoneCode.TRACK_ENDED, "upstream ended")

    def _end_track(self, rt: RelayTrack, code: int, reason: str) -> None:
        self._forget_track(rt)
        was_pending = rt.state == "pending"
        rt.state = "ended"
        if was_pending:
            self._fail_waiters(rt, RequestErrorCode.DOES_NOT_EXIST, reason)
        for key in list(rt.sinks):
            self.downstream.pop(key, None)
        rt.track.finish(code, reason)
        rt.sinks.clear()
        log.info("track_ended", track=_name(*rt.full_name), code=int(code), reason=reason)

    # --- publishers ----------------------------------------------------------------------
    def _publish(self, conn: Connection, rid: int, msg: c.Publish) -> None:
        key = (msg.track_namespace, msg.track_name)
        _, replaced = track_takeover(self, conn, *key)  # another session publishes it (relay/auth.py)
        if replaced is not None:
            self._end_replaced(replaced)
        existing = self.tracks.get(key)
        if existing is not None and existing.state == "live":
            self._refuse(conn, rid, RequestErrorCode.UNINTERESTED, "track already has a publisher",
                         f"publish {_name(*key)}")
            return
        self.negative.clear(*key)
        rt = RelayTrack(self, *key)
        rt.pushed, rt.source_conn, rt.state = True, conn, "live"
        rt.track.properties = msg.track_properties
        rt.track.largest = msg.parameters.largest_object
        if existing is not None:  # subscribers were waiting for an upstream answer: serve them from this one
            rt.waiters = existing.waiters
            existing.waiters, existing.state = [], "ended"
        self.tracks[key] = rt
        rt.source = conn.accept_publish(rid, listener=rt)
        log.info("publish_accepted", track=_name(*key), request_id=rid, peer=conn.transport.peer)
        waiters, rt.waiters = rt.waiters, []
        for wconn, wrid, params in waiters:
            self._attach(rt, wconn, wrid, params)
        self._namespace_added(msg.track_namespace, conn)
        for sconn, _, prefix in list(self.track_subs.values()):
            if msg.track_namespace[: len(prefix)] == prefix and sconn is not conn:
                self._push(rt, sconn)

    def _push(self, rt: RelayTrack, conn: Connection) -> None:
        """PUBLISH a track to a SUBSCRIBE_TRACKS subscriber."""
        ns, name = rt.full_name
        largest = rt.track.largest
        rid = conn.publish(ns, name, Parameters(largest_object=largest), rt.track.properties)
        start = Location(largest.group, largest.object + 1) if largest else Location(0, 0)
        sink = SubscriberSink(conn, rid, start, joining=largest, max_backlog=self.config.subscriber_queue_bytes,
                              backlog_seconds=self.config.subscriber_queue_seconds,
                              on_drop=self.metrics.dropped_groups.inc)
        key = (id(conn), rid)
        rt.sinks[key] = sink
        self.downstream[key] = rt
        rt.track.add_sink(sink)

        async def watch() -> None:
            try:
                ok = await conn.wait_response(rid, 30.0)
            except (RequestRejectedError, SessionClosedError, TimeoutError, ConnectionError):
                if self.downstream.pop(key, None) is not None:
                    self._detach(rt, key)
                return
            sink.update(Parameters(forward=ok.parameters.forward,
                                   subscriber_priority=ok.parameters.subscriber_priority))

        self.spawn(watch())

    def _end_replaced(self, rt: RelayTrack) -> None:
        """A newer authorized publisher takes this track over: its subscribers get PUBLISH_DONE, its
        source (the older PUBLISH or our SUBSCRIBE to the older announcer) is cancelled."""
        if rt.source is not None:
            rt.source.listener = None
            rt.source.close()
        self._end_track(rt, PublishDoneCode.TRACK_ENDED, "replaced by a newer publisher")

    def _announce(self, conn: Connection, rid: int, ns: TrackNamespace) -> None:
        for old, old_rid in namespace_takeover(self, conn, ns):  # the newer authorized publisher wins
            self.announced[ns].remove((old, old_rid))
            old.cancel(old_rid)
            for rt in [t for t in self.tracks.values() if t.source_conn is old and t.state == "live"
                       and t.track.namespace[: len(ns)] == ns]:
                self._end_replaced(rt)
        self.negative.clear(ns)
        conn.accept(rid)
        self.announced.setdefault(ns, []).append((conn, rid))
        log.info("namespace_published", namespace=namespace_to_str(ns), peer=conn.transport.peer)
        self._namespace_added(ns, conn)

    # namespace discovery (relay/namespaces.py)
    _known_namespaces = namespaces.known
    watched_prefixes = namespaces.watched_prefixes
    _only_from = namespaces.only_from
    _namespace_added = namespace_added = namespaces.added
    _namespace_gone = namespace_gone = namespaces.gone
    _subscribe_namespace = namespaces.subscribe_namespace

    def _subscribe_tracks(self, conn: Connection, rid: int, prefix: TrackNamespace) -> None:
        conn.accept(rid)
        self.track_subs[(id(conn), rid)] = (conn, rid, prefix)
        for rt in list(self.tracks.values()):
            if rt.state == "live" and rt.track.namespace[: len(prefix)] == prefix and rt.source_conn is not conn:
                self._push(rt, conn)

    # --- fetch and track status ---------------------------------------------------------------
    def _fetch(self, conn: Connection, rid: int, msg: c.Fetch) -> None:
        self.fetcher.handle(conn, rid, msg)

    def _track_status(self, conn: Connection, rid: int, msg: c.TrackStatus) -> None:
        track_status(self, conn, rid, msg)

    # --- shutdown ----------------------------------------------------------------------------
    def add_connection(self, conn: Connection) -> None:
        if conn.is_closed:  # it ended in the loop turn that completed SETUP: on_closed has run already
            return
        self.connections.add(conn)
        self.metrics.sessions_total.inc()
        if self.drain_deadline is not None:  # arrived while draining: tell it to go at once
            left = max(0.0, self.drain_deadline - asyncio.get_running_loop().time())
            conn.send_goaway("", int(left * 1000))

    async def drain(self, timeout: float) -> None:
        """GOAWAY to every session, wait (at most `timeout` s) for them to leave, then close
        the rest with GOAWAY_TIMEOUT (§ GOAWAY)."""
        loop = asyncio.get_running_loop()
        self.drain_deadline = loop.time() + timeout
        for conn in list(self.connections):
            if not conn.is_closed:
                conn.send_goaway("", int(timeout * 1000))
        while any(not conn.is_closed for conn in self.connections):
            if loop.time() >= self.drain_deadline:
                break
            await asyncio.sleep(0.05)
        late = [conn for conn in self.connections if not conn.is_closed]
        for conn in late:
            conn.close(SessionErrorCode.GOAWAY_TIMEOUT, "drain timeout")
        if late:
            await asyncio.sleep(0.2)  # let the closes go out before the endpoint stops
        for task in list(self._tasks):
            task.cancel()
