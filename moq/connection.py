"""asyncio face of one MoQ session: drives the sans-IO `Session` from a transport
adapter and turns its events into awaitables and async iterators.

Incoming requests go to a `RequestHandler` (synchronous callbacks, so the relay's and
publisher's hot paths never wait on the event loop); it answers them with the responder
methods here (accept, reject, accept_subscribe, serve a fetch, namespaces, PUBLISH_DONE).
Without a handler, the peer's requests are refused with NOT_SUPPORTED.

Nobody flushes by hand.  After each transport event the session's actions are carried
out and its events dispatched; writes made from elsewhere (a relay writing an object to
a subscriber's session while it handles the publisher's event) mark the connection
dirty, and every dirty connection is flushed once per event-loop turn, so a burst of
objects costs one pass per connection, not one per object.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

import structlog

from .errors import RequestErrorCode, SessionClosedError, SessionErrorCode, StreamResetCode
from .session import Role, Session, SessionConfig
from .session import events as ev
from .subscription import DEFAULT_QUEUE, FetchResult, ObjectListener, ObjectQueue, ObjectStream, Subscription
from .token import redact
from .transport import base as tb
from .wire import control as c
from .wire.data import EndOfRange, FetchObject
from .wire.types import EMPTY_PARAMETERS, KeyValuePairs, Location, Parameters, TrackNamespace

log = structlog.get_logger(__name__)


class RequestRejectedError(Exception):
    """The peer answered one of our requests with REQUEST_ERROR."""

    def __init__(self, error: c.RequestError) -> None:
        super().__init__(f"request rejected: code={error.error_code:#x} {error.reason}".rstrip())
        self.code = error.error_code
        self.reason = error.reason
        self.error = error


class RequestHandler(Protocol):
    """What a publisher/relay implements to serve the peer's requests."""

    def on_request(self, conn: Connection, event: ev.IncomingRequest) -> None: ...
    def on_cancelled(self, conn: Connection, request_id: int, error_code: int) -> None: ...
    def on_update(self, conn: Connection, event: ev.RequestUpdateReceived) -> None: ...
    def on_closed(self, conn: Connection) -> None: ...


class _Flusher:
    """The dirty connections of one event loop, flushed together once per turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Connection] = []
        self.handle: asyncio.Handle | None = None

    def add(self, conn: Connection) -> None:
        self.dirty.append(conn)
        if self.handle is None:
            self.handle = self.loop.call_soon(self.run)

    def run(self) -> None:
        self.handle = None
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:  # a handler bug: end that session, keep flushing the others
                conn.log.exception("flush_failed")
                try:
                    conn.close(SessionErrorCode.INTERNAL_ERROR, "internal error")
                except Exception:
                    conn.log.exception("close_failed")


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = weakref.WeakKeyDictionary()


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    f = _flushers.get(loop)
    if f is None:
        f = _flushers[loop] = _Flusher(loop)
    return f


class Connection:
    """One MoQ session over a transport session (client or server side)."""

    def __init__(self, transport: tb.TransportSession, *, config: SessionConfig | None = None,
                 handler: RequestHandler | None = None) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        role = Role.CLIENT if transport.is_client else Role.SERVER
        config = config or SessionConfig()
        if transport.is_client and transport.kind == "quic":
            config.path = config.path or transport.path
            config.authority = config.authority or transport.authority
        self.session = Session(role, transport.protocol, transport.open_stream,
                               webtransport=transport.kind == "webtransport", config=config)
        self.handler = handler
        self.log = log.bind(peer=transport.peer, kind=transport.kind)
        self._ready: asyncio.Future[ev.SetupCompleted] = self.loop.create_future()
        self._closed: asyncio.Future[ev.SessionTerminated] = self.loop.create_future()
        self._pending: dict[int, asyncio.Future] = {}  # request_id -> first response
        self._updates: dict[int, asyncio.Future] = {}  # update_id -> answer
        self._eager: dict[int, asyncio.Future] = {}  # request_id -> answer caught before anyone waits
        self._streams: dict[int, ObjectStream] = {}
        self._namespaces: dict[int, asyncio.Queue] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flusher = _flusher(self.loop)
        self._dirty = False  # queued in the flusher for this turn
        self._pumping = False  # inside flush(): new actions are picked up by the same pass
        #: the session's data plane (subgroup streams, datagrams, fetch streams) for the fan-out
        self.data = self.session.data
        self.goaway: ev.GoawayReceived | None = None
        self.session.on_output(self._wake)
        transport.set_handler(self._on_transport_event)
        self.session.start(self.loop.time())
        self.flush()

    # --- lifecycle -------------------------------------------------------------------
    async def ready(self, timeout: float | None = 10.0) -> ev.SetupCompleted:
        return await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def wait_closed(self) -> ev.SessionTerminated:
        return await asyncio.shield(self._closed)

    @property
    def is_closed(self) -> bool:
        return self._closed.done()

    def close(self, error_code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        self.session.close(error_code, reason)
        self.flush()  # now: the caller may stop the endpoint next

    @property
    def closed_info(self) -> ev.SessionTerminated | None:
        """How the session ended (code, reason, by_peer), once it has."""
        return self.session.closed

    async def aclose(self, error_code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        self.close(error_code, reason)
        wait_closed = getattr(self.transport, "wait_closed", None)
        if wait_closed is not None:
            await wait_closed()

    async def __aenter__(self) -> Connection:
        await self.ready()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # --- transport → session ----------------------------------------------------------
    def _on_transport_event(self, e: tb.TransportEvent) -> None:
        s, now = self.session, self.loop.time()
        if isinstance(e, tb.StreamData):
            s.receive_stream_data(e.stream_id, e.data, e.end_stream, now)
        elif isinstance(e, tb.DatagramReceived):
            s.receive_datagram(e.data, now)
        elif isinstance(e, tb.StreamReset):
            s.receive_stream_reset(e.stream_id, e.error_code, now)
        elif isinstance(e, tb.StopSending):
            s.receive_stop_sending(e.stream_id, e.error_code, now)
        elif isinstance(e, tb.SessionClosed):
            s.connection_lost(e.error_code, e.reason)
        self.flush()

    def _wake(self) -> None:
        """The session queued its first action since the last flush."""
        if not self._dirty and not self._pumping:
            self._dirty = True
            self._flusher.add(self)

    def flush(self) -> None:
        """Carry out the session's actions, then dispatch its events, until both are done.
        Runs by itself (after each transport event, and once per loop turn for writes
        made from elsewhere); calling it by hand is never needed."""
        self._dirty = False
        if self._pumping:
            return
        self._pumping = True
        t, s = self.transport, self.session
        try:
            while True:
                actions = s.take_actions()
                for a in actions:
                    if isinstance(a, ev.SendStreamData):
                        t.send_stream_data(a.stream_id, a.data, a.end_stream)
                    elif isinstance(a, ev.ResetStream):
                        t.reset_stream(a.stream_id, a.error_code)
                    elif isinstance(a, ev.StopSending):
                        t.stop_stream(a.stream_id, a.error_code)
                    elif isinstance(a, ev.SendDatagram):
                        if len(a.data) <= t.max_datagram_size():
                            t.send_datagram(a.data)
                    elif isinstance(a, ev.SetStreamPriority):
                        set_priority = getattr(t, "set_priority", None)
                        if set_priority is not None:
                            set_priority(a.stream_id, a.key)
                    elif isinstance(a, ev.CloseSession):
                        t.close(a.error_code, a.reason)
                event = s.next_event()
                if event is None and not actions:
                    break
                while event is not None:
                    self._dispatch(event)
                    event = s.next_event()
        finally:
            self._pumping = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Re-arm the session timer only when its deadline moved (not per flush)."""
        when = None if self.is_closed else self.session.next_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.session.handle_timer(self.loop.time())
        self.flush()

    # --- events ------------------------------------------------------------------------
    def _dispatch(self, e: ev.Event) -> None:
        if isinstance(e, ev.ObjectReceived):
            st = self._streams.get(e.request_id)
            if st is not None:
                st.deliver(e)
        elif isinstance(e, ev.DataStreamEnded):
            st = self._streams.get(e.request_id)
            if isinstance(st, FetchResult):
                self._streams.pop(e.request_id, None)
                st.finish(None if e.reset_code is None else ConnectionResetError(f"fetch stream reset {e.reset_code:#x}"))
            elif isinstance(st, Subscription):
                st.streams_ended += 1
                if e.reset_code is not None:
                    st.resets.append((e.group_id, e.subgroup_id, e.reset_code))
                if st.listener is not None:
                    st.listener.on_stream_end(e)
                st.maybe_finish()
        elif isinstance(e, ev.IncomingRequest):
            if self.handler is None:
                self.session.reject(e.request_id, RequestErrorCode.NOT_SUPPORTED, "not a publisher")
            else:
                self.handler.on_request(self, e)
        elif isinstance(e, (ev.SubscribeAccepted, ev.FetchAccepted, ev.RequestAccepted, ev.RequestRejected)):
            self._response(e)
        elif isinstance(e, ev.PublishDoneReceived):
            st = self._streams.get(e.request_id)
            if isinstance(st, Subscription):
                st.done = e
                st.maybe_finish()
                self.loop.call_later(2.0, st.finish)
        elif isinstance(e, (ev.NamespaceReceived, ev.NamespaceDoneReceived, ev.PublishBlockedReceived)):
            q = self._namespaces.get(e.request_id)
            if q is not None:
                q.put_nowait(e)
        elif isinstance(e, ev.RequestRefused):  # debug: a flood of refusals must not flood the log
            self.log.debug("request_refused", request_id=e.request_id, code=e.error_code, reason=e.reason,
                           request=type(e.message).__name__)
            on_refused = getattr(self.handler, "on_refused", None)
            if on_refused is not None:
                on_refused(self, e)
        elif isinstance(e, ev.DataStreamRefused):
            on_stream_refused = getattr(self.handler, "on_stream_refused", None)
            if on_stream_refused is not None:
                on_stream_refused(self, e)
        elif isinstance(e, ev.RequestCancelled):
            if self.handler is not None:
                self.handler.on_cancelled(self, e.request_id, e.error_code)
        elif isinstance(e, ev.RequestUpdateReceived):
            if self.handler is not None:
                self.handler.on_update(self, e)
            else:
                self.accept_update(e)
        elif isinstance(e, ev.RequestEnded):
            self._fail_request(e.request_id, ConnectionResetError(f"request {e.request_id} ended by peer"))
        elif isinstance(e, ev.GoawayReceived):
            self.goaway = e
            self.log.info("goaway_received", uri=e.new_session_uri, timeout_ms=e.timeout_ms)
        elif isinstance(e, ev.SetupCompleted):
            self.log.info("session_ready", version=e.version, path=redact(e.path), peer_impl=e.peer_implementation)
            if not self._ready.done():
                self._ready.set_result(e)
        elif isinstance(e, ev.SessionTerminated):
            self._terminated(e)

    def _response(self, e) -> None:
        update_id = getattr(e, "update_id", None)
        fut = self._updates.pop(update_id, None) if update_id is not None else self._pending.pop(e.request_id, None)
        if isinstance(e, ev.RequestRejected):
            err = RequestRejectedError(e.error)
            if update_id is None:
                st = self._streams.pop(e.request_id, None)
                if st is not None:
                    st.finish(err)
            if fut is not None and not fut.done():
                fut.set_exception(err)
            return
        if isinstance(e, ev.SubscribeAccepted):
            st = self._streams.get(e.request_id)
            if isinstance(st, Subscription):
                st.track_alias, st.parameters, st.track_properties = e.track_alias, e.parameters, e.track_properties
        if fut is not None and not fut.done():
            fut.set_result(e)

    def _fail_request(self, request_id: int, exc: BaseException) -> None:
        fut = self._pending.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        st = self._streams.pop(request_id, None)
        if st is not None:
            st.finish(None)
        q = self._namespaces.pop(request_id, None)
        if q is not None:
            q.put_nowait(None)

    def _terminated(self, e: ev.SessionTerminated) -> None:
        exc = SessionClosedError(e.error_code, e.reason)
        self.log.info("session_closed", code=e.error_code, reason=e.reason, by_peer=e.by_peer)
        if not self._ready.done():
            self._ready.set_exception(exc)
            self._ready.exception()  # mark retrieved
        for fut in [*self._pending.values(), *self._updates.values()]:
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        self._updates.clear()
        self._eager.clear()
        for st in self._streams.values():
            st.finish(None if e.error_code == SessionErrorCode.NO_ERROR else exc)
        self._streams.clear()
        for q in self._namespaces.values():
            q.put_nowait(None)
        if self.handler is not None:
            self.handler.on_closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if not self._closed.done():
            self._closed.set_result(e)

    # --- requests (we are the requester) -------------------------------------------------
    async def wait_response(self, request_id: int, timeout: float | None = 10.0):
        """The first answer to one of our requests (SUBSCRIBE_OK, PUBLISH_OK, FETCH_OK,
        REQUEST_OK) as its event; RequestRejectedError for REQUEST_ERROR.  On timeout the
        request is cancelled."""
        fut = self._eager.pop(request_id, None)
        if fut is None:
            fut = self._pending.get(request_id)
        if fut is None:
            fut = self._pending[request_id] = self.loop.create_future()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._pending.pop(request_id, None)
            self.session.cancel(request_id)
            raise

    def _expect(self, request_id: int) -> None:
        """Catch the answer to a request from now on, even if nobody waits for it yet."""
        fut = self._pending[request_id] = self.loop.create_future()
        self._eager[request_id] = fut

    def _check_open(self) -> None:
        if self.is_closed:
            raise SessionClosedError(self._closed.result().error_code, self._closed.result().reason)

    async def subscribe(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = EMPTY_PARAMETERS,
                        *, timeout: float | None = 10.0, queue_size: int = DEFAULT_QUEUE,
                        listener: ObjectListener | None = None) -> Subscription:
        """SUBSCRIBE and wait for SUBSCRIBE_OK; iterate the result for objects (or give a
        `listener` that gets them synchronously)."""
        self._check_open()
        rid = self.session.subscribe(namespace, name, parameters)
        sub = Subscription(self, rid, ObjectQueue(queue_size), listener=listener)
        self._streams[rid] = sub
        await self.wait_response(rid, timeout)
        return sub

    async def fetch(self, namespace: TrackNamespace, name: bytes, start: Location, end: Location,
                    parameters: Parameters = EMPTY_PARAMETERS, *, timeout: float | None = 10.0) -> FetchResult:
        """Standalone FETCH of [start, end) (end.object 0 = whole end group); iterate objects."""
        msg = c.Fetch(0, c.FetchType.STANDALONE, c.StandaloneFetch(namespace, name, start, end), None, parameters)
        return await self._fetch(msg, timeout)

    async def joining_fetch(self, subscription: Subscription, groups_back: int = 0, *, absolute: bool = False,
                            parameters: Parameters = EMPTY_PARAMETERS, timeout: float | None = 10.0) -> FetchResult:
        """Objects before a subscription's start: the last `groups_back` groups (relative),
        or from group `groups_back` (absolute)."""
        ftype = c.FetchType.ABSOLUTE_JOINING if absolute else c.FetchType.RELATIVE_JOINING
        msg = c.Fetch(0, ftype, None, c.JoiningFetch(subscription.request_id, groups_back), parameters)
        return await self._fetch(msg, timeout)

    async def _fetch(self, msg: c.Fetch, timeout: float | None) -> FetchResult:
        self._check_open()
        rid = self.session.fetch(msg)
        res = FetchResult(self, rid)
        self._streams[rid] = res
        ok: ev.FetchAccepted = await self.wait_response(rid, timeout)
        res.end_of_track, res.end_location = ok.message.end_of_track, ok.message.end_location
        return res

    async def track_status(self, namespace: TrackNamespace, name: bytes, *, timeout: float | None = 10.0
                           ) -> ev.RequestAccepted:
        self._check_open()
        return await self.wait_response(self.session.track_status(namespace, name), timeout)

    def start_publish_namespace(self, namespace: TrackNamespace, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        """Send PUBLISH_NAMESPACE without waiting; `wait_response(rid)` gets the answer."""
        self._check_open()
        rid = self.session.publish_namespace(namespace, parameters)
        self._expect(rid)
        return rid

    async def publish_namespace(self, namespace: TrackNamespace, parameters: Parameters = EMPTY_PARAMETERS, *,
                                timeout: float | None = 10.0) -> int:
        """PUBLISH_NAMESPACE and wait for REQUEST_OK; returns the request id (cancel() withdraws)."""
        rid = self.start_publish_namespace(namespace, parameters)
        await self.wait_response(rid, timeout)
        return rid

    def publish(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = EMPTY_PARAMETERS,
                track_properties: KeyValuePairs = ()) -> int:
        """Send PUBLISH (push a track) without waiting; `wait_response(rid)` gets PUBLISH_OK."""
        self._check_open()
        rid = self.session.publish(namespace, name, parameters, track_properties)
        self._expect(rid)
        return rid

    async def subscribe_namespace(self, prefix: TrackNamespace, *, timeout: float | None = 10.0
                                  ) -> tuple[int, asyncio.Queue]:
        """SUBSCRIBE_NAMESPACE; the queue yields NamespaceReceived/NamespaceDoneReceived, None at the end."""
        self._check_open()
        rid = self.session.subscribe_namespace(prefix)
        q: asyncio.Queue = asyncio.Queue()
        self._namespaces[rid] = q
        await self.wait_response(rid, timeout)
        return rid, q

    async def request_update(self, request_id: int, parameters: Parameters, *, timeout: float | None = 10.0
                             ) -> ev.RequestAccepted:
        uid = self.session.request_update(request_id, parameters)
        fut = self.loop.create_future()
        self._updates[uid] = fut
        return await asyncio.wait_for(fut, timeout)

    def cancel(self, request_id: int, error_code: int = StreamResetCode.CANCELLED) -> None:
        self.session.cancel(request_id, error_code)
        self._streams.pop(request_id, None)

    def send_goaway(self, new_session_uri: str = "", timeout_ms: int = 0) -> None:
        self.session.goaway(new_session_uri, timeout_ms)

    # --- answering the peer's requests (from a RequestHandler) ------------------------------
    def is_live(self, request_id: int) -> bool:
        """The request is still open (not answered with an error, cancelled or finished)."""
        return not self.is_closed and self.session.has_request(request_id)

    def accept(self, request_id: int, parameters: Parameters = EMPTY_PARAMETERS,
               track_properties: KeyValuePairs = ()) -> None:
        """REQUEST_OK for TRACK_STATUS, PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS."""
        self.session.accept(request_id, parameters, track_properties)

    def reject(self, request_id: int, error_code: int, reason: str = "") -> None:
        """REQUEST_ERROR for a peer request not yet answered."""
        self.session.reject(request_id, error_code, reason)

    def accept_subscribe(self, request_id: int, *, largest: Location | None = None, expires: int | None = None,
                         track_properties: KeyValuePairs = ()) -> int:
        """SUBSCRIBE_OK; returns the Track Alias of the subscription's objects."""
        return self.session.accept_subscribe(request_id, largest=largest, expires=expires,
                                             track_properties=track_properties)

    def accept_publish(self, request_id: int, parameters: Parameters = EMPTY_PARAMETERS,
                       queue_size: int = DEFAULT_QUEUE, listener: ObjectListener | None = None) -> Subscription:
        """Accept an incoming PUBLISH (from a handler) and get its objects as a Subscription."""
        req = self.session.request(request_id)
        sub = Subscription(self, request_id, ObjectQueue(queue_size), listener=listener,
                           track_alias=req.track_alias or 0,
                           parameters=req.parameters, track_properties=req.message.track_properties)  # type: ignore[attr-defined]
        self._streams[request_id] = sub
        self.session.accept_publish(request_id, parameters)
        return sub

    def accept_fetch(self, request_id: int, end_location: Location, *, end_of_track: bool = False,
                     track_properties: KeyValuePairs = ()) -> None:
        """FETCH_OK, then open the fetch stream: follow with send_fetch_object / end_fetch."""
        self.session.accept_fetch(request_id, end_location, end_of_track=end_of_track,
                                  track_properties=track_properties)
        self.data.open_fetch_stream(request_id)

    def send_fetch_object(self, request_id: int, item: FetchObject | EndOfRange) -> None:
        self.data.send_fetch_object(request_id, item)

    def end_fetch(self, request_id: int) -> None:
        """FIN the fetch stream: the fetch is complete."""
        self.data.end_fetch_stream(request_id)

    def send_namespace(self, request_id: int, suffix: TrackNamespace, done: bool = False) -> None:
        """NAMESPACE (or NAMESPACE_DONE) on a SUBSCRIBE_NAMESPACE we accepted."""
        self.session.send_namespace(request_id, suffix, done)

    def publish_done(self, request_id: int, status_code: int, reason: str = "") -> None:
        """End a subscription we publish (PUBLISH_DONE)."""
        self.session.publish_done(request_id, status_code, reason)

    def accept_update(self, event: ev.RequestUpdateReceived) -> None:
        """Accept a peer's REQUEST_UPDATE and record its effect (forward state, priority)."""
        self.session.accept_update(event.update_id)
        self.session.apply_update(event.request_id, event.parameters)


__all__ = ["DEFAULT_QUEUE", "Connection", "FetchResult", "ObjectListener", "ObjectQueue", "ObjectStream",
           "RequestHandler", "RequestRejectedError", "Subscription"]
