"""Hypothesis round-trips: decode(encode(x)) == x for every control message and every
data plane unit."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moq.wire import control as c
from moq.wire.buffer import Reader, Writer
from moq.wire.data import (
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    SubgroupObject,
    encode_subgroup_object,
)
from moq.wire.framing import MessageDecoder, UniStreamDecoder, decode_datagram
from moq.wire.types import (
    Parameters,
    SubscriptionFilter,
    Token,
    decode_kvp_block,
    decode_parameters,
    encode_kvp_block,
    encode_parameters,
)
from moq.wire.varint import decode_varint

from . import strategies as s

CLASSES = sorted(c.REGISTRY.values(), key=lambda cls: cls.TYPE)


def test_every_registered_message_has_a_strategy():
    assert set(s.MESSAGES) == set(c.REGISTRY.values())


def test_every_parameter_has_a_strategy():
    assert set(s.PARAMETER_VALUES) == {f.name for f in fields(Parameters)}


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.__name__ for cls in CLASSES])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_message_roundtrip(cls, data):
    msg = data.draw(s.MESSAGES[cls])
    frame = msg.encode()
    msg_type, pos = decode_varint(frame)
    assert msg_type == cls.TYPE
    length = int.from_bytes(frame[pos : pos + 2], "big")
    assert length == len(frame) - pos - 2
    assert c.decode_message(msg_type, frame[pos + 2 :]) == msg
    assert MessageDecoder().feed(frame) == [msg]


@given(st.lists(s.any_message, min_size=1, max_size=4))
@settings(max_examples=100, deadline=None)
def test_message_sequence_roundtrip(messages):
    assert MessageDecoder().feed(b"".join(m.encode() for m in messages)) == messages


@given(s.parameters(frozenset(s.PARAM_TYPE_OF.values())))
@settings(max_examples=200, deadline=None)
def test_parameters_block_roundtrip(params):
    w = Writer()
    encode_parameters(w, params)
    r = Reader(w.getvalue())
    assert decode_parameters(r) == params
    assert r.at_end()


@given(s.tokens)
@settings(max_examples=200)
def test_token_roundtrip(token):
    assert Token.decode(token.encode()) == token


@given(s.filters)
@settings(max_examples=200)
def test_filter_roundtrip(flt):
    assert SubscriptionFilter.decode(flt.encode()) == flt


@given(s.kvps(max_size=10))
@settings(max_examples=200)
def test_kvp_roundtrip(pairs):
    assert decode_kvp_block(encode_kvp_block(pairs)) == pairs


# --- data plane ---------------------------------------------------------------------------


def subgroup_stream(header, objects) -> tuple[bytes, list]:
    out = bytearray(header.encode())
    expected: list = [header]
    prev = None
    for oid, payload, status, props in objects:
        out += encode_subgroup_object(prev, oid, len(payload), status=status,
                                      properties=props if header.has_properties else None)
        out += payload
        prev = oid
        expected.append(SubgroupObject(oid, payload, status, props))
    return bytes(out), expected


@st.composite
def subgroup_streams(draw):
    header = draw(s.subgroup_headers)
    return subgroup_stream(header, draw(s.subgroup_objects(header.has_properties)))


@given(subgroup_streams())
@settings(max_examples=200, deadline=None)
def test_subgroup_stream_roundtrip(stream):
    data, expected = stream
    assert UniStreamDecoder().feed(data, fin=True) == expected


@given(s.subgroup_headers)
@settings(max_examples=200)
def test_subgroup_header_roundtrip(header):
    data = header.encode()
    stream_type, pos = decode_varint(data)
    assert stream_type == header.stream_type
    assert UniStreamDecoder().feed(data, fin=True) == [header]


@given(s.object_datagrams())
@settings(max_examples=300)
def test_object_datagram_roundtrip(dgram):
    assert decode_datagram(dgram.encode()) == dgram


def fetch_stream(request_id: int, items, descending: bool) -> bytes:
    codec = FetchObjectCodec(descending)
    out = bytearray(FetchHeader(request_id).encode())
    for item in items:
        out += codec.encode(item)
        if isinstance(item, FetchObject):
            out += item.payload
    return bytes(out)


@st.composite
def fetch_streams(draw, descending: bool | None = None):
    if descending is None:
        descending = draw(st.booleans())
    request_id = draw(s.varints())
    items = draw(s.fetch_items(descending))
    return fetch_stream(request_id, items, descending), [FetchHeader(request_id), *items], descending


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fetch_stream_roundtrip(descending, data):
    raw, expected, _ = data.draw(fetch_streams(descending))
    dec = UniStreamDecoder()
    dec.fetch_codec.descending = descending
    assert dec.feed(raw, fin=True) == expected


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fetch_codec_roundtrip_item_by_item(descending, data):
    """FetchObjectCodec on both sides, one item at a time, the decoder reading exactly
    the bytes the encoder wrote for each item."""
    items = data.draw(s.fetch_items(descending))
    enc, dec = FetchObjectCodec(descending), FetchObjectCodec(descending)
    for item in items:
        chunk = enc.encode(item) + (item.payload if isinstance(item, FetchObject) else b"")
        r = Reader(chunk)
        assert dec.decode(r) == item
        assert r.at_end()
