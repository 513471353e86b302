"""The draft's leading-ones variable-length integer (§ Variable-Length Integers).

The count of leading 1 bits in the first byte gives the length (1..9 bytes); the rest
of the bits, big-endian, are the value.  This is *not* QUIC's 2-bit-prefix varint.
"""

from __future__ import annotations

from ..errors import LocalUsageError, NeedMoreData, ProtocolViolation

MAX_VARINT = (1 << 64) - 1

# (upper bound exclusive, length, prefix byte)
_ENCODE_TABLE = (
    (1 << 7, 1, 0x00),
    (1 << 14, 2, 0x80),
    (1 << 21, 3, 0xC0),
    (1 << 28, 4, 0xE0),
    (1 << 35, 5, 0xF0),
    (1 << 42, 6, 0xF8),
    (1 << 49, 7, 0xFC),
    (1 << 56, 8, 0xFE),
)

# length of an encoding, indexed by its first byte
_LENGTH = bytes(
    9 if b == 0xFF else next(n + 1 for n in range(8) if not (b << n) & 0x80) for b in range(256)
)
# mask for the value bits left in the first byte, indexed by length
_FIRST_MASK = (0, 0x7F, 0x3F, 0x1F, 0x0F, 0x07, 0x03, 0x01, 0x00, 0x00)


def varint_size(value: int) -> int:
    for bound, length, _ in _ENCODE_TABLE:
        if value < bound:
            return length
    return 9


def encode_varint(value: int) -> bytes:
    """Minimal-length encoding; raises LocalUsageError outside 0..2^64-1."""
    if value < 0x80:
        if value < 0:
            raise LocalUsageError(f"varint out of range: {value}")
        return bytes((value,))
    for bound, length, prefix in _ENCODE_TABLE:
        if value < bound:
            raw = value.to_bytes(length, "big")
            return bytes((raw[0] | prefix,)) + raw[1:]
    if value > MAX_VARINT:
        raise LocalUsageError(f"varint out of range: {value}")
    return b"\xff" + value.to_bytes(8, "big")


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Return (value, new_pos); NeedMoreData if `data` ends inside the integer."""
    try:
        first = data[pos]
    except IndexError:
        raise NeedMoreData from None
    if first < 0x80:
        return first, pos + 1
    length = _LENGTH[first]
    end = pos + length
    if end > len(data):
        raise NeedMoreData
    value = first & _FIRST_MASK[length]
    value = (value << (8 * (length - 1))) | int.from_bytes(data[pos + 1 : end], "big")
    return value, end


def check_sum(base: int, delta: int) -> int:
    """base + delta, closing the session if it leaves the 64-bit range (delta types, IDs)."""
    total = base + delta
    if total > MAX_VARINT:
        raise ProtocolViolation("value exceeds 2^64-1")
    return total
