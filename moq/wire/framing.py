"""Incremental decoders: feed bytes in any chunking, get complete units out.

`MessageDecoder` frames control messages (control stream and request streams).
`UniStreamDecoder` recognises a unidirectional stream by its type (§ Unidirectional
Stream Types) and then yields its header and objects.  Malformed input raises a
`SessionError` subclass carrying the draft's code; nothing else escapes.

This is a relay's receive path, so its cost is kept linear in the bytes received:
- a unit's fields are parsed once they are all present; an incomplete unit is held with
  the number of bytes it still needs, and chunks are only queued until they are there
  ("need more" is a return value, not an exception per chunk);
- a payload is counted, not parsed, while its chunks arrive, and joined once (one copy)
  when complete;
- a payload inside one received chunk is a memoryview slice of it.  Chunks are kept as
  immutable `bytes` (other input is copied once on entry), so a view never sees its bytes
  change.  A payload under a quarter of its chunk is copied instead, so that a cached
  small object does not pin a much larger chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NeedMoreData, ProtocolViolation
from .buffer import Reader, varint_at
from .control import Message, decode_message
from .data import (
    DATAGRAM_TYPE_PADDING,
    STREAM_TYPE_FETCH,
    STREAM_TYPE_PADDING,
    STREAM_TYPE_SETUP,
    EndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    ObjectDatagram,
    SubgroupHeader,
    SubgroupObject,
    is_subgroup_type,
    parse_subgroup_object_head,
)

_VIEW_SHARE = 4  # a payload of at least 1/_VIEW_SHARE of its chunk is a view of it, a smaller one a copy
_SMALL = 512  # held chunks shorter than this are copied into one bytearray, not kept one by one


def _slice(buf: bytes, start: int, stop: int) -> bytes | memoryview:
    if (stop - start) * _VIEW_SHARE >= len(buf):
        return memoryview(buf)[start:stop]
    return buf[start:stop]


def _need(exc: NeedMoreData, pos: int, end: int) -> int:
    """Bytes from `pos` that a retry needs, from the offset a Reader put in NeedMoreData."""
    want = exc.args[0] if exc.args else end + 1
    return max(want, end + 1) - pos


class _Held:
    """The bytes of an incomplete unit, queued (not joined) until there are `_need` of them.
    Small chunks are gathered into one bytearray: kept one by one, 1-byte STREAM frames cost
    ~43 bytes of memory each (a 16 MB object sent that way held 700 MB)."""

    __slots__ = ("_parts", "_have", "_need")

    def __init__(self) -> None:
        self._parts: list[bytes | bytearray | memoryview] = []
        self._have = 0
        self._need = 0

    def _add(self, data: bytes | memoryview) -> None:
        parts = self._parts
        if len(data) >= _SMALL:
            parts.append(data)
        elif parts and parts[-1].__class__ is bytearray:
            parts[-1] += data  # type: ignore[operator]
        else:
            parts.append(bytearray(data))

    def _take(self, data: bytes) -> bytes | None:
        """Contiguous input to parse: `data`, or the held bytes and `data` joined once enough
        are there; None while still short."""
        if not self._parts:
            return data
        if data:
            self._add(data)
            self._have += len(data)
        if self._have < self._need:
            return None
        buf = b"".join(self._parts)
        self._parts = []
        self._have = 0
        return buf

    def _hold(self, buf: bytes, pos: int, need: int) -> None:
        """Keep buf[pos:] until it has grown to `need` bytes."""
        tail = buf[pos:] if pos else buf
        self._parts = [tail]
        self._have = len(tail)
        self._need = need


class MessageDecoder(_Held):
    """Control message frames: Type (vi64), Length (16), Payload."""

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        out: list[Message] = []
        buf = self._take(data if data.__class__ is bytes else bytes(data))  # type: ignore[arg-type]
        if buf is None:
            return out
        pos, end = 0, len(buf)
        while pos < end:
            msg_type, p = varint_at(buf, pos, end)
            if p + 2 > end:
                self._hold(buf, pos, p + 2 - pos)
                break
            stop = p + 2 + ((buf[p] << 8) | buf[p + 1])
            if stop > end:
                self._hold(buf, pos, stop - pos)
                break
            out.append(decode_message(msg_type, memoryview(buf)[p + 2 : stop]))
            pos = stop
        return out

    def check_fin(self) -> None:
        if self._have:
            raise ProtocolViolation("stream ended inside a control message")


# --- unidirectional streams --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlStreamOpened:
    """The stream is the peer's control stream; messages follow (SETUP first)."""


@dataclass(frozen=True, slots=True)
class PaddingStreamOpened:
    pass


class UniStreamDecoder(_Held):
    """Decodes one unidirectional stream.

    `feed()` returns, in order: the stream's header (SubgroupHeader, FetchHeader,
    ControlStreamOpened, PaddingStreamOpened), then its objects (SubgroupObject,
    FetchObject, EndOfRange) or control messages.  Fetch objects' group deltas depend on
    the FETCH's group order: `fetch_descending(request_id)` tells it once the header is read.
    Payloads are bytes or memoryviews of the bytes fed (see the module docstring).
    """

    __slots__ = ("kind", "header", "messages", "prev_object_id", "fetch_codec", "objects", "max_payload",
                 "fetch_descending", "_missing", "_head")

    def __init__(self, max_payload: int | None = None,
                 fetch_descending: Callable[[int], bool] | None = None) -> None:
        super().__init__()
        self.max_payload = max_payload
        self.fetch_descending = fetch_descending
        self.kind: str | None = None  # "control" | "subgroup" | "fetch" | "padding"
        self.header: SubgroupHeader | FetchHeader | None = None
        self.messages: MessageDecoder | None = None
        self.prev_object_id: int | None = None
        self.fetch_codec = FetchObjectCodec(max_size=max_payload)
        self.objects = 0
        self._missing = 0  # payload bytes still to come for the object in `_head`
        self._head: tuple = ()

    def feed(self, data: bytes | bytearray | memoryview, fin: bool = False) -> list:
        out: list = []
        kind = self.kind
        if kind == "padding":
            return out
        if kind == "control":
            return self._control(data, fin, out)
        if data.__class__ is not bytes:
            data = bytes(data)
        pos = 0
        if self._missing:
            pos = self._rest_of_payload(data, out)  # type: ignore[arg-type]
        elif self._parts:
            data = self._take(data) or b""  # type: ignore[arg-type]
        if pos < len(data):
            if kind is None:
                pos = self._read_header(data, pos, out)  # type: ignore[arg-type]
                kind = self.kind
                if kind == "control":
                    return self._control(data[pos:], fin, out)
                if kind == "padding":
                    return out
            if kind == "subgroup":
                self._subgroup_objects(data, pos, out)  # type: ignore[arg-type]
            elif kind == "fetch":
                self._fetch_objects(data, pos, out)  # type: ignore[arg-type]
        if fin and (kind is None or self._missing or self._have):
            raise ProtocolViolation("stream ended inside its header" if kind is None
                                    else "stream ended inside an object")
        return out

    def _control(self, data: bytes | bytearray | memoryview, fin: bool, out: list) -> list:
        out.extend(self.messages.feed(data))  # type: ignore[union-attr]
        if fin:
            raise ProtocolViolation("control stream closed")
        return out

    def _read_header(self, buf: bytes, pos: int, out: list) -> int:
        """Where the stream's first unit starts; the SETUP type varint is left in place so
        that SETUP decodes as a normal message.  When the header is incomplete it is held
        and the end of `buf` is returned."""
        r = Reader(buf, pos)
        try:
            stream_type = r.varint()
            if stream_type == STREAM_TYPE_SETUP:
                self.kind = "control"
                self.messages = MessageDecoder()
                out.append(ControlStreamOpened())
                return pos
            if stream_type == STREAM_TYPE_PADDING:
                self.kind = "padding"
                out.append(PaddingStreamOpened())
                return len(buf)
            if stream_type == STREAM_TYPE_FETCH:
                header: SubgroupHeader | FetchHeader = FetchHeader(r.varint())
                self.kind = "fetch"
                if self.fetch_descending is not None:
                    self.fetch_codec.descending = self.fetch_descending(header.request_id)
            elif is_subgroup_type(stream_type):
                header = SubgroupHeader.decode_after_type(stream_type, r)
                self.kind = "subgroup"
            else:
                raise ProtocolViolation(f"unknown unidirectional stream type {stream_type:#x}")
        except NeedMoreData as exc:  # once per stream at most, and only if its header is split
            self._hold(buf, pos, _need(exc, pos, len(buf)))
            return len(buf)
        self.header = header
        out.append(header)
        return r.pos

    def _rest_of_payload(self, data: bytes, out: list) -> int:
        """Count `data` towards the pending payload; where the next unit starts in `data`."""
        missing, n = self._missing, len(data)
        if n < missing:
            if n:
                self._add(data)
                self._missing = missing - n
            return n
        if self._parts:
            self._add(memoryview(data)[:missing])
            payload: bytes | memoryview = b"".join(self._parts)
            self._parts = []
        else:  # the header ended its chunk: the payload lies in this one
            payload = _slice(data, 0, missing)
        self._missing = 0
        self.objects += 1
        head = self._head
        if self.kind == "subgroup":
            out.append(SubgroupObject(head[0], payload, head[1], head[2]))
        else:
            out.append(FetchObject(head[0], head[1], head[2], head[3], payload, head[4]))
        return missing

    def _subgroup_objects(self, buf: bytes, pos: int, out: list) -> None:
        end = len(buf)
        has_props = self.header.has_properties  # type: ignore[union-attr]
        max_payload = self.max_payload
        prev = self.prev_object_id
        append = out.append
        share = end // _VIEW_SHARE
        view = None
        while pos < end:
            head = parse_subgroup_object_head(buf, pos, end, prev, has_props, max_payload)
            if head.__class__ is int:
                self._hold(buf, pos, head - pos)  # type: ignore[operator]
                break
            prev, status, props, start, length = head  # type: ignore[misc]
            stop = start + length
            if stop > end:  # wait for the rest of the payload, keeping what is here
                self._head = (prev, status, props)
                self._missing = stop - end
                if start < end:
                    self._parts = [memoryview(buf)[start:]]
                break
            if not length:
                payload: bytes | memoryview = b""
            elif length >= share:
                if view is None:
                    view = memoryview(buf)
                payload = view[start:stop]
            else:
                payload = buf[start:stop]
            append(SubgroupObject(prev, payload, status, props))
            self.objects += 1
            pos = stop
        self.prev_object_id = prev

    def _fetch_objects(self, buf: bytes, pos: int, out: list) -> None:
        codec, end = self.fetch_codec, len(buf)
        r = Reader(buf)
        while pos < end:
            r.pos = pos
            try:
                head = codec.decode_head(r)
            except NeedMoreData as exc:  # only when an item's fields straddle two chunks
                self._hold(buf, pos, _need(exc, pos, end))
                break
            codec.accept(head)
            if head.__class__ is EndOfRange:
                out.append(head)
                self.objects += 1
                pos = r.pos
                continue
            group, subgroup, obj, prio, props, length = head  # type: ignore[misc]
            start = r.pos
            stop = start + length
            if stop > end:
                self._head = head[:5]  # type: ignore[index]
                self._missing = stop - end
                if start < end:
                    self._parts = [memoryview(buf)[start:]]
                break
            out.append(FetchObject(group, subgroup, obj, prio, _slice(buf, start, stop) if length else b"", props))
            self.objects += 1
            pos = stop


def decode_datagram(data: bytes | memoryview) -> ObjectDatagram | None:
    """One datagram; None for a padding datagram (to be discarded).  The payload is a view
    of `data` when that is immutable bytes."""
    end = len(data)
    t, p = varint_at(data, 0, end)
    if p > end:
        raise ProtocolViolation("empty datagram")
    if t == DATAGRAM_TYPE_PADDING:
        return None
    return ObjectDatagram.decode_fields(t, data, p, end)
