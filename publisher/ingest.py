"""Media inputs (PyAV): the `testsrc` pattern, media files (optionally looped) and an RTMP
listener that OBS can push to.  Each source yields encoded packets with wall-clock timing;
nothing here knows about MoQ.

Blocking by nature (demuxing, encoding, waiting for an RTMP client): `Source.packets()` is
meant to run in a worker thread.  Timing: every packet carries `ts_us` (its presentation
time as wall-clock µs since the epoch, the LOC capture timestamp) and `send_us` (its
decode-order time, when a paced sender should hand it on).  Files and RTMP map media time
to the wall clock at the moment their stream starts.
"""

from __future__ import annotations

import errno
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import structlog
from av.video.frame import PictureType

from . import rtmp
from .packaging import strip_adts
from .testsrc import Painter, Tone

log = structlog.get_logger(__name__)

OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms
US = 1_000_000
MAX_BEHIND_US = 500_000  # testsrc skips frames when it falls this far behind real time


def now_us() -> int:
    return time.time_ns() // 1000


class IngestError(Exception):
    """The input cannot be opened or read (bad file, unsupported media)."""


class RtmpPortBusy(IngestError):
    """Another program listens on the RTMP port: fatal, unlike a client that went away."""


class RtmpRefused(Exception):
    """An RTMP client with the wrong app or stream key (we keep listening)."""


av_message = rtmp.av_message


@dataclass(frozen=True)
class StreamFormat:
    """What a stream of packets is; equal formats mean "nothing changed"."""

    kind: str  # "video" or "audio"
    codec: str  # "h264", "aac", "opus"
    extradata: bytes | None = None  # avcC or Annex B SPS/PPS; AAC AudioSpecificConfig
    width: int = 0
    height: int = 0
    framerate: float | None = None
    samplerate: int = 0
    channels: int = 0
    bitrate: int = 0
    origin: str = ""  # "passthrough" or the encoder's name


@dataclass(frozen=True, slots=True)
class MediaPacket:
    fmt: StreamFormat
    data: bytes
    keyframe: bool
    ts_us: int
    send_us: int

    @property
    def kind(self) -> str:
        return self.fmt.kind


@dataclass(frozen=True)
class Settings:
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate: int = 2_500_000
    gop: float = 2.0
    audio: bool = True
    audio_bitrate: int = 96_000
    gop_set: bool = False  # --gop was given (it cannot apply to passed-through H.264)


# --- encoders -------------------------------------------------------------------------------------


class H264Encoder:
    """libx264 for live: zerolatency, main profile, no B-frames, yuv420p, an IDR every `gop`
    seconds (or when asked), global header (SPS/PPS in extradata, Annex B)."""

    def __init__(self, width: int, height: int, fps: float, bitrate: int, gop: float) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.gop_us = max(1, int(gop * US))
        keyint = max(1, round(gop * fps))
        kbps = max(1, bitrate // 1000)
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
        cc.time_base = Fraction(1, US)
        cc.framerate = Fraction(fps).limit_denominator(1001)
        cc.bit_rate = bitrate
        cc.gop_size = keyint
        cc.max_b_frames = 0
        cc.flags |= av.codec.context.Flags.global_header
        cc.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "main", "forced-idr": "1",
                      "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:"
                                     f"vbv-maxrate={kbps}:vbv-bufsize={kbps}"}
        cc.open()
        self.cc = cc
        self.bitrate = bitrate
        self._last_key: int | None = None
        self.force_next = False

    @property
    def extradata(self) -> bytes:
        return bytes(self.cc.extradata or b"")

    def encode(self, frame: av.VideoFrame | None, pts_us: int = 0) -> list[tuple[bytes, bool, int, int]]:
        """(data, keyframe, pts_us, dts_us) of the packets that came out."""
        if frame is not None:
            if self.force_next or self._last_key is None or pts_us - self._last_key >= self.gop_us - 1000:
                frame.pict_type = PictureType.I
                self._last_key = pts_us
                self.force_next = False
            else:
                frame.pict_type = PictureType.NONE
            frame.pts = pts_us
            frame.time_base = Fraction(1, US)
        out = []
        for p in self.cc.encode(frame):
            pts = p.pts if p.pts is not None else pts_us
            out.append((bytes(p), p.is_keyframe, pts, p.dts if p.dts is not None else pts))
        return out


class OpusEncoder:
    """libopus, 48 kHz stereo, 20 ms frames (PyAV re-chunks whatever it is given)."""

    def __init__(self, bitrate: int = 96_000) -> None:
        cc = av.CodecContext.create("libopus", "w")
        cc.sample_rate, cc.layout, cc.format = OPUS_RATE, "stereo", "s16"
        cc.bit_rate = bitrate
        cc.time_base = Fraction(1, OPUS_RATE)
        cc.open()
        self.cc = cc
        self.bitrate = bitrate
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE)

    def encode(self, frame: av.AudioFrame | None) -> list[tuple[bytes, int]]:
        """(data, pts in samples at 48 kHz) of the packets that came out."""
        return [(bytes(p), p.pts or 0) for p in self.cc.encode(frame)]


def fit_size(width: int, height: int, max_w: int, max_h: int) -> tuple[int, int]:
    """The source size scaled down (aspect kept) to fit max_w × max_h, rounded to even."""
    scale = min(1.0, max_w / max(1, width), max_h / max(1, height))
    return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)


# --- sources --------------------------------------------------------------------------------------


class Source(ABC):
    live = False  # packets arrive in real time (no pacing needed)
    name = ""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._keyframe = threading.Event()
        self.kinds: frozenset[str] | None = None  # "video"/"audio" streams, once known

    def stop(self) -> None:
        self._stop.set()

    def request_keyframe(self) -> None:
        """Ask the video encoder for an IDR soon (thread-safe; passthrough cannot)."""
        self._keyframe.set()

    def check(self) -> None:  # noqa: B027 - optional hook: most sources have nothing to check
        """Fail fast (IngestError) if the input cannot work; called before publishing."""

    @abstractmethod
    def packets(self) -> Iterator[MediaPacket]:
        """Encoded packets in capture order, paced at real time, until stopped or the end."""

    def describe(self) -> str:
        return self.name


class PatternSource(Source):
    """A moving pattern with the capture time burnt in, and a tone: generated in real time
    (frame i is captured at start + i/fps)."""

    name = "testsrc"

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.s = settings
        self.kinds = frozenset({"video", "audio"} if settings.audio else {"video"})
        Painter(settings.width, settings.height)  # validates the size

    def describe(self) -> str:
        return f"testsrc {self.s.width}x{self.s.height}@{self.s.fps}"

    def packets(self) -> Iterator[MediaPacket]:
        s = self.s
        painter = Painter(s.width, s.height)
        venc = H264Encoder(s.width, s.height, s.fps, s.bitrate, s.gop)
        vfmt = StreamFormat("video", "h264", venc.extradata, s.width, s.height, float(s.fps), bitrate=s.bitrate,
                            origin="libx264")
        aenc = OpusEncoder(s.audio_bitrate) if s.audio else None
        afmt = StreamFormat("audio", "opus", None, samplerate=OPUS_RATE, channels=2, bitrate=s.audio_bitrate,
                            origin="libopus")
        t0 = now_us()
        tone = Tone(OPUS_RATE, t0)
        vi = ai = 0
        while not self._stop.is_set():
            v_t = vi * US // s.fps
            a_t = ai * OPUS_FRAME * US // OPUS_RATE
            if aenc is not None and a_t < v_t:
                frame = av.AudioFrame.from_ndarray(tone.samples(ai * OPUS_FRAME, OPUS_FRAME), format="s16",
                                                   layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = OPUS_RATE, ai * OPUS_FRAME, Fraction(1, OPUS_RATE)
                ai += 1
                for data, pts in aenc.encode(frame):
                    ts = t0 + pts * US // OPUS_RATE
                    yield MediaPacket(afmt, data, True, ts, ts)
                continue
            behind = now_us() - (t0 + v_t)
            if behind > MAX_BEHIND_US:  # this machine cannot keep up: skip frames, stay live
                skip = behind * s.fps // US
                log.warning("testsrc_behind", behind_ms=behind // 1000, skipped_frames=skip)
                vi += skip
                ai = (vi * US // s.fps) * OPUS_RATE // (OPUS_FRAME * US)
                continue
            frame = av.VideoFrame.from_ndarray(painter.frame(vi, t0 + v_t), format="yuv420p")
            if self._keyframe.is_set():
                self._keyframe.clear()
                venc.force_next = True
            vi += 1
            for data, key, pts, dts in venc.encode(frame, v_t):
                yield MediaPacket(vfmt, data, key, t0 + pts, t0 + dts)


@dataclass(slots=True)
class _Item:
    """An encoded packet in media time (µs), before it is placed on the wall clock."""

    fmt: StreamFormat
    data: bytes
    keyframe: bool
    pts: int
    dts: int
    duration: int = 0


class _Timeline:
    """Media time → wall clock.

    A file is anchored when its first packet is sent (and a looped file continues where
    the previous pass ended).  A live (RTMP) stream is anchored at its *live edge*: the
    packets the demuxer buffered while it probed the stream come out in a burst, so they
    are held until a read has to wait for the network; that packet was just captured,
    and the held ones get their earlier capture times from it.  Afterwards a packet that
    arrives before its mapped time moves the anchor earlier (the anchor packet itself was
    late), so timestamps are never in the future; a clock that jumps (a stall, a
    reconnecting encoder) is re-anchored."""

    LIVE_EDGE_WAIT = 0.005  # a read that blocked this long waited for the network
    MAX_HELD_US = 3 * US

    def __init__(self, live: bool) -> None:
        self.live = live
        self.anchor: tuple[int, int] | None = None  # (media µs, wall µs)
        self.offset = 0  # added to media time (looping)
        self.pass_end = 0
        self.held: list[_Item] = []

    def wall(self, media_us: int) -> int:
        assert self.anchor is not None
        return self.anchor[1] + media_us + self.offset - self.anchor[0]

    def _packet(self, it: _Item) -> MediaPacket:
        return MediaPacket(it.fmt, it.data, it.keyframe, self.wall(it.pts), self.wall(it.dts))

    def place(self, items: list[_Item], blocked: bool) -> Iterator[MediaPacket]:
        """Packets for `items` (decode order); `blocked`: reading them waited for the network."""
        for it in items:
            self.pass_end = max(self.pass_end, it.pts + self.offset + it.duration, it.dts + self.offset)
        if not self.live:
            if self.anchor is None and items:
                self.anchor = (items[0].dts + self.offset, now_us())
            for it in items:
                yield self._packet(it)
            return
        if self.anchor is None:
            self.held.extend(items)
            if not self.held or not (blocked or self.held[-1].dts - self.held[0].dts > self.MAX_HELD_US):
                return
            last = self.held[-1]
            self.anchor = (max(last.pts, last.dts), now_us())  # reordered frames: captured by their pts
            items, self.held = self.held, []
        elif items:
            now = now_us()
            ahead = max(self.wall(max(it.pts, it.dts)) for it in items) - now
            if abs(ahead) > 3 * US:
                self.anchor = (items[0].dts, now)  # the source's clock jumped
            elif ahead > 0:  # it came earlier than the anchor predicted: the anchor was late
                self.anchor = (self.anchor[0], self.anchor[1] - ahead)
        for it in items:
            yield self._packet(it)

    def next_pass(self, first_media_us: int) -> None:
        """The file starts over: its media time `first_media_us` continues at the end of this pass."""
        self.offset = self.pass_end - first_media_us


def _us(value: int | None, time_base: Fraction | None) -> int | None:
    if value is None or time_base is None:
        return None
    return int(value * time_base * US)


def _timed(iterator: Iterator) -> Iterator[tuple[object, bool]]:
    """(item, whether getting it blocked for a while) for each item of `iterator`."""
    while True:
        start = time.monotonic()
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item, time.monotonic() - start > _Timeline.LIVE_EDGE_WAIT


RTMP_OPTIONS = {"listen": "1", "analyzeduration": "500000", "probesize": "500000"}


class ContainerSource(Source):
    """A media file (optionally looped) or an RTMP listener.  H.264 video with usable
    extradata and AAC/Opus audio pass through; anything else is transcoded."""

    def __init__(self, url: str, settings: Settings, *, loop: bool = False) -> None:
        super().__init__()
        self.url = url
        self.s = settings
        self.rtmp = url.startswith("rtmp://")
        self.live = self.rtmp
        self.loop = loop and not self.rtmp
        self.name = url
        self.info = ""
        self._last_key_us: int | None = None
        self._gop_warned = False

    def describe(self) -> str:
        return f"{'rtmp' if self.rtmp else 'file'} {self.info or self.url}"

    def check(self) -> None:
        if self.rtmp:
            parts = urllib.parse.urlsplit(self.url)
            if not parts.hostname or not parts.port or not parts.path.strip("/"):
                raise IngestError(f"RTMP input must look like rtmp://0.0.0.0:1935/live/KEY, got {self.url!r}")
            busy = rtmp.port_busy(parts.hostname, parts.port)
            if busy:
                raise IngestError(f"cannot listen for RTMP on {parts.hostname}:{parts.port}: {busy}")
            return
        container = self._open()
        container.close()

    def _open(self) -> av.container.InputContainer:
        try:
            c = self._listen() if self.rtmp else av.open(self.url)
        except (av.FFmpegError, OSError, ValueError) as exc:
            if self.rtmp and getattr(exc, "errno", None) == errno.EADDRINUSE:
                raise RtmpPortBusy(f"cannot listen for RTMP on {self.url}: {av_message(exc)}") from None
            raise IngestError(f"cannot open input {self.url}: {av_message(exc)}") from None
        if not c.streams.video and not (c.streams.audio and self.s.audio):
            c.close()
            raise IngestError(f"{self.url}: no video or audio stream")
        return c

    def _listen(self) -> av.container.InputContainer:
        log.info("rtmp_listening", url=self.url)
        c, refused = rtmp.listen(self.url, RTMP_OPTIONS)
        if refused:
            raise RtmpRefused(f"refused an RTMP client: {refused} (wrong app or stream key)")
        return c

    def packets(self) -> Iterator[MediaPacket]:
        timeline = _Timeline(self.live)
        venc: H264Encoder | None = None
        aenc: OpusEncoder | None = None
        first_pass = True
        while not self._stop.is_set():
            try:
                container = self._open()
            except RtmpRefused as exc:
                log.warning("rtmp_refused", reason=str(exc))
                continue
            except IngestError as exc:
                if not self.rtmp or self._stop.is_set() or isinstance(exc, RtmpPortBusy):
                    raise
                log.warning("rtmp_listen_failed", error=str(exc))
                self._stop.wait(1.0)
                continue
            guard = self._guard() if self.rtmp else None
            if self.rtmp:
                timeline = _Timeline(True)  # a new push: a new clock
            elif not first_pass:
                timeline.next_pass(self._first_media_us(container))
            first_pass = False
            vs = container.streams.video[0] if container.streams.video else None
            as_ = container.streams.audio[0] if container.streams.audio and self.s.audio else None
            self._log_ignored(container, vs, as_)
            vfmt = self._video_format(container, vs) if vs is not None else None
            afmt = self._audio_format(as_) if as_ is not None else None
            self.kinds = frozenset(f.kind for f in (vfmt, afmt) if f is not None)
            if vfmt is not None and vfmt.origin != "passthrough" and venc is None:
                venc = H264Encoder(vfmt.width, vfmt.height, vfmt.framerate or self.s.fps, self.s.bitrate, self.s.gop)
            if vfmt is not None and venc is not None and vfmt.origin != "passthrough":
                vfmt = replace(vfmt, width=venc.width, height=venc.height, extradata=venc.extradata)
            if afmt is not None and afmt.origin != "passthrough" and aenc is None:
                aenc = OpusEncoder(self.s.audio_bitrate)
            self.info = ", ".join(f"{f.kind} {f.codec} {f.origin}" + (f" {f.width}x{f.height}" if f.width else "")
                                  for f in (vfmt, afmt) if f is not None)
            log.info("input_opened", url=self.url, streams=self.info)
            if vfmt is not None and vfmt.origin == "passthrough" and self.s.gop_set:
                log.warning("gop_ignored", gop_s=self.s.gop,
                            reason="H.264 passes through with the input's key frames; --gop applies when re-encoding")
            passthrough_video = vfmt is not None and vfmt.origin == "passthrough"
            streams = [st for st in (vs, as_) if st is not None]
            try:
                for pkt, blocked in _timed(container.demux(streams)):
                    if self._stop.is_set():
                        break
                    video = pkt.stream is vs  # type: ignore[attr-defined]
                    if pkt.size == 0 or (pkt.dts is None and pkt.pts is None):  # type: ignore[attr-defined]
                        # the end of a stream: a decoder we feed still holds frames (HEVC: the last few)
                        if pkt.size != 0 or (venc if video else aenc) is None:
                            continue
                    if video:
                        items = self._video(pkt, vfmt, venc)  # type: ignore[arg-type]
                        if passthrough_video:
                            self._watch_keyframes(items)
                    else:
                        items = self._audio(pkt, afmt, aenc)  # type: ignore[arg-type]
                    yield from timeline.place(items, blocked)
            except (av.FFmpegError, OSError) as exc:
                if not self.rtmp:
                    raise IngestError(f"{self.url}: {av_message(exc)}") from None
                log.info("rtmp_stream_ended", reason=av_message(exc))
            finally:
                container.close()
                if guard is not None:
                    guard.close()
            if self.rtmp:
                yield from timeline.place([], True)  # whatever was still held
                log.info("rtmp_client_left", url=self.url)
            elif not self.loop:
                break
        if venc is not None and timeline.anchor is not None:
            items = [_Item(vfmt, data, key, pts, dts) for data, key, pts, dts in venc.encode(None)]  # type: ignore
            yield from timeline.place(items, True)

    def _guard(self) -> rtmp.PushGuard:
        parts = urllib.parse.urlsplit(self.url)
        return rtmp.PushGuard(parts.hostname or "0.0.0.0", parts.port or 1935, self.url)

    def _log_ignored(self, container, vs, as_) -> None:
        """Streams we do not publish (only the first video and audio streams are)."""
        for st in container.streams:
            if st is vs or st is as_ or st.type not in ("video", "audio") or (st.type == "audio" and not self.s.audio):
                continue
            log.warning("stream_ignored", url=self.url, stream=st.index, kind=st.type, codec=st.codec_context.name,
                        reason=f"only the first {st.type} stream is published")

    def _watch_keyframes(self, items: list[_Item]) -> None:
        """Passed-through H.264 keeps the input's key frames, and a group is a GOP: a viewer
        joins at a key frame, so the keyframe interval is the worst-case join latency."""
        for it in items:
            if not it.keyframe:
                continue
            last, self._last_key_us = self._last_key_us, it.pts
            if last is None or self._gop_warned:
                continue
            interval = (it.pts - last) / US
            if interval > self.s.gop * 1.5 and interval - self.s.gop > 0.5:
                self._gop_warned = True
                log.warning("long_keyframe_interval", interval_s=round(interval, 2), gop_s=self.s.gop,
                            reason=f"the input has a key frame every {interval:.1f} s and H.264 passes through "
                                   f"unchanged: one group per {interval:.1f} s, so a viewer may wait up to "
                                   f"{interval:.1f} s to start; set the encoder's keyframe interval "
                                   f"(OBS: Output > Keyframe Interval) to {self.s.gop:g} s")

    def _first_media_us(self, container: av.container.InputContainer) -> int:
        start = container.start_time
        return int(start) if start is not None else 0  # AV_TIME_BASE is µs

    def _video_format(self, container, vs) -> StreamFormat:
        cc = vs.codec_context
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else None
        extradata = bytes(cc.extradata or b"")
        bitrate = vs.bit_rate or cc.bit_rate or 0
        meta = container.metadata or {}
        if not bitrate and meta.get("videodatarate"):  # FLV onMetaData (OBS), kbit/s
            try:
                bitrate = int(float(meta["videodatarate"]) * 1000)
            except ValueError:
                bitrate = 0
        passthrough = cc.name == "h264" and bool(extradata) and (cc.pix_fmt in (None, "yuv420p", "yuvj420p"))
        if passthrough:
            return StreamFormat("video", "h264", extradata, cc.width, cc.height, fps, bitrate=bitrate or self.s.bitrate,
                                origin="passthrough")
        w, h = fit_size(cc.width or self.s.width, cc.height or self.s.height, self.s.width, self.s.height)
        return StreamFormat("video", "h264", None, w, h, fps or float(self.s.fps), bitrate=self.s.bitrate,
                            origin="libx264")

    def _audio_format(self, as_) -> StreamFormat:
        cc = as_.codec_context
        extradata = bytes(cc.extradata or b"")
        channels = cc.channels or 2
        if cc.name == "aac" and extradata:
            return StreamFormat("audio", "aac", extradata, samplerate=cc.sample_rate, channels=channels,
                                bitrate=as_.bit_rate or cc.bit_rate or 128_000, origin="passthrough")
        if cc.name == "opus" and cc.sample_rate == OPUS_RATE:
            return StreamFormat("audio", "opus", None, samplerate=OPUS_RATE, channels=channels,
                                bitrate=as_.bit_rate or cc.bit_rate or 96_000, origin="passthrough")
        return StreamFormat("audio", "opus", None, samplerate=OPUS_RATE, channels=2, bitrate=self.s.audio_bitrate,
                            origin="libopus")

    def _video(self, pkt, fmt: StreamFormat, enc: H264Encoder | None) -> list[_Item]:
        tb = pkt.time_base
        if enc is None:
            pts = _us(pkt.pts if pkt.pts is not None else pkt.dts, tb) or 0
            dts = _us(pkt.dts if pkt.dts is not None else pkt.pts, tb) or 0
            return [_Item(fmt, bytes(pkt), bool(pkt.is_keyframe), pts, dts, _us(pkt.duration, tb) or 0)]
        if self._keyframe.is_set():
            self._keyframe.clear()
            enc.force_next = True
        out = []
        frame_us = int(US / (fmt.framerate or self.s.fps))
        for frame in pkt.decode():
            t = _us(frame.pts, frame.time_base if frame.time_base else tb)
            if t is None:
                continue
            frame = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
            out += [_Item(fmt, data, key, p, d, frame_us) for data, key, p, d in enc.encode(frame, t)]
        return out

    def _audio(self, pkt, fmt: StreamFormat, enc: OpusEncoder | None) -> list[_Item]:
        tb = pkt.time_base
        if enc is None:
            data = bytes(pkt)
            if fmt.codec == "aac":
                data = strip_adts(data)  # raw AAC: WebCodecs gets the ASC as description
            pts = _us(pkt.pts if pkt.pts is not None else pkt.dts, tb) or 0
            return [_Item(fmt, data, True, pts, pts, _us(pkt.duration, tb) or 0)]
        out = []
        for frame in pkt.decode():
            t = _us(frame.pts, frame.time_base if frame.time_base else tb)
            for rs in enc.resampler.resample(frame):
                if t is not None:
                    rs.pts = t * OPUS_RATE // US
                    t += rs.samples * US // OPUS_RATE
                rs.time_base = Fraction(1, OPUS_RATE)
                for data, pts in enc.encode(rs):
                    m = pts * US // OPUS_RATE
                    out.append(_Item(fmt, data, True, m, m, OPUS_FRAME * US // OPUS_RATE))
        return out


def open_source(spec: str, settings: Settings, *, loop: bool = False) -> Source:
    """`testsrc`, a file path, or rtmp://HOST:PORT/APP/KEY (listen mode)."""
    if spec == "testsrc":
        return PatternSource(settings)
    return ContainerSource(spec, settings, loop=loop)
