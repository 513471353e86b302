"""Reader/Writer over bytes, and `varint_at`, the exception-free varint of the hot paths.

`Reader` raises NeedMoreData when its input ends early, with the offset its input must
reach as the exception's argument, so that an incremental decoder waits for that many
bytes instead of retrying on every chunk.  Decoders of length-bounded units (a control
message payload) turn NeedMoreData into a ProtocolViolation, because there the bytes
are all present and simply malformed.
"""

from __future__ import annotations

from ..errors import LocalUsageError, NeedMoreData, ProtocolViolation
from .varint import encode_varint


def varint_at(data: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, new_pos) of the varint at `pos`; a new_pos beyond `end` means the integer is
    incomplete and new_pos is the offset the input must reach (nothing is raised)."""
    if pos >= end:
        return 0, pos + 1
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    length = 9 - (first ^ 0xFF).bit_length()  # count of leading 1 bits, plus one
    stop = pos + length
    if stop > end:
        return 0, stop
    return ((first & (0xFF >> length)) << (8 * (length - 1))) | int.from_bytes(data[pos + 1 : stop], "big"), stop


class Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data if isinstance(data, memoryview) else memoryview(data)
        self.pos = pos
        self.end = len(self.data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def varint(self) -> int:
        value, pos = varint_at(self.data, self.pos, self.end)
        if pos > self.end:
            raise NeedMoreData(pos)
        self.pos = pos
        return value

    def uint8(self) -> int:
        if self.pos >= self.end:
            raise NeedMoreData(self.pos + 1)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint16(self) -> int:
        if self.pos + 2 > self.end:
            raise NeedMoreData(self.pos + 2)
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return value

    def view(self, length: int) -> memoryview:
        """`length` bytes without copying."""
        end = self.pos + length
        if end > self.end:
            raise NeedMoreData(end)
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def bytes(self, length: int) -> bytes:
        return bytes(self.view(length))

    def lp_bytes(self, limit: int | None = None, what: str = "field") -> bytes:
        """A varint length then that many bytes; `limit` is the draft's maximum."""
        length = self.varint()
        if limit is not None and length > limit:
            raise ProtocolViolation(f"{what} length {length} exceeds {limit}")
        return self.bytes(length)

    def rest(self) -> memoryview:
        return self.view(self.end - self.pos)

    def sub(self, length: int) -> Reader:
        """A reader over the next `length` bytes (bounded sub-structure); advances self."""
        end = self.pos + length
        if end > self.end:
            raise NeedMoreData(end)
        sub = Reader(self.data, self.pos, end)
        self.pos = end
        return sub


class Writer:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def varint(self, value: int) -> Writer:
        self.buf += encode_varint(value)
        return self

    def uint8(self, value: int) -> Writer:
        if not 0 <= value <= 0xFF:
            raise LocalUsageError(f"uint8 out of range: {value}")
        self.buf.append(value)
        return self

    def uint16(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF:
            raise LocalUsageError(f"uint16 out of range: {value}")
        self.buf += value.to_bytes(2, "big")
        return self

    def raw(self, data: bytes | bytearray | memoryview) -> Writer:
        self.buf += data
        return self

    def lp_bytes(self, data: bytes | bytearray | memoryview) -> Writer:
        self.buf += encode_varint(len(data))
        self.buf += data
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return len(self.buf)
