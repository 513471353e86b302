"""Incremental decoders: strict prefixes yield only complete units, FIN inside a unit is a
protocol violation, and any chunking of the input gives the same result as one feed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moq.errors import ProtocolViolation
from moq.wire import control as c
from moq.wire.data import (
    EndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    SubgroupHeader,
    SubgroupObject,
    encode_subgroup_object,
    padding_stream_header,
)
from moq.wire.framing import (
    ControlStreamOpened,
    MessageDecoder,
    PaddingStreamOpened,
    UniStreamDecoder,
)

from . import strategies as s

# --- helpers ---------------------------------------------------------------------------


def subgroup_units(header, objects) -> tuple[bytes, list, list[int]]:
    """(stream bytes, decoded units, end offset of each unit)."""
    out = bytearray(header.encode())
    units: list = [header]
    ends = [len(out)]
    prev = None
    for oid, payload, status, props in objects:
        out += encode_subgroup_object(prev, oid, len(payload), status=status,
                                      properties=props if header.has_properties else None)
        out += payload
        prev = oid
        units.append(SubgroupObject(oid, payload, status, props))
        ends.append(len(out))
    return bytes(out), units, ends


def fetch_units(request_id, items, descending) -> tuple[bytes, list, list[int]]:
    codec = FetchObjectCodec(descending)
    out = bytearray(FetchHeader(request_id).encode())
    units: list = [FetchHeader(request_id)]
    ends = [len(out)]
    for item in items:
        out += codec.encode(item)
        if isinstance(item, FetchObject):
            out += item.payload
        units.append(item)
        ends.append(len(out))
    return bytes(out), units, ends


@st.composite
def data_streams(draw):
    """A subgroup or fetch stream: (bytes, units, unit end offsets, descending)."""
    if draw(st.booleans()):
        header = draw(s.subgroup_headers)
        objects = draw(s.subgroup_objects(header.has_properties, max_objects=5))
        return (*subgroup_units(header, objects), False)
    descending = draw(st.booleans())
    items = draw(s.fetch_items(descending, max_items=6))
    return (*fetch_units(draw(s.varints()), items, descending), descending)


def new_decoder(descending: bool) -> UniStreamDecoder:
    dec = UniStreamDecoder()
    dec.fetch_codec.descending = descending
    return dec


@st.composite
def split_points(draw, length: int) -> list[int]:
    cuts = draw(st.lists(st.integers(0, length), max_size=12))
    return sorted(set(cuts) | {0, length})


def feed_in_chunks(dec, data: bytes, cuts: list[int], fin: bool = False) -> list:
    out = []
    pieces = list(zip(cuts, cuts[1:]))
    for i, (a, b) in enumerate(pieces):
        if isinstance(dec, MessageDecoder):
            out.extend(dec.feed(data[a:b]))
        else:
            out.extend(dec.feed(data[a:b], fin=fin and i == len(pieces) - 1))
    return out


# --- every strict prefix --------------------------------------------------------------------


@given(s.any_message)
@settings(max_examples=200, deadline=None)
def test_control_frame_prefixes_yield_nothing(msg):
    frame = msg.encode()
    for end in range(len(frame)):
        assert MessageDecoder().feed(frame[:end]) == []
    assert MessageDecoder().feed(frame) == [msg]


@given(s.small_messages)
@settings(max_examples=100, deadline=None)
def test_control_frame_fed_prefix_then_rest(msg):
    """One decoder, fed a prefix then the rest: nothing until the frame is complete."""
    frame = msg.encode()
    for end in range(len(frame)):
        dec = MessageDecoder()
        assert dec.feed(frame[:end]) == []
        assert dec.feed(frame[end:]) == [msg]
        dec.check_fin()


@given(s.small_messages)
@settings(max_examples=100, deadline=None)
def test_control_fin_inside_a_frame_is_a_violation(msg):
    frame = msg.encode()
    for end in range(1, len(frame)):
        dec = MessageDecoder()
        dec.feed(frame[:end])
        with pytest.raises(ProtocolViolation) as info:
            dec.check_fin()
        assert info.value.code == 0x3


@given(data_streams())
@settings(max_examples=200, deadline=None)
def test_data_stream_prefixes_yield_complete_units_only(stream):
    data, units, ends, descending = stream
    for end in range(len(data)):
        complete = sum(1 for e in ends if e <= end)
        assert new_decoder(descending).feed(data[:end]) == units[:complete]
        if end in ends:
            # a FIN at a unit boundary ends the stream cleanly
            assert new_decoder(descending).feed(data[:end], fin=True) == units[:complete]
        else:
            with pytest.raises(ProtocolViolation) as info:
                new_decoder(descending).feed(data[:end], fin=True)
            assert info.value.code == 0x3
    assert new_decoder(descending).feed(data, fin=True) == units


# --- chunking -------------------------------------------------------------------------------


def control_stream(messages: list[c.Message]) -> bytes:
    return b"".join(m.encode() for m in messages)


control_streams = st.tuples(
    st.builds(c.Setup, s.kvps(max_size=4)),
    st.lists(s.small_messages, max_size=5),
).map(lambda t: [t[0], *t[1]])


@given(control_streams)
@settings(max_examples=100, deadline=None)
def test_control_stream_byte_by_byte(messages):
    data = control_stream(messages)
    expected = [ControlStreamOpened(), *messages]
    assert UniStreamDecoder().feed(data) == expected
    dec = UniStreamDecoder()
    assert [u for i in range(len(data)) for u in dec.feed(data[i : i + 1])] == expected


@given(control_streams, st.data())
@settings(max_examples=200, deadline=None)
def test_control_stream_random_chunks(messages, data):
    raw = control_stream(messages)
    cuts = data.draw(split_points(len(raw)))
    assert feed_in_chunks(UniStreamDecoder(), raw, cuts) == [ControlStreamOpened(), *messages]


@given(st.lists(s.any_message, min_size=1, max_size=5), st.data())
@settings(max_examples=150, deadline=None)
def test_request_stream_random_chunks(messages, data):
    raw = control_stream(messages)
    cuts = data.draw(split_points(len(raw)))
    dec = MessageDecoder()
    assert feed_in_chunks(dec, raw, cuts) == messages
    dec.check_fin()


@given(data_streams())
@settings(max_examples=100, deadline=None)
def test_data_stream_byte_by_byte(stream):
    data, units, _, descending = stream
    dec = new_decoder(descending)
    out = [u for i in range(len(data)) for u in dec.feed(data[i : i + 1], fin=i == len(data) - 1)]
    assert out == units


@given(data_streams(), st.data())
@settings(max_examples=200, deadline=None)
def test_data_stream_random_chunks(stream, data):
    raw, units, _, descending = stream
    cuts = data.draw(split_points(len(raw)))
    assert feed_in_chunks(new_decoder(descending), raw, cuts, fin=True) == units


@given(data_streams(), st.data())
@settings(max_examples=100, deadline=None)
def test_data_stream_empty_feeds_change_nothing(stream, data):
    raw, units, _, descending = stream
    cuts = data.draw(split_points(len(raw)))
    dec = new_decoder(descending)
    out = []
    for a, b in zip(cuts, cuts[1:]):
        out.extend(dec.feed(b""))
        out.extend(dec.feed(raw[a:b]))
    out.extend(dec.feed(b"", fin=True))
    assert out == units


def test_fin_with_empty_final_feed_after_complete_object():
    header = SubgroupHeader(1, 2, 0, 3)
    data, units, _ = subgroup_units(header, [(0, b"abc", 0, b"")])
    dec = UniStreamDecoder()
    assert dec.feed(data) == units
    assert dec.feed(b"", fin=True) == []


@given(st.integers(0, 64), st.data())
@settings(max_examples=50)
def test_padding_stream_any_chunking(zeros, data):
    raw = padding_stream_header() + bytes(zeros)
    cuts = data.draw(split_points(len(raw)))
    assert feed_in_chunks(UniStreamDecoder(), raw, cuts, fin=True) == [PaddingStreamOpened()]


def test_end_of_range_is_a_complete_unit():
    data, units, ends = fetch_units(1, [EndOfRange(0, 3), EndOfRange(5, 0, True)], False)
    for end in range(len(data) + 1):
        assert new_decoder(False).feed(data[:end]) == units[: sum(1 for e in ends if e <= end)]
