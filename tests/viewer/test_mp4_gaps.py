"""The recorder across gaps (issue 14): audio and video stay in step after a lost second of
both, and the file's container follows its extension (.mkv is Matroska)."""

from __future__ import annotations

import av
import pytest

from moq.media.loc import LocProperties
from viewer.mp4 import MediaInfo, Mp4Writer

from .media import FPS, HEIGHT, WIDTH, AudioSource
from .test_mp4 import T0, video_objects

pytestmark = pytest.mark.timeout(30)


def record(path, lost: tuple[int, int]) -> Mp4Writer:
    """3 s of video (GOP 1 s) and Opus, without the media captured in `lost` (µs after T0)."""
    w = Mp4Writer(str(path))
    w.expect("video", MediaInfo("video", "avc1.42C00A", WIDTH, HEIGHT, FPS))
    w.expect("audio", MediaInfo("audio", "opus", samplerate=48000, channels=2))
    asrc = AudioSource()
    audio = [(p, LocProperties(timestamp=T0 + i * 20_000)) for i in range(150) for p in asrc.encode()]
    items = sorted([("video", d, p) for d, p, _ in video_objects(3 * FPS, gop=FPS)] +
                   [("audio", d, p) for d, p in audio], key=lambda x: x[2].timestamp)
    for name, data, props in items:
        if not lost[0] <= props.timestamp - T0 < lost[1]:
            w.add(name, data, props, 0)
    w.close()
    assert w.error is None and w.written
    return w


@pytest.mark.parametrize("name, fmt", [("gap.mp4", "mov,mp4,m4a,3gp,3g2,mj2"), ("gap.mkv", "matroska,webm")])
def test_audio_and_video_stay_aligned_across_a_lost_group(tmp_path, name, fmt):
    path = tmp_path / name
    w = record(path, (1_000_000, 2_000_000))  # the second video group and a second of audio are lost
    assert w.tracks["audio"].filled >= 45
    with av.open(str(path)) as c:
        assert c.format.name == fmt
        video = [f.time for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = list(c.decode(audio=0))
    assert len(video) == 2 * FPS and video[FPS] - video[0] == pytest.approx(2.0, abs=0.01)
    # played back to back, the audio is as long as the media span: the key frame after the gap
    # and the audio captured with it come out together
    played = sum(f.samples for f in audio) / 48000
    assert played == pytest.approx(3.0, abs=0.06), played
    after = [f for f in audio if f.time >= 2.0 - 0.001]
    assert after and after[0].time == pytest.approx(2.0, abs=0.03)
    assert sum(f.samples for f in audio if f.time < after[0].time) / 48000 == pytest.approx(after[0].time, abs=0.03)


def test_unknown_extension_is_refused():
    assert Mp4Writer.container_format("x.mkv") == "matroska"
    assert Mp4Writer.container_format("x.MP4") == "mp4"
    assert Mp4Writer.container_format("x.webm") is None and Mp4Writer.container_format("x") is None
