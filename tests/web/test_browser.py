"""End to end in real headless Chromium: relay process (serving viewer/web) + publisher
process + the web viewer page, over WebTransport (moqt-18), WebCodecs and a canvas.

The page must decode >= 60 video frames within 15 s, paint a non-blank picture, report a
plausible glass-to-glass latency, the negotiated protocol and no error; it must show
clear errors (relay down, namespace not found) and reconnect by itself.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from .conftest import PublisherProcess, page_url, run_testpub, wait_for

pytestmark = pytest.mark.timeout(90)

CANVAS_STATS_JS = """(() => {
  const c = document.getElementById('video');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sum2 = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) {
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    n++; sum += y; sum2 += y * y;
    colours.add((d[i] >> 4) << 8 | (d[i + 1] >> 4) << 4 | (d[i + 2] >> 4));
  }
  const mean = sum / n;
  return {width: c.width, height: c.height, mean, variance: sum2 / n - mean * mean, colours: colours.size};
})()"""


def check_playing(page, tmp_path, name: str) -> dict:
    """The contract's checks on a page that should be playing; returns its stats."""
    _, took = wait_for(page, "window.moqStats && window.moqStats.framesDecoded >= 60", timeout=15)
    wait_for(page, "window.moqStats.framesRendered > 0 && window.moqStats.latencyMs !== null", timeout=5)
    stats = page.evaluate("JSON.parse(JSON.stringify(window.moqStats))")
    canvas = page.evaluate(CANVAS_STATS_JS)
    shot = page.screenshot(tmp_path / f"{name}.png")
    print(f"\n{name}: {stats['framesDecoded']} frames decoded after {took:.1f} s, latency {stats['latencyMs']} ms, "
          f"{stats['bitrateKbps']} kbit/s, {stats['fps']} fps, canvas {canvas}, screenshot {shot}")
    assert stats["protocol"] == "moqt-18"
    assert stats["error"] is None, stats["error"]
    assert 0 < stats["latencyMs"] < 5000, stats
    assert canvas["width"] == 320 and canvas["height"] == 180, canvas
    assert canvas["variance"] > 100 and canvas["colours"] >= 4, f"blank canvas: {canvas}"
    assert shot.stat().st_size > 1000
    return stats


def test_page_plays_video_and_audio(browser, relay, tmp_path):
    with run_testpub(relay, "live/webtest"):
        page = browser.open(page_url(relay, "live/webtest"))
        try:
            stats = check_playing(page, tmp_path, "viewer")
            assert stats["video"]["codec"].startswith("avc1.")
            assert stats["audio"]["codec"] == "opus"
            wait_for(page, "window.moqStats.audioFramesDecoded > 20", timeout=5)
            # the overlay: key 'o' shows it and the JSON mirror of moqStats
            assert page.evaluate("document.getElementById('stats').hidden") is True
            page.press_key("o")
            wait_for(page, "!document.getElementById('overlay').hidden && !document.getElementById('stats').hidden", 3)
            time.sleep(0.5)
            overlay = page.evaluate("document.getElementById('overlay').innerText")
            for word in ("latency", "bitrate", "fps", "dropped groups", "relay", "draft-ietf-moq-transport-18"):
                assert word in overlay, overlay
            mirrored = json.loads(page.evaluate("document.getElementById('stats').textContent"))
            assert mirrored["protocol"] == "moqt-18" and mirrored["framesDecoded"] >= 60
            page.screenshot(tmp_path / "viewer-overlay.png")
            page.evaluate("document.getElementById('overlay-toggle').click()")
            assert page.evaluate("document.getElementById('overlay').hidden") is True
        finally:
            page.close()


def test_far_behind_skips_to_the_next_group(browser, relay, tmp_path):
    """Media that is 2 s old when it arrives: the page drops queued frames and waits for the next
    group's key frame instead of playing late (the low-latency policy)."""
    with run_testpub(relay, "live/late", "--clock-offset-ms", "-2000", "--gop", "0.5"):
        page = browser.open(page_url(relay, "live/late"))
        try:
            wait_for(page, "window.moqStats && window.moqStats.droppedGroups >= 3", timeout=15)
            stats = page.evaluate("JSON.parse(JSON.stringify(window.moqStats))")
            assert stats["lastSkip"] == "latency" and stats["error"] is None, stats
            assert stats["latencyMs"] is None or stats["latencyMs"] > 1000, stats
        finally:
            page.close()


def test_namespace_not_found_then_reconnects_when_published(browser, relay, tmp_path):
    page = browser.open(page_url(relay, "live/later"))
    try:
        msg, _ = wait_for(page, "window.moqStats && window.moqStats.error", timeout=10)
        assert "not found" in msg and "live/later" in msg, msg
        assert page.evaluate("document.getElementById('error').hidden") is False
        assert "not found" in page.evaluate("document.getElementById('error').textContent")
        with run_testpub(relay, "live/later"):
            # the backoff is at most a few seconds here; then it must play on its own
            wait_for(page, "window.moqStats.framesDecoded >= 30 && window.moqStats.error === null", timeout=20)
            stats = page.evaluate("JSON.parse(JSON.stringify(window.moqStats))")
            assert stats["reconnects"] >= 1 and stats["protocol"] == "moqt-18"
    finally:
        page.close()


def test_relay_down_shows_error(browser, relay, tmp_path):
    # a UDP port nobody listens on, with the real relay's fingerprint: the handshake fails
    page = browser.open(page_url(relay, "live/webtest", fingerprint=relay.fingerprint).replace(
        f"https://127.0.0.1:{relay.port}/", "https://127.0.0.1:9/"))
    try:
        msg, _ = wait_for(page, "window.moqStats && window.moqStats.error", timeout=15)
        assert "cannot connect to the relay at https://127.0.0.1:9/" in msg and "mismatch" not in msg, msg
        assert page.evaluate("window.moqStats.protocol") is None
        page.screenshot(tmp_path / "relay-down.png")
    finally:
        page.close()


def test_certificate_mismatch_shows_error(browser, relay, tmp_path):
    page = browser.open(page_url(relay, "live/webtest", fingerprint="00" * 32))
    try:
        msg, _ = wait_for(page, "window.moqStats && window.moqStats.error", timeout=15)
        assert "certificate mismatch" in msg and "fingerprint= parameter" in msg, msg
    finally:
        page.close()


def test_page_plays_moq_publish(browser, relay, tmp_path):
    """The same checks with the real publisher (moq-publish --input testsrc)."""
    cmd = [sys.executable, "-m", "publisher", relay.url("https"), "--namespace", "live/demo", "--input", "testsrc",
           "--fingerprint", relay.fingerprint, "--size", "320x180", "--duration", "60"]
    with PublisherProcess(cmd, ready_text=None) as pub:
        time.sleep(1.0)
        assert pub.alive(), f"moq-publish exited with {pub.proc.returncode}: {pub.output()}"
        page = browser.open(page_url(relay, "live/demo"))
        try:
            check_playing(page, tmp_path, "viewer-moq-publish")
        finally:
            page.close()


def test_relay_shutdown_while_playing_shows_error_and_retries(browser, tmp_path):
    """SIGTERM: the relay sends GOAWAY and closes; the page says so, then that the relay is down."""
    from tests.relay.relayproc import RelayProcess

    from .conftest import WEB_ROOT

    with RelayProcess("--web-root", str(WEB_ROOT), "--drain-timeout", "1") as relay, run_testpub(relay, "live/bye"):
        page = browser.open(page_url(relay, "live/bye"))
        try:
            wait_for(page, "window.moqStats && window.moqStats.framesDecoded >= 30", timeout=15)
            assert relay.stop() == 0
            msg, _ = wait_for(page, "window.moqStats.error", timeout=10)
            assert "going away" in msg or "closed the session" in msg, msg
            msg, _ = wait_for(page, "/relay is down/.test(window.moqStats.error || '') && window.moqStats.error", timeout=15)
            assert "reconnecting" in msg, msg
            assert page.evaluate("window.moqStats.state") == "reconnecting"
        finally:
            page.close()
