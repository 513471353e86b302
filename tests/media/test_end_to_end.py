"""The issue's end-to-end paths with every role a real process: moq-publish → moq-relay →
moq-view (testsrc recorded to MP4; an RTMP push watched with --json)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import av
import pytest

from tests.media.mediagen import free_tcp_port, write_media
from tests.media.procs import PublisherProcess
from tests.relay.relayproc import ROOT, RelayProcess, python_env

FPS = 15


def view(relay: RelayProcess, namespace: str, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "viewer", relay.url(), "--namespace", namespace,
                           "--fingerprint", relay.fingerprint, *flags],
                          cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(90)
def test_testsrc_recorded_by_moq_view_decodes(tmp_path):
    out = tmp_path / "out.mp4"
    seconds = 4.0
    with RelayProcess() as relay, PublisherProcess(
            relay.url(), "live/demo", "--input", "testsrc", "--size", "320x180", "--fps", str(FPS),
            "--video-bitrate", "300k", "--duration", "30", fingerprint=relay.fingerprint) as pub:
        assert pub.wait_log("connected", 20), pub.output()
        result = view(relay, "live/demo", "--track", "all", "--duration", str(seconds), "--json",
                      "--output", str(out))
        pub.stop()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    summary = lines[-1]
    assert summary["summary"] and summary["gaps"] == 0, summary
    live_video = [x for x in lines[:-1] if x["track"] == "video"]
    with av.open(str(out)) as mp4:
        video = mp4.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 180)
        frames = sum(1 for _ in mp4.decode(video=0))
    with av.open(str(out)) as mp4:
        assert mp4.streams.audio, "the recording has audio"
        samples = sum(f.samples for f in mp4.decode(audio=0))
    published = FPS * seconds  # frames the publisher produced while moq-view watched
    assert frames >= 0.9 * published, (frames, published, len(live_video))
    assert samples >= 0.9 * 48000 * seconds * 0.9, samples


@pytest.mark.timeout(90)
def test_rtmp_push_watched_with_moq_view_json():
    port = free_tcp_port()
    rtmp = f"rtmp://127.0.0.1:{port}/live/KEY"
    errors: list[BaseException] = []

    def push() -> None:
        try:
            write_media(rtmp, 8.0, fmt="flv", realtime=True, gop=15)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with RelayProcess() as relay, PublisherProcess(relay.url(), "live/obs", "--input", rtmp,
                                                   fingerprint=relay.fingerprint) as pub:
        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        assert pub.wait_log("connected", 20), pub.output()
        result = view(relay, "live/obs", "--track", "all", "--duration", "3", "--json")
        pusher.join(15)
        pub.stop()
    assert not errors, errors
    assert result.returncode == 0, result.stderr + pub.output()
    objects = [json.loads(x) for x in result.stdout.splitlines()][:-1]
    tracks = {o["track"] for o in objects}
    assert {"catalog", "video"} <= tracks, tracks
    video = [o for o in objects if o["track"] == "video"]
    assert len(video) >= 20 and all(o["latency_ms"] is not None for o in video)
