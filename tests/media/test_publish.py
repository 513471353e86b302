"""moq-publish as a real process, through a real relay process, to a library subscriber:
testsrc, an RTMP push (the OBS path, passed through), a looped file, a relay restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import av
import pytest

from moq.transport.loop import run
from moq.transport.tls import generate_dev_certificate
from publisher.packaging import AacConfig, AvcConfig, is_keyframe_avc, split_avc
from tests.media.mediagen import free_tcp_port, write_media
from tests.media.procs import Collected, PublisherProcess, collect
from tests.relay.relayproc import ROOT, RelayProcess, python_env

SMALL = ("--size", "320x180", "--fps", "15", "--video-bitrate", "300k")


def check_loc(got: Collected, track: str = "video", max_latency_us: int = 1_000_000) -> None:
    """Every object has a wall-clock LOC timestamp (capture time: not after it arrived, and
    not long before); keyframes (object 0 of a video group) and only they carry the avcC,
    whose codec string is the catalog's."""
    objs = got.track(track)
    assert objs, f"no {track} objects"
    for o in objs:
        assert o.props.timestamp is not None and o.props.timescale is None, o
        latency = o.at - o.props.timestamp
        assert -50_000 < latency < max_latency_us, f"{track} {o.group}/{o.object}: latency {latency} µs"
    if track == "video":
        codec = got.catalogs[-1].track("video").codec
        for o in objs:
            assert (o.props.video_config is not None) == (o.object == 0), o
            if o.props.video_config is not None:
                assert AvcConfig.parse(o.props.video_config).codec == codec


@pytest.mark.timeout(60)
def test_testsrc_through_a_relay():
    with RelayProcess() as relay, PublisherProcess(relay.url(), "live/demo", "--input", "testsrc", *SMALL,
                                                   "--duration", "3", fingerprint=relay.fingerprint) as pub:
        got = run(collect(relay.url(), relay.fingerprint, "live/demo", 10, until=lambda c: (
            c.catalogs and len(c.track("video")) >= 15 and len(c.track("audio")) >= 40)))
        assert pub.wait(20) == 0, pub.output()
    assert got.catalogs, pub.output()
    cat = got.catalogs[-1]
    video, audio = cat.track("video"), cat.track("audio")
    assert video.codec.startswith("avc1.4D") and (video.width, video.height) == (320, 180) and video.framerate == 15
    assert video.packaging == "loc" and video.is_live and video.role == "video"
    assert audio.codec == "opus" and audio.samplerate == 48000 and audio.channel_config == "2"
    assert len(got.track("video")) >= 15 and len(got.track("audio")) >= 40, pub.output()
    check_loc(got, "video")
    check_loc(got, "audio")
    out = pub.stdout()
    assert "moq-publish:" in out and "video frames" in out, out


@pytest.mark.timeout(90)
def test_rtmp_push_passes_h264_and_aac_through():
    """Also: wrong key then wrong app are refused, each logged with its own reason; a second
    encoder pushing while one publishes is refused and logged; a second moq-publish on the
    busy port exits 2 with one line."""
    port = free_tcp_port()
    rtmp = f"rtmp://127.0.0.1:{port}/live/KEY"
    errors: list[BaseException] = []

    def push() -> None:
        for bad in (rtmp.replace("/KEY", "/BADKEY2"), rtmp.replace("/live/", "/otherapp/")):
            try:
                write_media(bad, 3.0, fmt="flv", realtime=True)
                errors.append(AssertionError(f"a push to {bad} was accepted"))
            except (av.FFmpegError, OSError):
                pass  # refused, as it should be
        try:
            write_media(rtmp, 5.0, fmt="flv", realtime=True, gop=15)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with RelayProcess() as relay, PublisherProcess(relay.url(), "live/obs", "--input", rtmp,
                                                   fingerprint=relay.fingerprint) as pub:
        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        got = run(collect(relay.url(), relay.fingerprint, "live/obs", 20, keep_payload=True, until=lambda c: (
            c.catalogs and len(c.groups("video")) >= 2 and len(c.track("audio")) >= 30)))
        assert pusher.is_alive(), "the good push is still going"
        with pytest.raises((av.FFmpegError, OSError)):  # a second encoder while one publishes
            write_media(rtmp, 3.0, fmt="flv", realtime=True, open_timeout=0)
        second = subprocess.run([sys.executable, "-m", "publisher", relay.url(), "--namespace", "live/two",
                                 "--input", rtmp, "--insecure"], cwd=ROOT, env=python_env(), capture_output=True,
                                text=True, timeout=20)
        pusher.join(15)
        assert not errors, errors
        assert pub.stop() == 0, pub.output()
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and f"cannot listen for RTMP on 127.0.0.1:{port}" in second.stderr, \
        second.stderr
    assert got.catalogs, pub.output()
    refusals = [json.loads(line) for line in pub.stderr().splitlines() if '"event": "rtmp_refused"' in line]
    reasons = [r["reason"] for r in refusals]
    assert len(reasons) == 3, reasons
    assert "Unexpected stream BADKEY2" in reasons[0], reasons
    assert "App field don't match up: otherapp" in reasons[1] and "BADKEY2" not in reasons[1], reasons
    assert "another client is already publishing" in reasons[2] and refusals[2]["peer"].startswith("127.0.0.1:")
    assert '"streams": "video h264 passthrough 320x180, audio aac passthrough"' in pub.stderr(), pub.output()
    video, audio = got.catalogs[-1].track("video"), got.catalogs[-1].track("audio")
    assert video.codec.startswith("avc1.") and (video.width, video.height) == (320, 180)
    assert audio.codec == "mp4a.40.2" and audio.samplerate == 44100 and audio.channel_config == "2"
    check_loc(got, "video", 2_000_000)  # the first frames wait for the demuxer's probe
    check_loc(got, "audio", 2_000_000)
    for o in got.track("video"):
        split_avc(o.payload)  # 4-byte length-prefixed NAL units
        assert is_keyframe_avc(o.payload) == (o.object == 0)
    first_objects = [o for o in got.track("audio") if o.object == 0]
    assert first_objects and all(AacConfig.parse(o.props.audio_config).codec == "mp4a.40.2" for o in first_objects)
    assert all(o.props.audio_config is None for o in got.track("audio") if o.object > 0)


@pytest.mark.timeout(60)
def test_file_loops_with_increasing_groups(tmp_path):
    clip = tmp_path / "clip.mp4"
    write_media(str(clip), 1.5, gop=5)  # 23 frames: 5 keyframes per pass
    with RelayProcess() as relay, PublisherProcess(relay.url(), "live/file", "--input", str(clip), "--loop",
                                                   "--duration", "30", fingerprint=relay.fingerprint) as pub:
        def long_enough(c: Collected) -> bool:
            ts = [o.props.timestamp for o in c.track("video")]
            return len(ts) > 1 and ts[-1] - ts[0] > 3_200_000

        got = run(collect(relay.url(), relay.fingerprint, "live/file", 15, until=long_enough))
        assert pub.stop() == 0, pub.output()
    video = got.track("video")
    ts = [o.props.timestamp for o in video]
    assert ts[-1] - ts[0] > 3_200_000, f"media kept coming after the 1.5 s file ended: {len(video)} objects"
    assert all(b > a for a, b in zip(ts, ts[1:])), "timestamps keep increasing across passes"
    groups = got.groups("video")
    assert len(groups) >= 8 and all(b == a + 1 for a, b in zip(groups, groups[1:])), groups
    assert got.catalogs and got.catalogs[-1].track("video").codec.startswith("avc1.")
    assert got.catalogs[-1].track("audio").codec == "mp4a.40.2"
    assert "video h264 passthrough" in pub.stderr()
    check_loc(got, "video")


@pytest.mark.timeout(90)
def test_publisher_reconnects_after_the_relay_restarts(tmp_path):
    cert, key = generate_dev_certificate()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    tls = ("--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem"))
    with RelayProcess(*tls) as relay, PublisherProcess(relay.url(), "live/re", "--input", "testsrc", *SMALL,
                                                       "--gop", "0.5", fingerprint=relay.fingerprint) as pub:
        before = run(collect(relay.url(), relay.fingerprint, "live/re", 15, tracks=("video",),
                             until=lambda c: len(c.groups("video")) >= 2))
        assert len(before.groups("video")) >= 2, pub.output()
        relay.kill()  # no goodbye: the publisher has to notice by itself
        with RelayProcess("--bind", f"127.0.0.1:{relay.port}", *tls) as again:
            assert again.fingerprint == relay.fingerprint
            assert pub.wait_log("reconnected", 30), pub.output()
            after = run(collect(again.url(), again.fingerprint, "live/re", 15,
                                until=lambda c: c.catalogs and len(c.groups("video")) >= 2 and c.track("audio")))
            assert pub.stop() == 0, pub.output()
    assert min(after.groups("video")) > max(before.groups("video")), (before.groups("video"), after.groups("video"))
    assert after.catalogs and after.catalogs[-1].track("video").codec.startswith("avc1.")
    check_loc(after, "video")
    assert '"event": "relay_connection_lost"' in pub.stderr()
    assert "reconnects: 1" in pub.stdout(), pub.stdout()  # the exit summary


@pytest.mark.timeout(60)
def test_bad_input_and_unreachable_relay_fail_fast(tmp_path):
    def publish(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "publisher", *args], cwd=ROOT, env=python_env(),
                              capture_output=True, text=True, timeout=40)

    missing = publish("moqt://127.0.0.1:9/", "--namespace", "a/b", "--input", str(tmp_path / "missing.mp4"))
    assert missing.returncode == 2 and "cannot open input" in missing.stderr, missing.stderr
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    junk = publish("moqt://127.0.0.1:9/", "--namespace", "a/b", "--input", str(tmp_path / "junk.mp4"))
    assert junk.returncode == 2 and "cannot open input" in junk.stderr, junk.stderr
    assert "Invalid data found when processing input" in junk.stderr and "[Errno" not in junk.stderr, junk.stderr
    port = free_tcp_port()  # nothing listens there (UDP)
    start = time.monotonic()
    nobody = publish(f"moqt://127.0.0.1:{port}/", "--namespace", "a/b", "--insecure", *SMALL)
    assert nobody.returncode == 3 and "cannot reach" in nobody.stderr, nobody.stderr
    assert f"tried UDP 127.0.0.1:{port}" in nobody.stderr, nobody.stderr  # the address, not just the URL
    assert time.monotonic() - start < 30
    assert nobody.stderr.count('"event": "connect_failed"') == 3 or nobody.stderr.count("connect_failed") == 3
