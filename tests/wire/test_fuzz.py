"""Random bytes must only ever produce the library's protocol errors (moq.errors.MoQError
subclasses).  IndexError, ValueError, UnicodeDecodeError, struct errors, a NeedMoreData
escaping a bounded decode, ... are bugs: the helper below lets them propagate, so the
test fails with the offending input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moq.errors import MoQError
from moq.wire import control as c
from moq.wire.data import STREAM_TYPE_FETCH, STREAM_TYPE_PADDING, STREAM_TYPE_SETUP
from moq.wire.framing import MessageDecoder, UniStreamDecoder, decode_datagram
from moq.wire.types import SubscriptionFilter, Token, decode_kvp_block
from moq.wire.varint import encode_varint

from . import strategies as s

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = sorted(c.REGISTRY.values(), key=lambda cls: cls.TYPE)


def only_protocol_errors(fn, *args, **kwargs):
    """Call fn; a MoQError is an acceptable outcome, anything else propagates."""
    try:
        return fn(*args, **kwargs)
    except MoQError as exc:
        assert isinstance(exc.code, int)
        return exc


# inputs that start like something valid, so the fuzzer gets past the first byte
stream_prefixes = st.sampled_from([
    b"",
    encode_varint(STREAM_TYPE_FETCH) + b"\x01",
    encode_varint(STREAM_TYPE_FETCH) + b"\x01\x1c\x00\x00\x80",
    encode_varint(STREAM_TYPE_SETUP),
    encode_varint(STREAM_TYPE_SETUP) + b"\x00\x00",
    encode_varint(STREAM_TYPE_PADDING),
    b"\x10\x01\x00\x80", b"\x11\x01\x00\x80", b"\x14\x01\x00\x05\x80", b"\x35\x02\x00\x00", b"\x3d\x01\x02\x03",
    b"\x12\x01\x00", b"\x79\x01\x00",
])


@given(st.binary(max_size=200))
@FUZZ
def test_message_decoder_random_bytes(data):
    only_protocol_errors(MessageDecoder().feed, data)


@given(st.sampled_from(CLASSES), st.binary(max_size=120), st.booleans())
@FUZZ
def test_message_decoder_random_payload_framed(cls, payload, truthful_length):
    """A valid type and a 16-bit length, then random payload bytes."""
    length = len(payload) if truthful_length else min(len(payload), 0xFFFF) // 2
    frame = encode_varint(cls.TYPE) + length.to_bytes(2, "big") + payload
    only_protocol_errors(MessageDecoder().feed, frame)


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.__name__ for cls in CLASSES])
@given(payload=st.binary(max_size=150))
@FUZZ
def test_decode_message_random_payload(cls, payload):
    only_protocol_errors(c.decode_message, cls.TYPE, payload)


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.__name__ for cls in CLASSES])
@given(data=st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decode_message_mutated_payload(cls, data):
    """A valid payload with bytes flipped, inserted or cut: still only protocol errors."""
    frame = data.draw(s.MESSAGES[cls]).encode()
    payload = bytearray(frame[len(encode_varint(cls.TYPE)) + 2 :])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, len(payload)))
        if op == "flip" and pos < len(payload):
            payload[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            payload[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and pos < len(payload):
            del payload[pos]
        elif op == "truncate":
            del payload[pos:]
    only_protocol_errors(c.decode_message, cls.TYPE, bytes(payload))


@given(stream_prefixes, st.binary(max_size=200), st.booleans(), st.booleans())
@FUZZ
def test_uni_stream_decoder_random_bytes(prefix, data, fin, descending):
    dec = UniStreamDecoder()
    dec.fetch_codec.descending = descending
    only_protocol_errors(dec.feed, prefix + data, fin=fin)


@given(stream_prefixes, st.lists(st.binary(max_size=40), max_size=6), st.booleans())
@FUZZ
def test_uni_stream_decoder_random_chunks(prefix, chunks, descending):
    dec = UniStreamDecoder()
    dec.fetch_codec.descending = descending
    chunks = [prefix, *chunks]
    for i, chunk in enumerate(chunks):
        result = only_protocol_errors(dec.feed, chunk, fin=i == len(chunks) - 1)
        if isinstance(result, MoQError):
            break


@given(st.binary(max_size=100))
@example(b"")
@FUZZ
def test_decode_datagram_random_bytes(data):
    only_protocol_errors(decode_datagram, data)


@given(st.integers(0, 0x3F), st.binary(max_size=60))
@FUZZ
def test_decode_datagram_random_body(dgram_type, body):
    only_protocol_errors(decode_datagram, bytes([dgram_type]) + body)


@given(st.binary(max_size=60))
@example(b"")
@example(b"\x01")
@FUZZ
def test_token_decode_random_bytes(data):
    only_protocol_errors(Token.decode, data)


@given(st.binary(max_size=60))
@example(b"")
@FUZZ
def test_subscription_filter_decode_random_bytes(data):
    only_protocol_errors(SubscriptionFilter.decode, data)


@given(st.binary(max_size=120))
@FUZZ
def test_decode_kvp_block_random_bytes(data):
    only_protocol_errors(decode_kvp_block, data)


@given(st.sampled_from([1, 2, 3, 4]), st.binary(max_size=40))
@FUZZ
def test_subscription_filter_decode_random_body(filter_type, body):
    only_protocol_errors(SubscriptionFilter.decode, bytes([filter_type]) + body)


@given(st.sampled_from([0, 1, 2, 3]), st.binary(max_size=40))
@FUZZ
def test_token_decode_random_body(alias_type, body):
    only_protocol_errors(Token.decode, bytes([alias_type]) + body)


def test_only_protocol_errors_lets_other_exceptions_through():
    """The helper must not hide a real bug."""
    def boom(_):
        raise IndexError("bug")

    with pytest.raises(IndexError):
        only_protocol_errors(boom, b"")
