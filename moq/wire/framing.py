"""Incremental decoders: feed bytes in any chunking, get complete units out.

`MessageDecoder` frames control messages (control stream and request streams).
`UniStreamDecoder` recognises a unidirectional stream by its type (§ Unidirectional
Stream Types) and then yields its header and objects.  Malformed input raises a
`SessionError` subclass carrying the draft's code; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import NeedMoreData, ProtocolViolation
from .buffer import Reader
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
    decode_subgroup_object,
    is_subgroup_type,
)
from .varint import decode_varint


class _Buffered:
    """A bytearray with a read position; compacted lazily."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        if self.pos and self.pos >= len(self.buf) // 2:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def pending(self) -> int:
        return len(self.buf) - self.pos


class MessageDecoder(_Buffered):
    """Control message frames: Type (vi64), Length (16), Payload."""

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        self.append(data)
        out: list[Message] = []
        buf = self.buf
        while True:
            try:
                msg_type, p = decode_varint(buf, self.pos)
            except NeedMoreData:
                break
            if p + 2 > len(buf):
                break
            length = (buf[p] << 8) | buf[p + 1]
            end = p + 2 + length
            if end > len(buf):
                break
            out.append(decode_message(msg_type, bytes(buf[p + 2 : end])))
            self.pos = end
        return out

    def check_fin(self) -> None:
        if self.pending():
            raise ProtocolViolation("stream ended inside a control message")


# --- unidirectional streams --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlStreamOpened:
    """The stream is the peer's control stream; messages follow (SETUP first)."""


@dataclass(frozen=True, slots=True)
class PaddingStreamOpened:
    pass


class UniStreamDecoder(_Buffered):
    """Decodes one unidirectional stream.

    `feed()` returns, in order: the stream's header (SubgroupHeader, FetchHeader,
    ControlStreamOpened, PaddingStreamOpened), then its objects (SubgroupObject,
    FetchObject, EndOfRange) or control messages.  Fetch objects' group deltas depend on
    the FETCH's group order: `fetch_descending(request_id)` tells it once the header is read.
    """

    __slots__ = ("kind", "header", "messages", "prev_object_id", "fetch_codec", "objects", "max_payload",
                 "fetch_descending")

    def __init__(self, max_payload: int | None = None,
                 fetch_descending: Callable[[int], bool] | None = None) -> None:
        super().__init__()
        self.max_payload = max_payload
        self.fetch_descending = fetch_descending
        self.kind: str | None = None  # "control" | "subgroup" | "fetch" | "padding"
        self.header: SubgroupHeader | FetchHeader | None = None
        self.messages: MessageDecoder | None = None
        self.prev_object_id: int | None = None
        self.fetch_codec = FetchObjectCodec()
        self.objects = 0

    def feed(self, data: bytes | bytearray | memoryview, fin: bool = False) -> list:
        out: list = []
        if self.kind == "padding":
            return out
        if self.kind == "control":
            out.extend(self.messages.feed(data))  # type: ignore[union-attr]
            if fin:
                raise ProtocolViolation("control stream closed")
            return out
        self.append(data)
        if self.kind is None and not self._read_header(out):
            if fin:
                raise ProtocolViolation("stream ended inside its header")
            return out
        if self.kind == "control":
            # the SETUP type varint was the stream type; hand the rest to a message decoder
            rest = bytes(self.buf[self.pos :])
            self.buf, self.pos = bytearray(), 0
            out.extend(self.messages.feed(rest))  # type: ignore[union-attr]
            if fin:
                raise ProtocolViolation("control stream closed")
            return out
        if self.kind == "padding":
            self.buf, self.pos = bytearray(), 0
            return out
        self._read_objects(out)
        if fin and self.pending():
            raise ProtocolViolation("stream ended inside an object")
        return out

    def _read_header(self, out: list) -> bool:
        r = Reader(self.buf, self.pos)
        try:
            stream_type = r.varint()
            if stream_type == STREAM_TYPE_SETUP:
                self.kind = "control"
                self.messages = MessageDecoder()
                # re-frame from the type varint so SETUP decodes as a normal message
                self.messages.append(self.buf[self.pos : r.pos])
                self.pos = r.pos
                out.append(ControlStreamOpened())
                return True
            if stream_type == STREAM_TYPE_PADDING:
                self.kind = "padding"
                out.append(PaddingStreamOpened())
                return True
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
        except NeedMoreData:
            return False
        self.pos = r.pos
        self.header = header
        out.append(header)
        return True

    def _read_objects(self, out: list) -> None:
        buf = self.buf
        if self.kind == "subgroup":
            has_props = self.header.has_properties  # type: ignore[union-attr]
            while self.pos < len(buf):
                r = Reader(buf, self.pos)
                try:
                    obj: SubgroupObject | FetchObject | EndOfRange = decode_subgroup_object(
                        r, self.prev_object_id, has_props, self.max_payload
                    )
                except NeedMoreData:
                    break
                self.prev_object_id = obj.object_id  # type: ignore[union-attr]
                self.pos = r.pos
                self.objects += 1
                out.append(obj)
        else:
            while self.pos < len(buf):
                r = Reader(buf, self.pos)
                try:
                    obj = self.fetch_codec.decode(r)
                except NeedMoreData:
                    break
                self.pos = r.pos
                self.objects += 1
                out.append(obj)


def decode_datagram(data: bytes | memoryview) -> ObjectDatagram | None:
    """One datagram; None for a padding datagram (to be discarded)."""
    r = Reader(data)
    try:
        t = r.varint()
    except NeedMoreData:
        raise ProtocolViolation("empty datagram") from None
    if t == DATAGRAM_TYPE_PADDING:
        return None
    return ObjectDatagram.decode_after_type(t, r)
