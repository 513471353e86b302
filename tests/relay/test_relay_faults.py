"""Fault tests with real processes (issue 10): peers that vanish without closing (SIGKILL).  The
relay restart under moq-publish and moq-view is in test_relay_restart.py.  The relays run with a short --peer-timeout, so a silent peer is dropped within
seconds instead of QUIC's 60 s idle timeout (relay/liveness.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.errors import StreamResetCode
from moq.wire.types import namespace_from_str
from publisher.packaging import split_avc
from tests.media.procs import PublisherProcess
from tests.relay.relayproc import ROOT, RelayProcess, python_env

SMALL = ("--input", "testsrc", "--size", "320x180", "--fps", "15", "--video-bitrate", "300k")
PEER_TIMEOUT = ("--peer-timeout", "2")


def events(relay: RelayProcess, name: str) -> list[dict]:
    """The relay's JSON log lines for one event."""
    out = []
    for line in relay.log_text().splitlines():
        if f'"{name}"' in line:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("event") == name:
                    out.append(e)
    return out


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ViewProcess:
    """`moq-view ... --json` in the background; stdout lines collected as they come."""

    def __init__(self, url: str, namespace: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "viewer", url, "--namespace", namespace, "--json",
                                      "--log-level", "info", "--log-format", "json", *args], cwd=ROOT,
                                     env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self.err = ""
        import threading

        self._t = [threading.Thread(target=self._read, daemon=True), threading.Thread(target=self._read_err,
                                                                                        daemon=True)]
        for t in self._t:
            t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(json.loads(line))

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.err += line

    def objects(self) -> list[dict]:
        return [x for x in self.lines if "summary" not in x]

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._t:
            t.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Listener:
    """A library subscriber's ObjectListener: what the relay passes on, as it arrives."""

    def __init__(self) -> None:
        self.objects: list = []
        self.ends: list = []
        self.done = False

    def on_object(self, e) -> None:
        self.objects.append((e.group_id, e.object_id, bytes(e.payload)))

    def on_stream_end(self, e) -> None:
        self.ends.append((e.group_id, e.reset_code))

    def on_done(self, stream) -> None:
        self.done = True


async def subscribe(conn, ns: str, track: bytes, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await conn.subscribe(namespace_from_str(ns), track, timeout=5)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
def test_killed_subscriber_is_released_and_killed_publisher_resets_its_open_group():
    """(b) a moq-view killed by SIGKILL: its upstream subscription is released; then (a) the
    publisher killed in the middle of a 4 s group: the subscribers see that subgroup reset
    (not ended), then PUBLISH_DONE, and every object passed on is whole."""
    with RelayProcess(*PEER_TIMEOUT) as relay, \
            PublisherProcess(relay.url(), "live/f", *SMALL, "--gop", "4", fingerprint=relay.fingerprint) as pub:
        assert pub.wait_log("connected", 20), pub.output()
        audio_viewer = ViewProcess(relay.url(), "live/f", "--track", "audio", "--fingerprint", relay.fingerprint)
        video_viewer = ViewProcess(relay.url(), "live/f", "--track", "video", "--duration", "60",
                                   "--fingerprint", relay.fingerprint)
        try:
            wait_until(lambda: len(audio_viewer.objects()) >= 10 and len(video_viewer.objects()) >= 5, 20,
                       f"objects at both viewers\n{audio_viewer.err}\n{video_viewer.err}")
            killed = time.monotonic()
            audio_viewer.proc.send_signal(signal.SIGKILL)
            wait_until(lambda: any(e["track"] == "live/f:audio" for e in events(relay, "upstream_released")),
                       15, "upstream_released for the killed viewer's track")
            released_after = time.monotonic() - killed
            assert len(events(relay, "peer_unresponsive")) == 1
            metrics = relay.metrics()
            assert metrics.get("moq_relay_peers_unresponsive_total") == 1, metrics

            async def watch_publisher_die() -> tuple[Listener, float]:
                conn = await api.connect(relay.url(), fingerprint=relay.fingerprint)
                try:
                    sub = await subscribe(conn, "live/f", b"video")
                    seen = Listener()
                    sub.listener = seen
                    # mid-group: a few objects into the current group, well before its 60th frame
                    await until(lambda: len(seen.objects) >= 5 and seen.objects[-1][1] > 0, 15, "video objects")
                    t = time.monotonic()
                    pub.proc.send_signal(signal.SIGKILL)
                    await until(lambda: seen.done, 15, "PUBLISH_DONE after the publisher was killed")
                    return seen, time.monotonic() - t, sub.done
                finally:
                    await conn.aclose()

            seen, done_after, done = asyncio.run(watch_publisher_die())
            assert done is not None, "the subscription ended without PUBLISH_DONE"
            last_group = seen.objects[-1][0]
            assert (last_group, StreamResetCode.SESSION_CLOSED) in seen.ends, seen.ends  # reset, not FIN
            assert (last_group, None) not in seen.ends, seen.ends
            for _, _, payload in seen.objects:
                split_avc(payload)  # each one a whole frame: its NAL length prefixes add up
            per_group: dict[int, list[int]] = {}
            for group, obj, _ in seen.objects:
                per_group.setdefault(group, []).append(obj)
            for ids in per_group.values():
                assert ids == list(range(ids[0], ids[0] + len(ids))), ids
            # moq-view, subscribed since before: the track ended early, it says so and exits 5
            rc = video_viewer.wait(20)
            assert rc == 5 and "track video ended" in video_viewer.err, (rc, video_viewer.err[-2000:])
            assert "reconnect" not in video_viewer.err  # a track's end is not a lost session
        finally:
            audio_viewer.kill()
            video_viewer.kill()
    assert released_after < 10 and done_after < 10, (released_after, done_after)


@pytest.mark.timeout(90)
def test_upstream_relay_killed_downstream_reports_and_recovers(tmp_path):
    """(d) a parent relay SIGKILLed under a child relay: the child logs upstream_lost, its /metrics
    shows the link down; the parent restarts (same port and certificate), the child links again
    and a subscriber at the parent receives the child's publisher once more."""
    state = ("--state-dir", str(tmp_path / "root"))
    with RelayProcess(*state) as root:
        with RelayProcess("--upstream", root.url(), "--upstream-fingerprint", root.fingerprint, *PEER_TIMEOUT,
                          "--state-dir", str(tmp_path / "edge")) as edge:
            wait_until(lambda: edge.metrics().get("moq_relay_upstream_connected") == 1, 15, "the upstream link")

            async def publish_and_watch(parent: RelayProcess) -> int:
                pub = Publisher()
                track = pub.create_track(namespace_from_str("live/edge"), b"t")
                conn = await api.connect(edge.url(), fingerprint=edge.fingerprint, handler=pub)
                viewer = None
                try:
                    await conn.publish_namespace(namespace_from_str("live/edge"), timeout=5)
                    viewer = await api.connect(parent.url(), fingerprint=parent.fingerprint)
                    sub = await subscribe(viewer, "live/edge", b"t")
                    seen = Listener()
                    sub.listener = seen
                    for g in range(5):
                        track.write(g, 0, b"x" * 100)
                        track.end_group(g)
                        await asyncio.sleep(0.05)
                    await until(lambda: len(seen.objects) >= 3, 10, "objects through both relays")
                    return len(seen.objects)
                finally:
                    for c in (viewer, conn):
                        if c is not None:
                            await c.aclose()

            assert asyncio.run(publish_and_watch(root)) >= 3
            root.kill()
            wait_until(lambda: '"upstream_lost"' in edge.log_text(), 15, "upstream_lost at the child")
            assert edge.metrics().get("moq_relay_upstream_connected") == 0
            assert edge.http_get("/healthz")  # the child itself stays up and serves its own clients
            with RelayProcess("--bind", f"127.0.0.1:{root.port}", *state) as again:
                wait_until(lambda: edge.metrics().get("moq_relay_upstream_connected") == 1, 20,
                           f"the link back\n{edge.log_tail()}")
                assert edge.metrics().get("moq_relay_upstream_reconnects_total") == 1
                assert asyncio.run(publish_and_watch(again)) >= 3
