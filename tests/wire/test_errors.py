"""Specific error codes for malformed input (more in tests/vectors/invalid.json, which
test_vectors.py runs).  The bytes here are assembled by hand, never by our encoder."""

from __future__ import annotations

import pytest

from moq.errors import (
    KeyValueFormattingError,
    LocalUsageError,
    MoQError,
    NeedMoreData,
    ProtocolViolation,
    SessionError,
)
from moq.wire import control as c
from moq.wire.buffer import Reader, Writer
from moq.wire.data import STREAM_TYPE_FETCH, ObjectDatagram, SubgroupHeader, encode_subgroup_object
from moq.wire.framing import MessageDecoder, UniStreamDecoder, decode_datagram
from moq.wire.types import (
    Location,
    SubscriptionFilter,
    Token,
    decode_kvp_block,
    encode_kvp_block,
    encode_namespace,
    encode_track_name,
)
from moq.wire.varint import encode_varint


def vi(value: int) -> bytes:
    """A minimal varint, by the draft's table (independent of the codec)."""
    for length, top in ((1, 0x7F), (2, 0x3FFF), (3, 0x1FFFFF), (4, 0xFFFFFFF)):
        if value <= top:
            prefix = ((1 << (length - 1)) - 1) << (7 * length + 1)
            return (prefix | value).to_bytes(length, "big")
    raise AssertionError("keep test values small")


def frame(msg_type: int, payload: bytes) -> bytes:
    return vi(msg_type) + len(payload).to_bytes(2, "big") + payload


def lp(data: bytes) -> bytes:
    return vi(len(data)) + data


def ns(*fields: bytes) -> bytes:
    return vi(len(fields)) + b"".join(lp(f) for f in fields)


def control_error(data: bytes) -> MoQError:
    with pytest.raises(MoQError) as info:
        MessageDecoder().feed(data)
    return info.value


def assert_violation(data: bytes) -> None:
    err = control_error(data)
    assert isinstance(err, ProtocolViolation) and err.code == 0x3, repr(err)


def test_error_classes_carry_the_draft_codes():
    assert ProtocolViolation().code == 0x3
    assert KeyValueFormattingError().code == 0x6
    assert issubclass(ProtocolViolation, SessionError) and issubclass(KeyValueFormattingError, SessionError)
    assert not issubclass(NeedMoreData, MoQError)
    assert not issubclass(LocalUsageError, MoQError)


# --- control messages ---------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", [0x0, 0x1, 0x9, 0x11, 0x20, 0x21, 0x40, 0x41, 0x2F01, 0x1000])
def test_unknown_message_type(msg_type):
    assert msg_type not in c.REGISTRY
    assert_violation(frame(msg_type, b""))
    with pytest.raises(ProtocolViolation):
        c.decode_message(msg_type, b"")


# every message whose payload does not end with Key-Value-Pairs (Setup Options and Track
# Properties span the rest of the payload, so there a trailing byte is a truncated KVP)
FIXED_END = [
    c.GoAway(b"", 0, 1),
    c.RequestError(0x10, 0, "x"),
    c.RequestError(0x34, 0, "", c.Redirect(b"u", (b"a",), b"n")),
    c.Subscribe(0, (b"a",), b"n"),
    c.TrackStatus(0, (b"a",), b"n"),
    c.RequestUpdate(1),
    c.PublishDone(0, 0, ""),
    c.Fetch(0, 1, c.StandaloneFetch((b"a",), b"n", Location(0, 0), Location(1, 0))),
    c.Fetch(0, 2, None, c.JoiningFetch(0, 1)),
    c.Fetch(0, 3, None, c.JoiningFetch(0, 1)),
    c.PublishNamespace(0, (b"a",)),
    c.SubscribeNamespace(0, (b"a",)),
    c.SubscribeTracks(0, (b"a",)),
    c.Namespace((b"a",)),
    c.NamespaceDone((b"a",)),
    c.PublishBlocked((b"a",), b"n"),
]


@pytest.mark.parametrize("msg", FIXED_END, ids=[type(m).__name__ for m in FIXED_END])
@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02"], ids=["1", "2"])
def test_trailing_bytes_after_message(msg, extra):
    """ "If the length does not match the length of the Message Payload, the receiver MUST
    close the session with a PROTOCOL_VIOLATION." """
    data = msg.encode()
    pos = len(vi(msg.TYPE)) + 2
    assert MessageDecoder().feed(data) == [msg]
    assert_violation(frame(msg.TYPE, data[pos:] + extra))
    for cut in range(1, len(data) - pos + 1):
        short = data[pos : len(data) - cut]
        if isinstance(msg, c.GoAway) and cut == 1:
            # without its optional Request ID the GOAWAY is still complete
            assert MessageDecoder().feed(frame(msg.TYPE, short)) == [c.GoAway(b"", 0, None)]
            continue
        # a Message Length shorter than the fields
        assert_violation(frame(msg.TYPE, short))


def test_payload_shorter_than_fields():
    # SUBSCRIBE: Request ID, then nothing
    assert_violation(frame(0x3, b"\x00"))
    # FETCH_OK: End Of Track only
    assert_violation(frame(0x18, b"\x01"))
    # PUBLISH_DONE: a reason phrase longer than what is left
    assert_violation(frame(0xB, b"\x00\x00\x05ab"))


def test_unknown_parameter_and_duplicates():
    head = b"\x00" + ns(b"a") + lp(b"v")
    assert_violation(frame(0x3, head + b"\x01" + b"\x05\x00"))  # 0x05 is not a parameter
    assert_violation(frame(0x3, head + b"\x02" + b"\x20\x01" + b"\x00\x02"))  # SUBSCRIBER_PRIORITY twice
    assert_violation(frame(0x3, head + b"\x02" + b"\x21\x01\x01" + b"\x00\x01\x02"))  # filter twice


def test_repeated_authorization_token_is_allowed():
    head = b"\x00" + ns(b"a") + lp(b"v")
    tok = lp(b"\x02\x01")  # USE_ALIAS 1
    msg = MessageDecoder().feed(frame(0x3, head + b"\x02" + b"\x03" + tok + b"\x00" + tok))[0]
    assert msg.parameters.authorization_tokens == (Token(2, 1), Token(2, 1))


@pytest.mark.parametrize("value", [2, 3, 0xFF])
def test_forward_outside_0_1(value):
    assert_violation(frame(0x3, b"\x00" + ns() + lp(b"") + b"\x01\x10" + bytes([value])))


@pytest.mark.parametrize("value", [0, 3, 0xFF])
def test_group_order_outside_1_2(value):
    assert_violation(frame(0x3, b"\x00" + ns() + lp(b"") + b"\x01\x22" + bytes([value])))
    assert_violation(frame(0x16, b"\x00\x02\x00\x00" + b"\x01\x22" + bytes([value])))


# (message type, payload before the parameters, a parameter the draft does not allow there)
MISPLACED = [
    (0x3, b"\x00" + ns() + lp(b""), b"\x0a\x00"),  # FILL_TIMEOUT in SUBSCRIBE
    (0x3, b"\x00" + ns() + lp(b""), b"\x09\x00\x00"),  # LARGEST_OBJECT in SUBSCRIBE
    (0x3, b"\x00" + ns() + lp(b""), b"\x34\x00"),  # TRACK_NAMESPACE_PREFIX in SUBSCRIBE
    (0x16, b"\x00\x02\x00\x00", b"\x10\x01"),  # FORWARD in FETCH
    (0x16, b"\x00\x02\x00\x00", b"\x21\x01\x01"),  # SUBSCRIPTION_FILTER in FETCH
    (0x16, b"\x00\x02\x00\x00", b"\x02\x00"),  # OBJECT_DELIVERY_TIMEOUT in FETCH
    (0x4, b"\x00", b"\x20\x01"),  # SUBSCRIBER_PRIORITY in SUBSCRIBE_OK
    (0x4, b"\x00", b"\x03\x02\x02\x01"),  # AUTHORIZATION_TOKEN in SUBSCRIBE_OK
    (0x1D, b"\x00" + ns() + lp(b"") + b"\x00", b"\x20\x01"),  # SUBSCRIBER_PRIORITY in PUBLISH
    (0x1E, b"", b"\x03\x02\x02\x01"),  # AUTHORIZATION_TOKEN in PUBLISH_OK
    (0x1E, b"", b"\x04\x00"),  # RENDEZVOUS_TIMEOUT in PUBLISH_OK
    (0x2, b"\x00", b"\x08\x00"),  # EXPIRES in REQUEST_UPDATE
    (0x2, b"\x00", b"\x0a\x00"),  # FILL_TIMEOUT in REQUEST_UPDATE
    (0x6, b"\x00" + ns(b"a"), b"\x10\x01"),  # FORWARD in PUBLISH_NAMESPACE
    (0x50, b"\x00" + ns(b"a"), b"\x20\x01"),  # SUBSCRIBER_PRIORITY in SUBSCRIBE_NAMESPACE
    (0x51, b"\x00" + ns(b"a"), b"\x08\x00"),  # EXPIRES in SUBSCRIBE_TRACKS
    (0x18, b"\x00\x00\x00", b"\x09\x00\x00"),  # LARGEST_OBJECT in FETCH_OK
    (0x7, b"", b"\x03\x02\x02\x01"),  # AUTHORIZATION_TOKEN in REQUEST_OK
]


@pytest.mark.parametrize("msg_type,head,param", MISPLACED, ids=[f"{t:#x}-{p.hex()}" for t, _, p in MISPLACED])
def test_parameter_not_allowed_in_message(msg_type, head, param):
    """ "If it appears in some other type of message, the receiving endpoint MUST close the
    connection with a PROTOCOL_VIOLATION." (§ Parameter Scope)"""
    assert_violation(frame(msg_type, head + b"\x01" + param))


def test_track_status_rejects_delivery_parameters():
    """§ TRACK_STATUS: "subscriber parameters related to Track delivery (e.g.
    SUBSCRIBER_PRIORITY) are not included", and § SUBSCRIBER PRIORITY Parameter lists
    where it MAY appear: "SUBSCRIBE, FETCH, REQUEST_UPDATE ..., or PUBLISH_OK" — not
    TRACK_STATUS; § Parameter Scope: elsewhere → PROTOCOL_VIOLATION."""
    assert_violation(frame(0xD, b"\x00" + ns(b"a") + lp(b"v") + b"\x01\x20\x05"))


def test_publish_ok_rejects_track_properties():
    """§ REQUEST_OK: "Track Properties ... are empty in PUBLISH_OK, ... If an endpoint
    receives Track Properties in one of these messages it MUST close the session with a
    PROTOCOL_VIOLATION."  PUBLISH_OK has its own type (0x1E), so the codec can tell."""
    assert_violation(frame(0x1E, b"\x00" + b"\x0e\x0a"))


# --- names ------------------------------------------------------------------------------------


def test_namespace_field_count():
    ok = frame(0x8, ns(*[b"x"] * 32))
    assert MessageDecoder().feed(ok) == [c.Namespace((b"x",) * 32)]
    assert_violation(frame(0x8, ns(*[b"x"] * 33)))
    assert_violation(frame(0x50, b"\x00" + ns(*[b"x"] * 33) + b"\x00"))
    with pytest.raises(LocalUsageError):
        encode_namespace(Writer(), (b"x",) * 33)


def test_namespace_empty_field():
    assert_violation(frame(0x8, b"\x02" + lp(b"a") + b"\x00"))
    assert_violation(frame(0x6, b"\x00" + b"\x01\x00" + b"\x00"))
    with pytest.raises(LocalUsageError):
        encode_namespace(Writer(), (b"a", b""))


def test_full_track_name_limit():
    """ "The maximum total length of a Full Track Name is 4,096 bytes" (§ Track Naming)."""
    fields = (b"a" * 2000, b"b" * 2000)
    exact = frame(0xF, ns(*fields) + lp(b"c" * 96))
    assert MessageDecoder().feed(exact) == [c.PublishBlocked(fields, b"c" * 96)]
    assert_violation(frame(0xF, ns(*fields) + lp(b"c" * 97)))
    # the same limit in SUBSCRIBE, FETCH and a Redirect
    assert_violation(frame(0x3, b"\x00" + ns(*fields) + lp(b"c" * 97) + b"\x00"))
    assert_violation(frame(0x16, b"\x00\x01" + ns(*fields) + lp(b"c" * 97) + b"\x00\x00\x01\x00\x00"))
    assert_violation(frame(0x5, b"\x34\x00\x00" + lp(b"") + ns(*fields) + lp(b"c" * 97)))
    with pytest.raises(LocalUsageError):
        encode_track_name(Writer(), fields, b"c" * 97)


def test_namespace_alone_over_4096():
    """ "If an endpoint receives a Track Namespace ... exceeding 4,096 bytes" """
    assert MessageDecoder().feed(frame(0x8, ns(b"a" * 2048, b"b" * 2048))) == [c.Namespace((b"a" * 2048, b"b" * 2048))]
    assert_violation(frame(0x8, ns(b"a" * 2048, b"b" * 2049)))


def test_reason_phrase_limit():
    ok = frame(0x5, b"\x10\x00" + lp(b"r" * 1024))
    assert MessageDecoder().feed(ok)[0].reason == "r" * 1024
    assert_violation(frame(0x5, b"\x10\x00" + lp(b"r" * 1025)))
    assert_violation(frame(0xB, b"\x02\x00" + lp(b"r" * 1025)))


def test_goaway_uri_limit():
    ok = frame(0x10, lp(b"u" * 8192) + b"\x00")
    assert MessageDecoder().feed(ok) == [c.GoAway(b"u" * 8192, 0, None)]
    assert_violation(frame(0x10, lp(b"u" * 8193) + b"\x00"))


def test_message_longer_than_65535_is_refused_on_encode():
    with pytest.raises(LocalUsageError):
        c.Setup(((1, b"x" * 40000), (3, b"y" * 40000))).encode()


# --- key-value pairs and tokens -----------------------------------------------------------------


@pytest.mark.parametrize("block", [b"\x01", b"\x01\x05ab", b"\x02", b"\x02\x80", b"\x04\x01\x03"])
def test_truncated_kvp(block):
    with pytest.raises(KeyValueFormattingError) as info:
        decode_kvp_block(block)
    assert info.value.code == 0x6


def test_truncated_kvp_in_properties():
    for payload in (b"\x01\x05/l", b"\x02\xc0\x01"):
        err = control_error(frame(0x2F00, payload))
        assert isinstance(err, KeyValueFormattingError) and err.code == 0x6
    for msg_type, head in ((0x4, b"\x00\x00"), (0x7, b"\x00"), (0x1D, b"\x00" + ns() + lp(b"") + b"\x00\x00"),
                           (0x18, b"\x00\x00\x00\x00")):
        err = control_error(frame(msg_type, head + b"\x03\x05ab"))
        assert isinstance(err, KeyValueFormattingError) and err.code == 0x6


def test_kvp_value_length_limit():
    assert decode_kvp_block(b"\x01" + vi(0xFFFF) + b"v" * 0xFFFF) == ((1, b"v" * 0xFFFF),)
    with pytest.raises(ProtocolViolation):
        decode_kvp_block(b"\x01" + vi(0x10000) + b"v" * 0x10000)
    with pytest.raises(LocalUsageError):
        encode_kvp_block(((1, b"v" * 0x10000),))


def test_kvp_value_type_must_match_parity():
    with pytest.raises(LocalUsageError):
        encode_kvp_block(((1, 5),))
    with pytest.raises(LocalUsageError):
        encode_kvp_block(((2, b"x"),))


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x01", b"\x01\x05", b"\x02", b"\x03", b"\x04\x00", b"\x00\x01\x02",
                                  b"\x02\x01\x00", b"\x80"])
def test_malformed_token(data):
    """ "If the Token structure cannot be decoded, the receiver MUST close the Session with
    KEY_VALUE_FORMATTING_ERROR." """
    with pytest.raises(KeyValueFormattingError) as info:
        Token.decode(data)
    assert info.value.code == 0x6


def test_token_value_is_the_rest_of_the_parameter():
    assert Token.decode(b"\x01\x05\x00") == Token(1, 5, 0, b"")
    assert Token.decode(b"\x03\x00abc") == Token(3, None, 0, b"abc")


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x05", b"\x03\x01", b"\x04\x01\x02", b"\x01\x00", b"\x02\x00",
                                  b"\x03\x01\x02\x03", b"\x04\x01\x02\x03\x04"])
def test_malformed_filter(data):
    with pytest.raises(ProtocolViolation):
        SubscriptionFilter.decode(data)


# --- data plane ---------------------------------------------------------------------------------


def uni_error(data: bytes, fin: bool = False, descending: bool = False) -> MoQError:
    dec = UniStreamDecoder()
    dec.fetch_codec.descending = descending
    with pytest.raises(MoQError) as info:
        dec.feed(data, fin=fin)
    return info.value


RESERVED_SUBGROUP_TYPES = [0x16, 0x17, 0x1E, 0x1F, 0x36, 0x37, 0x3E, 0x3F, 0x56, 0x57, 0x5E, 0x5F, 0x76, 0x77, 0x7E, 0x7F]


@pytest.mark.parametrize("stream_type", RESERVED_SUBGROUP_TYPES, ids=hex)
def test_subgroup_id_mode_0b11(stream_type):
    err = uni_error(bytes([stream_type]) + b"\x01\x02\x03\x04")
    assert isinstance(err, ProtocolViolation) and err.code == 0x3


def test_unknown_stream_types():
    known = {STREAM_TYPE_FETCH} | {t for t in range(0x80) if (t & 0x90) == 0x10 and (t & 0x06) != 0x06}
    for t in [*range(0x100), 0x2F01, 0x132B3E29, 0x3FFF]:
        if t in known:
            continue
        err = uni_error(encode_varint(t) + b"\x01\x02\x03\x04\x05")
        assert isinstance(err, ProtocolViolation) and err.code == 0x3, hex(t)


@pytest.mark.parametrize("status", [1, 2, 5, 0x10, 0x3FFF])
def test_unknown_object_status(status):
    err = uni_error(b"\x10\x01\x00\x80" + b"\x00\x00" + vi(status))
    assert isinstance(err, ProtocolViolation) and err.code == 0x3
    err = control_error_dg(b"\x20\x01\x02\x03\x80" + vi(status))
    assert isinstance(err, ProtocolViolation)


def control_error_dg(data: bytes) -> MoQError:
    with pytest.raises(MoQError) as info:
        decode_datagram(data)
    return info.value


@pytest.mark.parametrize("dgram_type", [0x22, 0x23, 0x26, 0x27, 0x2A, 0x2B, 0x2E, 0x2F, 0x10, 0x1F, 0x30, 0x3F, 0x40,
                                        0x50, 0x7F, 0x80], ids=hex)
def test_invalid_datagram_types(dgram_type):
    err = control_error_dg(encode_varint(dgram_type) + b"\x01\x02\x03\x80abc")
    assert isinstance(err, ProtocolViolation) and err.code == 0x3


def test_datagram_properties_bit_with_zero_length():
    for t in (0x01, 0x05, 0x09, 0x21, 0x2D):
        body = b"\x01\x02" + (b"" if t & 0x04 else b"\x03") + (b"" if t & 0x08 else b"\x80") + b"\x00" + b"\x00"
        err = control_error_dg(bytes([t]) + body)
        assert isinstance(err, ProtocolViolation) and err.code == 0x3, hex(t)
    with pytest.raises(LocalUsageError):
        ObjectDatagram(1, 2, 3, properties=b"").encode()


def test_datagram_status_with_trailing_bytes():
    err = control_error_dg(b"\x20\x01\x02\x03\x80\x00" + b"x")
    assert isinstance(err, ProtocolViolation)


def test_fetch_first_object_referencing_a_prior_object():
    """ "If the first Object in the FETCH response uses a flag that references fields in the
    prior Object, the Subscriber MUST close the session with a PROTOCOL_VIOLATION." """
    complete = 0x08 | 0x04 | 0x10  # Group ID Delta, Object ID Delta, Priority present
    for flags in (complete & ~0x08, complete & ~0x04, complete & ~0x10, complete | 0x01, complete | 0x02):
        fields = b""
        if flags & 0x08:
            fields += b"\x00"
        if flags & 0x04:
            fields += b"\x00"
        if flags & 0x10:
            fields += b"\x80"
        err = uni_error(b"\x05\x01" + vi(flags) + fields + b"\x00")
        assert isinstance(err, ProtocolViolation) and err.code == 0x3, hex(flags)
    # the datagram flag makes the subgroup bits irrelevant, so this first object is fine
    dec = UniStreamDecoder()
    out = dec.feed(b"\x05\x01" + vi(complete | 0x40 | 0x01) + b"\x00\x00\x80\x00", fin=True)
    assert out[1].subgroup_id is None


@pytest.mark.parametrize("flags", [0x80, 0x8B, 0x8D, 0x8E, 0xFF, 0x100, 0x10B, 0x10D, 0x20C, 0x3FFF], ids=hex)
def test_fetch_invalid_serialization_flags(flags):
    err = uni_error(b"\x05\x01" + vi(flags) + b"\x00\x00\x00\x00\x00")
    assert isinstance(err, ProtocolViolation) and err.code == 0x3


def test_fin_inside_an_object():
    header = SubgroupHeader(1, 2, 0, 3)
    data = header.encode() + encode_subgroup_object(None, 0, 5) + b"abcde"
    for end in range(len(header.encode()) + 1, len(data)):
        err = uni_error(data[:end], fin=True)
        assert isinstance(err, ProtocolViolation) and err.code == 0x3
    assert UniStreamDecoder().feed(data, fin=True)[1].payload == b"abcde"


def test_fin_on_control_stream():
    err = uni_error(b"\xaf\x00\x00\x00", fin=True)
    assert isinstance(err, ProtocolViolation)
    dec = UniStreamDecoder()
    dec.feed(b"\xaf\x00\x00\x00")
    with pytest.raises(ProtocolViolation):
        dec.feed(b"", fin=True)


def test_bounded_decoders_never_leak_need_more_data():
    """A truncated unit whose bytes are all present is malformed, not incomplete."""
    for payload in (b"", b"\x00", b"\x00\x01"):
        with pytest.raises(ProtocolViolation):
            c.decode_message(0x3, payload)
    with pytest.raises(ProtocolViolation):
        decode_datagram(b"\x00\x01")
    with pytest.raises(KeyValueFormattingError):
        decode_kvp_block(b"\x01\x02a")
    # whereas an unbounded Reader signals NeedMoreData for the same bytes
    with pytest.raises(NeedMoreData):
        Reader(b"\x02a").lp_bytes()
