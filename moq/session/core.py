"""The sans-IO MoQT session (§ Sessions, § Control Messages): control streams, SETUP,
request streams, track aliases, GOAWAY and closing.  Objects are in `dataplane.py`.

Inputs are method calls carrying bytes and `now`; outputs are `take_actions()` for the
transport adapter and `next_event()` for the application.  A peer's bad input becomes
a `SessionError` that closes the session with the draft's code, or a REQUEST_ERROR
for that one request; it never escapes to the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .. import versions
from ..errors import (
    DuplicateTrackAlias,
    InvalidRequestId,
    LocalUsageError,
    MoQError,
    NeedMoreData,
    ProtocolViolation,
    RequestErrorCode,
    SessionError,
    SessionErrorCode,
    StreamResetCode,
    VersionNegotiationFailed,
)
from ..wire import control as c
from ..wire.control import SetupOption
from ..wire.framing import ControlStreamOpened, MessageDecoder
from ..wire.path import check_path
from ..wire.types import EMPTY_PARAMETERS, AliasType, KeyValuePairs, Token, TrackNamespace
from ..wire.varint import decode_varint
from . import events as ev
from .commands import DEFAULT_PUBLISHER_PRIORITY, RequestCommands
from .dataplane import DataPlane
from .outbox import Outbox
from .requests import KIND_OF, Kind, Request, State, end_before_start, prefixes_overlap

MANDATORY_PROPERTY_RANGE = range(0x4000, 0x8000)
PRIORITY_CONTROL = (0,)
LEGACY_SETUP_TYPES = (0x20, 0x21, 0x40, 0x41)  # CLIENT_/SERVER_SETUP of drafts <= 16
MAX_PENDING_REQUEST_STREAMS = 64  # peer request streams whose first message is still incomplete
#: bytes one held chunk of early data counts for beyond its length: 1-byte STREAM frames before
#: SETUP were held 80x over (200 kB -> 16 MB) with only their bytes counted
EARLY_ITEM_COST = 100


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class SessionConfig:
    implementation: str = versions.IMPLEMENTATION
    path: str = ""  # client on raw QUIC: PATH option (path-abempty [? query])
    authority: str = ""  # client on raw QUIC: AUTHORITY option
    auth_token: bytes | None = None  # sent as SETUP's AUTHORIZATION TOKEN option (USE_VALUE, type 0)
    max_incoming_requests: int = 10_000  # concurrently open peer requests
    alias_wait: float = 2.0  # seconds to hold a data stream whose track alias is unknown
    max_alias_wait_bytes: int = 4 << 20
    max_object_size: int | None = None  # larger incoming objects: stream stopped with EXCESSIVE_LOAD
    publish_ok_type: type = c.PublishOk  # 0x1E per the Message Types table


class Session(RequestCommands):
    """One MoQT session.  `open_stream(unidirectional) -> stream_id` comes from the
    transport adapter: it only allocates an id (pure bookkeeping, no I/O)."""

    def __init__(
        self,
        role: Role,
        version: str,
        open_stream: Callable[[bool], int],
        *,
        webtransport: bool = False,
        config: SessionConfig | None = None,
    ) -> None:
        self.role = role
        self.version = version
        self.webtransport = webtransport
        self.config = config or SessionConfig()
        self._open_stream = open_stream
        self._actions = Outbox()
        self._events: deque[ev.Event] = deque()
        self.closed: ev.SessionTerminated | None = None
        self.setup_sent = False
        self.peer_setup: c.Setup | None = None
        self.path = self.config.path
        self.authority = self.config.authority
        self._control_out: int | None = None
        self._control_in: int | None = None
        self._next_request_id = 0 if role is Role.CLIENT else 1
        self._peer_parity = 1 if role is Role.CLIENT else 0
        self._peer_ids_seen: set[int] = set()
        self._peer_id_floor = self._peer_parity  # every peer ID below this was seen
        self._requests: dict[int, Request] = {}  # request_id -> request
        self._by_stream: dict[int, Request] = {}  # bidi stream id -> request
        self._update_owner: dict[int, Request] = {}  # REQUEST_UPDATE id -> request
        self._pending_bidi: dict[int, MessageDecoder] = {}  # peer bidi streams before the first message
        self._retired: set[int] = set()  # finished peer request streams: late bytes are ignored
        self._retired_order: deque[int] = deque()
        self._early: list[tuple] = []  # peer streams that arrived before its SETUP (bounded)
        self._early_bytes = 0
        self._probe: dict[int, bytes] = {}  # unidirectional streams whose type varint is incomplete
        self._goaway_sent_id: int | None = None
        self.goaway_received: ev.GoawayReceived | None = None
        self._next_alias = 0
        self.data = DataPlane(self._actions, self._events.append, self._requests, open_stream, self.config,
                              self._fetch_done)

    # --- plumbing ----------------------------------------------------------------
    def take_actions(self) -> list[ev.Action]:
        return self._actions.take()

    def on_output(self, wake: Callable[[], None] | None) -> None:
        """Call `wake()` whenever an action is queued while none were pending (an adapter
        schedules one flush for a burst of writes)."""
        self._actions.wake = wake

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def _emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _send(self, stream_id: int, data: bytes | memoryview, end: bool = False) -> None:
        self._actions.append(ev.SendStreamData(stream_id, data, end))

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id & 1) == (0 if self.role is Role.CLIENT else 1)

    def _guard(self, fn, *args) -> None:
        """Run an input handler; a peer's violation closes the session."""
        if self.closed is not None:
            return
        try:
            fn(*args)
        except SessionError as exc:
            self._close(exc.code, exc.reason or type(exc).__name__, by_peer=False)

    # --- lifecycle ---------------------------------------------------------------
    def start(self, now: float = 0.0) -> None:
        """Open our control stream and send SETUP (§ Session initialization)."""
        if self.setup_sent:
            raise LocalUsageError("session already started")
        if versions.draft_for_alpn(self.version) is None:
            self._close(SessionErrorCode.VERSION_NEGOTIATION_FAILED, f"unsupported version {self.version!r}")
            return
        options: list[tuple[int, int | bytes]] = [(SetupOption.MOQT_IMPLEMENTATION, self.config.implementation.encode())]
        if self.role is Role.CLIENT and not self.webtransport:
            options.append((SetupOption.PATH, self.config.path.encode()))
            if self.config.authority:
                options.append((SetupOption.AUTHORITY, self.config.authority.encode()))
        if self.config.auth_token:
            token = Token(AliasType.USE_VALUE, token_type=0, value=self.config.auth_token)
            options.append((SetupOption.AUTHORIZATION_TOKEN, token.encode()))
        self._control_out = self._open_stream(True)
        self._actions.append(ev.SetStreamPriority(self._control_out, PRIORITY_CONTROL))
        self._send(self._control_out, c.Setup(tuple(options)).encode())
        self.setup_sent = True
        self._maybe_ready()

    def close(self, error_code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        if self.closed is None:
            self._close(error_code, reason, by_peer=False)

    def _close(self, code: int, reason: str, by_peer: bool = False) -> None:
        if self.closed is not None:
            return
        self.closed = ev.SessionTerminated(int(code), reason, by_peer)
        if not by_peer:
            self._actions.append(ev.CloseSession(int(code), reason))
        self._emit(self.closed)

    def connection_lost(self, error_code: int, reason: str = "") -> None:
        """The transport is gone (peer close, idle timeout, ...)."""
        self._close(error_code, reason, by_peer=True)

    @property
    def ready(self) -> bool:
        return self.setup_sent and self.peer_setup is not None and self.closed is None

    def _maybe_ready(self) -> None:
        if not self.ready:
            return
        impl = self.peer_setup.option(SetupOption.MOQT_IMPLEMENTATION, b"")  # type: ignore[union-attr]
        impl = impl.decode("utf-8", "replace") if isinstance(impl, bytes) else ""
        self._emit(ev.SetupCompleted(self.version, self.path, self.authority, impl))
        early, self._early, self._early_bytes = self._early, [], 0
        for args in early:
            self._guard(self._stream_data, *args)

    # --- transport inputs ----------------------------------------------------------
    def receive_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False, now: float = 0.0) -> None:
        self._guard(self._stream_data, stream_id, data, end_stream, now)

    def receive_stream_reset(self, stream_id: int, error_code: int, now: float = 0.0) -> None:
        self._guard(self._stream_reset, stream_id, error_code)

    def receive_stop_sending(self, stream_id: int, error_code: int, now: float = 0.0) -> None:
        self._guard(self._stop_sending, stream_id, error_code)

    def receive_datagram(self, data: bytes, now: float = 0.0) -> None:
        if self.ready:
            self._guard(self.data.receive_datagram, data, now)

    def handle_timer(self, now: float) -> None:
        self._guard(self.data.expire, now)

    def next_timer(self) -> float | None:
        return self.data.next_timer()

    def _stream_data(self, sid: int, data: bytes, fin: bool, now: float) -> None:
        if sid & 2:  # unidirectional
            if self._is_local(sid):
                raise ProtocolViolation("data on our own unidirectional stream")
            if sid == self._control_in:
                self._control_messages(self.data.feed_control(sid, data, fin))
                return
            if self.peer_setup is None and not self.data.is_known(sid):
                self._early_or_control(sid, data, fin, now)
                return
            self.data.receive_uni(sid, data, fin, now)
            return
        req = self._by_stream.get(sid)
        if req is None and (self._is_local(sid) or sid in self._retired):
            return  # a request we already forgot; late bytes are harmless
        if req is None:
            if self.peer_setup is None:
                if len(data) and data[0] in LEGACY_SETUP_TYPES and sid in (0, 1):
                    raise VersionNegotiationFailed("peer speaks an older draft (CLIENT_SETUP on a bidi stream)")
                self._hold_early(sid, data, fin, now)
                return
            self._new_peer_stream(sid, data, fin)
            return
        self._request_stream(req, data, fin)

    def _early_or_control(self, sid: int, data: bytes, fin: bool, now: float) -> None:
        """Before the peer's SETUP only its control stream is processed; the rest waits."""
        if self._control_in is None and not any(a[0] == sid for a in self._early):
            data = self._probe.pop(sid, b"") + bytes(data)
            try:
                decode_varint(data, 0)
            except NeedMoreData:  # the stream type is still incomplete: wait for more
                if not fin:
                    self._probe[sid] = data
                    return
            out = self.data.feed_first(sid, data, fin)
            if out and isinstance(out[0], ControlStreamOpened):
                self._control_in = sid
                self._control_messages(out[1:])
                return
            self.data.forget(sid)
        self._hold_early(sid, data, fin, now)

    def _hold_early(self, sid: int, data: bytes, fin: bool, now: float) -> None:
        self._early_bytes += len(data) + EARLY_ITEM_COST
        if self._early_bytes > self.config.max_alias_wait_bytes:
            raise ProtocolViolation("too much data before SETUP")
        self._early.append((sid, data, fin, now))

    # --- control stream ------------------------------------------------------------
    def _control_messages(self, messages: list) -> None:
        for msg in messages:
            if isinstance(msg, ControlStreamOpened):
                continue
            if self.peer_setup is None:
                if not isinstance(msg, c.Setup):
                    raise ProtocolViolation("first control message is not SETUP")
                self._receive_setup(msg)
            elif isinstance(msg, c.Setup):
                raise ProtocolViolation("second SETUP")
            elif isinstance(msg, c.GoAway):
                self._receive_goaway(msg)
            else:
                raise ProtocolViolation(f"{type(msg).__name__} is not allowed on the control stream")

    def _receive_setup(self, msg: c.Setup) -> None:
        path = msg.option(SetupOption.PATH)
        authority = msg.option(SetupOption.AUTHORITY)
        if self.role is Role.CLIENT or self.webtransport:
            if path is not None:
                raise SessionError("PATH option not allowed here", SessionErrorCode.INVALID_PATH)
            if authority is not None:
                raise SessionError("AUTHORITY option not allowed here", SessionErrorCode.INVALID_AUTHORITY)
        else:
            if isinstance(path, bytes):
                bad = check_path(path) if path else None  # the same rule as a WebTransport :path
                if bad is not None:
                    raise SessionError(f"malformed PATH: {bad[1]}", SessionErrorCode.MALFORMED_PATH)
                self.path = path.decode("ascii")
            if isinstance(authority, bytes):
                text = authority.decode("ascii", "replace")
                if not text or any(ch in text for ch in "/ ?#\ufffd"):
                    raise SessionError(f"malformed AUTHORITY {text!r}", SessionErrorCode.MALFORMED_AUTHORITY)
                self.authority = text
        self.peer_setup = msg
        self._maybe_ready()

    def _receive_goaway(self, msg: c.GoAway, req: Request | None = None) -> None:
        if req is None:
            if self.goaway_received is not None:
                raise ProtocolViolation("second GOAWAY on the control stream")
            if self.role is Role.SERVER and msg.new_session_uri:
                raise ProtocolViolation("client sent a GOAWAY with a New Session URI")
            if msg.request_id is not None and (msg.request_id & 1) != (self._next_request_id & 1):
                raise InvalidRequestId("GOAWAY Request ID has the wrong parity")
        else:
            if req.goaway_seen:
                raise ProtocolViolation("second GOAWAY on a request stream")
            req.goaway_seen = True
        event = ev.GoawayReceived(msg.new_session_uri.decode("utf-8", "replace"), msg.timeout, msg.request_id)
        if req is None:
            self.goaway_received = event
        self._emit(event)

    def goaway(self, new_session_uri: str = "", timeout_ms: int = 0) -> None:
        """Tell the peer we will close soon; later peer requests get GOING_AWAY.  Only the
        first call sends: a second GOAWAY on the control stream is a PROTOCOL_VIOLATION."""
        if self._control_out is None or self.closed is not None or self._goaway_sent_id is not None:
            return
        if self.role is Role.CLIENT and new_session_uri:
            raise LocalUsageError("a client's GOAWAY carries no URI")
        self._goaway_sent_id = self._peer_id_floor
        msg = c.GoAway(new_session_uri.encode(), timeout_ms, self._goaway_sent_id)
        self._send(self._control_out, msg.encode())

    # --- request streams: peer-initiated ---------------------------------------------
    def _new_peer_stream(self, sid: int, data: bytes, fin: bool) -> None:
        dec = self._pending_bidi.get(sid)
        if dec is None:
            if len(data) and data[0] in LEGACY_SETUP_TYPES and sid in (0, 1):
                raise VersionNegotiationFailed("peer speaks an older draft (CLIENT_SETUP on a bidi stream)")
            if len(self._pending_bidi) >= MAX_PENDING_REQUEST_STREAMS:  # each may buffer a 64 KiB message
                self._retire(sid)
                self._actions.append(ev.StopSending(sid, StreamResetCode.EXCESSIVE_LOAD))
                self._actions.append(ev.ResetStream(sid, StreamResetCode.EXCESSIVE_LOAD))
                return
            dec = self._pending_bidi[sid] = MessageDecoder()
        messages = dec.feed(data)
        if not messages:
            if fin:
                del self._pending_bidi[sid]
                dec.check_fin()
            return
        del self._pending_bidi[sid]
        first, rest = messages[0], messages[1:]
        kind = KIND_OF.get(type(first))
        if kind is None:
            raise ProtocolViolation(f"{type(first).__name__} cannot open a request stream")
        self._check_peer_request_id(first.request_id)  # type: ignore[attr-defined]
        req = Request(first.request_id, kind, sid, outgoing=False, message=first)  # type: ignore[attr-defined]
        req.decoder = dec
        self._requests[req.request_id] = req
        self._by_stream[sid] = req
        self._admit(req)
        self._dispatch(req, rest)
        if fin:
            self._peer_fin(req)

    def _check_peer_request_id(self, rid: int) -> None:
        if (rid & 1) != self._peer_parity:
            raise InvalidRequestId(f"request ID {rid} has the wrong parity")
        if rid < self._peer_id_floor or rid in self._peer_ids_seen:
            raise InvalidRequestId(f"duplicate request ID {rid}")
        self._peer_ids_seen.add(rid)
        while self._peer_id_floor in self._peer_ids_seen:
            self._peer_ids_seen.discard(self._peer_id_floor)
            self._peer_id_floor += 2

    def _admit(self, req: Request) -> None:
        """Checks the session itself answers; the rest goes to the application."""
        msg = req.message
        name = req.full_track_name()
        ns = name[0] if name else getattr(msg, "track_namespace", None) or getattr(msg, "track_namespace_prefix", ())
        reject = None
        if self._goaway_sent_id is not None:
            reject = (RequestErrorCode.GOING_AWAY, "going away")
        elif sum(1 for r in self._requests.values() if not r.outgoing) > self.config.max_incoming_requests:
            reject = (RequestErrorCode.EXCESSIVE_LOAD, "too many requests")
        elif ns and ns[0] in (b".", b".session"):
            reject = (RequestErrorCode.DOES_NOT_EXIST, "reserved namespace")
        elif req.kind in (Kind.SUBSCRIBE, Kind.PUBLISH) and self._duplicate_subscription(req):
            reject = (RequestErrorCode.DUPLICATE_SUBSCRIPTION, "already subscribed to this track")
        elif req.kind in (Kind.SUBSCRIBE_NAMESPACE, Kind.SUBSCRIBE_TRACKS) and self._prefix_overlap(req, ns):
            reject = (RequestErrorCode.PREFIX_OVERLAP, "prefix overlaps an existing subscription")
        elif req.kind is Kind.FETCH and msg.joining is not None:  # type: ignore[attr-defined]
            joined = self._requests.get(msg.joining.joining_request_id)  # type: ignore[attr-defined]
            if joined is None or joined.outgoing or joined.kind is not Kind.SUBSCRIBE or joined.state is State.DONE:
                reject = (RequestErrorCode.INVALID_JOINING_REQUEST_ID, "no such subscription")
            elif joined.forward == 0:
                reject = (RequestErrorCode.INVALID_RANGE, "forward 0")
        if req.kind is Kind.PUBLISH:
            self._register_alias(req, msg.track_alias, msg.track_properties)  # type: ignore[attr-defined]
            req.forward = msg.parameters.forward if msg.parameters.forward is not None else 1  # type: ignore[attr-defined]
            req.largest = msg.parameters.largest_object  # type: ignore[attr-defined]
            if reject is None and self._unknown_mandatory(msg.track_properties):  # type: ignore[attr-defined]
                reject = (RequestErrorCode.UNSUPPORTED_EXTENSION, "unknown mandatory track property")
        if req.kind is Kind.SUBSCRIBE:
            req.forward = msg.parameters.forward if msg.parameters.forward is not None else 1  # type: ignore[attr-defined]
        req.parameters = getattr(msg, "parameters", EMPTY_PARAMETERS)
        if reject is not None:
            self.reject(req.request_id, reject[0], reject[1])
            self._emit(ev.RequestRefused(req.request_id, int(reject[0]), reject[1], msg))
            return
        event_type = {
            Kind.SUBSCRIBE: ev.SubscribeRequested,
            Kind.PUBLISH: ev.PublishRequested,
            Kind.FETCH: ev.FetchRequested,
            Kind.TRACK_STATUS: ev.TrackStatusRequested,
            Kind.PUBLISH_NAMESPACE: ev.PublishNamespaceRequested,
            Kind.SUBSCRIBE_NAMESPACE: ev.SubscribeNamespaceRequested,
            Kind.SUBSCRIBE_TRACKS: ev.SubscribeTracksRequested,
        }[req.kind]
        self._emit(event_type(req.request_id, msg))
        if req.kind is Kind.PUBLISH:
            self.data.alias_ready(msg.track_alias)

    def _duplicate_subscription(self, req: Request) -> bool:
        name = req.full_track_name()
        return any(
            r is not req and r.is_subscription and r.we_publish == req.we_publish and r.state is not State.DONE
            and r.full_track_name() == name
            for r in self._requests.values()
        )

    def _prefix_overlap(self, req: Request, prefix: TrackNamespace) -> bool:
        return any(
            r is not req and r.kind is req.kind and not r.outgoing and r.state is State.ESTABLISHED
            and prefixes_overlap(r.message.track_namespace_prefix, prefix)  # type: ignore[attr-defined]
            for r in self._requests.values()
        )

    @staticmethod
    def _unknown_mandatory(props: KeyValuePairs) -> bool:
        return any(k in MANDATORY_PROPERTY_RANGE for k, _ in props)

    def _register_alias(self, req: Request, alias: int, props: KeyValuePairs) -> None:
        other = self.data.alias_owner(alias)
        if other is not None and other is not req and other.full_track_name() != req.full_track_name():
            raise DuplicateTrackAlias(f"track alias {alias} already in use")
        req.track_alias = alias
        prio = next((v for k, v in props if k == DEFAULT_PUBLISHER_PRIORITY and isinstance(v, int)), 128)
        req.default_priority = min(int(prio), 255)
        self.data.bind_alias(alias, req)

    # --- request streams: messages ---------------------------------------------------
    def _request_stream(self, req: Request, data: bytes, fin: bool) -> None:
        self._dispatch(req, req.decoder.feed(data))
        if fin:
            req.decoder.check_fin()
            self._peer_fin(req)

    def _dispatch(self, req: Request, messages: list) -> None:
        for msg in messages:
            if req.state is State.DONE and req.request_id not in self._requests:
                return
            allowed = req.allowed_from_peer()
            if not isinstance(msg, allowed):
                raise ProtocolViolation(f"{type(msg).__name__} not allowed on a {req.kind.value} stream now")
            if isinstance(msg, c.GoAway):
                self._receive_goaway(msg, req)
            elif isinstance(msg, c.RequestUpdate):
                self._check_peer_request_id(msg.request_id)
                if req.send_closed:  # we ended the request (PUBLISH_DONE crossed it): no answer possible
                    continue
                self._update_owner[msg.request_id] = req
                req.updates_in_flight.append(msg.request_id)
                self._emit(ev.RequestUpdateReceived(req.request_id, msg.request_id, msg.parameters))
            elif req.outgoing and not req.responded:
                req.responded = True
                self._first_response(req, msg)
            elif isinstance(msg, (c.RequestOk, c.RequestError)):
                self._update_answer(req, msg)
            elif isinstance(msg, c.PublishDone):
                req.state = State.DONE
                self._emit(ev.PublishDoneReceived(req.request_id, msg.status_code, msg.stream_count, msg.reason))
            elif isinstance(msg, c.Namespace):
                req.namespaces.add(msg.track_namespace_suffix)
                self._emit(ev.NamespaceReceived(req.request_id, msg.track_namespace_suffix))
            elif isinstance(msg, c.NamespaceDone):
                if msg.track_namespace_suffix not in req.namespaces:
                    raise ProtocolViolation("NAMESPACE_DONE before NAMESPACE")
                req.namespaces.discard(msg.track_namespace_suffix)
                self._emit(ev.NamespaceDoneReceived(req.request_id, msg.track_namespace_suffix))
            elif isinstance(msg, c.PublishBlocked):
                self._emit(ev.PublishBlockedReceived(req.request_id, msg.track_namespace_suffix, msg.track_name))

    def _first_response(self, req: Request, msg: c.Message) -> None:
        """The responder's first answer.  What closes the session here is what the draft says
        MUST close it (a Redirect's Connect URI to a server or Track Name for a namespace
        request, a SUBSCRIBE_OK reusing another track's alias, FETCH_OK End before Start, Track
        Properties in a REQUEST_OK); anything the draft leaves to us ends only the request (an
        unknown mandatory track property).  A relay keeps a downstream peer from provoking the
        former from a conforming publisher by validating requests before forwarding them."""
        rid = req.request_id
        if isinstance(msg, c.RequestError):
            rd = msg.redirect  # § Redirect Structure
            if rd is not None and self.role is Role.SERVER and rd.connect_uri:
                raise ProtocolViolation("Redirect with a Connect URI sent to a server")
            if rd is not None and rd.track_name and req.kind in (Kind.SUBSCRIBE_NAMESPACE, Kind.PUBLISH_NAMESPACE):
                raise ProtocolViolation("Redirect with a Track Name for a namespace request")
            self._finish(req)
            self._emit(ev.RequestRejected(rid, msg))
            return
        req.state = State.ESTABLISHED
        if isinstance(msg, c.SubscribeOk):
            req.largest = msg.parameters.largest_object
            self._register_alias(req, msg.track_alias, msg.track_properties)
            if self._unknown_mandatory(msg.track_properties):
                self.cancel(rid)
                err = c.RequestError(RequestErrorCode.UNSUPPORTED_EXTENSION, 0, "unknown mandatory track property")
                self._emit(ev.RequestRejected(rid, err))
                return
            self._emit(ev.SubscribeAccepted(rid, msg.track_alias, msg.parameters, msg.track_properties))
            self.data.alias_ready(msg.track_alias)
        elif isinstance(msg, c.FetchOk):
            f = req.message
            # § FETCH_OK: MUST close the session (a relay never forwards such a FETCH, so a
            # downstream peer cannot provoke this from a conforming publisher)
            if f.standalone is not None and end_before_start(f.standalone.start, msg.end_location):  # type: ignore[attr-defined]
                raise ProtocolViolation("FETCH_OK End Location before the Start Location")
            self._emit(ev.FetchAccepted(rid, msg))
        else:  # REQUEST_OK or PUBLISH_OK
            if msg.track_properties and req.kind is not Kind.TRACK_STATUS:
                raise ProtocolViolation("Track Properties in a REQUEST_OK that must have none")
            if req.kind is Kind.PUBLISH:
                params = msg.parameters  # type: ignore[attr-defined]
                req.parameters = req.parameters.merged(params)  # the subscriber's choices in PUBLISH_OK
                if params.forward is not None:
                    req.forward = params.forward
                if params.group_order is not None:
                    req.group_order = params.group_order
            self._emit(ev.RequestAccepted(rid, msg.parameters, msg.track_properties))  # type: ignore[attr-defined]
            if req.kind is Kind.TRACK_STATUS:
                self._finish(req)

    def _update_answer(self, req: Request, msg: c.RequestOk | c.RequestError) -> None:
        if not req.updates_in_flight:
            raise ProtocolViolation("response without an outstanding REQUEST_UPDATE")
        if isinstance(msg, c.RequestOk) and msg.track_properties:
            raise ProtocolViolation("Track Properties in REQUEST_UPDATE_OK")
        uid = req.updates_in_flight.popleft()
        self._update_owner.pop(uid, None)
        if isinstance(msg, c.RequestError):
            self._emit(ev.RequestRejected(req.request_id, msg, update_id=uid))
        else:
            self._emit(ev.RequestAccepted(req.request_id, msg.parameters, msg.track_properties, update_id=uid))

    def _peer_fin(self, req: Request) -> None:
        req.recv_closed = True
        if not req.outgoing and req.kind in (Kind.SUBSCRIBE_NAMESPACE, Kind.SUBSCRIBE_TRACKS):
            self._cancelled_by_peer(req, StreamResetCode.CANCELLED)
        elif (req.outgoing and req.state is not State.DONE and req.kind is not Kind.SUBSCRIBE
              and not (req.kind is Kind.FETCH and req.responded)):  # a fetch lives on in its data stream
            self._finish(req)
            self._emit(ev.RequestEnded(req.request_id, None))
        elif req.send_closed and not (req.outgoing and req.kind is Kind.FETCH and req.state is not State.DONE):
            self._forget(req)  # (a fetch whose data stream is still arriving is forgotten when it ends)

    def _stream_reset(self, sid: int, code: int) -> None:
        if sid == self._control_in:
            raise ProtocolViolation("control stream reset")
        if sid & 2:
            self.data.receive_reset(sid, code)
            return
        if sid == self._control_in:
            raise ProtocolViolation("control stream reset")
        self._pending_bidi.pop(sid, None)
        req = self._by_stream.get(sid)
        if req is not None:
            self._cancelled_by_peer(req, code)

    def _stop_sending(self, sid: int, code: int) -> None:
        if sid == self._control_out:
            raise ProtocolViolation("STOP_SENDING on the control stream")
        req = self._by_stream.get(sid)
        if req is None:
            self.data.receive_stop_sending(sid, code)
        elif req.outgoing:
            # the responder will not read more from us; its answer may still be in flight
            req.send_closed = True
        else:
            self._cancelled_by_peer(req, code)  # a subscriber unsubscribing, a fetch cancelled, ...

    def _cancelled_by_peer(self, req: Request, code: int) -> None:
        if req.state is State.DONE and req.request_id not in self._requests:
            return
        was_done = req.state is State.DONE
        self._finish(req, reset_code=StreamResetCode.CANCELLED)
        if req.outgoing:
            if not was_done:
                self._emit(ev.RequestEnded(req.request_id, code))
        else:
            self._emit(ev.RequestCancelled(req.request_id, code))

    # --- request bookkeeping -----------------------------------------------------------
    def _finish(self, req: Request, reset_code: int | None = None) -> None:
        """The request is over: reset its data streams and both stream halves if open."""
        req.state = State.DONE
        self.data.end_request(req, StreamResetCode.CANCELLED)
        if reset_code is not None:
            if not req.send_closed:
                self._actions.append(ev.ResetStream(req.stream_id, reset_code))
            if not req.recv_closed:
                self._actions.append(ev.StopSending(req.stream_id, reset_code))
            req.send_closed = req.recv_closed = True
        self._forget(req)

    def _fetch_done(self, req: Request, forget_only: bool) -> None:
        """A fetch's data stream is complete (we received all of it, or sent it all)."""
        if not req.send_closed:
            self._send(req.stream_id, b"", True)
            req.send_closed = True
        if forget_only:
            self._forget(req)
        else:
            self._finish(req)

    def _forget(self, req: Request) -> None:
        self._requests.pop(req.request_id, None)
        if self._by_stream.pop(req.stream_id, None) is not None and not req.outgoing:
            self._retire(req.stream_id)
        for uid in req.updates_in_flight:
            self._update_owner.pop(uid, None)

    def _retire(self, sid: int) -> None:
        """A peer request stream we are done with: its late bytes are ignored (bounded memory)."""
        self._retired.add(sid)
        self._retired_order.append(sid)
        if len(self._retired_order) > 65536:
            self._retired.discard(self._retired_order.popleft())

    def has_request(self, request_id: int) -> bool:
        """The request is open (not yet finished, cancelled or refused)."""
        return request_id in self._requests

    def request(self, request_id: int) -> Request:
        req = self._requests.get(request_id)
        if req is None:
            raise LocalUsageError(f"no open request {request_id}")
        return req

    def _send_on(self, req: Request, msg: c.Message, end: bool = False) -> None:
        if req.send_closed:
            raise LocalUsageError(f"request {req.request_id}: stream already closed")
        self._send(req.stream_id, msg.encode(), end)
        if end:
            req.send_closed = True
            if req.recv_closed:
                self._forget(req)

    # --- introspection ------------------------------------------------------------------
    def requests(self) -> list[Request]:
        return list(self._requests.values())

    def fail(self, exc: MoQError) -> None:
        """Close the session for an error the application found in peer data."""
        self._close(exc.code, exc.reason, by_peer=False)
