"""Shared wire structures: Location, Track Namespace, Key-Value-Pairs, Reason Phrase,
Token, Subscription Filter and the typed Message Parameters block (§ Notational
Conventions, § Track Naming, § Message Parameters)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import NamedTuple

from ..errors import KeyValueFormattingError, LocalUsageError, NeedMoreData, ProtocolViolation
from .buffer import Reader, Writer
from .varint import MAX_VARINT

MAX_NAMESPACE_FIELDS = 32
MAX_FULL_TRACK_NAME = 4096
MAX_REASON_PHRASE = 1024
MAX_KVP_VALUE = 0xFFFF

TrackNamespace = tuple[bytes, ...]


class Location(NamedTuple):
    """{Group, Object}; tuple ordering is the draft's Location ordering."""

    group: int
    object: int

    def encode(self, w: Writer) -> None:
        w.varint(self.group).varint(self.object)

    @classmethod
    def decode(cls, r: Reader) -> Location:
        return cls(r.varint(), r.varint())


# --- names -------------------------------------------------------------------------


def encode_namespace(w: Writer, ns: TrackNamespace) -> None:
    if len(ns) > MAX_NAMESPACE_FIELDS:
        raise LocalUsageError(f"namespace has {len(ns)} fields (max {MAX_NAMESPACE_FIELDS})")
    w.varint(len(ns))
    for part in ns:
        if not part:
            raise LocalUsageError("namespace fields must not be empty")
        w.lp_bytes(part)


def decode_namespace(r: Reader) -> TrackNamespace:
    count = r.varint()
    if count > MAX_NAMESPACE_FIELDS:
        raise ProtocolViolation(f"namespace has {count} fields (max {MAX_NAMESPACE_FIELDS})")
    parts = []
    total = 0
    for _ in range(count):
        length = r.varint()
        if length == 0:
            raise ProtocolViolation("empty namespace field")
        total += length
        if total > MAX_FULL_TRACK_NAME:
            raise ProtocolViolation("track namespace exceeds 4096 bytes")
        parts.append(r.bytes(length))
    return tuple(parts)


def encode_track_name(w: Writer, ns: TrackNamespace, name: bytes) -> None:
    encode_namespace(w, ns)
    if sum(map(len, ns)) + len(name) > MAX_FULL_TRACK_NAME:
        raise LocalUsageError("full track name exceeds 4096 bytes")
    w.lp_bytes(name)


def decode_track_name(r: Reader) -> tuple[TrackNamespace, bytes]:
    ns = decode_namespace(r)
    name = r.lp_bytes(MAX_FULL_TRACK_NAME - sum(map(len, ns)), "full track name")
    return ns, name


def namespace_from_str(text: str) -> TrackNamespace:
    """'live/demo' → (b'live', b'demo'): the CLI form of a namespace."""
    return tuple(p.encode() for p in text.strip("/").split("/") if p)


def namespace_to_str(ns: TrackNamespace) -> str:
    return "/".join(p.decode("utf-8", "backslashreplace") for p in ns)


# --- key-value pairs ---------------------------------------------------------------

KeyValuePairs = tuple[tuple[int, int | bytes], ...]


def encode_kvps(w: Writer, pairs: KeyValuePairs) -> None:
    """Key-Value-Pairs, delta-typed (§ Key-Value-Pair Structure); sorted stably by type."""
    prev = 0
    for key, value in sorted(pairs, key=lambda kv: kv[0]):
        w.varint(key - prev)
        prev = key
        if key & 1:
            if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) > MAX_KVP_VALUE:
                raise LocalUsageError(f"odd key {key:#x} needs a bytes value <= 65535 bytes")
            w.lp_bytes(value)
        else:
            if not isinstance(value, int):
                raise LocalUsageError(f"even key {key:#x} needs an integer value")
            w.varint(value)


def decode_kvps(r: Reader) -> KeyValuePairs:
    """Pairs until the reader's end; a truncated pair is a formatting error."""
    out: list[tuple[int, int | bytes]] = []
    key = 0
    try:
        while not r.at_end():
            key += r.varint()
            if key > MAX_VARINT:
                raise ProtocolViolation("key-value type exceeds 2^64-1")
            if key & 1:
                out.append((key, r.lp_bytes(MAX_KVP_VALUE, "key-value")))
            else:
                out.append((key, r.varint()))
    except NeedMoreData:
        raise KeyValueFormattingError("truncated key-value pair") from None
    return tuple(out)


def encode_kvp_block(pairs: KeyValuePairs) -> bytes:
    w = Writer()
    encode_kvps(w, pairs)
    return w.getvalue()


def decode_kvp_block(data: bytes | memoryview) -> KeyValuePairs:
    return decode_kvps(Reader(data))


def kvp_get(pairs: KeyValuePairs, key: int, default=None):
    for k, v in pairs:
        if k == key:
            return v
    return default


# --- reason phrase -----------------------------------------------------------------


def encode_reason(w: Writer, reason: str) -> None:
    data = reason.encode()
    if len(data) > MAX_REASON_PHRASE:
        data = data[:MAX_REASON_PHRASE].decode("utf-8", "ignore").encode()
    w.lp_bytes(data)


def decode_reason(r: Reader) -> str:
    return r.lp_bytes(MAX_REASON_PHRASE, "reason phrase").decode("utf-8", "replace")


# --- authorization token (§ AUTHORIZATION TOKEN Parameter) ---------------------------


class AliasType(IntEnum):
    DELETE = 0x0
    REGISTER = 0x1
    USE_ALIAS = 0x2
    USE_VALUE = 0x3


@dataclass(frozen=True, slots=True)
class Token:
    alias_type: int
    alias: int | None = None
    token_type: int | None = None
    value: bytes | None = field(default=None, repr=False)  # a credential: kept out of logs and reprs

    def encode(self) -> bytes:
        w = Writer().varint(self.alias_type)
        t = self.alias_type
        if t in (AliasType.DELETE, AliasType.REGISTER, AliasType.USE_ALIAS):
            if self.alias is None:
                raise LocalUsageError("token alias required")
            w.varint(self.alias)
        if t in (AliasType.REGISTER, AliasType.USE_VALUE):
            if self.token_type is None or self.value is None:
                raise LocalUsageError("token type and value required")
            w.varint(self.token_type).raw(self.value)
        elif t not in (AliasType.DELETE, AliasType.USE_ALIAS):
            raise LocalUsageError(f"unknown alias type {t}")
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Token:
        r = Reader(data)
        try:
            t = r.varint()
            if t in (AliasType.DELETE, AliasType.USE_ALIAS):
                tok = cls(t, r.varint())
            elif t == AliasType.REGISTER:
                tok = cls(t, r.varint(), r.varint(), bytes(r.rest()))
            elif t == AliasType.USE_VALUE:
                tok = cls(t, None, r.varint(), bytes(r.rest()))
            else:
                raise KeyValueFormattingError(f"unknown token alias type {t}")
        except NeedMoreData:
            raise KeyValueFormattingError("truncated token") from None
        if not r.at_end():
            raise KeyValueFormattingError("trailing bytes in token")
        return tok


# --- subscription filter (§ Subscription Filters) ------------------------------------


class FilterType(IntEnum):
    NEXT_GROUP_START = 0x1
    LARGEST_OBJECT = 0x2
    ABSOLUTE_START = 0x3
    ABSOLUTE_RANGE = 0x4


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    filter_type: int
    start: Location | None = None
    end_group_delta: int | None = None

    def encode(self) -> bytes:
        w = Writer().varint(self.filter_type)
        if self.filter_type in (FilterType.ABSOLUTE_START, FilterType.ABSOLUTE_RANGE):
            if self.start is None:
                raise LocalUsageError("absolute filters need a start location")
            self.start.encode(w)
        if self.filter_type == FilterType.ABSOLUTE_RANGE:
            if self.end_group_delta is None:
                raise LocalUsageError("AbsoluteRange needs end_group_delta")
            w.varint(self.end_group_delta)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> SubscriptionFilter:
        r = Reader(data)
        try:
            ft = r.varint()
            if ft in (FilterType.NEXT_GROUP_START, FilterType.LARGEST_OBJECT):
                out = cls(ft)
            elif ft == FilterType.ABSOLUTE_START:
                out = cls(ft, Location.decode(r))
            elif ft == FilterType.ABSOLUTE_RANGE:
                start = Location.decode(r)
                delta = r.varint()
                if start.group + delta > MAX_VARINT:
                    raise ProtocolViolation("end group exceeds 2^64-1")
                out = cls(ft, start, delta)
            else:
                raise ProtocolViolation(f"unknown filter type {ft}")
        except NeedMoreData:
            raise ProtocolViolation("truncated subscription filter") from None
        if not r.at_end():
            raise ProtocolViolation("trailing bytes in subscription filter")
        return out

    @property
    def end_group(self) -> int | None:
        if self.filter_type != FilterType.ABSOLUTE_RANGE or self.start is None:
            return None
        return self.start.group + (self.end_group_delta or 0)


# --- message parameters (§ Message Parameters) ---------------------------------------


class ParamType(IntEnum):
    OBJECT_DELIVERY_TIMEOUT = 0x02
    AUTHORIZATION_TOKEN = 0x03
    RENDEZVOUS_TIMEOUT = 0x04
    SUBGROUP_DELIVERY_TIMEOUT = 0x06
    EXPIRES = 0x08
    LARGEST_OBJECT = 0x09
    FILL_TIMEOUT = 0x0A
    FORWARD = 0x10
    SUBSCRIBER_PRIORITY = 0x20
    SUBSCRIPTION_FILTER = 0x21
    GROUP_ORDER = 0x22
    NEW_GROUP_REQUEST = 0x32
    TRACK_NAMESPACE_PREFIX = 0x34


class GroupOrder(IntEnum):
    ASCENDING = 0x1
    DESCENDING = 0x2


@dataclass(frozen=True, slots=True)
class Parameters:
    """The Message Parameters block as typed, optional fields (None = absent)."""

    object_delivery_timeout: int | None = field(default=None, metadata={"t": 0x02, "enc": "varint"})
    authorization_tokens: tuple[Token, ...] = field(default=(), metadata={"t": 0x03, "enc": "token"})
    rendezvous_timeout: int | None = field(default=None, metadata={"t": 0x04, "enc": "varint"})
    subgroup_delivery_timeout: int | None = field(default=None, metadata={"t": 0x06, "enc": "varint"})
    expires: int | None = field(default=None, metadata={"t": 0x08, "enc": "varint"})
    largest_object: Location | None = field(default=None, metadata={"t": 0x09, "enc": "location"})
    fill_timeout: int | None = field(default=None, metadata={"t": 0x0A, "enc": "varint"})
    forward: int | None = field(default=None, metadata={"t": 0x10, "enc": "bool8"})
    subscriber_priority: int | None = field(default=None, metadata={"t": 0x20, "enc": "uint8"})
    subscription_filter: SubscriptionFilter | None = field(default=None, metadata={"t": 0x21, "enc": "filter"})
    group_order: int | None = field(default=None, metadata={"t": 0x22, "enc": "order"})
    new_group_request: int | None = field(default=None, metadata={"t": 0x32, "enc": "varint"})
    track_namespace_prefix: TrackNamespace | None = field(default=None, metadata={"t": 0x34, "enc": "namespace"})

    def present_types(self) -> set[int]:
        return {_BY_NAME[name][0] for name in _BY_NAME if getattr(self, name) not in (None, ())}

    def replace(self, **changes) -> Parameters:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Parameters(**values)

    def merged(self, update: Parameters) -> Parameters:
        """This block with every parameter that `update` carries overriding ours."""
        changes = {f.name: getattr(update, f.name) for f in fields(update) if getattr(update, f.name) not in (None, ())}
        return self.replace(**changes)


_BY_NAME = {f.name: (f.metadata["t"], f.metadata["enc"]) for f in fields(Parameters)}
_BY_TYPE = {t: (name, enc) for name, (t, enc) in _BY_NAME.items()}


def encode_parameters(w: Writer, params: Parameters) -> None:
    items: list[tuple[int, str, object]] = []
    for name, (t, enc) in _BY_NAME.items():
        value = getattr(params, name)
        if enc == "token":
            items.extend((t, enc, tok) for tok in value)
        elif value is not None:
            items.append((t, enc, value))
    items.sort(key=lambda it: it[0])
    w.varint(len(items))
    prev = 0
    for t, enc, value in items:
        w.varint(t - prev)
        prev = t
        if enc == "varint":
            w.varint(value)  # type: ignore[arg-type]
        elif enc in ("uint8", "bool8", "order"):
            w.uint8(value)  # type: ignore[arg-type]
        elif enc == "location":
            value.encode(w)  # type: ignore[union-attr]
        elif enc in ("token", "filter"):
            w.lp_bytes(value.encode())  # type: ignore[union-attr]
        elif enc == "namespace":
            encode_namespace(w, value)  # type: ignore[arg-type]


def decode_parameters(r: Reader, allowed: frozenset[int] | None = None) -> Parameters:
    """Count-bounded parameters; unknown, misplaced or repeated ones close the session."""
    count = r.varint()
    values: dict[str, object] = {}
    tokens: list[Token] = []
    t = 0
    for _ in range(count):
        t += r.varint()
        if t > MAX_VARINT:
            raise ProtocolViolation("parameter type exceeds 2^64-1")
        spec = _BY_TYPE.get(t)
        if spec is None:
            raise ProtocolViolation(f"unknown message parameter {t:#x}")
        if allowed is not None and t not in allowed:
            raise ProtocolViolation(f"parameter {t:#x} not allowed in this message")
        name, enc = spec
        if enc == "token":
            tokens.append(Token.decode(r.lp_bytes(MAX_KVP_VALUE, "token")))
            continue
        if name in values:
            raise ProtocolViolation(f"duplicate parameter {t:#x}")
        if enc == "varint":
            values[name] = r.varint()
        elif enc == "uint8":
            values[name] = r.uint8()
        elif enc == "bool8":
            v = r.uint8()
            if v > 1:
                raise ProtocolViolation(f"FORWARD value {v} not 0 or 1")
            values[name] = v
        elif enc == "order":
            v = r.uint8()
            if v not in (1, 2):
                raise ProtocolViolation(f"GROUP_ORDER value {v} not 1 or 2")
            values[name] = v
        elif enc == "location":
            values[name] = Location.decode(r)
        elif enc == "filter":
            values[name] = SubscriptionFilter.decode(r.lp_bytes(MAX_KVP_VALUE, "filter"))
        elif enc == "namespace":
            values[name] = decode_namespace(r)
    if tokens:
        values["authorization_tokens"] = tuple(tokens)
    return Parameters(**values)  # type: ignore[arg-type]


EMPTY_PARAMETERS = Parameters()
