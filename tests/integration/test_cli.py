"""The command-line programs as real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.transport.tls import ServerCredentials
from moq.wire.types import namespace_from_str

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("module,flags", [
    ("relay.app", ["--bind", "--cert", "--key", "--http", "--config", "--log-format", "--log-level", "--drain-timeout"]),
    ("publisher", ["--namespace", "--input", "--loop", "--duration", "--video-bitrate", "--gop", "--size", "--fps",
                   "--no-audio", "--insecure", "--fingerprint", "--log-format"]),
    ("viewer", ["--namespace", "--track", "--duration", "--json", "--insecure", "--fingerprint"]),
])
def test_help_lists_the_documented_flags(module, flags):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in flags:
        assert flag in out.stdout


def test_demo_shows_objects_flowing():
    out = subprocess.run([sys.executable, "-m", "moq.demo", "--loopback", "--groups", "3", "--objects", "2",
                          "--interval", "0.05"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("moqt   <- group=") == 6 and out.stdout.count("https  <- group=") == 6
    assert "received {'moqt': 6, 'https': 6}: OK" in out.stdout


@pytest.mark.parametrize("scheme", ["moqt", "https"])
def test_moq_view_json_against_a_live_server(scheme):
    async def main():
        creds = ServerCredentials.dev()
        pub = Publisher()
        track = pub.create_track(namespace_from_str("live/demo"), b"video")
        server = await api.serve("127.0.0.1", 0, credentials=creds, handler=pub)

        async def produce():
            g = 0
            while True:
                for o in range(2):
                    track.write(g, o, b"x" * (100 + o))
                track.end_group(g)
                g += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(produce())
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "viewer", f"{scheme}://127.0.0.1:{server.port}/", "--namespace", "live/demo",
                "--duration", "1.5", "--json", "--fingerprint", creds.fingerprint,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            task.cancel()
            server.close()
            await server.wait_closed()
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        objs, summary = lines[:-1], lines[-1]
        assert summary["summary"] is True and summary["objects"] == len(objs) > 10 and summary["gaps"] == 0
        assert all(o["track"] == "video" and o["bytes"] in (100, 101) for o in objs)
    asyncio.run(main())


def test_moq_view_reports_unreachable_relay_and_bad_fingerprint():
    out = subprocess.run([sys.executable, "-m", "viewer", "moqt://127.0.0.1:9/", "--namespace", "x",
                          "--insecure", "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "cannot reach" in out.stderr

    async def main():
        server = await api.serve("127.0.0.1", 0, handler=Publisher())
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "viewer", f"moqt://127.0.0.1:{server.port}/", "--namespace", "x",
                "--fingerprint", "00" * 32, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            server.close()
            await server.wait_closed()
        return proc.returncode, err.decode()
    code, err = asyncio.run(main())
    assert code == 3 and "certificate" in err.lower()


def _free_port(kind: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_demo_runs_relay_and_publisher_and_prints_working_links():
    """`make demo`: relay + moq-publish testsrc; the printed moq-view command receives media."""
    import re
    import socket

    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    demo = subprocess.Popen([sys.executable, "-m", "moq.demo", "--duration", "20", "--bind", f"127.0.0.1:{udp}",
                             "--http", f"127.0.0.1:{tcp}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in demo.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{tcp}/?url=https://127.0.0.1:{udp}/&namespace=live/demo" in text, text
        fp = re.search(r"--fingerprint ([0-9a-f]{64})", text).group(1)
        view = subprocess.run([sys.executable, "-m", "viewer", f"moqt://127.0.0.1:{udp}/", "--namespace", "live/demo",
                               "--track", "all", "--duration", "3", "--json", "--fingerprint", fp],
                              capture_output=True, text=True, timeout=60)
        assert view.returncode == 0, view.stderr
        objs = [json.loads(x) for x in view.stdout.splitlines()]
        tracks = {o["track"] for o in objs if "track" in o}
        assert {"catalog", "video", "audio"} <= tracks, tracks
    finally:
        demo.send_signal(2)  # SIGINT, like Ctrl-C
        rest, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "moq demo: stopped" in rest
