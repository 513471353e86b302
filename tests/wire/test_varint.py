"""§ Variable-Length Integers: leading-ones varints of 1..9 bytes (the example table and
the length boundaries are golden vectors in tests/vectors/varint.json)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moq.errors import LocalUsageError, NeedMoreData
from moq.wire.buffer import Reader, Writer
from moq.wire.varint import MAX_VARINT, decode_varint, encode_varint, varint_size

from .strategies import varints

# (length, largest value) from the draft's "Summary of Integer Encodings" table
LENGTHS = [(1, 127), (2, 16383), (3, 2097151), (4, 268435455), (5, 34359738367), (6, 4398046511103),
           (7, 562949953421311), (8, 72057594037927935), (9, 18446744073709551615)]


def minimal_length(value: int) -> int:
    return next(n for n, top in LENGTHS if value <= top)


def encode_with_length(value: int, length: int) -> bytes:
    """The draft's rule, written independently of the codec: `length - 1` leading 1
    bits, a 0 bit (except for 9 bytes), then the value big-endian in the bits left."""
    if length == 9:
        prefix, value_bits = 0xFF << 64, 64
    else:
        prefix, value_bits = ((1 << (length - 1)) - 1) << (7 * length + 1), 7 * length
    assert value < 1 << value_bits
    return (prefix | value).to_bytes(length, "big")


def test_encode_with_length_matches_the_spec_examples():
    # the independent helper above reproduces the draft's example table
    assert encode_with_length(37, 1).hex() == "25"
    assert encode_with_length(37, 2).hex() == "8025"
    assert encode_with_length(15293, 2).hex() == "bbbd"
    assert encode_with_length(226442877, 4).hex() == "ed7f3e7d"
    assert encode_with_length(2893212287960, 6).hex() == "faa1a0e403d8"
    assert encode_with_length(151288809941952, 7).hex() == "fc8998abc66bc0"
    assert encode_with_length(70423237261249041, 8).hex() == "fefa318fa8e3ca11"
    assert encode_with_length(MAX_VARINT, 9).hex() == "ff" * 9


@pytest.mark.parametrize("length,top", LENGTHS)
def test_boundaries(length, top):
    assert len(encode_varint(top)) == length == varint_size(top)
    assert decode_varint(encode_varint(top)) == (top, length)
    if length < 9:
        assert len(encode_varint(top + 1)) == length + 1 == varint_size(top + 1)


@pytest.mark.parametrize("value", [MAX_VARINT + 1, 1 << 70, -1])
def test_out_of_range_is_refused_on_encode(value):
    with pytest.raises(LocalUsageError):
        encode_varint(value)
    with pytest.raises(LocalUsageError):
        Writer().varint(value)


@given(varints())
@settings(max_examples=300)
def test_minimal_roundtrip(value):
    data = encode_varint(value)
    assert len(data) == minimal_length(value) == varint_size(value)
    assert data == encode_with_length(value, len(data))
    assert decode_varint(data) == (value, len(data))
    assert decode_varint(b"\xaa" + data + b"\x00", 1) == (value, len(data) + 1)


@given(varints(), st.integers(1, 9))
@settings(max_examples=300)
def test_every_valid_length_decodes(value, length):
    """ "any encoding length that can represent the value is valid" """
    length = max(length, minimal_length(value))
    data = encode_with_length(value, length)
    assert decode_varint(data) == (value, length)
    assert Reader(data).varint() == value


@given(varints())
@settings(max_examples=200)
def test_every_strict_prefix_needs_more_data(value):
    data = encode_varint(value)
    for end in range(len(data)):
        with pytest.raises(NeedMoreData):
            decode_varint(data[:end])
        # a Reader bounded before the end of the integer also waits, even if more bytes follow
        with pytest.raises(NeedMoreData):
            Reader(data + b"\x00" * 9, 0, end).varint()


def test_first_byte_alone_gives_the_length():
    for first in range(256):
        expected = 9 if first == 0xFF else next(n for n in range(1, 9) if not (first << (n - 1)) & 0x80)
        data = bytes([first]) + b"\x00" * 8
        assert decode_varint(data)[1] == expected
