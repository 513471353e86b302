"""moq-view as a real process, through a real relay process, against a live broadcast of
real H.264 + Opus with an MSF catalog (tests/viewer/media.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import av
import pytest

from moq.media.loc import now_us
from tests.relay.relayproc import ROOT, python_env
from viewer.stats import percentile

from .media import FPS, HEIGHT, WIDTH, LiveRelay

pytestmark = pytest.mark.timeout(60)
FIELDS = ["track", "group", "subgroup", "object", "bytes", "latency_ms"]
SUMMARY = ["summary", "objects", "groups", "gaps", "latency_ms_p50", "latency_ms_p99"]


@pytest.fixture(scope="module")
def live():
    lr = LiveRelay()
    try:
        lr.broadcast("live/demo")
        yield lr
    finally:
        lr.close()


def view(live: LiveRelay, *args: str, timeout: float = 40) -> subprocess.CompletedProcess:
    return live.view(*args, timeout=timeout)


def json_lines(out: subprocess.CompletedProcess) -> tuple[list[dict], dict]:
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines and list(lines[-1]) == SUMMARY, out.stdout[-500:]
    for obj in lines[:-1]:
        assert list(obj) == FIELDS
    return lines[:-1], lines[-1]


def test_all_tracks_json_and_mp4_recording(live, tmp_path):
    b = live.broadcast("live/main")
    time.sleep(0.4)  # the viewer joins in the middle of a GOP and of an audio group
    path = tmp_path / "out.mp4"
    out = view(live, "--namespace", "live/main", "--track", "all", "--duration", "3", "--json", "--output", str(path))
    exited_at = now_us()
    assert out.returncode == 0, out.stderr
    objs, summary = json_lines(out)

    tracks = {o["track"] for o in objs}
    assert tracks == {"catalog", "video", "audio"}
    for o in objs:
        if o["track"] == "catalog":
            assert o["latency_ms"] is None and o["object"] == 0 and o["bytes"] == len(b.catalog.encode())
        else:
            assert 0 <= o["latency_ms"] < 3500, o  # the joining FETCHes bring objects up to a GOP old
            assert o["subgroup"] == 0 and o["bytes"] > 0
    keys = [(o["track"], o["group"], o["object"]) for o in objs]
    assert len(keys) == len(set(keys))

    assert summary["objects"] == len(objs)
    assert summary["groups"] == len({(o["track"], o["group"]) for o in objs})
    assert summary["gaps"] == 0
    latencies = [o["latency_ms"] for o in objs if o["latency_ms"] is not None]
    assert summary["latency_ms_p50"] == pytest.approx(percentile(latencies, 50), abs=0.01)
    assert summary["latency_ms_p99"] == pytest.approx(percentile(latencies, 99), abs=0.01)

    # the recording: every video frame published while the viewer was subscribed (give or
    # take its exit), from the key frame of the GOP it joined, at the right size; audio decodes
    window = [ts for ts in b.video_frames if b.video_subscribed_at <= ts <= exited_at]
    assert len(window) >= 3 * FPS - 3
    with av.open(str(path)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "opus"
        frames = list(c.decode(video=0))
    with av.open(str(path)) as c:
        audio = list(c.decode(audio=0))
    video_objs = [o for o in objs if o["track"] == "video"]
    assert len(frames) >= 0.9 * len(window) and len(frames) <= len(video_objs), out.stderr
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    assert frames[-1].time - frames[0].time > 2.5
    # the audio covers the video (audio fetched from before its first key frame is trimmed)
    assert sum(f.samples for f in audio) / 48000 >= 0.9 * (frames[-1].time - frames[0].time)
    # video is back-filled from the key frame of the GOP it joined, and audio from as far back
    # (its own joining FETCH): both start together
    assert abs(audio[0].time - frames[0].time) < 0.1, (audio[0].time, frames[0].time)


def test_catalog_track(live):
    out = view(live, "--namespace", "live/demo", "--track", "catalog", "--duration", "1", "--json")
    assert out.returncode == 0, out.stderr
    objs, summary = json_lines(out)
    assert [(o["track"], o["group"], o["object"], o["latency_ms"]) for o in objs] == [("catalog", 0, 0, None)]
    assert summary == {"summary": True, "objects": 1, "groups": 1, "gaps": 0, "latency_ms_p50": None,
                       "latency_ms_p99": None}


def test_default_tracks_from_the_catalog_human_summary(live):
    out = view(live, "--namespace", "live/demo", "--duration", "1.5")
    assert out.returncode == 0, out.stderr
    assert "tracks: video, audio (from the catalog" in out.stderr, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"track", "video", "audio", "total"}  # the catalog was read for metadata only
    objects, groups, fps = int(rows["video"][1]), int(rows["video"][2]), float(rows["video"][6])
    assert objects >= FPS and groups >= 1 and abs(fps - FPS) < 1.5
    assert rows["video"][-1] == "0"  # gaps


def test_unknown_namespace_and_track(live):
    out = view(live, "--namespace", "nobody/here", "--duration", "2", "--json")
    assert out.returncode == 4, out.stderr
    assert "nobody/here" in out.stderr and "namespace" in out.stderr and out.stdout == ""
    out = view(live, "--namespace", "nobody/here", "--track", "all", "--duration", "2")
    assert out.returncode == 4 and "no track could be subscribed" in out.stderr
    out = view(live, "--namespace", "live/demo", "--track", "nosuch", "--duration", "2")
    assert out.returncode == 4 and "live/demo/nosuch" in out.stderr and "code 0x10" in out.stderr


def test_stream_ending_before_the_duration(live):
    live.broadcast("live/short", seconds=2.5)
    started = time.monotonic()
    out = view(live, "--namespace", "live/short", "--track", "all", "--duration", "8", "--json")
    took = time.monotonic() - started
    assert out.returncode == 5, out.stderr
    assert "ended after" in out.stderr and "of 8 s" in out.stderr
    assert took < 7  # it stopped when the tracks ended, not at the end of the duration
    objs, summary = json_lines(out)
    assert summary["objects"] == len(objs) > 0


def test_sigint_stops_cleanly_and_closes_the_recording(live, tmp_path):
    path = tmp_path / "int.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "viewer", live.url, "--namespace", "live/demo", "--track", "all",
                             "--json", "--output", str(path), "--fingerprint", live.fingerprint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # objects are flowing
        assert json.loads(first)["track"] in ("catalog", "video", "audio")
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert lines[-1]["summary"] is True and lines[-1]["objects"] == len(lines) - 1
    with av.open(str(path)) as c:
        assert len(list(c.decode(video=0))) >= FPS
