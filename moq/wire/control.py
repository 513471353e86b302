"""Control messages (§ Control Messages): one frozen dataclass per message type.

Frame: Message Type (vi64), Message Length (16 bits), Message Payload.  `encode()` gives
the whole frame; `decode_message(type, payload)` parses one payload, which must be
consumed exactly (a mismatch is a PROTOCOL_VIOLATION).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import LocalUsageError, NeedMoreData, ProtocolViolation, RequestErrorCode
from .buffer import Reader, Writer
from .types import (
    EMPTY_PARAMETERS,
    KeyValuePairs,
    Location,
    Parameters,
    TrackNamespace,
    decode_kvps,
    decode_namespace,
    decode_parameters,
    decode_reason,
    decode_track_name,
    encode_kvps,
    encode_namespace,
    encode_parameters,
    encode_reason,
    encode_track_name,
)
from .types import (
    ParamType as P,
)

MAX_MESSAGE_LENGTH = 0xFFFF
MAX_GOAWAY_URI = 8192

_SUBSCRIBE_PARAMS = frozenset(
    {P.AUTHORIZATION_TOKEN, P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT, P.RENDEZVOUS_TIMEOUT,
     P.SUBSCRIBER_PRIORITY, P.GROUP_ORDER, P.SUBSCRIPTION_FILTER, P.FORWARD, P.NEW_GROUP_REQUEST}
)
_PUBLISH_OK_PARAMS = frozenset(
    {P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT, P.SUBSCRIBER_PRIORITY, P.GROUP_ORDER,
     P.SUBSCRIPTION_FILTER, P.EXPIRES, P.FORWARD, P.NEW_GROUP_REQUEST}
)
_REQUEST_OK_PARAMS = _PUBLISH_OK_PARAMS | {P.LARGEST_OBJECT}
_SUBSCRIBE_OK_PARAMS = frozenset({P.EXPIRES, P.LARGEST_OBJECT})
_PUBLISH_PARAMS = frozenset({P.AUTHORIZATION_TOKEN, P.EXPIRES, P.LARGEST_OBJECT, P.FORWARD})
_FETCH_PARAMS = frozenset({P.AUTHORIZATION_TOKEN, P.SUBSCRIBER_PRIORITY, P.GROUP_ORDER, P.FILL_TIMEOUT})
_UPDATE_PARAMS = frozenset(
    {P.AUTHORIZATION_TOKEN, P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT, P.SUBSCRIBER_PRIORITY,
     P.SUBSCRIPTION_FILTER, P.FORWARD, P.NEW_GROUP_REQUEST, P.TRACK_NAMESPACE_PREFIX}
)
_AUTH_ONLY = frozenset({P.AUTHORIZATION_TOKEN})


class Message:
    TYPE: ClassVar[int]
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = frozenset()

    # concrete messages define encode_payload(w) and classmethod decode_payload(r)

    def encode(self) -> bytes:
        payload = Writer()
        self.encode_payload(payload)  # type: ignore[attr-defined]
        if len(payload) > MAX_MESSAGE_LENGTH:
            raise LocalUsageError(f"{type(self).__name__} payload exceeds 65535 bytes")
        return Writer().varint(self.TYPE).uint16(len(payload)).raw(payload.buf).getvalue()


REGISTRY: dict[int, type[Message]] = {}


def _message(cls):
    REGISTRY[cls.TYPE] = cls
    return cls


def decode_message(msg_type: int, payload: bytes | memoryview) -> Message:
    cls = REGISTRY.get(msg_type)
    if cls is None:
        raise ProtocolViolation(f"unknown control message type {msg_type:#x}")
    r = Reader(payload)
    try:
        msg = cls.decode_payload(r)  # type: ignore[attr-defined]
    except NeedMoreData:
        raise ProtocolViolation(f"{cls.__name__}: message shorter than its fields") from None
    if not r.at_end():
        raise ProtocolViolation(f"{cls.__name__}: {r.remaining()} trailing bytes")
    return msg


def _params(r: Reader, cls: type[Message]) -> Parameters:
    return decode_parameters(r, cls.ALLOWED_PARAMS)


# --- session ------------------------------------------------------------------------


class SetupOption:
    PATH = 0x01
    AUTHORIZATION_TOKEN = 0x03
    MAX_AUTH_TOKEN_CACHE_SIZE = 0x04
    AUTHORITY = 0x05
    MOQT_IMPLEMENTATION = 0x07


@_message
@dataclass(frozen=True, slots=True)
class Setup(Message):
    """§ SETUP: Setup Options as Key-Value-Pairs spanning the payload; unknown ones kept."""

    TYPE: ClassVar[int] = 0x2F00
    options: KeyValuePairs = ()

    def encode_payload(self, w: Writer) -> None:
        encode_kvps(w, self.options)

    @classmethod
    def decode_payload(cls, r: Reader) -> Setup:
        return cls(decode_kvps(r))

    def option(self, key: int, default=None):
        for k, v in self.options:
            if k == key:
                return v
        return default


@_message
@dataclass(frozen=True, slots=True)
class GoAway(Message):
    """§ GOAWAY; `request_id` is present only on the control stream."""

    TYPE: ClassVar[int] = 0x10
    new_session_uri: bytes = b""
    timeout: int = 0
    request_id: int | None = None

    def encode_payload(self, w: Writer) -> None:
        w.lp_bytes(self.new_session_uri).varint(self.timeout)
        if self.request_id is not None:
            w.varint(self.request_id)

    @classmethod
    def decode_payload(cls, r: Reader) -> GoAway:
        uri = r.lp_bytes(MAX_GOAWAY_URI, "New Session URI")
        timeout = r.varint()
        return cls(uri, timeout, None if r.at_end() else r.varint())


# --- responses ----------------------------------------------------------------------


@_message
@dataclass(frozen=True, slots=True)
class RequestOk(Message):
    """§ REQUEST_OK (PUBLISH_OK, REQUEST_UPDATE_OK, TRACK_STATUS_OK, ... share it)."""

    TYPE: ClassVar[int] = 0x7
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _REQUEST_OK_PARAMS
    parameters: Parameters = EMPTY_PARAMETERS
    track_properties: KeyValuePairs = ()

    def encode_payload(self, w: Writer) -> None:
        encode_parameters(w, self.parameters)
        encode_kvps(w, self.track_properties)

    @classmethod
    def decode_payload(cls, r: Reader):
        return cls(_params(r, cls), decode_kvps(r))


@_message
@dataclass(frozen=True, slots=True)
class PublishOk(Message):
    """PUBLISH_OK (0x1E in the Message Types table); same layout as REQUEST_OK."""

    TYPE: ClassVar[int] = 0x1E
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _PUBLISH_OK_PARAMS
    parameters: Parameters = EMPTY_PARAMETERS
    track_properties: KeyValuePairs = ()

    encode_payload = RequestOk.encode_payload

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishOk:
        params = _params(r, cls)
        if not r.at_end():  # § REQUEST_OK: Track Properties are empty in PUBLISH_OK
            raise ProtocolViolation("Track Properties in PUBLISH_OK")
        return cls(params)


@dataclass(frozen=True, slots=True)
class Redirect:
    connect_uri: bytes = b""
    track_namespace: TrackNamespace = ()
    track_name: bytes = b""


@_message
@dataclass(frozen=True, slots=True)
class RequestError(Message):
    """§ REQUEST_ERROR; `redirect` is present only with error code REDIRECT."""

    TYPE: ClassVar[int] = 0x5
    error_code: int = 0
    retry_interval: int = 0
    reason: str = ""
    redirect: Redirect | None = None

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.error_code).varint(self.retry_interval)
        encode_reason(w, self.reason)
        if self.error_code == RequestErrorCode.REDIRECT:
            rd = self.redirect or Redirect()
            w.lp_bytes(rd.connect_uri)
            encode_track_name(w, rd.track_namespace, rd.track_name)
        elif self.redirect is not None:
            raise LocalUsageError("redirect only goes with error code REDIRECT")

    @classmethod
    def decode_payload(cls, r: Reader) -> RequestError:
        code, retry = r.varint(), r.varint()
        reason = decode_reason(r)
        redirect = None
        if code == RequestErrorCode.REDIRECT:
            uri = r.lp_bytes(MAX_GOAWAY_URI, "Connect URI")
            ns, name = decode_track_name(r)
            redirect = Redirect(uri, ns, name)
        return cls(code, retry, reason, redirect)


# --- subscriptions ------------------------------------------------------------------


@_message
@dataclass(frozen=True, slots=True)
class Subscribe(Message):
    TYPE: ClassVar[int] = 0x3
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _SUBSCRIBE_PARAMS
    request_id: int = 0
    track_namespace: TrackNamespace = ()
    track_name: bytes = b""
    parameters: Parameters = EMPTY_PARAMETERS

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id)
        encode_track_name(w, self.track_namespace, self.track_name)
        encode_parameters(w, self.parameters)

    @classmethod
    def decode_payload(cls, r: Reader):
        rid = r.varint()
        ns, name = decode_track_name(r)
        return cls(rid, ns, name, _params(r, cls))


@_message
@dataclass(frozen=True, slots=True)
class TrackStatus(Message):
    """§ TRACK_STATUS: SUBSCRIBE's layout; answered by REQUEST_OK or REQUEST_ERROR."""

    TYPE: ClassVar[int] = 0xD
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _AUTH_ONLY  # delivery parameters are not included
    request_id: int = 0
    track_namespace: TrackNamespace = ()
    track_name: bytes = b""
    parameters: Parameters = EMPTY_PARAMETERS

    encode_payload = Subscribe.encode_payload
    decode_payload = classmethod(Subscribe.decode_payload.__func__)  # type: ignore[attr-defined]


@_message
@dataclass(frozen=True, slots=True)
class SubscribeOk(Message):
    TYPE: ClassVar[int] = 0x4
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _SUBSCRIBE_OK_PARAMS
    track_alias: int = 0
    parameters: Parameters = EMPTY_PARAMETERS
    track_properties: KeyValuePairs = ()

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.track_alias)
        encode_parameters(w, self.parameters)
        encode_kvps(w, self.track_properties)

    @classmethod
    def decode_payload(cls, r: Reader) -> SubscribeOk:
        alias = r.varint()
        return cls(alias, _params(r, cls), decode_kvps(r))


@_message
@dataclass(frozen=True, slots=True)
class RequestUpdate(Message):
    TYPE: ClassVar[int] = 0x2
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _UPDATE_PARAMS
    request_id: int = 0
    parameters: Parameters = EMPTY_PARAMETERS

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id)
        encode_parameters(w, self.parameters)

    @classmethod
    def decode_payload(cls, r: Reader) -> RequestUpdate:
        rid = r.varint()
        return cls(rid, _params(r, cls))


@_message
@dataclass(frozen=True, slots=True)
class Publish(Message):
    TYPE: ClassVar[int] = 0x1D
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _PUBLISH_PARAMS
    request_id: int = 0
    track_namespace: TrackNamespace = ()
    track_name: bytes = b""
    track_alias: int = 0
    parameters: Parameters = EMPTY_PARAMETERS
    track_properties: KeyValuePairs = ()

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id)
        encode_track_name(w, self.track_namespace, self.track_name)
        w.varint(self.track_alias)
        encode_parameters(w, self.parameters)
        encode_kvps(w, self.track_properties)

    @classmethod
    def decode_payload(cls, r: Reader) -> Publish:
        rid = r.varint()
        ns, name = decode_track_name(r)
        alias = r.varint()
        return cls(rid, ns, name, alias, _params(r, cls), decode_kvps(r))


@_message
@dataclass(frozen=True, slots=True)
class PublishDone(Message):
    TYPE: ClassVar[int] = 0xB
    status_code: int = 0
    stream_count: int = 0
    reason: str = ""

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.status_code).varint(self.stream_count)
        encode_reason(w, self.reason)

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishDone:
        return cls(r.varint(), r.varint(), decode_reason(r))


# --- fetch --------------------------------------------------------------------------


class FetchType:
    STANDALONE = 0x1
    RELATIVE_JOINING = 0x2
    ABSOLUTE_JOINING = 0x3


@dataclass(frozen=True, slots=True)
class StandaloneFetch:
    track_namespace: TrackNamespace
    track_name: bytes
    start: Location
    end: Location  # the end Location plus one; end.object == 0 means the whole group


@dataclass(frozen=True, slots=True)
class JoiningFetch:
    joining_request_id: int
    joining_start: int


@_message
@dataclass(frozen=True, slots=True)
class Fetch(Message):
    TYPE: ClassVar[int] = 0x16
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _FETCH_PARAMS
    request_id: int = 0
    fetch_type: int = FetchType.STANDALONE
    standalone: StandaloneFetch | None = None
    joining: JoiningFetch | None = None
    parameters: Parameters = EMPTY_PARAMETERS

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id).varint(self.fetch_type)
        if self.fetch_type == FetchType.STANDALONE:
            if self.standalone is None:
                raise LocalUsageError("standalone fetch needs `standalone`")
            s = self.standalone
            encode_track_name(w, s.track_namespace, s.track_name)
            s.start.encode(w)
            s.end.encode(w)
        elif self.fetch_type in (FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING):
            if self.joining is None:
                raise LocalUsageError("joining fetch needs `joining`")
            w.varint(self.joining.joining_request_id).varint(self.joining.joining_start)
        else:
            raise LocalUsageError(f"unknown fetch type {self.fetch_type}")
        encode_parameters(w, self.parameters)

    @classmethod
    def decode_payload(cls, r: Reader) -> Fetch:
        rid, ftype = r.varint(), r.varint()
        standalone = joining = None
        if ftype == FetchType.STANDALONE:
            ns, name = decode_track_name(r)
            standalone = StandaloneFetch(ns, name, Location.decode(r), Location.decode(r))
        elif ftype in (FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING):
            joining = JoiningFetch(r.varint(), r.varint())
        else:
            raise ProtocolViolation(f"unknown fetch type {ftype}")
        return cls(rid, ftype, standalone, joining, _params(r, cls))


@_message
@dataclass(frozen=True, slots=True)
class FetchOk(Message):
    TYPE: ClassVar[int] = 0x18
    end_of_track: bool = False
    end_location: Location = field(default_factory=lambda: Location(0, 0))
    parameters: Parameters = EMPTY_PARAMETERS
    track_properties: KeyValuePairs = ()

    def encode_payload(self, w: Writer) -> None:
        w.uint8(1 if self.end_of_track else 0)
        self.end_location.encode(w)
        encode_parameters(w, self.parameters)
        encode_kvps(w, self.track_properties)

    @classmethod
    def decode_payload(cls, r: Reader) -> FetchOk:
        eot = r.uint8()
        if eot > 1:
            raise ProtocolViolation(f"End Of Track must be 0 or 1, got {eot}")
        end = Location.decode(r)
        return cls(bool(eot), end, _params(r, cls), decode_kvps(r))


# --- namespaces ---------------------------------------------------------------------


@_message
@dataclass(frozen=True, slots=True)
class PublishNamespace(Message):
    TYPE: ClassVar[int] = 0x6
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _AUTH_ONLY
    request_id: int = 0
    track_namespace: TrackNamespace = ()
    parameters: Parameters = EMPTY_PARAMETERS

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id)
        encode_namespace(w, self.track_namespace)
        encode_parameters(w, self.parameters)

    @classmethod
    def decode_payload(cls, r: Reader):
        rid = r.varint()
        ns = decode_namespace(r)
        return cls(rid, ns, _params(r, cls))


@_message
@dataclass(frozen=True, slots=True)
class SubscribeNamespace(Message):
    TYPE: ClassVar[int] = 0x50
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _AUTH_ONLY
    request_id: int = 0
    track_namespace_prefix: TrackNamespace = ()
    parameters: Parameters = EMPTY_PARAMETERS

    def encode_payload(self, w: Writer) -> None:
        w.varint(self.request_id)
        encode_namespace(w, self.track_namespace_prefix)
        encode_parameters(w, self.parameters)

    decode_payload = classmethod(PublishNamespace.decode_payload.__func__)  # type: ignore[attr-defined]


@_message
@dataclass(frozen=True, slots=True)
class SubscribeTracks(Message):
    TYPE: ClassVar[int] = 0x51
    ALLOWED_PARAMS: ClassVar[frozenset[int]] = _AUTH_ONLY | {P.FORWARD}
    request_id: int = 0
    track_namespace_prefix: TrackNamespace = ()
    parameters: Parameters = EMPTY_PARAMETERS

    encode_payload = SubscribeNamespace.encode_payload
    decode_payload = classmethod(PublishNamespace.decode_payload.__func__)  # type: ignore[attr-defined]


@_message
@dataclass(frozen=True, slots=True)
class Namespace(Message):
    TYPE: ClassVar[int] = 0x8
    track_namespace_suffix: TrackNamespace = ()

    def encode_payload(self, w: Writer) -> None:
        encode_namespace(w, self.track_namespace_suffix)

    @classmethod
    def decode_payload(cls, r: Reader):
        return cls(decode_namespace(r))


@_message
@dataclass(frozen=True, slots=True)
class NamespaceDone(Message):
    TYPE: ClassVar[int] = 0xE
    track_namespace_suffix: TrackNamespace = ()

    encode_payload = Namespace.encode_payload
    decode_payload = classmethod(Namespace.decode_payload.__func__)  # type: ignore[attr-defined]


@_message
@dataclass(frozen=True, slots=True)
class PublishBlocked(Message):
    TYPE: ClassVar[int] = 0xF
    track_namespace_suffix: TrackNamespace = ()
    track_name: bytes = b""

    def encode_payload(self, w: Writer) -> None:
        encode_track_name(w, self.track_namespace_suffix, self.track_name)

    @classmethod
    def decode_payload(cls, r: Reader) -> PublishBlocked:
        ns, name = decode_track_name(r)
        return cls(ns, name)


#: messages that may open a request stream (§ Session initialization)
REQUEST_TYPES = (Subscribe, Publish, Fetch, TrackStatus, PublishNamespace, SubscribeNamespace, SubscribeTracks)
