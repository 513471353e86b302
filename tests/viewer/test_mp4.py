"""The MP4 remuxer on its own: LOC objects in, a file PyAV decodes out."""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import pytest

from moq.media.loc import LocProperties
from viewer.mp4 import MediaInfo, Mp4Writer, parse_adts

from .media import FPS, HEIGHT, WIDTH, AudioSource, VideoSource

pytestmark = pytest.mark.timeout(30)
T0 = 1_800_000_000_000_000  # µs since the epoch


def video_objects(n: int, gop: int = 10):
    """(payload, LocProperties) of `n` frames at FPS, the avcC on key frames."""
    src = VideoSource(gop=gop)
    out = []
    for i in range(n):
        for data, key in src.encode():
            out.append((data, LocProperties(timestamp=T0 + i * 1_000_000 // FPS,
                                            video_config=src.avcc if key else None), key))
    return out


def decode(path):
    with av.open(str(path)) as c:
        kinds = {s.type: s.codec_context.name for s in c.streams}
        frames = {"video": [], "audio": []}
        for f in c.decode(*c.streams):
            frames["video" if isinstance(f, av.VideoFrame) else "audio"].append(f)
    return kinds, frames


def test_video_and_opus_start_at_the_first_key_frame(tmp_path):
    path = tmp_path / "out.mp4"
    w = Mp4Writer(str(path))
    w.expect("video", MediaInfo("video", "avc1.42C00A", WIDTH, HEIGHT, FPS))
    w.expect("audio", MediaInfo("audio", "opus", samplerate=48000, channels=2))
    video = video_objects(25, gop=10)[3:]  # joined mid-GOP: 7 frames before the key frame at 10
    asrc = AudioSource()
    audio = [(p, LocProperties(timestamp=T0 + i * 20_000)) for i in range(85) for p in asrc.encode()]
    # interleave by capture time, as they would arrive
    items = sorted([("video", d, p) for d, p, _ in video] + [("audio", d, p) for d, p in audio],
                   key=lambda x: x[2].timestamp)
    for name, data, props in items:
        w.add(name, data, props, 0)
    w.close()
    w.close()  # idempotent
    assert w.error is None and w.written
    kinds, frames = decode(path)
    assert kinds == {"video": "h264", "audio": "opus"}
    assert len(frames["video"]) == 15 and w.tracks["video"].dropped == 7
    assert {(f.width, f.height) for f in frames["video"]} == {(WIDTH, HEIGHT)}
    start = frames["video"][0].time
    assert start == pytest.approx(0.0, abs=0.001)
    assert frames["video"][-1].time == pytest.approx(14 / FPS, abs=0.002)
    # audio captured before the first key frame is dropped; the rest decodes
    first_key_us = 10 * 1_000_000 // FPS
    assert len(frames["audio"]) >= 85 - first_key_us // 20_000 - 3
    assert all(f.sample_rate == 48000 for f in frames["audio"])
    assert "video h264 15 packets (7 dropped)" in w.report()


def aac_packets(n: int, adts: bool):
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format = 44100, "stereo", "fltp"
    enc.flags |= 1 << 22
    enc.open()
    asc = enc.extradata
    out = []
    silence = struct.pack("<f", 0.0) * 1024
    for i in range(n):
        f = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in f.planes:
            plane.update(silence)
        f.sample_rate, f.pts, f.time_base = 44100, i * 1024, Fraction(1, 44100)
        for p in enc.encode(f):
            data = bytes(p)
            if adts:
                size = len(data) + 7
                data = bytes([0xFF, 0xF1, (1 << 6) | (4 << 2), (2 << 6) | (size >> 11), (size >> 3) & 0xFF,
                              ((size & 7) << 5) | 0x1F, 0xFC]) + data
            out.append(data)
    return asc, out


@pytest.mark.parametrize("adts", [False, True])
def test_aac_only(tmp_path, adts):
    asc, packets = aac_packets(40, adts)
    if adts:
        assert parse_adts(packets[0])[1] == asc[:2]  # the encoder adds a sync extension
    path = tmp_path / "aac.mp4"
    w = Mp4Writer(str(path))
    w.expect("audio", MediaInfo("audio", "mp4a.40.2", samplerate=44100, channels=2))
    for i, p in enumerate(packets):
        props = LocProperties(timestamp=T0 + i * 23_220, audio_config=None if adts else asc)
        w.add("audio", p, props, 0)
    w.close()
    assert w.error is None
    kinds, frames = decode(path)
    assert kinds == {"audio": "aac"}
    assert len(frames["audio"]) >= len(packets) - 2
    assert frames["audio"][0].sample_rate == 44100 and frames["audio"][0].layout.nb_channels == 2


def test_no_key_frame_means_no_file(tmp_path):
    path = tmp_path / "none.mp4"
    w = Mp4Writer(str(path))
    w.expect("video", MediaInfo("video", "avc1.42C00A"))
    for data, props, _ in video_objects(12, gop=10)[1:10]:
        w.add("video", data, props, 0)
    w.close()
    assert not w.written and not path.exists() and w.error is None
    assert w.tracks["video"].dropped == 9


def test_a_silent_track_is_left_out_but_a_long_gop_is_waited_for(tmp_path):
    asrc = AudioSource()
    audio = [(p, LocProperties(timestamp=T0 + i * 20_000)) for i in range(300) for p in asrc.encode()]  # 6 s
    # video sends nothing: the header goes out after 3 s of audio, without it
    w = Mp4Writer(str(tmp_path / "audio-only.mp4"))
    w.expect("video", MediaInfo("video"))
    w.expect("audio", MediaInfo("audio", "opus"))
    for i, (p, props) in enumerate(audio):
        w.add("audio", p, props, 0)
        if i == 160:
            assert w.container is not None and w.tracks["video"].stream is None
    w.close()
    kinds, frames = decode(tmp_path / "audio-only.mp4")
    assert kinds == {"audio": "opus"} and len(frames["audio"]) > 250
    assert any("video" in m for m in w.warnings)
    # video joined 0.6 s after a key frame, next one 5 s later: the writer waits for it
    video = [(d, LocProperties(timestamp=T0 + i * 1_000_000 // FPS, video_config=p.video_config))
             for i, (d, p, _) in enumerate(video_objects(84, gop=75)[9:])]
    w = Mp4Writer(str(tmp_path / "long-gop.mp4"))
    w.expect("video", MediaInfo("video"))
    w.expect("audio", MediaInfo("audio", "opus"))
    items = sorted([("video", d, p) for d, p in video] + [("audio", d, p) for d, p in audio],
                   key=lambda x: x[2].timestamp)
    for name, data, props in items:
        w.add(name, data, props, 0)
    w.close()
    kinds, frames = decode(tmp_path / "long-gop.mp4")
    assert kinds == {"video": "h264", "audio": "opus"} and len(frames["video"]) == 84 - 75
    assert len(frames["audio"]) >= (6_000_000 - 66 * 1_000_000 // FPS) // 20_000 - 3


def test_a_refused_track_is_not_waited_for(tmp_path):
    w = Mp4Writer(str(tmp_path / "x.mp4"))
    w.expect("video", MediaInfo("video"))
    w.expect("audio", MediaInfo("audio", "opus"))
    asrc = AudioSource()
    w.add("audio", asrc.encode()[0], LocProperties(timestamp=T0), 0)
    assert w.container is None  # waiting for the video key frame
    w.forget("video")
    w.add("audio", asrc.encode()[0], LocProperties(timestamp=T0 + 20_000), 0)
    assert w.container is not None and list(w.tracks) == ["audio"]
    w.close()
    assert w.tracks["audio"].written == 2


def test_unwritable_path_is_reported(tmp_path):
    assert Mp4Writer.check_path(str(tmp_path / "ok.mp4")) is None
    assert "no such directory" in Mp4Writer.check_path(str(tmp_path / "missing-dir" / "x.mp4"))
    assert "directory" in Mp4Writer.check_path(str(tmp_path))
    w = Mp4Writer(str(tmp_path / "missing-dir" / "x.mp4"))
    w.expect("video", MediaInfo("video"))
    for data, props, _ in video_objects(3):
        w.add("video", data, props, 0)
    w.close()
    assert w.error is not None and "x.mp4" in w.error
