"""The receive path's cost model (moq.wire.framing): a payload inside one received chunk is
a view of that chunk, never of a buffer that changes later; any chunking gives the objects
of a one-shot decode; a large unit split in many chunks is parsed once, not once per chunk;
waiting for more bytes raises no NeedMoreData."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moq.errors import NeedMoreData, StreamResetCode, StreamResetError
from moq.wire import control as c
from moq.wire import framing
from moq.wire.buffer import Reader
from moq.wire.data import (
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    SubgroupObject,
    decode_subgroup_object,
    encode_subgroup_object,
)
from moq.wire.framing import MessageDecoder, UniStreamDecoder, decode_datagram

from . import strategies as s

PATTERN = bytes(range(251)) * 400  # 100 KB of non-repeating-per-251 bytes


def payload_of(size: int, seed: int = 0) -> bytes:
    return PATTERN[seed % 251 : seed % 251 + size]


def subgroup_stream(header: SubgroupHeader, objects) -> tuple[bytes, list[SubgroupObject]]:
    out = bytearray(header.encode())
    expected, prev = [], None
    for oid, payload, status, props in objects:
        out += encode_subgroup_object(prev, oid, len(payload), status=status,
                                      properties=props if header.has_properties else None)
        out += payload
        prev = oid
        expected.append(SubgroupObject(oid, payload, status, props))
    return bytes(out), expected


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in consecutive chunks of the given sizes (cycled), the last one what is left."""
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        chunks.append(data[pos : pos + n])
        pos += n
        i += 1
    return chunks


def feed_all(dec: UniStreamDecoder, chunks: list[bytes]) -> list:
    out = []
    for i, chunk in enumerate(chunks):
        out.extend(dec.feed(chunk, fin=i == len(chunks) - 1))
    return out


@pytest.fixture
def need_more_raised(monkeypatch) -> list[int]:
    """Counts every NeedMoreData created (raised) from now on."""
    created: list[int] = []
    original = NeedMoreData.__init__

    def counting(self, *args):
        created.append(1)
        original(self, *args)

    monkeypatch.setattr(NeedMoreData, "__init__", counting)
    return created


def count_calls(monkeypatch, owner, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


HEADER = SubgroupHeader(track_alias=3, group_id=9, subgroup_id=0, publisher_priority=128)

# --- zero copy ------------------------------------------------------------------------------


def test_payload_inside_one_chunk_is_a_view_of_that_chunk():
    data, expected = subgroup_stream(HEADER, [(0, payload_of(1000), 0, b""), (1, payload_of(900, 7), 0, b"")])
    chunk = data[:1100]  # header, object 0 whole, the start of object 1
    dec = UniStreamDecoder()
    out = dec.feed(chunk)
    assert out == [HEADER, expected[0]]
    payload = out[1].payload
    assert isinstance(payload, memoryview) and payload.obj is chunk and payload.readonly
    assert payload == payload_of(1000)
    # object 1 spans two chunks: joined once into its own bytes
    (obj1,) = dec.feed(data[1100:], fin=True)
    assert obj1 == expected[1]
    assert bytes(obj1.payload) == payload_of(900, 7)


def test_payload_in_the_chunk_after_its_header_is_a_view_of_that_chunk():
    data, expected = subgroup_stream(HEADER, [(0, payload_of(1000), 0, b"")])
    head_end = len(data) - 1000
    dec = UniStreamDecoder()
    assert dec.feed(data[:head_end]) == [HEADER]
    second = data[head_end:]
    (obj,) = dec.feed(second, fin=True)
    assert obj == expected[0]
    assert isinstance(obj.payload, memoryview) and obj.payload.obj is second


def test_small_payload_in_a_large_chunk_is_copied_not_pinning_the_chunk():
    """A cached 10-byte object must not keep a 64 KB chunk alive."""
    objects = [(i, payload_of(10, i), 0, b"") for i in range(4000)]
    data, expected = subgroup_stream(HEADER, objects)
    out = UniStreamDecoder().feed(data, fin=True)
    assert out[1:] == expected
    assert all(type(o.payload) is bytes for o in out[1:])


def test_datagram_payload_is_a_view_of_immutable_input_only():
    dg = ObjectDatagram(5, 1, 2, 128, None, None, payload_of(1000))
    raw = dg.encode()
    got = decode_datagram(raw)
    assert got == dg
    assert isinstance(got.payload, memoryview) and got.payload.obj is raw
    buf = bytearray(raw)
    got = decode_datagram(buf)
    buf[-1000:] = bytes(1000)  # the caller reuses its buffer
    assert got.payload == payload_of(1000)
    got = decode_datagram(memoryview(bytearray(raw)))
    assert type(got.payload) is bytes and got.payload == payload_of(1000)


# --- no aliasing -----------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [bytearray, lambda b: memoryview(bytearray(b))], ids=["bytearray", "memoryview"])
def test_mutable_input_buffer_reused_by_the_caller(wrap):
    """A receive loop that refills one buffer: earlier payloads must keep their bytes."""
    objects = [(i, payload_of(700 + 13 * i, i), 0, b"") for i in range(30)]
    data, expected = subgroup_stream(HEADER, objects)
    dec = UniStreamDecoder()
    out = []
    for chunk in cut(data, [1200, 333, 2000, 1]):
        buf = wrap(chunk)
        out.extend(dec.feed(buf))
        buf[:] = bytes(len(buf))  # overwritten before the next read
    assert out[1:] == expected


def test_payloads_stay_intact_while_later_chunks_arrive():
    objects = [(i, payload_of(1000, i), 0, b"") for i in range(50)]
    data, expected = subgroup_stream(HEADER, objects)
    dec = UniStreamDecoder()
    early = dec.feed(data[:5000])
    kept = [bytes(o.payload) for o in early[1:]]
    rest = feed_all(dec, cut(data[5000:], [1200]))
    assert [bytes(o.payload) for o in early[1:]] == kept == [p for _, p, _, _ in objects[: len(kept)]]
    assert early[1:] + rest == expected


# --- any chunking == one shot ---------------------------------------------------------------

sizes = st.one_of(st.integers(0, 40), st.integers(100, 1500), st.sampled_from([1000, 1200, 16384, 21333]))


@st.composite
def big_subgroup_streams(draw):
    header = draw(s.subgroup_headers)
    oid = draw(st.integers(0, 1000))
    objects = []
    for _ in range(draw(st.integers(1, 8))):
        status = draw(st.sampled_from([ObjectStatus.NORMAL] * 4 + [ObjectStatus.END_OF_GROUP]))
        payload = payload_of(draw(sizes), draw(st.integers(0, 250))) if status == ObjectStatus.NORMAL else b""
        props = b""
        if header.has_properties and status == ObjectStatus.NORMAL:
            props = draw(st.one_of(st.just(b""), s.property_blocks()))
        objects.append((oid, payload, status, props))
        oid += 1 + draw(st.integers(0, 300))
    return (header, *subgroup_stream(header, objects))


chunk_sizes = st.lists(st.one_of(st.integers(1, 8), st.integers(9, 1500)), min_size=1, max_size=20)


def reader_oracle(header: SubgroupHeader, data: bytes) -> list[SubgroupObject]:
    """Whole-buffer decode with the Reader API, independent of the incremental state machine."""
    r = Reader(data, len(header.encode()))
    out, prev = [], None
    while not r.at_end():
        obj = decode_subgroup_object(r, prev, header.has_properties)
        prev = obj.object_id
        out.append(obj)
    return out


@given(big_subgroup_streams(), chunk_sizes)
@settings(max_examples=300, deadline=None)
def test_random_chunking_of_multi_object_streams_matches_one_shot(stream, split):
    header, data, expected = stream
    one_shot = UniStreamDecoder().feed(data, fin=True)
    assert one_shot == [header, *expected]
    assert reader_oracle(header, data) == expected
    assert feed_all(UniStreamDecoder(), cut(data, split)) == one_shot


@given(st.booleans(), st.lists(st.tuples(st.integers(0, 3), sizes), min_size=1, max_size=8), chunk_sizes)
@settings(max_examples=200, deadline=None)
def test_random_chunking_of_fetch_streams_matches_one_shot(descending, shape, split):
    codec = FetchObjectCodec(descending)
    raw = bytearray(FetchHeader(4).encode())
    expected: list = [FetchHeader(4)]
    group = 1000
    for i, (step, size) in enumerate(shape):
        group = group - step if descending else group + step
        item = FetchObject(group, step, i, 7, payload_of(size, i), b"\x3c\x01" if step == 2 else b"")
        raw += codec.encode(item) + item.payload
        expected.append(item)
    data = bytes(raw)
    one_shot = UniStreamDecoder(fetch_descending=lambda _rid: descending).feed(data, fin=True)
    assert one_shot == expected
    dec = UniStreamDecoder(fetch_descending=lambda _rid: descending)
    assert feed_all(dec, cut(data, split)) == one_shot


# --- linear work, no exception per chunk -----------------------------------------------------


def test_large_object_in_many_chunks_is_parsed_once(monkeypatch, need_more_raised):
    size = 1_000_000
    data, expected = subgroup_stream(HEADER, [(0, (PATTERN * 10)[:size], 0, b""), (1, payload_of(21333), 0, b"")])
    chunks = cut(data, [1200])
    dec = UniStreamDecoder()
    assert dec.feed(chunks[0]) == [HEADER]
    parses = count_calls(monkeypatch, framing, "parse_subgroup_object_head")
    out = []
    for chunk in chunks[1:]:
        out.extend(dec.feed(chunk))
    assert out == expected
    assert type(out[0].payload) is bytes  # joined once, not a chain of views
    assert len(parses) <= 3  # one per object (plus one at most where a head straddles chunks)
    assert not need_more_raised


def test_large_properties_block_is_waited_for_not_reparsed(monkeypatch, need_more_raised):
    header = SubgroupHeader(3, 9, 0, 128, has_properties=True)
    props = payload_of(60_000)
    data, expected = subgroup_stream(header, [(0, b"x", 0, props)])
    chunks = cut(data, [1200])
    dec = UniStreamDecoder()
    parses = count_calls(monkeypatch, framing, "parse_subgroup_object_head")
    assert feed_all(dec, chunks) == [header, *expected]
    assert len(parses) <= 3  # an attempt that learns the block's length, then one that succeeds
    assert not need_more_raised


def test_large_fetch_object_in_many_chunks_is_parsed_once(monkeypatch, need_more_raised):
    item = FetchObject(2, 0, 5, 9, (PATTERN * 3)[:250_000])
    data = FetchHeader(1).encode() + FetchObjectCodec().encode(item) + item.payload
    heads = count_calls(monkeypatch, FetchObjectCodec, "decode_head")
    assert feed_all(UniStreamDecoder(), cut(data, [1200])) == [FetchHeader(1), item]
    assert len(heads) <= 2
    assert not need_more_raised  # raised only when an item's fields straddle two chunks, not here


def test_partial_objects_signal_need_more_without_exceptions(need_more_raised):
    objects = [(i, payload_of(1000, i), 0, b"") for i in range(20)]
    data, expected = subgroup_stream(HEADER, objects)
    header_len = len(HEADER.encode())
    dec = UniStreamDecoder()
    assert dec.feed(data[:header_len]) == [HEADER]
    out = [u for i in range(header_len, len(data)) for u in dec.feed(data[i : i + 1])]  # byte by byte
    assert out == expected
    assert not need_more_raised


def test_control_frame_in_many_chunks_is_framed_once(monkeypatch, need_more_raised):
    msg = c.GoAway(b"https://relay.example/" + b"x" * 8000, 5000, 12)
    frame = msg.encode()
    attempts = count_calls(monkeypatch, framing, "varint_at")
    dec = MessageDecoder()
    out = [m for i in range(0, len(frame), 100) for m in dec.feed(frame[i : i + 100])]
    assert out == [msg]
    dec.check_fin()
    assert len(attempts) <= 2
    assert not need_more_raised


# --- bounded buffering ----------------------------------------------------------------------


def test_oversized_payload_or_properties_is_refused_before_buffering():
    """An object over the limit stops the stream (EXCESSIVE_LOAD) when its length is read,
    before the decoder would hold any of it."""
    head = HEADER.encode() + encode_subgroup_object(None, 0, 10_001)
    with pytest.raises(StreamResetError) as info:
        UniStreamDecoder(max_payload=10_000).feed(head)
    assert info.value.code == StreamResetCode.EXCESSIVE_LOAD
    header = SubgroupHeader(3, 9, 0, 128, has_properties=True)
    head = header.encode() + encode_subgroup_object(None, 0, 1, properties=bytes(10_001))[:8]
    with pytest.raises(StreamResetError) as info:
        UniStreamDecoder(max_payload=10_000).feed(head)
    assert info.value.code == StreamResetCode.EXCESSIVE_LOAD
    data, expected = subgroup_stream(header, [(0, payload_of(10_000), 0, payload_of(10_000, 3))])
    assert feed_all(UniStreamDecoder(max_payload=10_000), cut(data, [1200])) == [header, *expected]
