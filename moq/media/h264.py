"""H.264 bitstream helpers (pure, no I/O): the AVC decoder configuration record (avcC) that LOC
carries as VIDEO_CONFIG, length-prefixed ("AVC format") and start-code ("Annex B") access
units, key-frame detection and the picture size from the SPS.

ISO/IEC 14496-15 § 5.3.3 (AVCDecoderConfigurationRecord) and ITU-T H.264 § 7.3.2.1.1
(seq_parameter_set_data).  WebCodecs' `avc1.*` codec strings use the AVC format with the
avcC as the decoder's description, which is what the publisher sends.
"""

from __future__ import annotations

from dataclasses import dataclass

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"

# profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (§ 7.3.2.1.1)
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class H264Error(ValueError):
    """Malformed avcC, SPS or access unit."""


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """A parsed AVCDecoderConfigurationRecord."""

    profile: int
    compatibility: int
    level: int
    length_size: int  # bytes of each NAL unit's length prefix (1, 2 or 4)
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @classmethod
    def parse(cls, data: bytes | memoryview) -> AvcConfig:
        b = bytes(data)
        if len(b) < 7 or b[0] != 1:
            raise H264Error("not an avcC record (configurationVersion != 1)")
        length_size = (b[4] & 0x3) + 1
        if length_size == 3:
            raise H264Error("avcC lengthSizeMinusOne of 2 is not allowed")
        pos = 5
        units: list[list[bytes]] = [[], []]
        for which in (0, 1):
            if pos >= len(b):
                raise H264Error("avcC truncated")
            count = b[pos] & (0x1F if which == 0 else 0xFF)
            pos += 1
            for _ in range(count):
                if pos + 2 > len(b):
                    raise H264Error("avcC truncated")
                n = int.from_bytes(b[pos:pos + 2], "big")
                if pos + 2 + n > len(b):
                    raise H264Error("avcC truncated")
                units[which].append(b[pos + 2:pos + 2 + n])
                pos += 2 + n
        if not units[0]:
            raise H264Error("avcC without an SPS")
        return cls(b[1], b[2], b[3], length_size, tuple(units[0]), tuple(units[1]))

    def encode(self) -> bytes:
        return make_avcc(self.sps, self.pps, self.length_size)

    @property
    def codec(self) -> str:
        """The WebCodecs / RFC 6381 codec string, e.g. avc1.42C01E."""
        return f"avc1.{self.profile:02X}{self.compatibility:02X}{self.level:02X}"

    def size(self) -> tuple[int, int]:
        """(width, height) in pixels from the first SPS."""
        return sps_size(self.sps[0])

    def annexb_parameter_sets(self) -> bytes:
        return b"".join(START_CODE + u for u in (*self.sps, *self.pps))


def make_avcc(sps: list[bytes] | tuple[bytes, ...], pps: list[bytes] | tuple[bytes, ...], length_size: int = 4) -> bytes:
    """An avcC record from SPS and PPS NAL units (without start codes)."""
    if not sps:
        raise H264Error("an avcC needs an SPS")
    first = sps[0]
    if len(first) < 4:
        raise H264Error("SPS too short")
    out = bytearray([1, first[1], first[2], first[3], 0xFC | (length_size - 1), 0xE0 | len(sps)])
    for unit in sps:
        out += len(unit).to_bytes(2, "big") + unit
    out.append(len(pps))
    for unit in pps:
        out += len(unit).to_bytes(2, "big") + unit
    return bytes(out)


def split_annexb(data: bytes | memoryview) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    b = bytes(data)
    units = []
    i = b.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = b.find(b"\x00\x00\x01", start)
        end = len(b) if j < 0 else j
        unit = b[start:end]
        if j >= 0:
            unit = unit.rstrip(b"\x00")  # trailing zero bytes belong to the next start code
        if unit:
            units.append(unit)
        i = j
    return units


def split_avcc(data: bytes | memoryview, length_size: int = 4) -> list[bytes]:
    """NAL units of a length-prefixed access unit; H264Error unless the lengths tile it exactly."""
    b = bytes(data)
    units, pos = [], 0
    while pos < len(b):
        if pos + length_size > len(b):
            raise H264Error("truncated NAL length")
        n = int.from_bytes(b[pos:pos + length_size], "big")
        pos += length_size
        if n == 0 or pos + n > len(b):
            raise H264Error("NAL length past the end of the access unit")
        units.append(b[pos:pos + n])
        pos += n
    return units


def nal_units(data: bytes | memoryview, length_size: int = 4) -> list[bytes]:
    """NAL units of an access unit in either format (AVC length-prefixed preferred)."""
    try:
        return split_avcc(data, length_size)
    except H264Error:
        units = split_annexb(data)
        if not units:
            raise
        return units


def annexb_to_avcc(data: bytes | memoryview, length_size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(length_size, "big") + u for u in split_annexb(data))


def to_annexb(units: list[bytes]) -> bytes:
    return b"".join(START_CODE + u for u in units)


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def is_keyframe(units: list[bytes]) -> bool:
    """An IDR access unit (decoding can start here)."""
    return any(nal_type(u) == NAL_IDR for u in units)


# --- SPS -----------------------------------------------------------------------------------


class _Bits:
    def __init__(self, rbsp: bytes) -> None:
        self.value = int.from_bytes(rbsp, "big")
        self.left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise H264Error("SPS truncated")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape(unit: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 → 00 00)."""
    return unit.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in unit else unit


def sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) after cropping, from an SPS NAL unit (header byte included)."""
    if not sps or nal_type(sps) != NAL_SPS:
        raise H264Error("not an SPS NAL unit")
    r = _Bits(unescape(sps[1:]))
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma, separate = 1, 0
    if profile in _HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            separate = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if r.u(1):  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        if separate or chroma == 0:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            unit_x = 2 if chroma in (1, 2) else 1
            unit_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if width <= 0 or height <= 0:
        raise H264Error("SPS with an empty picture")
    return width, height


__all__ = ["AvcConfig", "H264Error", "make_avcc", "split_annexb", "split_avcc", "nal_units", "annexb_to_avcc",
           "to_annexb", "nal_type", "is_keyframe", "sps_size", "unescape", "START_CODE", "NAL_IDR", "NAL_SPS",
           "NAL_PPS"]
