"""H.264 bitstream helpers (pure, no I/O), shared by the publisher and the viewer: Annex B ↔
AVC (length-prefixed) NAL units, SPS parsing, the AVC decoder configuration record (avcC)
that LOC carries as VIDEO_CONFIG, and its WebCodecs codec string `avc1.PPCCLL`.

ITU-T H.264 § 7.3 (NAL units, seq_parameter_set_data); ISO/IEC 14496-15 § 5.3.3
(AVCDecoderConfigurationRecord).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- H.264 (ITU-T H.264 § 7.3, ISO/IEC 14496-15 § 5.3.3) ------------------------------------

NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 5, 6, 7, 8, 9
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class BitstreamError(ValueError):
    """Bytes that are not the H.264/AAC structure they claim to be."""


H264Error = BitstreamError
START_CODE = b"\x00\x00\x00\x01"


def is_annexb(data: bytes | memoryview) -> bool:
    """True when `data` starts with a 3- or 4-byte start code."""
    b = bytes(data[:4])
    return b[:3] == b"\x00\x00\x01" or b == b"\x00\x00\x00\x01"


def split_annexb(data: bytes | memoryview) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes removed; trailing zeros trimmed)."""
    b = bytes(data)
    out: list[bytes] = []
    i = b.find(b"\x00\x00\x01")
    if i < 0:
        return [b] if b else []
    i += 3
    while i <= len(b):
        j = b.find(b"\x00\x00\x01", i)
        end = len(b) if j < 0 else j
        nal = b[i:end].rstrip(b"\x00") if j >= 0 else b[i:end]
        if nal:
            out.append(nal)
        if j < 0:
            break
        i = j + 3
    return out


def split_avc(data: bytes | memoryview, length_size: int = 4) -> list[bytes]:
    """NAL units of length-prefixed (AVC) data."""
    b = bytes(data)
    out, i = [], 0
    while i < len(b):
        if i + length_size > len(b):
            raise BitstreamError("truncated NAL length prefix")
        n = int.from_bytes(b[i:i + length_size], "big")
        i += length_size
        if n == 0 or i + n > len(b):
            raise BitstreamError(f"bad NAL length {n} at offset {i - length_size} of {len(b)}")
        out.append(b[i:i + n])
        i += n
    return out


def join_avc(nals: list[bytes], length_size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def annexb_to_avc(data: bytes | memoryview, length_size: int = 4) -> bytes:
    """Annex B → AVC: each start code replaced by a big-endian length prefix."""
    return join_avc(split_annexb(data), length_size)


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def _rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 → 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise BitstreamError("SPS ends early")
            v = (v << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


@dataclass(frozen=True)
class SpsInfo:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def parse_sps(sps: bytes) -> SpsInfo:
    """The fields of a sequence parameter set NAL unit (header byte included) we need:
    profile/constraints/level for the codec string, chroma format, cropped picture size."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise BitstreamError("not an SPS NAL unit")
    r = _Bits(_rbsp(sps[1:]))
    profile, flags, level = r.u(8), r.u(8), r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma, depth_l, depth_c = 1, 8, 8
    if profile in _HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            r.u(1)  # separate_colour_plane_flag
        depth_l, depth_c = r.ue() + 8, r.ue() + 8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma != 3 else 12):
                if r.u(1):
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se()) % 256
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
    w_mbs, h_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}.get(chroma, (2, 2))
    unit_x = 1 if chroma == 0 else sub_w
    unit_y = (2 - frame_mbs_only) * (1 if chroma == 0 else sub_h)
    width = w_mbs * 16 - (crop[0] + crop[1]) * unit_x
    height = (2 - frame_mbs_only) * h_units * 16 - (crop[2] + crop[3]) * unit_y
    return SpsInfo(profile, flags, level, chroma, depth_l, depth_c, width, height)


@dataclass(frozen=True)
class AvcConfig:
    """An AVCDecoderConfigurationRecord (avcC): what WebCodecs takes as `description`."""

    profile: int
    compatibility: int
    level: int
    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    tail: bytes = b""  # high-profile extension (chroma format, bit depths, SPS ext)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> AvcConfig:
        b = bytes(data)
        if len(b) < 7 or b[0] != 1:
            raise BitstreamError("not an avcC record (configurationVersion != 1)")
        length_size = (b[4] & 3) + 1
        i, sps, pps = 6, [], []
        for count, out in ((b[5] & 0x1F, sps), (None, pps)):
            if count is None:
                if i >= len(b):
                    raise BitstreamError("avcC without a PPS count")
                count, i = b[i], i + 1
            for _ in range(count):
                if i + 2 > len(b):
                    raise BitstreamError("truncated avcC")
                n = int.from_bytes(b[i:i + 2], "big")
                if i + 2 + n > len(b):
                    raise BitstreamError("truncated avcC parameter set")
                out.append(b[i + 2:i + 2 + n])
                i += 2 + n
        if not sps:
            raise BitstreamError("avcC without an SPS")
        return cls(b[1], b[2], b[3], length_size, tuple(sps), tuple(pps), b[i:])

    @classmethod
    def from_parameter_sets(cls, sps: list[bytes] | tuple[bytes, ...], pps: list[bytes] | tuple[bytes, ...],
                            length_size: int = 4) -> AvcConfig:
        if not sps or not pps:
            raise BitstreamError("an avcC needs at least one SPS and one PPS")
        info = parse_sps(sps[0])
        tail = b""
        if info.profile_idc in (100, 110, 122, 144):
            tail = bytes([0xFC | info.chroma_format_idc, 0xF8 | (info.bit_depth_luma - 8),
                          0xF8 | (info.bit_depth_chroma - 8), 0])
        return cls(info.profile_idc, info.constraint_flags, info.level_idc, length_size, tuple(sps), tuple(pps), tail)

    def encode(self) -> bytes:
        out = bytearray([1, self.profile, self.compatibility, self.level, 0xFC | (self.length_size - 1),
                         0xE0 | len(self.sps)])
        for ps in self.sps:
            out += len(ps).to_bytes(2, "big") + ps
        out.append(len(self.pps))
        for ps in self.pps:
            out += len(ps).to_bytes(2, "big") + ps
        return bytes(out + self.tail)

    @property
    def codec(self) -> str:
        """The WebCodecs codec string `avc1.PPCCLL` (from the SPS itself, falling back to the
        record's copy of those three bytes)."""
        sps = self.sps[0]
        p, c, lv = (sps[1], sps[2], sps[3]) if len(sps) >= 4 else (self.profile, self.compatibility, self.level)
        return f"avc1.{p:02X}{c:02X}{lv:02X}"

    def sps_info(self) -> SpsInfo:
        return parse_sps(self.sps[0])

    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, after cropping, from the first SPS."""
        info = parse_sps(self.sps[0])
        return info.width, info.height


def make_avcc(sps: list[bytes] | tuple[bytes, ...], pps: list[bytes] | tuple[bytes, ...], length_size: int = 4) -> bytes:
    """An avcC record from SPS and PPS NAL units (without start codes)."""
    return AvcConfig.from_parameter_sets(sps, pps, length_size).encode()


def avc_config_from_extradata(extradata: bytes | memoryview | None) -> AvcConfig | None:
    """avcC from a decoder's extradata: an avcC record as is, or Annex B SPS/PPS wrapped
    into one; None when there is none (parameter sets may come in-band)."""
    if not extradata:
        return None
    b = bytes(extradata)
    if b[0] == 1:
        return AvcConfig.parse(b)
    nals = split_annexb(b)
    sps = [n for n in nals if nal_type(n) == NAL_SPS]
    pps = [n for n in nals if nal_type(n) == NAL_PPS]
    return AvcConfig.from_parameter_sets(sps, pps) if sps and pps else None


class H264Normalizer:
    """Access units from any H.264 source → 4-byte length-prefixed AVC payloads and the
    current avcC.  In-band SPS/PPS (Annex B streams) become the configuration and are taken
    out of the payload, as are access unit delimiters: avc1 carries them in the config."""

    def __init__(self, extradata: bytes | memoryview | None = None) -> None:
        self.config = avc_config_from_extradata(extradata)
        self._in_length = self.config.length_size if self.config and bytes(extradata or b"\x00")[0] == 1 else 0

    def feed(self, data: bytes | memoryview) -> tuple[bytes, bool]:
        """Returns (payload, config_changed)."""
        nals = None
        if self._in_length and bytes(data[:4]) != b"\x00\x00\x00\x01":  # a length of 1 is a start code
            try:
                nals = split_avc(data, self._in_length)
            except BitstreamError:
                nals = None  # not length-prefixed after all
        if nals is None:
            nals = split_annexb(data) if is_annexb(data) else split_avc(data, self._in_length or 4)
        sps = [n for n in nals if nal_type(n) == NAL_SPS]
        pps = [n for n in nals if nal_type(n) == NAL_PPS]
        changed = False
        if sps or pps:
            cur = self.config
            new_sps = tuple(sps) or (cur.sps if cur else ())
            new_pps = tuple(pps) or (cur.pps if cur else ())
            if new_sps and new_pps and (cur is None or (new_sps, new_pps) != (cur.sps, cur.pps)):
                self.config = AvcConfig.from_parameter_sets(new_sps, new_pps)
                changed = True
        kept = [n for n in nals if nal_type(n) not in (NAL_SPS, NAL_PPS, NAL_AUD)]
        return join_avc(kept), changed


def is_keyframe_avc(payload: bytes) -> bool:
    """True when a 4-byte length-prefixed access unit holds an IDR slice."""
    try:
        return any(nal_type(n) == NAL_IDR for n in split_avc(payload))
    except BitstreamError:
        return False


def nal_units(data: bytes | memoryview, length_size: int = 4) -> list[bytes]:
    """NAL units of an access unit in either format (AVC length-prefixed preferred)."""
    try:
        return split_avc(data, length_size)
    except BitstreamError:
        if not is_annexb(data):
            raise
        return split_annexb(data)


def to_annexb(units: list[bytes]) -> bytes:
    return b"".join(START_CODE + u for u in units)


def is_keyframe(units: list[bytes]) -> bool:
    """An IDR access unit (decoding can start here)."""
    return any(nal_type(u) == NAL_IDR for u in units)


# names the viewer uses for the same operations
split_avcc = split_avc
annexb_to_avcc = annexb_to_avc
