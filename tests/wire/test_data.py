"""Every SUBGROUP_HEADER and OBJECT_DATAGRAM type value, checked against bytes built here
from the draft's bit descriptions (§ Subgroup Header, § Object Datagram) rather than by
our encoder; plus encoder-side rules of the data plane."""

from __future__ import annotations

import pytest

from moq.errors import LocalUsageError, NeedMoreData
from moq.wire.buffer import Reader
from moq.wire.data import (
    EndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    SubgroupObject,
    decode_subgroup_object,
    encode_subgroup_object,
    padding_datagram,
    padding_stream_header,
)
from moq.wire.framing import PaddingStreamOpened, UniStreamDecoder, decode_datagram

# "Type (i) = 0x10..0x15 / 0x18..0x1D / 0x30..0x35 / 0x38..0x3D / 0x50..0x55 / 0x58..0x5D /
#  0x70..0x75 / 0x78..0x7D"
VALID_SUBGROUP_TYPES = [t for lo in (0x10, 0x18, 0x30, 0x38, 0x50, 0x58, 0x70, 0x78) for t in range(lo, lo + 6)]
# "Type (i) = 0x00..0x0F / 0x20..0x21 / 0x24..0x25 / 0x28..0x29 / 0x2C..0x2D"
VALID_DATAGRAM_TYPES = [*range(0x10), 0x20, 0x21, 0x24, 0x25, 0x28, 0x29, 0x2C, 0x2D]


def test_type_tables_match_the_bit_rules():
    assert VALID_SUBGROUP_TYPES == [t for t in range(0x80) if t & 0x10 and (t & 0x06) != 0x06]
    assert VALID_DATAGRAM_TYPES == [t for t in range(0x30) if not t & 0xD0 and not (t & 0x20 and t & 0x02)]


@pytest.mark.parametrize("stream_type", VALID_SUBGROUP_TYPES, ids=hex)
def test_every_subgroup_header_type(stream_type):
    # Track Alias 0x25, Group ID 300 (2-byte varint 0x812c), then the optional fields
    mode = (stream_type & 0x06) >> 1
    data = bytes([stream_type, 0x25]) + b"\x81\x2c"
    if mode == 0b10:
        data += b"\x07"  # Subgroup ID present
    if not stream_type & 0x20:
        data += b"\x9a"  # Publisher Priority (8)
    # one object: ID 3, [properties "3c01"], payload "ok"
    obj = b"\x03" + (b"\x02\x3c\x01" if stream_type & 0x01 else b"") + b"\x02ok"
    header = SubgroupHeader(
        track_alias=0x25,
        group_id=300,
        subgroup_id={0b00: 0, 0b01: None, 0b10: 7}[mode],
        publisher_priority=None if stream_type & 0x20 else 0x9A,
        has_properties=bool(stream_type & 0x01),
        end_of_group=bool(stream_type & 0x08),
        first_object=bool(stream_type & 0x40),
    )
    expected_obj = SubgroupObject(3, b"ok", 0, b"\x3c\x01" if stream_type & 0x01 else b"")
    assert UniStreamDecoder().feed(data + obj, fin=True) == [header, expected_obj]
    assert header.stream_type == stream_type
    assert header.encode() == data
    assert encode_subgroup_object(None, 3, 2, properties=expected_obj.properties if header.has_properties else None) \
        + b"ok" == obj


@pytest.mark.parametrize("dgram_type", VALID_DATAGRAM_TYPES, ids=hex)
def test_every_datagram_type(dgram_type):
    status_bit = bool(dgram_type & 0x20)
    data = bytes([dgram_type]) + b"\x81\x2c" + b"\x09"  # Track Alias 300, Group ID 9
    if not dgram_type & 0x04:
        data += b"\x05"  # Object ID
    if not dgram_type & 0x08:
        data += b"\xff"  # Publisher Priority
    if dgram_type & 0x01:
        data += b"\x02\x3e\x01"  # Properties
    data += b"\x00" if status_bit else b"payload"
    expected = ObjectDatagram(
        track_alias=300,
        group_id=9,
        object_id=0 if dgram_type & 0x04 else 5,
        publisher_priority=None if dgram_type & 0x08 else 0xFF,
        properties=b"\x3e\x01" if dgram_type & 0x01 else None,
        status=0 if status_bit else None,
        payload=b"" if status_bit else b"payload",
        end_of_group=bool(dgram_type & 0x02),
    )
    assert decode_datagram(data) == expected
    assert expected.encode() == data


def test_datagram_with_explicit_object_id_zero_is_decoded():
    # ZERO_OBJECT_ID clear but Object ID 0 on the wire: valid, though not what we send
    dgram = decode_datagram(b"\x00\x01\x02\x00\x80x")
    assert dgram == ObjectDatagram(1, 2, 0, 0x80, None, None, b"x")
    assert dgram.encode() == b"\x04\x01\x02\x80x"


def test_datagram_payload_is_the_rest_of_the_datagram():
    payload = bytes(range(256)) * 4
    assert decode_datagram(b"\x0c\x01\x02" + payload).payload == payload


def test_datagram_encoder_refuses_invalid_combinations():
    with pytest.raises(LocalUsageError):
        ObjectDatagram(1, 2, status=ObjectStatus.END_OF_GROUP, end_of_group=True).encode()
    with pytest.raises(LocalUsageError):
        ObjectDatagram(1, 2, status=ObjectStatus.NORMAL, payload=b"x").encode()


def test_padding():
    assert padding_stream_header() == bytes.fromhex("f0132b3e28")
    assert padding_datagram(3) == bytes.fromhex("f0132b3e29000000")
    assert decode_datagram(padding_datagram(0)) is None
    dec = UniStreamDecoder()
    assert dec.feed(padding_stream_header()) == [PaddingStreamOpened()]
    assert dec.feed(bytes(5000)) == []
    assert dec.feed(b"", fin=True) == []


# --- subgroup objects -----------------------------------------------------------------------


def test_object_id_delta():
    """ "The Object ID Delta + 1 is added to the previous Object ID in the Subgroup stream" """
    assert encode_subgroup_object(None, 7, 1) == b"\x07\x01"
    assert encode_subgroup_object(7, 8, 1) == b"\x00\x01"
    assert encode_subgroup_object(7, 10, 1) == b"\x02\x01"
    with pytest.raises(LocalUsageError):
        encode_subgroup_object(7, 7, 1)


def test_status_only_with_empty_payload():
    """ "The Object Status field is only sent if the Object Payload Length is zero." """
    assert encode_subgroup_object(None, 0, 0) == b"\x00\x00\x00"
    assert encode_subgroup_object(None, 0, 0, status=ObjectStatus.END_OF_TRACK) == b"\x00\x00\x04"
    assert encode_subgroup_object(None, 0, 3, properties=b"") == b"\x00\x00\x03"
    with pytest.raises(LocalUsageError):
        encode_subgroup_object(None, 0, 3, status=ObjectStatus.END_OF_GROUP)
    with pytest.raises(LocalUsageError):
        encode_subgroup_object(None, 0, 0, status=ObjectStatus.END_OF_GROUP, properties=b"\x3c\x01")


def test_object_properties_are_kept_raw():
    """A relay forwards Object Properties verbatim, including a non-minimal varint."""
    props = b"\x3c\x80\x02"  # Prior Group ID Gap = 2 as a 2-byte varint
    data = b"\x11\x01\x00\x80" + b"\x00\x03" + props + b"\x01x"
    obj = UniStreamDecoder().feed(data, fin=True)[1]
    assert obj.properties == props
    assert encode_subgroup_object(None, 0, 1, properties=obj.properties) + b"x" == data[4:]


def test_subgroup_object_decoder_raises_need_more_data_without_state_change():
    r = Reader(b"\x00\x05abc")
    with pytest.raises(NeedMoreData):
        decode_subgroup_object(r, None, False)


# --- fetch ------------------------------------------------------------------------------------


def test_fetch_header():
    assert FetchHeader(7).encode() == b"\x05\x07"
    assert UniStreamDecoder().feed(b"\x05\xbf\xff", fin=True) == [FetchHeader(16383)]


def test_fetch_encoder_refuses_wrong_group_order():
    codec = FetchObjectCodec(descending=False)
    codec.encode(FetchObject(5, 0, 0, 1))
    with pytest.raises(LocalUsageError):
        codec.encode(FetchObject(4, 0, 0, 1))
    codec = FetchObjectCodec(descending=True)
    codec.encode(FetchObject(5, 0, 0, 1))
    with pytest.raises(LocalUsageError):
        codec.encode(FetchObject(6, 0, 0, 1))


def test_fetch_group_delta_in_descending_order():
    """ "If the Group Order is Descending, the Group ID is the prior Object's Group ID minus
    the (Group ID Delta + 1)." """
    data = b"\x05\x01" + b"\x1c\x0a\x00\x80\x00" + b"\x0c\x02\x00\x00"
    dec = UniStreamDecoder(fetch_descending=lambda rid: rid == 1)  # the FETCH asked for descending
    assert dec.feed(data, fin=True) == [FetchHeader(1), FetchObject(10, 0, 0, 0x80), FetchObject(7, 0, 0, 0x80)]
    dec = UniStreamDecoder()
    assert dec.feed(data, fin=True) == [FetchHeader(1), FetchObject(10, 0, 0, 0x80), FetchObject(13, 0, 0, 0x80)]


def test_fetch_end_of_range_updates_prior_location_only():
    """After End of Range, prior Group/Object come from it, prior Subgroup and Priority
    from the last real object."""
    codec = FetchObjectCodec()
    chunks = [
        codec.encode(FetchObject(0, 4, 0, 9, b"a")) + b"a",
        codec.encode(EndOfRange(0, 6)),
        codec.encode(FetchObject(0, 4, 7, 9, b"b")) + b"b",
    ]
    assert chunks[2] == b"\x01\x01b"  # prior subgroup, implicit object ID, prior priority
    dec = FetchObjectCodec()
    r = Reader(b"".join(chunks))
    assert [dec.decode(r) for _ in range(3)] == [FetchObject(0, 4, 0, 9, b"a"), EndOfRange(0, 6),
                                                FetchObject(0, 4, 7, 9, b"b")]


def test_fetch_decode_failure_leaves_state_unchanged():
    dec = FetchObjectCodec()
    data = b"\x1c\x00\x00\x80\x03abc"
    for end in range(len(data)):
        with pytest.raises(NeedMoreData):
            dec.decode(Reader(data[:end]))
        assert dec.first and dec.group is None
    assert dec.decode(Reader(data)) == FetchObject(0, 0, 0, 0x80, b"abc")
