"""AAC configuration (pure, no I/O): the AudioSpecificConfig that LOC carries as
AUDIO_CONFIG and WebCodecs takes as `description`, its `mp4a.40.N` codec string, and ADTS
headers (ISO/IEC 14496-3 § 1.6.2.1, § 1.A.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .h264 import BitstreamError, _Bits

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


@dataclass(frozen=True)
class AacConfig:
    object_type: int
    samplerate: int
    channels: int

    @classmethod
    def parse(cls, asc: bytes | memoryview) -> AacConfig:
        b = bytes(asc)
        if len(b) < 2:
            raise BitstreamError("AudioSpecificConfig too short")
        r = _Bits(b)
        try:
            aot = r.u(5)
            if aot == 31:
                aot = 32 + r.u(6)
            idx = r.u(4)
            rate = r.u(24) if idx == 15 else (AAC_RATES[idx] if idx < len(AAC_RATES) else 0)
            channels = r.u(4)
        except BitstreamError:
            raise BitstreamError("AudioSpecificConfig too short") from None
        if not rate:
            raise BitstreamError(f"bad AAC sampling frequency index {idx}")
        return cls(aot, rate, channels)

    @property
    def codec(self) -> str:
        return f"mp4a.40.{self.object_type}"


def is_adts(data: bytes | memoryview) -> bool:
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0


def strip_adts(data: bytes) -> bytes:
    """Raw AAC from an ADTS frame (7-byte header, 9 with CRC); other data unchanged."""
    if not is_adts(data) or len(data) < 7:
        return data
    return data[7 if data[1] & 1 else 9:]


def make_asc(object_type: int, samplerate: int, channels: int) -> bytes:
    """A 2-byte AudioSpecificConfig (rates outside the index table are not supported)."""
    index = AAC_RATES.index(samplerate) if samplerate in AAC_RATES else 3
    return ((object_type << 11) | (index << 7) | (channels << 3)).to_bytes(2, "big")


def parse_asc(asc: bytes) -> tuple[int, int, int]:
    """(audio object type, sample rate, channel configuration) of an AudioSpecificConfig."""
    try:
        cfg = AacConfig.parse(asc)
    except BitstreamError as exc:
        raise ValueError(str(exc)) from None
    return cfg.object_type, cfg.samplerate, cfg.channels


def parse_adts(frame: bytes) -> tuple[int, bytes] | None:
    """(header length, AudioSpecificConfig) when `frame` starts with an ADTS header."""
    if len(frame) < 7 or not is_adts(frame):
        return None
    profile = (frame[2] >> 6) + 1
    index = (frame[2] >> 2) & 0xF
    channels = ((frame[2] & 0x1) << 2) | (frame[3] >> 6)
    if index >= len(AAC_RATES):
        return None
    header = 7 if frame[1] & 0x1 else 9
    return header, make_asc(profile, AAC_RATES[index], channels)
