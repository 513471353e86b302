"""Data plane (§ Data Streams and Datagrams): subgroup and fetch stream headers, the
objects on them, object datagrams and padding.

Object Properties stay as their raw encoded bytes: relays forward them verbatim (the
draft forbids changing unknown or immutable ones), and only end points decode them
(`types.decode_kvp_block`).  Payloads are passed as bytes/memoryview, never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import LocalUsageError, NeedMoreData, ProtocolViolation, StreamResetCode, StreamResetError
from .buffer import Reader, Writer, varint_at
from .varint import MAX_VARINT, encode_varint

STREAM_TYPE_FETCH = 0x05
STREAM_TYPE_SETUP = 0x2F00
STREAM_TYPE_PADDING = 0x132B3E28
DATAGRAM_TYPE_PADDING = 0x132B3E29


class ObjectStatus(IntEnum):
    NORMAL = 0x0
    END_OF_GROUP = 0x3
    END_OF_TRACK = 0x4


_VALID_STATUS = frozenset(int(s) for s in ObjectStatus)


def check_status(status: int) -> int:
    if status not in _VALID_STATUS:
        raise ProtocolViolation(f"unknown object status {status:#x}")
    return status


# --- subgroup streams (§ Subgroup Header) --------------------------------------------

SG_PROPERTIES = 0x01
SG_ID_MODE_MASK = 0x06
SG_END_OF_GROUP = 0x08
SG_BASE = 0x10
SG_DEFAULT_PRIORITY = 0x20
SG_FIRST_OBJECT = 0x40


def is_subgroup_type(t: int) -> bool:
    return t < 0x80 and (t & 0x90) == 0x10


@dataclass(frozen=True, slots=True)
class SubgroupHeader:
    """`subgroup_id` None means "the first object's ID" (SUBGROUP_ID_MODE 0b01);
    `publisher_priority` None means the subscription's default priority."""

    track_alias: int
    group_id: int
    subgroup_id: int | None = 0
    publisher_priority: int | None = None
    has_properties: bool = False
    end_of_group: bool = False
    first_object: bool = False

    @property
    def stream_type(self) -> int:
        t = SG_BASE
        if self.has_properties:
            t |= SG_PROPERTIES
        if self.subgroup_id is None:
            t |= 0b01 << 1
        elif self.subgroup_id != 0:
            t |= 0b10 << 1
        if self.end_of_group:
            t |= SG_END_OF_GROUP
        if self.publisher_priority is None:
            t |= SG_DEFAULT_PRIORITY
        if self.first_object:
            t |= SG_FIRST_OBJECT
        return t

    def encode(self) -> bytes:
        w = Writer().varint(self.stream_type).varint(self.track_alias).varint(self.group_id)
        if self.subgroup_id:
            w.varint(self.subgroup_id)
        if self.publisher_priority is not None:
            w.uint8(self.publisher_priority)
        return w.getvalue()

    @classmethod
    def decode_after_type(cls, stream_type: int, r: Reader) -> SubgroupHeader:
        if not is_subgroup_type(stream_type):
            raise ProtocolViolation(f"not a subgroup header type: {stream_type:#x}")
        mode = (stream_type & SG_ID_MODE_MASK) >> 1
        if mode == 0b11:
            raise ProtocolViolation(f"reserved SUBGROUP_ID_MODE in type {stream_type:#x}")
        alias, group = r.varint(), r.varint()
        subgroup: int | None = 0 if mode == 0 else None if mode == 1 else r.varint()
        prio = None if stream_type & SG_DEFAULT_PRIORITY else r.uint8()
        return cls(
            alias, group, subgroup, prio,
            bool(stream_type & SG_PROPERTIES), bool(stream_type & SG_END_OF_GROUP),
            bool(stream_type & SG_FIRST_OBJECT),
        )


@dataclass(frozen=True, slots=True)
class SubgroupObject:
    """One object read from a subgroup stream (IDs resolved to absolute values)."""

    object_id: int
    payload: bytes | memoryview = b""
    status: int = ObjectStatus.NORMAL
    properties: bytes = b""


def encode_subgroup_object(
    prev_object_id: int | None,
    object_id: int,
    payload_length: int,
    *,
    status: int = ObjectStatus.NORMAL,
    properties: bytes | None = None,
) -> bytes:
    """The per-object fields before the payload.  `properties` must be given (maybe
    b"") exactly when the stream's header has the PROPERTIES bit."""
    if prev_object_id is None:
        delta = object_id
    else:
        delta = object_id - prev_object_id - 1
        if delta < 0:
            raise LocalUsageError(f"object {object_id} not after {prev_object_id} on this subgroup stream")
    out = bytearray(encode_varint(delta))
    if properties is not None:
        if status != ObjectStatus.NORMAL and properties:
            raise LocalUsageError("only Normal objects carry properties")
        out += encode_varint(len(properties))
        out += properties
    out += encode_varint(payload_length)
    if payload_length == 0:
        out += encode_varint(status)
    elif status != ObjectStatus.NORMAL:
        raise LocalUsageError("objects with a status other than Normal have no payload")
    return bytes(out)


def parse_subgroup_object_head(
    data: bytes | memoryview, pos: int, end: int, prev_object_id: int | None, has_properties: bool,
    max_payload: int | None = None,
) -> tuple[int, int, bytes, int, int] | int:
    """The fields of the object at `pos`, before its payload, without raising for short input.

    Returns (object_id, status, properties, payload_start, payload_length), or, when
    `data[:end]` ends inside them, the int offset the input must reach before a retry can
    get further (so a large properties block is waited for, not re-parsed per chunk).
    A payload (or properties block) longer than `max_payload` raises
    StreamResetError(EXCESSIVE_LOAD) as soon as its length is read, before any of it is
    buffered.
    """
    if pos >= end:
        return pos + 1
    first = data[pos]
    if first < 0x80:  # one-byte Object ID Delta, by far the common case
        delta, p = first, pos + 1
    else:
        delta, p = varint_at(data, pos, end)
        if p > end:
            return p
    object_id = delta if prev_object_id is None else prev_object_id + delta + 1
    if object_id > MAX_VARINT:
        raise ProtocolViolation("object ID exceeds 2^64-1")
    props = b""
    if has_properties:
        n, p = varint_at(data, p, end)
        if p > end:  # wait for the length itself (asking for a byte beyond it hangs at a FIN there)
            return p
        if max_payload is not None and n > max_payload:
            raise StreamResetError(f"object properties of {n} bytes exceed the limit {max_payload}",
                                   StreamResetCode.EXCESSIVE_LOAD)
        if p + n >= end:  # the block and at least the next byte
            return p + n + 1
        if n:
            props = bytes(data[p : p + n])
            p += n
    b = data[p] if p < end else 0xFF
    if b < 0x80:
        length, p = b, p + 1
    elif b < 0xC0 and p + 2 <= end:  # two bytes: payloads of 128 B .. 16 KB
        length, p = ((b & 0x3F) << 8) | data[p + 1], p + 2
    else:
        length, p = varint_at(data, p, end)
        if p > end:
            return p
    if max_payload is not None and length > max_payload:
        raise StreamResetError(f"object of {length} bytes exceeds the limit {max_payload}",
                               StreamResetCode.EXCESSIVE_LOAD)
    if length:
        return object_id, ObjectStatus.NORMAL, props, p, length
    status, p = varint_at(data, p, end)
    if p > end:
        return p
    check_status(status)
    if props and status != ObjectStatus.NORMAL:
        raise ProtocolViolation("properties on an object whose status is not Normal")
    return object_id, status, props, p, 0


def decode_subgroup_object(
    r: Reader, prev_object_id: int | None, has_properties: bool, max_payload: int | None = None
) -> SubgroupObject:
    """Parse one whole object from `r`; NeedMoreData if incomplete (nothing consumed).
    The payload is copied (the reader may be over a buffer that changes later); incremental,
    zero-copy decoding of a stream is `framing.UniStreamDecoder`'s job."""
    head = parse_subgroup_object_head(r.data, r.pos, r.end, prev_object_id, has_properties, max_payload)
    if head.__class__ is int:
        raise NeedMoreData(head)
    object_id, status, props, start, length = head  # type: ignore[misc]
    if start + length > r.end:
        raise NeedMoreData(start + length)
    r.pos = start + length
    return SubgroupObject(object_id, bytes(r.data[start : r.pos]) if length else b"", status, props)


# --- datagrams (§ Object Datagram) ---------------------------------------------------

DG_PROPERTIES = 0x01
DG_END_OF_GROUP = 0x02
DG_ZERO_OBJECT_ID = 0x04
DG_DEFAULT_PRIORITY = 0x08
DG_STATUS = 0x20


def is_datagram_type(t: int) -> bool:
    return t < 0x30 and (t & 0xD0) == 0 and not (t & DG_STATUS and t & DG_END_OF_GROUP)


@dataclass(frozen=True, slots=True)
class ObjectDatagram:
    """`status` None means the datagram carries a payload (STATUS bit clear)."""

    track_alias: int
    group_id: int
    object_id: int = 0
    publisher_priority: int | None = None
    properties: bytes | None = None
    status: int | None = None
    payload: bytes | memoryview = b""
    end_of_group: bool = False

    def encode(self) -> bytes:
        t = 0
        if self.properties is not None:
            if not self.properties:
                raise LocalUsageError("datagram properties must be non-empty (or None)")
            t |= DG_PROPERTIES
        if self.end_of_group:
            t |= DG_END_OF_GROUP
        if self.object_id == 0:
            t |= DG_ZERO_OBJECT_ID
        if self.publisher_priority is None:
            t |= DG_DEFAULT_PRIORITY
        if self.status is not None:
            if self.end_of_group:
                raise LocalUsageError("a status datagram cannot signal end of group")
            if self.payload:
                raise LocalUsageError("a status datagram has no payload")
            t |= DG_STATUS
        w = Writer().varint(t).varint(self.track_alias).varint(self.group_id)
        if self.object_id:
            w.varint(self.object_id)
        if self.publisher_priority is not None:
            w.uint8(self.publisher_priority)
        if self.properties is not None:
            w.lp_bytes(self.properties)
        if self.status is not None:
            w.varint(self.status)
        else:
            w.raw(self.payload)
        return w.getvalue()

    @classmethod
    def decode_after_type(cls, t: int, r: Reader) -> ObjectDatagram:
        """The datagram after its Type; `r` holds exactly the datagram's bytes."""
        dg = cls.decode_fields(t, r.data, r.pos, r.end)
        r.pos = r.end
        return dg

    @classmethod
    def decode_fields(cls, t: int, data: bytes | memoryview, p: int, end: int) -> ObjectDatagram:
        """`data[p:end]` is the datagram after its Type.  The payload is a view when `data`
        is immutable bytes (or a view of them), a copy otherwise."""
        if not is_datagram_type(t):
            raise ProtocolViolation(f"invalid datagram type {t:#x}")
        alias, p = varint_at(data, p, end)
        group, p = varint_at(data, p, end)  # past `end` stays past it: one check below
        obj = 0
        if not t & DG_ZERO_OBJECT_ID:
            obj, p = varint_at(data, p, end)
        prio = None
        if not t & DG_DEFAULT_PRIORITY:
            if p < end:
                prio = data[p]
            p += 1
        props = None
        if t & DG_PROPERTIES:
            n, p = varint_at(data, p, end)
            if p + n <= end:
                if not n:
                    raise ProtocolViolation("datagram PROPERTIES bit with zero-length properties")
                props = bytes(data[p : p + n])
            p += n
        if p > end:
            raise ProtocolViolation("truncated datagram")
        status = None
        payload: bytes | memoryview = b""
        if t & DG_STATUS:
            status, p = varint_at(data, p, end)
            if p > end:
                raise ProtocolViolation("truncated datagram")
            check_status(status)
            if props is not None and status != ObjectStatus.NORMAL:
                raise ProtocolViolation("properties on a datagram whose status is not Normal")
            if p != end:
                raise ProtocolViolation("bytes after a datagram's object status")
        elif p < end:
            base = data.obj if data.__class__ is memoryview else data  # type: ignore[union-attr]
            if base.__class__ is bytes:
                payload = (data if data.__class__ is memoryview else memoryview(data))[p:end]
            else:
                payload = bytes(data[p:end])
        return cls(alias, group, obj, prio, props, status, payload, bool(t & DG_END_OF_GROUP))


# --- fetch streams (§ Fetch Header) --------------------------------------------------

FETCH_SUBGROUP_MASK = 0x03
FETCH_OBJECT_ID = 0x04
FETCH_GROUP_ID = 0x08
FETCH_PRIORITY = 0x10
FETCH_PROPERTIES = 0x20
FETCH_DATAGRAM = 0x40
END_OF_NON_EXISTENT_RANGE = 0x8C
END_OF_UNKNOWN_RANGE = 0x10C


@dataclass(frozen=True, slots=True)
class FetchHeader:
    request_id: int

    def encode(self) -> bytes:
        return encode_varint(STREAM_TYPE_FETCH) + encode_varint(self.request_id)


@dataclass(frozen=True, slots=True)
class FetchObject:
    """An object on a fetch stream; `subgroup_id` None = Datagram forwarding preference."""

    group_id: int
    subgroup_id: int | None
    object_id: int
    publisher_priority: int
    payload: bytes | memoryview = b""
    properties: bytes = b""


@dataclass(frozen=True, slots=True)
class EndOfRange:
    """Objects after the previous one up to this Location (inclusive) do not exist
    (`unknown` False) or have unknown status (`unknown` True).  Its Group and Object
    are carried as absolute values."""

    group_id: int
    object_id: int
    unknown: bool = False


#: (group, subgroup, object, priority, properties, payload length) of a fetch object
FetchHead = tuple[int, "int | None", int, int, bytes, int]


class FetchObjectCodec:
    """The prior-object state that fetch serialization flags refer to (§ Flags).

    One instance per fetch stream, on each side; `descending` is the FETCH's group order.
    A decoder's `max_size` bounds an object's payload and properties as on subgroup streams:
    a larger one raises StreamResetError(EXCESSIVE_LOAD) once its length is read.
    """

    __slots__ = ("descending", "group", "object", "subgroup", "priority", "first", "max_size")

    def __init__(self, descending: bool = False, max_size: int | None = None) -> None:
        self.descending = descending
        self.max_size = max_size
        self.group: int | None = None
        self.object: int | None = None
        self.subgroup: int | None = None  # from the last real object (datagram: None)
        self.priority: int | None = None
        self.first = True

    # encoder ---------------------------------------------------------------------
    def encode(self, item: FetchObject | EndOfRange) -> bytes:
        """Header bytes for `item`; for a FetchObject the payload follows them."""
        w = Writer()
        if isinstance(item, EndOfRange):
            w.varint(END_OF_UNKNOWN_RANGE if item.unknown else END_OF_NON_EXISTENT_RANGE)
            w.varint(item.group_id).varint(item.object_id)
            self.group, self.object, self.first = item.group_id, item.object_id, False
            return w.getvalue()
        flags = 0
        new_group = self.group is None or item.group_id != self.group
        if new_group:
            flags |= FETCH_GROUP_ID | FETCH_OBJECT_ID
        elif self.object is None or item.object_id != self.object + 1:
            flags |= FETCH_OBJECT_ID
        if item.subgroup_id is None:
            flags |= FETCH_DATAGRAM
        elif item.subgroup_id == 0:
            pass
        elif self.subgroup is not None and item.subgroup_id == self.subgroup:
            flags |= 0x01
        elif self.subgroup is not None and item.subgroup_id == self.subgroup + 1:
            flags |= 0x02
        else:
            flags |= 0x03
        if self.priority is None or item.publisher_priority != self.priority:
            flags |= FETCH_PRIORITY
        if item.properties:
            flags |= FETCH_PROPERTIES
        w.varint(flags)
        # field order (§ Fetch Header): Group ID Delta, Subgroup ID, Object ID Delta, Priority, ...
        if new_group:
            if self.group is None:
                w.varint(item.group_id)
            else:
                step = self.group - item.group_id if self.descending else item.group_id - self.group
                if step < 1:
                    raise LocalUsageError("fetch groups must follow the requested group order")
                w.varint(step - 1)
        if (flags & 0x03) == 0x03 and not flags & FETCH_DATAGRAM:
            w.varint(item.subgroup_id)  # type: ignore[arg-type]
        if new_group:
            w.varint(item.object_id)
        elif flags & FETCH_OBJECT_ID:
            delta = item.object_id - self.object  # type: ignore[operator]
            if delta < 0:
                raise LocalUsageError("object IDs must increase within a group")
            w.varint(delta)
        if flags & FETCH_PRIORITY:
            w.uint8(item.publisher_priority)
        if flags & FETCH_PROPERTIES:
            w.lp_bytes(item.properties)
        w.varint(len(item.payload))
        self._advance(item.group_id, item.object_id, item.subgroup_id, item.publisher_priority)
        return w.getvalue()

    def _advance(self, group: int, obj: int, subgroup: int | None, prio: int) -> None:
        self.group, self.object, self.subgroup, self.priority, self.first = group, obj, subgroup, prio, False

    # decoder ---------------------------------------------------------------------
    def decode(self, r: Reader) -> FetchObject | EndOfRange:
        """Parse one whole item (payload copied); on NeedMoreData no state has changed."""
        head = self.decode_head(r)
        if head.__class__ is EndOfRange:
            self.accept(head)
            return head  # type: ignore[return-value]
        group, subgroup, obj, prio, props, length = head  # type: ignore[misc]
        payload = r.bytes(length)
        self.accept(head)
        return FetchObject(group, subgroup, obj, prio, payload, props)

    def accept(self, head: FetchHead | EndOfRange) -> None:
        """Make the item `decode_head` returned the prior object the next one's flags refer to."""
        if head.__class__ is EndOfRange:
            self.group, self.object, self.first = head.group_id, head.object_id, False  # type: ignore[union-attr]
        else:
            group, subgroup, obj, prio = head[:4]  # type: ignore[index]
            self._advance(group, obj, subgroup, prio)

    def decode_head(self, r: Reader) -> FetchHead | EndOfRange:
        """An End of Range, or an object's fields up to its Payload Length as (group,
        subgroup, object, priority, properties, payload length); NeedMoreData if `r` ends
        first.  No state changes: the caller `accept()`s the result once it keeps it."""
        flags = r.varint()
        if flags in (END_OF_NON_EXISTENT_RANGE, END_OF_UNKNOWN_RANGE):
            group, obj = r.varint(), r.varint()
            return EndOfRange(group, obj, flags == END_OF_UNKNOWN_RANGE)
        if flags >= 0x80:
            raise ProtocolViolation(f"invalid fetch serialization flags {flags:#x}")
        if self.first and (
            not flags & FETCH_GROUP_ID
            or not flags & FETCH_OBJECT_ID
            or not flags & FETCH_PRIORITY
            or (not flags & FETCH_DATAGRAM and flags & 0x03 in (0x01, 0x02))
        ):
            raise ProtocolViolation("first fetch object refers to a prior object")
        if flags & FETCH_GROUP_ID:
            gd = r.varint()
            if self.group is None:
                group = gd
            elif self.descending:
                group = self.group - gd - 1
            else:
                group = self.group + gd + 1
            if not 0 <= group <= MAX_VARINT:
                raise ProtocolViolation("fetch group ID out of range")
        else:
            group = self.group  # type: ignore[assignment]
        subgroup: int | None
        if flags & FETCH_DATAGRAM:
            subgroup = None
        else:
            mode = flags & 0x03
            if mode in (0x01, 0x02) and self.subgroup is None:
                raise ProtocolViolation("fetch object refers to a prior subgroup that does not exist")
            subgroup = (0, self.subgroup, (self.subgroup or 0) + 1, None)[mode]
            if mode == 0x03:
                subgroup = r.varint()
        if flags & FETCH_GROUP_ID:
            obj = r.varint() if flags & FETCH_OBJECT_ID else self.object + 1  # type: ignore[operator]
        else:
            obj = self.object + r.varint() if flags & FETCH_OBJECT_ID else self.object + 1  # type: ignore[operator]
        if obj > MAX_VARINT:
            raise ProtocolViolation("fetch object ID exceeds 2^64-1")
        if flags & FETCH_PRIORITY:
            prio = r.uint8()
        elif self.priority is None:
            raise ProtocolViolation("fetch object refers to a prior priority that does not exist")
        else:
            prio = self.priority
        limit = self.max_size
        props = b""
        if flags & FETCH_PROPERTIES:
            n = r.varint()
            if limit is not None and n > limit:
                raise StreamResetError(f"object properties of {n} bytes exceed the limit {limit}",
                                       StreamResetCode.EXCESSIVE_LOAD)
            props = r.bytes(n)
        length = r.varint()
        if limit is not None and length > limit:
            raise StreamResetError(f"object of {length} bytes exceeds the limit {limit}", StreamResetCode.EXCESSIVE_LOAD)
        return group, subgroup, obj, prio, props, length


def padding_stream_header() -> bytes:
    return encode_varint(STREAM_TYPE_PADDING)


def padding_datagram(size: int) -> bytes:
    return encode_varint(DATAGRAM_TYPE_PADDING) + bytes(size)
