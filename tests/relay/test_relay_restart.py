"""A relay restart under real `moq-publish --fingerprint` and `moq-view` processes (issue 14 items 1
and 7, issue 10's "the relay restarts" fault): the dev certificate kept in --state-dir keeps pinned
clients working across a SIGKILL and restart (both notice the silence and reconnect); a new
certificate makes the pinned publisher and viewer, and a child relay pinned with
--upstream-fingerprint, give up with exit 3 within their bound, and certificate errors are one clear
line each, never aioquic's raw log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from publisher.run import CERT_GRACE
from relay.upstream import CERT_GRACE as UPSTREAM_GRACE
from tests.media.procs import PublisherProcess
from tests.relay.relayproc import ROOT, RelayProcess, python_env
from tests.relay.test_relay_faults import ViewProcess, wait_until

SMALL = ("--input", "testsrc", "--size", "320x180", "--fps", "15", "--video-bitrate", "300k", "--gop", "0.5")
RAW_AIOQUIC = "Error: 298"  # aioquic's own warning line, which used to leak to stderr


def tool(module: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=python_env(), capture_output=True,
                          text=True, timeout=timeout)


def view(url: str, *args: str) -> subprocess.CompletedProcess:
    return tool("viewer", url, "--namespace", "live/rs", "--track", "video", "--json", *args)


@pytest.mark.timeout(90)
def test_restart_keeps_the_certificate_publisher_reconnects_and_a_new_viewer_plays(tmp_path):
    state = ("--state-dir", str(tmp_path / "state"))
    with RelayProcess(*state) as relay, PublisherProcess(relay.url(), "live/rs", *SMALL,
                                                         fingerprint=relay.fingerprint) as pub:
        assert pub.wait_log("connected", 20), pub.output()
        running = ViewProcess(relay.url(), "live/rs", "--track", "video", "--fingerprint", relay.fingerprint)
        try:
            wait_until(lambda: len(running.objects()) >= 5, 20, f"objects before the restart\n{running.err}")
            relay.kill()  # SIGKILL: no goodbye, both clients must notice the silence by themselves
            before = max(o["group"] for o in running.objects())
            with RelayProcess("--bind", f"127.0.0.1:{relay.port}", *state) as again:
                assert again.fingerprint == relay.fingerprint  # the same certificate, from the state dir
                assert pub.wait_log("reconnected", 30), pub.output()
                watched = view(again.url(), "--duration", "2", "--fingerprint", again.fingerprint)
                assert watched.returncode == 0, watched.stderr
                lines = [json.loads(line) for line in watched.stdout.splitlines()]
                assert lines[-1]["summary"] and lines[-1]["objects"] >= 10, lines[-1]
                # the moq-view that was running noticed the silence and came back by itself
                wait_until(lambda: any(o["group"] > before for o in running.objects()), 20,
                           f"the running viewer after the restart\n{running.err}")
                assert "no answer from the relay" in running.err and "reconnected to" in running.err, running.err
                running.proc.send_signal(signal.SIGINT)
                assert running.wait(15) == 0, running.err[-3000:]
                assert pub.stop() == 0, pub.output()
        finally:
            running.kill()
    out = pub.stdout()
    assert "reconnects: 1" in out, out  # the exit summary
    assert RAW_AIOQUIC not in pub.stderr()


@pytest.mark.timeout(90)
def test_new_certificate_pinned_publisher_exits_3_and_certificate_errors_are_one_line(tmp_path):
    # (the parent's drain ends at --drain-timeout: the child relay's link does not leave on GOAWAY)
    with RelayProcess("--state-dir", str(tmp_path / "a"), "--drain-timeout", "2") as relay, \
            PublisherProcess(relay.url(), "live/rs", *SMALL, fingerprint=relay.fingerprint) as pub, \
            RelayProcess("--upstream", relay.url(), "--upstream-fingerprint", relay.fingerprint,
                         "--state-dir", str(tmp_path / "child")) as child:
        assert pub.wait_log("connected", 20), pub.output()
        wait_until(lambda: child.metrics().get("moq_relay_upstream_connected") == 1, 15,
                   f"the child relay's upstream link\n{child.log_tail()}")
        running = ViewProcess(relay.url(), "live/rs", "--track", "video", "--fingerprint", relay.fingerprint)
        wait_until(lambda: len(running.objects()) >= 3, 20, f"objects at the viewer\n{running.err}")
        assert relay.stop() == 0  # SIGTERM: GOAWAY to both
        lost = time.monotonic()
        with RelayProcess("--bind", f"127.0.0.1:{relay.port}", "--state-dir", str(tmp_path / "b")) as other:
            assert other.fingerprint != relay.fingerprint  # a fresh state dir: a new certificate
            # meanwhile, moq-view and moq-publish report certificate errors at once, in one line, exit 3
            for args, expect in (((), "untrusted TLS certificate (self-signed certificate)"),
                                 (("--fingerprint", relay.fingerprint), f"not the pinned --fingerprint "
                                                                        f"{relay.fingerprint}")):
                v = view(other.url(), "--duration", "1", *args)
                assert v.returncode == 3 and expect in v.stderr and "--fingerprint" in v.stderr, v.stderr
                assert v.stderr.strip().count("\n") == 0 and RAW_AIOQUIC not in v.stderr, v.stderr
            t = time.monotonic()
            p = tool("publisher", other.url(), "--namespace", "live/other", *SMALL)
            assert p.returncode == 3 and "untrusted TLS certificate" in p.stderr and "--insecure" in p.stderr, \
                p.stderr
            assert "connect_failed" not in p.stderr and RAW_AIOQUIC not in p.stderr, p.stderr  # no retries
            assert time.monotonic() - t < 10
            # the pinned publisher and moq-view retry for CERT_GRACE seconds, then give up
            assert pub.wait(CERT_GRACE + 25) == 3, pub.output()
            assert time.monotonic() - lost < CERT_GRACE + 20
            try:
                assert running.wait(CERT_GRACE + 10) == 3, running.err[-3000:]
            finally:
                running.kill()
            said = [line for line in running.err.splitlines() if line.startswith("moq-view: ")]
            assert "GOAWAY" in said[0] and "reconnecting" in said[0], said
            assert said[-1].startswith("moq-view: the relay at") and other.fingerprint in said[-1], said
            assert f"not the pinned --fingerprint {relay.fingerprint}" in said[-1], said
            # the child relay retried its parent for UPSTREAM_GRACE seconds too, then exits 3 with one line
            assert child.proc.wait(UPSTREAM_GRACE + 20) == 3, child.log_tail()
            assert time.monotonic() - lost < UPSTREAM_GRACE + 20
            said = [line for line in child.log_text().splitlines() if not line.startswith("{")]
            assert len(said) == 1 and said[0].startswith(f"moq-relay: the parent relay at {relay.url()}"), said
            assert f"presents certificate sha256 {other.fingerprint}, not --upstream-fingerprint " \
                   f"{relay.fingerprint}; gave up after" in said[0], said
            assert RAW_AIOQUIC not in child.log_text()
    err = pub.stderr().strip().splitlines()
    assert err[-1].startswith("moq-publish: the relay at") and other.fingerprint in err[-1], err[-1]
    assert f"not the pinned --fingerprint {relay.fingerprint}" in err[-1] and "--state-dir" in err[-1]
    assert RAW_AIOQUIC not in pub.stderr()
    assert "attempts)" in pub.stdout(), pub.stdout()  # the status line counts the failed attempts
