"""Objects on the wire for one session: subgroup streams, fetch streams and datagrams
(§ Data Streams and Datagrams), in both directions.

Sending is the relay's hot path: a header is encoded once per stream, each object adds a
few varints, and payloads pass through as given (bytes or memoryview), never copied here.
Receiving tolerates the reordering the draft allows: a stream whose Track Alias is not
known yet is held (bounded in bytes and time) until SUBSCRIBE_OK/PUBLISH names it.

The data plane knows nothing of the session object: it writes actions to an output
queue and events to an emit callback, reads the request table, and hands a finished
fetch back through one callback (as aioquic's stream sender knows nothing of its
connection).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import LocalUsageError, ProtocolViolation, StreamResetCode, StreamResetError
from ..wire.data import (
    EndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    encode_subgroup_object,
)
from ..wire.framing import ControlStreamOpened, UniStreamDecoder, decode_datagram
from ..wire.types import GroupOrder, Location
from . import events as ev
from .requests import Kind, Request, State

if TYPE_CHECKING:
    from .core import SessionConfig
    from .outbox import Outbox

_location = tuple.__new__
RETIRED_ALIASES = 1024
HELD_DATAGRAMS = 256
#: bytes a held object counts for beyond its payload (what Python spends on one): without it a
#: stream of empty objects (3 bytes each) for an unknown alias was held 35x over, unrefused
HELD_ITEM_COST = 100


PRIORITY_OBJECTS = 2


@dataclass(slots=True)
class _OutStream:
    stream_id: int
    req: Request
    group_id: int | None
    subgroup_id: int | None
    has_properties: bool = False
    prev_object_id: int | None = None
    fetch: FetchObjectCodec | None = None
    publisher_priority: int = 128


def priority_key(req: Request, publisher_priority: int, group_id: int, subgroup_id: int) -> tuple:
    """§ Scheduling Algorithm: subscriber priority, then publisher priority, then the
    subscription's group order, then the lowest subgroup."""
    group = -group_id if req.group_order == GroupOrder.DESCENDING else group_id
    return (PRIORITY_OBJECTS, req.subscriber_priority, publisher_priority, group, subgroup_id)


@dataclass(slots=True)
class _InStream:
    decoder: UniStreamDecoder
    req: Request | None = None
    header: SubgroupHeader | FetchHeader | None = None
    subgroup_id: int | None = None
    held: list = field(default_factory=list)  # decoded items waiting for the alias
    held_bytes: int = 0
    since: float = 0.0
    fin: bool = False


class DataPlane:
    """`fetch_done(req, forget_only)`: a fetch's data is complete; the session closes the
    request (FIN on its request stream if still open) and forgets or finishes it."""

    def __init__(
        self, actions: Outbox, emit: Callable[[ev.Event], None], requests: dict[int, Request],
        open_stream: Callable[[bool], int], config: SessionConfig,
        fetch_done: Callable[[Request, bool], None],
    ) -> None:
        self._actions = actions
        self._emit = emit
        self._requests = requests
        self._open_stream = open_stream
        self.config = config
        self._fetch_done = fetch_done
        self._in: dict[int, _InStream] = {}
        self._out: dict[int, _OutStream] = {}
        self._fetch_out: dict[int, _OutStream] = {}  # request_id -> its fetch stream
        self._aliases: dict[int, Request] = {}
        self._retired: deque[int] = deque(maxlen=RETIRED_ALIASES)
        self._waiting: dict[int, list[int]] = {}  # alias -> held stream ids
        self._held_bytes = 0
        self._held_datagrams: deque[tuple[float, ObjectDatagram]] = deque(maxlen=HELD_DATAGRAMS)
        self._now = 0.0
        self._dead: set[int] = set()  # streams we stopped reading: late bytes are dropped
        self._dead_order: deque[int] = deque()

    # --- aliases ---------------------------------------------------------------------
    def alias_owner(self, alias: int) -> Request | None:
        return self._aliases.get(alias)

    def bind_alias(self, alias: int, req: Request) -> None:
        self._aliases[alias] = req

    def alias_ready(self, alias: int) -> None:
        if self._held_datagrams:
            held = [dg for _, dg in self._held_datagrams if dg.track_alias == alias]
            if held:
                kept = [(t, dg) for t, dg in self._held_datagrams if dg.track_alias != alias]
                self._held_datagrams.clear()
                self._held_datagrams.extend(kept)
                for dg in held:
                    self._deliver_datagram(dg)
        for sid in self._waiting.pop(alias, ()):
            st = self._in.get(sid)
            if st is None:
                continue
            st.req = self._aliases.get(alias)
            held, st.held = st.held, []
            self._held_bytes -= st.held_bytes
            st.held_bytes = 0
            self._deliver(sid, st, held)

    # --- receiving ---------------------------------------------------------------------
    def is_known(self, sid: int) -> bool:
        return sid in self._in

    def forget(self, sid: int) -> None:
        self._in.pop(sid, None)

    def feed_first(self, sid: int, data: bytes, fin: bool) -> list:
        st = self._in.get(sid)
        if st is None:
            st = self._in[sid] = _InStream(UniStreamDecoder())
        return st.decoder.feed(data, fin)

    def feed_control(self, sid: int, data: bytes, fin: bool) -> list:
        return self._in[sid].decoder.feed(data, fin)

    def receive_uni(self, sid: int, data: bytes, fin: bool, now: float) -> None:
        self._now = now
        if sid in self._dead:
            return
        st = self._in.get(sid)
        if st is None:
            st = self._in[sid] = _InStream(
                UniStreamDecoder(self.config.max_object_size, self._fetch_descending), since=now)
        try:
            items = st.decoder.feed(data, fin)
        except StreamResetError as exc:
            self._abandon(sid, exc.code)
            header = st.header or st.decoder.header  # the header may have come in this same chunk
            req = st.req
            if req is None and isinstance(header, SubgroupHeader):
                req = self._aliases.get(header.track_alias)
            self._emit(ev.DataStreamRefused(sid, req.request_id if req is not None else None, exc.code,
                                            exc.reason or "stream refused"))
            if req is not None and isinstance(header, SubgroupHeader):
                subgroup = st.subgroup_id if st.header is not None else header.subgroup_id
                self._emit(ev.DataStreamEnded(
                    req.request_id, sid, header.group_id, subgroup, exc.code, abandoned=True))
            elif isinstance(header, FetchHeader):  # the FETCH cannot complete: say so, as for a reset
                req = req or self._requests.get(header.request_id)
                if req is not None and req.outgoing and req.kind is Kind.FETCH:
                    self._emit(ev.DataStreamEnded(req.request_id, sid, None, None, exc.code, fetch=True,
                                                  abandoned=True))
            return
        st.fin = st.fin or fin
        if st.header is None and items:
            first = items[0]
            if isinstance(first, ControlStreamOpened):
                raise ProtocolViolation("a second control stream")
            if isinstance(first, (SubgroupHeader, FetchHeader)):
                items = items[1:]
                self._attach(sid, st, first)
            else:  # padding: discard everything
                st.header = None
                return
        if st.header is None and st.decoder.kind == "padding":
            return
        self._deliver(sid, st, items)

    def _fetch_descending(self, request_id: int) -> bool:
        req = self._requests.get(request_id)
        params = getattr(req.message, "parameters", None) if req is not None else None
        return params is not None and params.group_order == GroupOrder.DESCENDING

    def _attach(self, sid: int, st: _InStream, header: SubgroupHeader | FetchHeader) -> None:
        st.header = header
        if isinstance(header, FetchHeader):
            req = self._requests.get(header.request_id)
            if req is None or not req.outgoing or req.kind is not Kind.FETCH:
                self._abandon(sid, StreamResetCode.CANCELLED)
                return
            st.req = req
            return
        st.subgroup_id = header.subgroup_id
        req = self._aliases.get(header.track_alias)
        if req is not None:
            st.req = req
        elif header.track_alias in self._retired:
            self._abandon(sid, StreamResetCode.CANCELLED)
        else:
            st.since = self._now
            self._waiting.setdefault(header.track_alias, []).append(sid)

    def _abandon(self, sid: int, code: int) -> None:
        if sid not in self._dead:
            self._dead.add(sid)
            self._dead_order.append(sid)
            if len(self._dead_order) > 65536:
                self._dead.discard(self._dead_order.popleft())
        st = self._in.pop(sid, None)
        if st is not None:
            self._held_bytes -= st.held_bytes
            if not st.fin:
                self._actions.append(ev.StopSending(sid, code))

    def _deliver(self, sid: int, st: _InStream, items: list) -> None:
        if sid not in self._in:
            return
        req = st.req
        if req is None:  # alias not known yet: hold, bounded
            st.held.extend(items)
            size = sum(len(i.payload) for i in items) + HELD_ITEM_COST * len(items)
            st.held_bytes += size
            self._held_bytes += size
            if self._held_bytes > self.config.max_alias_wait_bytes:
                self._abandon(sid, StreamResetCode.EXCESSIVE_LOAD)
                self._emit(ev.DataStreamRefused(sid, None, StreamResetCode.EXCESSIVE_LOAD,
                                                "too much data held for unknown track aliases",
                                                "max_alias_wait_bytes"))
            return
        rid = req.request_id
        emit = self._emit
        header = st.header
        if isinstance(header, SubgroupHeader):
            prio = header.publisher_priority if header.publisher_priority is not None else req.default_priority
            for obj in items:
                if st.subgroup_id is None:
                    st.subgroup_id = obj.object_id
                emit(ev.ObjectReceived(
                    rid, header.group_id, st.subgroup_id, obj.object_id, prio, obj.status, obj.payload,
                    obj.properties, sid,
                ))
        else:
            for obj in items:
                if isinstance(obj, EndOfRange):
                    continue
                emit(ev.ObjectReceived(
                    rid, obj.group_id, obj.subgroup_id, obj.object_id, obj.publisher_priority, ObjectStatus.NORMAL,
                    obj.payload, obj.properties, sid, fetch=True,
                ))
        if st.fin:
            self._in.pop(sid, None)
            group = header.group_id if isinstance(header, SubgroupHeader) else None
            emit(ev.DataStreamEnded(rid, sid, group, st.subgroup_id, None, fetch=isinstance(header, FetchHeader)))
            if isinstance(header, FetchHeader) and req.responded:  # the fetch is complete
                self._fetch_done(req, False)

    def receive_reset(self, sid: int, code: int) -> None:
        st = self._in.pop(sid, None)
        if st is None:
            return
        self._held_bytes -= st.held_bytes
        if st.req is not None and st.header is not None:
            header = st.header
            group = header.group_id if isinstance(header, SubgroupHeader) else None
            self._emit(ev.DataStreamEnded(
                st.req.request_id, sid, group, st.subgroup_id, code, fetch=isinstance(header, FetchHeader)
            ))

    def receive_datagram(self, data: bytes, now: float) -> None:
        self._now = now
        dg = decode_datagram(data)
        if dg is None:
            return
        if dg.track_alias not in self._aliases:
            if dg.track_alias not in self._retired:  # may precede its SUBSCRIBE_OK: hold briefly
                self._held_datagrams.append((self._now, dg))
            return
        self._deliver_datagram(dg)

    def _deliver_datagram(self, dg: ObjectDatagram) -> None:
        req = self._aliases[dg.track_alias]
        prio = dg.publisher_priority if dg.publisher_priority is not None else req.default_priority
        status = dg.status if dg.status is not None else ObjectStatus.NORMAL
        self._emit(ev.ObjectReceived(
            req.request_id, dg.group_id, None, dg.object_id, prio, status, dg.payload, dg.properties or b"", None,
            end_of_group=dg.end_of_group,
        ))

    def expire(self, now: float) -> None:
        self._now = now
        limit = now - self.config.alias_wait
        while self._held_datagrams and self._held_datagrams[0][0] <= limit:
            self._held_datagrams.popleft()
        for alias, sids in list(self._waiting.items()):
            keep = []
            for sid in sids:
                st = self._in.get(sid)
                if st is None:
                    continue
                if st.since <= limit:
                    self._abandon(sid, StreamResetCode.CANCELLED)
                else:
                    keep.append(sid)
            if keep:
                self._waiting[alias] = keep
            else:
                del self._waiting[alias]

    def next_timer(self) -> float | None:
        times = [self._in[s].since for sids in self._waiting.values() for s in sids if s in self._in]
        if self._held_datagrams:
            times.append(self._held_datagrams[0][0])
        return min(times) + self.config.alias_wait if times else None

    # --- request lifecycle ----------------------------------------------------------------
    def end_request(self, req: Request, reset_code: int | None) -> None:
        """Close (FIN) or reset our data streams of `req`; retire its alias if we subscribed."""
        for sid in list(req.data_streams):
            out = self._out.pop(sid, None)
            if out is None:
                continue
            if reset_code is None:
                self._actions.append(ev.SendStreamData(sid, b"", True))
            else:
                self._actions.append(ev.ResetStream(sid, reset_code))
        req.data_streams.clear()
        self._fetch_out.pop(req.request_id, None)
        if reset_code is not None and not req.we_publish:
            for sid, st in list(self._in.items()):
                if st.req is req:
                    self._abandon(sid, reset_code)
        if req.track_alias is not None and not req.we_publish and self._aliases.get(req.track_alias) is req:
            if reset_code is not None or req.state is State.DONE:
                del self._aliases[req.track_alias]
                self._retired.append(req.track_alias)

    def receive_stop_sending(self, sid: int, code: int) -> None:
        out = self._out.pop(sid, None)
        if out is not None:
            out.req.data_streams.discard(sid)
            self._actions.append(ev.ResetStream(sid, StreamResetCode.CANCELLED))

    # --- sending: subgroups ------------------------------------------------------------------
    def _publishing(self, request_id: int) -> Request:
        req = self._requests.get(request_id)
        if req is None or not req.we_publish or req.track_alias is None:
            raise LocalUsageError(f"request {request_id} is not an established subscription we publish")
        return req

    def open_subgroup(
        self, request_id: int, group_id: int, subgroup_id: int | None = 0, *,
        publisher_priority: int | None = None, end_of_group: bool = False, has_properties: bool = False,
        first_object: bool = True,
    ) -> int:
        """Open a subgroup stream and send its header; returns the stream id."""
        req = self._publishing(request_id)
        header = SubgroupHeader(
            req.track_alias, group_id, subgroup_id, publisher_priority, has_properties, end_of_group, first_object  # type: ignore[arg-type]
        )
        sid = self._open_stream(True)
        pub_prio = req.default_priority if publisher_priority is None else publisher_priority
        self._out[sid] = _OutStream(sid, req, group_id, subgroup_id, has_properties, publisher_priority=pub_prio)
        req.data_streams.add(sid)
        req.streams_opened += 1
        self._actions.append(ev.SetStreamPriority(sid, priority_key(req, pub_prio, group_id, subgroup_id or 0)))
        self._actions.append(ev.SendStreamData(sid, header.encode()))
        return sid

    def reprioritize(self, req: Request) -> None:
        """The subscriber priority changed: re-key the request's open data streams."""
        for sid in req.data_streams:
            out = self._out.get(sid)
            if out is not None and out.fetch is None:
                key = priority_key(req, out.publisher_priority, out.group_id or 0, out.subgroup_id or 0)
                self._actions.append(ev.SetStreamPriority(sid, key))

    def send_object(
        self, stream_id: int, object_id: int, payload: bytes | memoryview = b"", *,
        status: int = ObjectStatus.NORMAL, properties: bytes = b"", wire: dict | None = None,
    ) -> bool:
        """Send one object on an open subgroup stream; False when the stream is gone
        (cancelled by STOP_SENDING or unsubscribe: the object is dropped).

        `wire` memoizes the per-object fields for every stream sending this same object:
        they depend only on the previous object ID on the stream (and the PROPERTIES
        bit), so subscribers in step share one encoding.  The payload is passed on as
        given, never copied."""
        out = self._out.get(stream_id)
        if out is None or out.fetch is not None:
            return False
        if not out.has_properties and properties:
            raise LocalUsageError("open the subgroup with has_properties=True to send properties")
        prev = out.prev_object_id
        key = (prev, out.has_properties)
        head = wire.get(key) if wire is not None else None
        if head is None:
            head = encode_subgroup_object(
                prev, object_id, len(payload), status=status, properties=properties if out.has_properties else None,
            )
            if wire is not None:
                wire[key] = head
        out.prev_object_id = object_id
        if out.subgroup_id is None:
            out.subgroup_id = object_id
        actions = self._actions
        actions.append(ev.SendStreamData(stream_id, head))
        if payload:
            actions.append(ev.SendStreamData(stream_id, payload))
        self._track_largest(out.req, out.group_id, object_id)  # type: ignore[arg-type]
        return True

    def end_subgroup(self, stream_id: int) -> None:
        out = self._out.pop(stream_id, None)
        if out is not None:
            out.req.data_streams.discard(stream_id)
            self._actions.append(ev.SendStreamData(stream_id, b"", True))

    def reset_subgroup(self, stream_id: int, error_code: int = StreamResetCode.CANCELLED) -> None:
        out = self._out.pop(stream_id, None)
        if out is not None:
            out.req.data_streams.discard(stream_id)
            self._actions.append(ev.ResetStream(stream_id, error_code))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._out

    @staticmethod
    def _track_largest(req: Request, group: int, obj: int) -> None:
        largest = req.largest
        if largest is None or group > largest[0] or (group == largest[0] and obj > largest[1]):
            req.largest = _location(Location, (group, obj))  # Location(group, obj), without its slow __new__

    def send_datagram(self, request_id: int, dg: ObjectDatagram, *, wire: dict | None = None) -> None:
        """Send an object as a datagram under this subscription's track alias.  `wire`
        memoizes the encoded datagram per alias for every subscriber of the same object
        (a datagram is one buffer, so it holds its own copy of the payload: once per
        alias, not once per subscriber)."""
        req = self._publishing(request_id)
        alias = req.track_alias
        data = wire.get(alias) if wire is not None else None
        if data is None:
            if dg.track_alias != alias:
                dg = replace(dg, track_alias=alias)  # type: ignore[arg-type]
            data = dg.encode()
            if wire is not None:
                wire[alias] = data
        self._actions.append(ev.SendDatagram(data))
        self._track_largest(req, dg.group_id, dg.object_id)

    # --- sending: fetch ------------------------------------------------------------------------
    def open_fetch_stream(self, request_id: int) -> int:
        req = self._requests.get(request_id)
        if req is None or req.outgoing or req.kind is not Kind.FETCH:
            raise LocalUsageError(f"request {request_id} is not an incoming FETCH")
        if request_id in self._fetch_out:
            raise LocalUsageError("fetch stream already open")
        sid = self._open_stream(True)
        order = req.message.parameters.group_order  # type: ignore[attr-defined]
        out = _OutStream(sid, req, None, None, fetch=FetchObjectCodec(order == GroupOrder.DESCENDING))
        self._out[sid] = out
        self._fetch_out[request_id] = out
        req.data_streams.add(sid)
        # Ahead of every subgroup stream of the same subscriber priority (publisher priorities
        # are 0..255): a FETCH serves objects older than the live ones, and a Joining FETCH
        # carries the head of the group its subscription is delivering, which the receiver
        # needs before that group can complete.  Behind the live streams it waited for the next
        # group to start, and a receiver that skips a group once its successor starts (moq-rs
        # by default) lost the joined group.
        self._actions.append(ev.SetStreamPriority(sid, (PRIORITY_OBJECTS, req.subscriber_priority, -1)))
        self._actions.append(ev.SendStreamData(sid, FetchHeader(request_id).encode()))
        return sid

    def send_fetch_object(self, request_id: int, item: FetchObject | EndOfRange) -> None:
        out = self._fetch_out.get(request_id)
        if out is None:
            return  # cancelled
        head = out.fetch.encode(item)  # type: ignore[union-attr]
        self._actions.append(ev.SendStreamData(out.stream_id, head))
        if isinstance(item, FetchObject) and item.payload:
            self._actions.append(ev.SendStreamData(out.stream_id, item.payload))

    def end_fetch_stream(self, request_id: int) -> None:
        out = self._fetch_out.pop(request_id, None)
        if out is not None:
            self._out.pop(out.stream_id, None)
            out.req.data_streams.discard(out.stream_id)
            self._actions.append(ev.SendStreamData(out.stream_id, b"", True))
            self._fetch_done(out.req, True)
