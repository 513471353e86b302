"""Remux received LOC objects into an MP4 file with PyAV, without re-encoding.

* H.264 (avc1/avc3): the avcC arrives as LOC VIDEO_CONFIG on key frames.  Writing starts at
  the first key frame for which we have one; earlier video objects are dropped.  Access
  units are handed to the muxer in Annex B form with the SPS/PPS in front of each key
  frame: PyAV's muxer takes the stream's extradata from the first packet and the MP4 muxer
  writes the avcC and length-prefixed samples from it (so no encoder is ever opened).
* Opus and AAC: a stream whose codec context we open but never feed, so that its
  parameters (sample rate, channels, extradata) reach the file; its extradata is replaced
  by the publisher's AUDIO_CONFIG when there is one (AudioSpecificConfig for AAC, OpusHead
  for Opus).  ADTS headers on AAC frames are stripped.
* Timestamps: pts = dts = LOC capture time − the first video key frame's (µs time base);
  audio captured before that is dropped so both tracks start together.
* Gaps (groups lost on the way): video keeps its timestamps (the frame before a gap is shown
  until the next key frame); audio has no such thing, a player plays packets back to back, so
  a gap is filled with silent packets (made once by an encoder of the track's codec) and the
  audio after it stays in step with the video; so is the start, when the first audio came
  after the first video key frame.
* The container follows the file's extension: MP4 (.mp4, .m4v), QuickTime (.mov), Matroska (.mkv).

The header is written once every expected track has what it needs (or after 3 s of media,
10 s if a track not ready yet is receiving objects, without the tracks that are not ready;
their objects are then dropped).  `close()` writes
the trailer; it is safe to call more than once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction

import av

from moq.media.aac import make_asc, parse_adts, parse_asc
from moq.media.h264 import NAL_AUD, NAL_PPS, NAL_SPS, AvcConfig, H264Error, is_keyframe, nal_type, nal_units, to_annexb
from moq.media.loc import LocProperties

TIME_BASE = Fraction(1, 1_000_000)
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
AUDIO_GAP = 2.5  # an audio packet this many packet durations after the previous one follows a gap
MAX_FILL_US = 30_000_000  # longer audio gaps are left as they are
START_SILENCE_US = 50_000  # audio that starts later than this after the first video key frame is preceded by silence
# media buffered before the header is written without the tracks that are not ready yet:
START_WAIT_US = 3_000_000  # ... when such a track has sent nothing at all
START_WAIT_ACTIVE_US = 10_000_000  # ... when it is sending, but no key frame yet (a long GOP)


@dataclass
class MediaInfo:
    """What the catalog says about a track (all optional)."""

    kind: str  # "video" or "audio"
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    framerate: float | None = None
    samplerate: int | None = None
    channels: int | None = None


@dataclass
class _Track:
    name: str
    info: MediaInfo
    codec: str | None  # h264, opus, aac; None = not written
    avc: AvcConfig | None = None
    avc_raw: bytes = b""
    seen: int = 0  # objects received
    audio_config: bytes | None = None
    started: bool = False  # video: first key frame seen
    stream: av.stream.Stream | None = None
    last_pts: int | None = None
    written: int = 0
    dropped: int = 0  # before the first key frame, before the start, or after the header without a stream
    adjusted: int = 0  # timestamps moved forward to keep decode order monotonic
    frame_us: int | None = None  # audio: the packet duration seen (gap detection)
    silence: tuple[bytes, int] | None = None  # audio: a silent packet and its duration (µs)
    filled: int = 0  # silent packets written into gaps

    @property
    def ready(self) -> bool:
        if self.codec == "h264":
            return self.started
        if self.codec == "aac":
            return self.audio_config is not None or self.info.samplerate is not None
        return self.codec == "opus"


def codec_of(info: MediaInfo) -> str | None:
    c = (info.codec or "").lower()
    if info.kind == "video":
        return "h264" if c.startswith(("avc1", "avc3", "h264")) or not c else None
    if info.kind == "audio":
        if c.startswith(("mp4a.40", "aac")):
            return "aac"
        return "opus" if c.startswith("opus") or not c else None
    return None


class Mp4Writer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.tracks: dict[str, _Track] = {}
        self.container: av.container.OutputContainer | None = None
        self.pending: list[tuple[int, int, _Track, bytes, bool]] = []  # (ts_us, seq, track, data, key)
        self._seq = 0
        self.t0: int | None = None
        self.closed = False
        self.error: str | None = None
        self.warnings: list[str] = []

    @staticmethod
    def container_format(path: str) -> str | None:
        """The muxer for the file's extension, None when we cannot write that kind of file."""
        return FORMATS.get(os.path.splitext(path)[1].lower())

    @staticmethod
    def check_path(path: str) -> str | None:
        """Why `path` cannot be written (checked before subscribing), or None."""
        directory = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            return f"{path} is a directory"
        if not os.path.isdir(directory):
            return f"no such directory: {directory}"
        if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            return f"{path} is not writable"
        return None

    # --- configuration ---------------------------------------------------------------------
    def expect(self, name: str, info: MediaInfo) -> None:
        """A track to write (or better information about it); ignored once the header is out."""
        if self.container is not None or self.closed:
            return
        codec = codec_of(info)
        tr = self.tracks.get(name)
        if tr is None:
            self.tracks[name] = _Track(name, info, codec)
            if codec is None:
                self.warnings.append(f"{name}: codec {info.codec!r} cannot be written to MP4, skipped")
        else:
            tr.info, tr.codec = info, codec

    def forget(self, name: str) -> None:
        """A track that will not come after all (its subscription was refused)."""
        tr = self.tracks.get(name)
        if tr is not None and tr.stream is None and not tr.seen:
            del self.tracks[name]

    # --- objects -----------------------------------------------------------------------------
    def add(self, name: str, payload: bytes | memoryview, props: LocProperties | None, arrival_us: int) -> None:
        """One object of a track, in the track's order."""
        tr = self.tracks.get(name)
        if tr is None or tr.codec is None or self.closed or self.error is not None:
            return
        ts = _timestamp_us(props, arrival_us)
        tr.seen += 1
        try:
            if tr.codec == "h264":
                item = self._video(tr, payload, props)
            else:
                item = self._audio(tr, payload, props)
        except (H264Error, ValueError) as exc:
            tr.dropped += 1
            self._warn(f"{name}: unreadable object dropped ({exc})")
            return
        if item is None:
            return
        data, key = item
        if self.container is None:
            self._seq += 1
            self.pending.append((ts, self._seq, tr, data, key))
            if self._should_start():
                self._start()
        elif tr.stream is None:
            tr.dropped += 1
        else:
            self._mux(tr, ts, data, key)

    def _video(self, tr: _Track, payload: bytes | memoryview, props: LocProperties | None) -> tuple[bytes, bool] | None:
        if props is not None and props.video_config and props.video_config != tr.avc_raw:
            tr.avc = AvcConfig.parse(props.video_config)
            tr.avc_raw = bytes(props.video_config)
        units = nal_units(payload, tr.avc.length_size if tr.avc else 4)
        key = is_keyframe(units)
        if not tr.started:
            if not (key and tr.avc is not None):
                tr.dropped += 1
                return None
            tr.started = True
        units = [u for u in units if nal_type(u) != NAL_AUD]
        if key and tr.avc is not None:
            units = [*tr.avc.sps, *tr.avc.pps, *(u for u in units if nal_type(u) not in (NAL_SPS, NAL_PPS))]
        return to_annexb(units), key

    def _audio(self, tr: _Track, payload: bytes | memoryview, props: LocProperties | None) -> tuple[bytes, bool]:
        data = bytes(payload)
        if props is not None and props.audio_config:
            tr.audio_config = bytes(props.audio_config)
        if tr.codec == "aac":
            adts = parse_adts(data)
            if adts is not None:
                header_len, asc = adts
                data = data[header_len:]
                if tr.audio_config is None:
                    tr.audio_config = asc
        return data, True

    # --- writing -------------------------------------------------------------------------------
    def _should_start(self) -> bool:
        waiting = [t for t in self.tracks.values() if t.codec is not None and not t.ready]
        if not waiting:
            return True
        buffered = self.pending[-1][0] - min(p[0] for p in self.pending)
        return buffered > (START_WAIT_ACTIVE_US if any(t.seen for t in waiting) else START_WAIT_US)

    def _start(self) -> None:
        ready = [t for t in self.tracks.values() if t.codec is not None and t.ready]
        if not ready:
            for _, _, tr, _, _ in self.pending:
                tr.dropped += 1
            self.pending.clear()
            return
        try:
            self.container = av.open(self.path, "w", format=self.container_format(self.path) or "mp4")
            for tr in sorted(ready, key=lambda t: t.codec != "h264"):  # video first
                tr.stream = self._add_stream(tr)
        except (av.error.FFmpegError, OSError, ValueError, H264Error) as exc:
            self._fail(f"cannot create {self.path}: {exc}")
            return
        for tr in self.tracks.values():
            if tr.codec is not None and tr.stream is None:
                self._warn(f"{tr.name}: nothing decodable arrived in time, not written")
        pending, self.pending = sorted(self.pending, key=lambda p: (p[0], p[1])), []
        video_keys = [p[0] for p in pending if p[2].codec == "h264" and p[2].stream is not None]
        self.t0 = min(video_keys) if video_keys else pending[0][0]
        for ts, _, tr, data, key in pending:
            if tr.stream is None or (ts < self.t0 and tr.codec != "h264"):
                tr.dropped += 1
                continue
            self._mux(tr, ts, data, key)

    def _add_stream(self, tr: _Track) -> av.stream.Stream:
        info = tr.info
        c = self.container
        assert c is not None
        if tr.codec == "h264":
            assert tr.avc is not None
            width, height = tr.avc.size()
            rate = Fraction(info.framerate).limit_denominator(1001) if info.framerate else None
            stream = c.add_mux_stream("h264", rate=rate, width=width, height=height)
            stream.time_base = TIME_BASE
            return stream
        if tr.codec == "opus":
            channels = info.channels or 2
            if tr.audio_config and tr.audio_config.startswith(b"OpusHead") and len(tr.audio_config) >= 19:
                channels = tr.audio_config[9]
            stream = c.add_stream("libopus", rate=48000, layout=_layout(channels))
        else:
            object_type, rate, channels = (parse_asc(tr.audio_config) if tr.audio_config
                                           else (2, info.samplerate or 48000, info.channels or 2))
            stream = c.add_stream("aac", rate=rate, layout=_layout(channels or info.channels or 2))
        ctx = stream.codec_context
        ctx.open()  # never fed: opened only so that its parameters are written
        if tr.codec == "opus" and tr.audio_config and tr.audio_config.startswith(b"OpusHead"):
            ctx.extradata = tr.audio_config
        elif tr.codec == "aac":
            ctx.extradata = tr.audio_config or make_asc(2, info.samplerate or 48000, info.channels or 2)
        return stream

    def _mux(self, tr: _Track, ts: int, data: bytes, key: bool) -> None:
        assert self.container is not None and self.t0 is not None
        pts = ts - self.t0
        if tr.last_pts is not None and pts <= tr.last_pts:
            if tr.codec != "h264":  # a late or repeated audio packet: skip it
                tr.dropped += 1
                return
            pts = tr.last_pts + 1  # keep decode order; every frame is needed
            tr.adjusted += 1
        if pts < 0:
            tr.dropped += 1
            return
        if tr.codec != "h264" and tr.last_pts is None and pts > START_SILENCE_US:
            self._fill(tr, 0, pts)  # audio began after the video's key frame: start both together
        if tr.codec != "h264":
            if tr.last_pts is not None and tr.frame_us and AUDIO_GAP * tr.frame_us < pts - tr.last_pts <= MAX_FILL_US:
                self._fill(tr, tr.last_pts + tr.frame_us, pts)
            tr.frame_us = self._duration_us(tr, data)
        self._write(tr, pts, data, key)

    @staticmethod
    def _duration_us(tr: _Track, data: bytes) -> int | None:
        """How long an audio packet plays: Opus from its TOC byte (RFC 6716 § 3.1), AAC 1024 samples."""
        if tr.codec == "aac":
            rate = parse_asc(tr.audio_config)[1] if tr.audio_config else (tr.info.samplerate or 48000)
            return 1024 * 1_000_000 // max(1, rate)
        if not data:
            return None
        toc = data[0]
        config = toc >> 3
        if config < 12:
            frame = (10_000, 20_000, 40_000, 60_000)[config & 3]
        elif config < 16:
            frame = (10_000, 20_000)[config & 1]
        else:
            frame = (2_500, 5_000, 10_000, 20_000)[config & 3]
        count = (1, 2, 2, data[1] & 0x3F if len(data) > 1 else 1)[toc & 3]
        return frame * count

    def _fill(self, tr: _Track, start: int, end: int) -> None:
        """Silent audio packets from `start` until `end` (µs since t0)."""
        if tr.silence is None:
            tr.silence = self._silence(tr)
            if tr.silence is None:
                return
        data, duration = tr.silence
        t = start
        while t + duration // 2 <= end - duration // 2 and self.error is None:
            self._write(tr, t, data, True)
            tr.filled += 1
            t += duration

    def _silence(self, tr: _Track) -> tuple[bytes, int] | None:
        """One silent packet of the track's codec and configuration, from a short-lived encoder."""
        assert tr.stream is not None
        src = tr.stream.codec_context
        try:
            enc = av.CodecContext.create("libopus" if tr.codec == "opus" else "aac", "w")
            enc.sample_rate, enc.layout = src.sample_rate, src.layout
            enc.format = enc.codec.audio_formats[0] if enc.codec.audio_formats else "fltp"
            enc.open()
            samples = enc.frame_size or 1024
            packets = []
            for i in range(4):
                frame = av.AudioFrame(format=enc.format.name, layout=enc.layout.name, samples=samples)
                for plane in frame.planes:
                    plane.update(bytes(plane.buffer_size))
                frame.sample_rate, frame.pts = enc.sample_rate, i * samples
                packets += enc.encode(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            self._warn(f"{tr.name}: cannot fill audio gaps with silence ({exc})")
            return None
        if not packets:
            return None
        return bytes(packets[-1]), samples * 1_000_000 // enc.sample_rate

    def _write(self, tr: _Track, pts: int, data: bytes, key: bool) -> None:
        assert self.container is not None
        packet = av.Packet(data)
        packet.stream = tr.stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.is_keyframe = key
        try:
            self.container.mux(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            self._fail(f"writing {self.path} failed: {exc}")
            return
        tr.last_pts = pts
        tr.written += 1

    def close(self) -> None:
        if self.closed:
            return
        if self.container is None and self.pending and self.error is None:
            self._start()
        self.closed = True
        if self.container is not None:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                self.error = self.error or f"closing {self.path} failed: {exc}"
            self.container = None

    # --- reporting -------------------------------------------------------------------------------
    @property
    def written(self) -> bool:
        return any(t.written for t in self.tracks.values())

    def report(self) -> str:
        parts = []
        for t in self.tracks.values():
            if t.codec is None:
                continue
            part = f"{t.name} {t.codec} {t.written} packets"
            if t.dropped:
                part += f" ({t.dropped} dropped)"
            if t.filled:
                part += f" ({t.filled} silent, filling gaps)"
            parts.append(part)
        return f"{self.path}: " + (", ".join(parts) if parts else "no media tracks")

    def _warn(self, msg: str) -> None:
        if len(self.warnings) < 20:
            self.warnings.append(msg)

    def _fail(self, msg: str) -> None:
        logging.getLogger(__name__).debug(msg)
        self.error = msg
        if self.container is not None:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError, ValueError):
                pass
            self.container = None


def _timestamp_us(props: LocProperties | None, arrival_us: int) -> int:
    if props is None or props.timestamp is None:
        return arrival_us
    if props.timescale:
        return props.timestamp * 1_000_000 // props.timescale
    return props.timestamp


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


__all__ = ["Mp4Writer", "MediaInfo", "codec_of", "make_asc", "parse_asc", "parse_adts"]
