"""moq-view's choices and exit codes (issue 14), as a real process against a relay process:
tracks picked from the catalog when --track is not given (an audio-only broadcast plays),
a broadcast that is over before --duration is exit 5, every reset or missing group is a
gap and is reported, a bad --fingerprint is one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

from moq.errors import StreamResetCode
from moq.media.catalog import Catalog
from moq.transport import endpoint
from moq.wire.types import namespace_from_str
from tests.relay.relayproc import ROOT, python_env

from .media import LiveRelay

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def live():
    lr = LiveRelay()
    try:
        yield lr
    finally:
        lr.close()


def view(live: LiveRelay, *args: str, timeout: float = 40) -> subprocess.CompletedProcess:
    return live.view(*args, timeout=timeout)


def test_bad_fingerprint_or_output_extension_is_one_line_and_exit_2():
    out = subprocess.run([sys.executable, "-m", "viewer", "moqt://127.0.0.1:9/", "--namespace", "a/b",
                          "--fingerprint", "xyz"], capture_output=True, text=True, env=python_env(), cwd=ROOT,
                         timeout=30)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("moq-view: --fingerprint: not a SHA-256"), out.stderr
    out = subprocess.run([sys.executable, "-m", "viewer", "moqt://127.0.0.1:9/", "--namespace", "a/b",
                          "--output", "rec.webm"], capture_output=True, text=True, env=python_env(), cwd=ROOT,
                         timeout=30)
    assert out.returncode == 2 and "unsupported extension; use .mp4, .m4v, .mov or .mkv" in out.stderr, out.stderr


def test_audio_only_broadcast_without_track(live):
    live.broadcast("live/radio", video=False)
    out = view(live, "--namespace", "live/radio", "--duration", "1.5")
    assert out.returncode == 0, out.stderr
    assert "moq-view: tracks: audio (from the catalog; choose with --track)" in out.stderr, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"track", "audio"} and int(rows["audio"][1]) >= 50, out.stdout


def test_broadcast_over_before_the_duration_is_exit_5(live):
    """The catalog says the broadcast is complete: with --track all or none, nothing more can
    come, so the run ends at once, and not having had media for --duration is exit 5."""
    async def publish() -> None:
        ns = namespace_from_str("live/over")
        catalog = live.publisher.create_track(ns, b"catalog")
        catalog.write(0, 0, Catalog((), is_complete=True).stamped().encode())
        catalog.end_group(0)
        await live.conn.publish_namespace(ns)

    live.call(publish())
    for track in (("--track", "all"), ()):
        started = time.monotonic()
        out = view(live, "--namespace", "live/over", *track, "--duration", "8")
        assert out.returncode == 5, (track, out.stderr)
        assert "the broadcast is over before the end of --duration 8 s" in out.stderr, out.stderr
        assert time.monotonic() - started < 7, "it waited for the duration"


def test_reset_and_missing_groups_are_gaps(live):
    """Group 1 is cut short by a stream reset (the relay forwards the publisher's), group 2 never
    comes: two gaps, one --json row each, and a line on stderr saying which."""
    ns = namespace_from_str("live/gappy")

    async def setup():
        track = live.publisher.create_track(ns, b"video")
        await live.conn.publish_namespace(ns)
        return track

    track = live.call(setup())

    async def publish() -> None:
        while not track.sinks:  # the relay subscribed for the viewer
            await asyncio.sleep(0.02)
        for g, count in ((0, 5), (1, 3), (3, 5), (4, 5)):
            for o in range(count):
                track.write(g, o, b"x" * 100)
                await asyncio.sleep(0.02)
            if g == 1:
                track.reset_subgroup(1, 0, StreamResetCode.TOO_FAR_BEHIND)
            else:
                track.end_group(g)
        await asyncio.sleep(0.3)
        track.finish()

    proc = subprocess.Popen([sys.executable, "-m", "viewer", live.url, "--namespace", "live/gappy", "--track", "video",
                             "--json", "--fingerprint", live.fingerprint], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=python_env(), cwd=ROOT)
    try:
        live.call(publish(), timeout=30)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    gaps = [x for x in lines if "gap" in x]
    assert gaps == [{"track": "video", "group": 1, "subgroup": 0, "gap": "reset", "code": 5},
                    {"track": "video", "group": 2, "gap": "missing"}], gaps
    assert lines[-1]["summary"] and lines[-1]["gaps"] == 2 and 16 <= lines[-1]["objects"] <= 18, lines[-1]
    assert "warning: track video: 2 gaps: 1 reset (group 1: TOO_FAR_BEHIND 0x5); 1 missing group (2)" in stderr, stderr


def test_connection_errors_name_the_address_tried():
    out = subprocess.run([sys.executable, "-m", "viewer", "moqt://127.0.0.1/", "--namespace", "a/b", "--insecure",
                          "--duration", "1"], capture_output=True, text=True, env=python_env(), cwd=ROOT, timeout=40)
    assert out.returncode == 3, out.stderr
    assert "(tried UDP 127.0.0.1:443; the URL gives no port: 443 is the default)" in out.stderr, out.stderr
    # localhost tried as [::1] first, while the relay may listen on 127.0.0.1 only
    infos = [(socket.AF_INET6, 0, 0, "", ("::1", 4443, 0, 0)), (socket.AF_INET, 0, 0, "", ("127.0.0.1", 4443))]
    tried = endpoint._tried(endpoint.parse_url("moqt://localhost:4443/"), socket.AF_INET6, infos[0][4], infos)
    assert tried == "tried UDP [::1]:4443; localhost is also 127.0.0.1: a relay listening on IPv4 only is not at [::1]"
