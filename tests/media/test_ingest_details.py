"""Media-file details of the publisher's input (issue 14): a re-encoded file keeps its last
frames, a stream that is not published is logged, and passed-through H.264 with long GOPs
says what that means for joining viewers.  The source is read directly (no pacing, no relay)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from structlog.testing import capture_logs

from publisher.ingest import ContainerSource, Settings
from tests.media.mediagen import write_media


def _frame(i: int, width: int, height: int) -> av.VideoFrame:
    img = np.zeros((height, width, 3), np.uint8)
    img[:, : (i * 7) % width] = (i * 8) % 256
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    frame.pts, frame.time_base = i, Fraction(1, 15)
    return frame


def test_hevc_reencode_keeps_the_last_frames(tmp_path):
    """The HEVC decoder holds frames back: they come out only when it is flushed at the end."""
    path = str(tmp_path / "hevc.mp4")
    frames = 30
    with av.open(path, "w") as out:
        v = out.add_stream("libx265", rate=15)
        v.width, v.height, v.pix_fmt = 160, 96, "yuv420p"
        v.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
        for i in range(frames):
            for p in v.encode(_frame(i, 160, 96)):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    src = ContainerSource(path, Settings(width=160, height=96, fps=15, audio=False))
    video = [p for p in src.packets() if p.kind == "video"]
    assert src.info == "video h264 libx264 160x96"
    assert len(video) == frames


def test_second_audio_stream_is_logged(tmp_path):
    path = str(tmp_path / "two-audio.mkv")
    with av.open(path, "w") as out:
        v = out.add_stream("libx264", rate=15)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        tracks = [out.add_stream("libopus", rate=48000) for _ in range(2)]
        for i in range(8):
            for p in v.encode(_frame(i, 64, 64)):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        for a in tracks:
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.float32), format="flt", layout="stereo")
            frame.sample_rate, frame.pts = 48000, 0
            for p in [*a.encode(frame), *a.encode()]:
                out.mux(p)
    with capture_logs() as logs:
        list(ContainerSource(path, Settings()).packets())
    ignored = [e for e in logs if e["event"] == "stream_ignored"]
    assert len(ignored) == 1 and ignored[0]["kind"] == "audio" and ignored[0]["stream"] == 2, logs
    assert "only the first audio stream" in ignored[0]["reason"]


def test_passthrough_with_a_long_gop_warns(tmp_path):
    """H.264 passes through with its own key frames: --gop cannot apply, and a 2 s keyframe
    interval makes 2 s groups (a viewer may wait that long to start)."""
    path = str(tmp_path / "long-gop.mp4")
    write_media(path, 2.5, width=64, height=64, fps=15, gop=30, audio=False)
    with capture_logs() as logs:
        src = ContainerSource(path, Settings(gop=1.0, gop_set=True))
        list(src.packets())
    assert src.info.startswith("video h264 passthrough")
    events = {e["event"]: e for e in logs}
    assert "--gop applies when re-encoding" in events["gop_ignored"]["reason"]
    long = events["long_keyframe_interval"]
    assert long["interval_s"] == 2.0 and "a viewer may wait up to 2.0 s" in long["reason"]
    with capture_logs() as logs:  # the default --gop, with a short keyframe interval: nothing to say
        write_media(path, 1.5, width=64, height=64, fps=15, gop=15, audio=False)
        list(ContainerSource(path, Settings()).packets())
    assert not {"gop_ignored", "long_keyframe_interval"} & {e["event"] for e in logs}
