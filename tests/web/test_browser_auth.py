"""The web viewer against a relay with --auth-key, in headless Chromium: without ?jwt= the page
says it is not authorized; with ?jwt=TOKEN it passes the token on the WebTransport URL and plays.
The publisher is moq-publish --token."""

from __future__ import annotations

import sys
import time

import pytest

from moq import token as tk
from tests.relay.relayproc import RelayProcess

from .cdp import Chromium, find_chromium
from .conftest import WEB_ROOT, PublisherProcess, page_url, wait_for

pytestmark = pytest.mark.timeout(90)


def test_page_with_jwt_plays_and_without_is_told_why(tmp_path):
    if find_chromium() is None:
        pytest.fail("chromium is not installed: run `make test` (it installs it) or apt-get install chromium")
    key = tk.generate_key("EdDSA")
    tk.write_key_pair(key, tmp_path / "priv.pem", tmp_path / "pub.pem")
    now = int(time.time())
    put = tk.sign(key, tk.Claims(root="live", put=("auth",), exp=now + 300))
    get = tk.sign(key, tk.Claims(root="live", get=("auth",), exp=now + 300))
    with RelayProcess("--web-root", str(WEB_ROOT), "--auth-key", str(tmp_path / "pub.pem")) as relay, \
            Chromium(tmp_path / "chromium") as browser:
        cmd = [sys.executable, "-m", "publisher", relay.url("moqt"), "--namespace", "live/auth", "--input", "testsrc",
               "--fingerprint", relay.fingerprint, "--size", "320x180", "--duration", "60", "--token", put]
        with PublisherProcess(cmd, ready_text=None) as pub:
            page = browser.open(page_url(relay, "live/auth"))
            try:
                msg, _ = wait_for(page, "window.moqStats && window.moqStats.error", timeout=15)
                assert "not authorized" in msg and "jwt=TOKEN" in msg, msg
            finally:
                page.close()
            page = browser.open(page_url(relay, "live/auth", jwt=get))
            try:
                wait_for(page, "window.moqStats && window.moqStats.framesDecoded >= 10 "
                         "&& window.moqStats.error === null", timeout=30)
                assert get not in page.evaluate("document.body.innerText")
            finally:
                page.close()
            assert pub.alive(), pub.output()
        log = relay.log_text()
        assert get not in log and put not in log
        assert '"session_authorized"' in log
