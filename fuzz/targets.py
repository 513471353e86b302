"""The fuzz targets: `TARGETS[name](data)` returns normally or raises a protocol error
(`PROTOCOL_ERRORS`); any other exception, including a failed consistency check, is a bug.

Several targets read a first "mode" byte before the input proper (`Mode`): how to chunk the
input (0 = one piece, n = pieces of n bytes), whether the stream ends with it (FIN), and a
target-specific flag (fetch group order, an object size limit).  The fuzzer mutates it like
any other byte, so it explores chunkings as well as contents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass

from moq.errors import LocalUsageError, MoQError, NeedMoreData, SessionError
from moq.wire import control as c
from moq.wire.buffer import Reader, Writer, varint_at
from moq.wire.data import STREAM_TYPE_FETCH, ObjectDatagram
from moq.wire.framing import MessageDecoder, UniStreamDecoder, decode_datagram
from moq.wire.types import (
    Parameters,
    SubscriptionFilter,
    Token,
    decode_kvp_block,
    decode_namespace,
    decode_parameters,
    decode_track_name,
    encode_kvp_block,
    encode_namespace,
    encode_parameters,
    encode_track_name,
)
from moq.wire.varint import MAX_VARINT, decode_varint, encode_varint, varint_size

PROTOCOL_ERRORS = (MoQError, NeedMoreData)
CLASSES = sorted(c.REGISTRY.values(), key=lambda cls: cls.TYPE)
PARAM_SETS = sorted({cls.ALLOWED_PARAMS for cls in CLASSES}, key=sorted) + [None]
MAX_OBJECT = 100  # the object size limit a mode flag turns on


class Mode:
    """The first byte: bits 0-5 chunk size (0 = whole), bit 6 FIN, bit 7 a target flag."""

    __slots__ = ("chunk", "fin", "flag", "data")

    def __init__(self, data: bytes) -> None:
        head = data[0] if data else 0
        self.chunk = head & 0x3F
        self.fin = bool(head & 0x40)
        self.flag = bool(head & 0x80)
        self.data = data[1:]

    def pieces(self, data: bytes | None = None) -> list[bytes]:
        data = self.data if data is None else data
        if not self.chunk or len(data) <= self.chunk:
            return [data]
        return [data[i:i + self.chunk] for i in range(0, len(data), self.chunk)]


def plain(value):
    """A comparable form of decoded output (payload memoryviews become bytes)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if not hasattr(value, "_fields") else value
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(plain(getattr(value, f.name)) for f in fields(value)))
    return value


def outcome(feed: Callable[[], list]) -> tuple[list, MoQError | None]:
    """(items, error): what a decoder produced before it stopped, and the error it stopped on."""
    items: list = []
    try:
        items = feed()
    except MoQError as exc:
        return items, exc
    return items, None


def same_error(a: MoQError | None, b: MoQError | None, what: str) -> None:
    assert (a is None) == (b is None), f"{what}: {a!r} whole vs {b!r} chunked"
    if a is not None:
        assert type(a) is type(b) and a.code == b.code, f"{what}: {a!r} whole vs {b!r} chunked"  # type: ignore[union-attr]


# --- varints ---------------------------------------------------------------------------


def fuzz_varint(data: bytes) -> None:
    """decode_varint, varint_at and Reader.varint agree; the value re-encodes minimally."""
    try:
        value, end = decode_varint(data)
    except NeedMoreData:
        _, stop = varint_at(data, 0, len(data))
        assert stop > len(data), "decode_varint wanted more, varint_at did not"
        return
    assert varint_at(data, 0, len(data)) == (value, end)
    assert Reader(data).varint() == value
    assert 0 <= value <= MAX_VARINT
    enc = encode_varint(value)
    assert len(enc) == varint_size(value) <= end and decode_varint(enc) == (value, len(enc))


# --- control messages --------------------------------------------------------------------


def reencode(msg: c.Message) -> None:
    """A decoded message encodes (the encoder accepts all the decoder does) to bytes that
    decode to the same message."""
    frame = msg.encode()
    msg_type, p = decode_varint(frame)
    assert msg_type == msg.TYPE and int.from_bytes(frame[p:p + 2], "big") == len(frame) - p - 2
    again = c.decode_message(msg_type, frame[p + 2:])
    assert again == msg, f"{msg!r} re-decoded as {again!r}"


def fuzz_control_frames(data: bytes) -> None:
    """MessageDecoder over framed control messages (a control or request stream): the same
    messages or error whatever the chunking; every message re-encodes."""
    mode = Mode(data)

    def whole() -> list:
        dec = MessageDecoder()
        out = dec.feed(mode.data)
        if mode.fin:
            dec.check_fin()
        return out

    def chunked() -> list:
        dec, out = MessageDecoder(), []
        for piece in mode.pieces():
            out += dec.feed(piece)
        if mode.fin:
            dec.check_fin()
        return out

    items, err = outcome(whole)
    items2, err2 = outcome(chunked)
    same_error(err, err2, "control frames")
    if err is None:
        assert items == items2
        for msg in items:
            reencode(msg)


def fuzz_control_payload(data: bytes) -> None:
    """decode_message for the message type the first byte picks, on the rest as its payload."""
    if not data:
        return
    cls = CLASSES[data[0] % len(CLASSES)]
    try:
        msg = c.decode_message(cls.TYPE, data[1:])
    except SessionError:
        return
    reencode(msg)


# --- unidirectional streams ------------------------------------------------------------------


def _stream(mode: Mode, stream: bytes, max_payload: int | None, descending: bool) -> None:
    def run(pieces: list[bytes]) -> list:
        dec = UniStreamDecoder(max_payload, lambda _rid: descending)
        out: list = []
        for i, piece in enumerate(pieces):
            out += dec.feed(piece, fin=mode.fin and i == len(pieces) - 1)
        if mode.fin and not pieces:
            out += dec.feed(b"", fin=True)
        return [plain(item) for item in out]

    items, err = outcome(lambda: run([stream]))
    items2, err2 = outcome(lambda: run(mode.pieces(stream)))
    same_error(err, err2, "uni stream")
    if err is None:
        assert items == items2, f"whole {items!r} vs chunked {items2!r}"


def fuzz_uni_stream(data: bytes) -> None:
    """A whole unidirectional stream, any type (control, subgroup, fetch, padding, unknown)."""
    mode = Mode(data)
    _stream(mode, mode.data, MAX_OBJECT if mode.flag else None, False)


def fuzz_subgroup_stream(data: bytes) -> None:
    """A subgroup stream: the byte after the mode is forced to a SUBGROUP_HEADER type
    (0b0XX1XXXX); the flag turns on an object size limit (StreamResetError EXCESSIVE_LOAD)."""
    mode = Mode(data)
    if not mode.data:
        return
    stream = bytes((0x10 | (mode.data[0] & 0x6F),)) + mode.data[1:]
    _stream(mode, stream, MAX_OBJECT if mode.flag else None, False)


def fuzz_fetch_stream(data: bytes) -> None:
    """A fetch stream (FETCH_HEADER type 0x05 prepended); the flag is descending group order."""
    mode = Mode(data)
    _stream(mode, encode_varint(STREAM_TYPE_FETCH) + mode.data, None, mode.flag)


# --- datagrams ----------------------------------------------------------------------------


def fuzz_datagram(data: bytes) -> None:
    """decode_datagram; a decoded datagram re-encodes to one that decodes the same."""
    dg = decode_datagram(data)
    if dg is None:
        return
    again = decode_datagram(dg.encode())
    assert isinstance(again, ObjectDatagram) and plain(again) == plain(dg), f"{dg!r} re-decoded as {again!r}"


# --- structures inside messages ---------------------------------------------------------------


def fuzz_parameters(data: bytes) -> None:
    """decode_parameters under the allowed set the first byte picks (NeedMoreData may escape:
    it is a bounded message's decoder that turns it into PROTOCOL_VIOLATION)."""
    if not data:
        return
    allowed = PARAM_SETS[data[0] % len(PARAM_SETS)]
    r = Reader(data[1:])
    params = decode_parameters(r, allowed)
    w = Writer()
    encode_parameters(w, params)
    again = decode_parameters(Reader(w.getvalue()), allowed)
    assert again == params, f"{params!r} re-decoded as {again!r}"
    assert isinstance(params, Parameters)


def fuzz_kvp(data: bytes) -> None:
    """Key-Value-Pairs (Setup Options, Track and Object Properties)."""
    pairs = decode_kvp_block(data)
    assert decode_kvp_block(encode_kvp_block(pairs)) == pairs


def fuzz_token(data: bytes) -> None:
    """The AUTHORIZATION TOKEN parameter's value."""
    tok = Token.decode(data)
    assert Token.decode(tok.encode()) == tok


def fuzz_filter(data: bytes) -> None:
    """The SUBSCRIPTION_FILTER parameter's value."""
    flt = SubscriptionFilter.decode(data)
    assert SubscriptionFilter.decode(flt.encode()) == flt
    if flt.end_group is not None:
        assert flt.end_group <= MAX_VARINT


def fuzz_track_name(data: bytes) -> None:
    """Track Namespace (flag clear) or Full Track Name (flag set)."""
    mode = Mode(data)
    r = Reader(mode.data)
    w = Writer()
    if mode.flag:
        ns, name = decode_track_name(r)
        encode_track_name(w, ns, name)
        assert decode_track_name(Reader(w.getvalue())) == (ns, name)
    else:
        ns = decode_namespace(r)
        encode_namespace(w, ns)
        assert decode_namespace(Reader(w.getvalue())) == ns


def _session_targets() -> dict[str, Callable[[bytes], None]]:
    from .session_targets import fuzz_data_memory, fuzz_session, fuzz_setup

    return {"setup": fuzz_setup, "session": fuzz_session, "data_memory": fuzz_data_memory}


TARGETS: dict[str, Callable[[bytes], None]] = {
    "varint": fuzz_varint,
    "control_frames": fuzz_control_frames,
    "control_payload": fuzz_control_payload,
    "uni_stream": fuzz_uni_stream,
    "subgroup_stream": fuzz_subgroup_stream,
    "fetch_stream": fuzz_fetch_stream,
    "datagram": fuzz_datagram,
    "parameters": fuzz_parameters,
    "kvp": fuzz_kvp,
    "token": fuzz_token,
    "filter": fuzz_filter,
    "track_name": fuzz_track_name,
    **_session_targets(),
}

#: share of `--runs` a bounded run gives each target (the session targets cost ~10x a decoder's)
RUN_WEIGHT = {"session": 0.15, "data_memory": 0.1, "setup": 0.4, "control_frames": 0.6, "uni_stream": 0.6, "subgroup_stream": 0.6,
              "fetch_stream": 0.6}


def check(name: str, data: bytes) -> None:
    """Run one target on one input: protocol errors are fine, anything else propagates.
    LocalUsageError is the library blaming its caller; from a decoder it is a bug too."""
    try:
        TARGETS[name](data)
    except LocalUsageError:
        raise
    except PROTOCOL_ERRORS:
        pass
