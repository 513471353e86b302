"""The relay's HTTP side door over real TCP on 127.0.0.1: endpoints, static files, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from pathlib import Path

import pytest

from relay.http import MAX_HEAD, start_http
from relay.metrics import RelayMetrics

pytestmark = pytest.mark.timeout(20)
FP = "ab" * 32


@contextlib.asynccontextmanager
async def serving(web_root: Path | None = None, healthy: list[bool] | None = None, **kw):
    metrics = RelayMetrics()
    state = healthy if healthy is not None else [True]
    server = await start_http("127.0.0.1", 0, fingerprint=FP, metrics=metrics, web_root=web_root,
                              health=lambda: state[0], **kw)
    try:
        yield server.sockets[0].getsockname()[1], metrics
    finally:
        server.close()
        await server.wait_closed()


async def request(port: int, raw: bytes | str) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes, split status, headers (lower-case) and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw.encode() if isinstance(raw, str) else raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    if "content-length" in headers and not raw.startswith(b"HEAD" if isinstance(raw, bytes) else "HEAD"):
        assert int(headers["content-length"]) == len(body)
    return int(status_line.split(" ")[1]), headers, body


def get(port: int, path: str, method: str = "GET") -> asyncio.Future:
    return request(port, f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")


@pytest.fixture
def web(tmp_path: Path) -> Path:
    """A web root inside tmp_path, with secrets beside it that traversal must not reach."""
    root = tmp_path / "web"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>viewer</h1>")
    (root / "app.js").write_text("export const x = 1;")
    (root / "mod.mjs").write_text("export {};")
    (root / "sub" / "style.css").write_text("body{}")
    (root / "codec.wasm").write_bytes(b"\0asm")
    (root / "data.bin").write_bytes(b"\1\2")
    (root / ".secret").write_text("hidden")
    (tmp_path / "pyproject.toml").write_text("secret")
    (tmp_path / "x").write_text("secret")
    (root / "escape.txt").symlink_to(tmp_path / "x")
    return root


def test_fingerprint_text_and_cors():
    async def main():
        async with serving() as (port, _):
            status, headers, body = await get(port, "/fingerprint")
            assert (status, body) == (200, FP.encode())
            assert headers["access-control-allow-origin"] == "*"
            assert headers["content-type"].startswith("text/plain")
            assert headers["connection"] == "close"
            # a stock client parses it too
            url = f"http://127.0.0.1:{port}/fingerprint"
            with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as resp:
                assert resp.read().decode() == FP
    asyncio.run(main())


def test_metrics_after_increments():
    async def main():
        async with serving() as (port, metrics):
            metrics.sessions.inc()
            metrics.objects_out.inc(20)
            metrics.bytes_in.inc(1234)
            metrics.cache_bytes.set(4096)
            metrics.requests_refused.labels(reason="session_limit").inc()
            status, headers, body = await get(port, "/metrics")
            assert status == 200 and headers["content-type"] == metrics.content_type
            text = body.decode()
            for line in ("moq_relay_sessions 1.0", "moq_relay_objects_out_total 20.0",
                         "moq_relay_bytes_in_total 1234.0", "moq_relay_cache_bytes 4096.0",
                         'moq_relay_requests_refused_total{reason="session_limit"} 1.0',
                         'moq_relay_requests_refused_total{reason="draining"} 0.0',
                         "moq_relay_dropped_groups_total 0.0", "moq_relay_sessions_accepted_total 0.0",
                         "moq_relay_subscriptions 0.0", "moq_relay_tracks 0.0", "moq_relay_objects_in_total 0.0",
                         "moq_relay_bytes_out_total 0.0"):
                assert line in text.splitlines(), line
    asyncio.run(main())


def test_metrics_registries_are_independent():
    a, b = RelayMetrics(), RelayMetrics()
    a.objects_in.inc(5)
    assert b"moq_relay_objects_in_total 5.0" in a.render()
    assert b"moq_relay_objects_in_total 0.0" in b.render()


def test_healthz_follows_the_callback():
    async def main():
        state = [True]
        async with serving(healthy=state) as (port, _):
            assert (await get(port, "/healthz"))[::2] == (200, b"ok\n")
            state[0] = False
            assert (await get(port, "/healthz"))[0] == 503
    asyncio.run(main())


def test_healthz_callback_raising_is_unhealthy():
    async def main():
        metrics = RelayMetrics()
        server = await start_http("127.0.0.1", 0, fingerprint=FP, metrics=metrics, web_root=None,
                                  health=lambda: 1 / 0)
        async with server:
            assert (await get(server.sockets[0].getsockname()[1], "/healthz"))[0] == 503
    asyncio.run(main())


def test_static_files_with_content_types(web):
    async def main():
        async with serving(web) as (port, _):
            for path, ctype, body in [("/", "text/html", b"<h1>viewer</h1>"),
                                      ("/index.html", "text/html", b"<h1>viewer</h1>"),
                                      ("/?session=1", "text/html", b"<h1>viewer</h1>"),
                                      ("/app.js", "text/javascript", b"export const x = 1;"),
                                      ("/app.js?v=2#frag", "text/javascript", b"export const x = 1;"),
                                      ("/mod.mjs", "text/javascript", b"export {};"),
                                      ("/sub/style.css", "text/css", b"body{}"),
                                      ("/sub/%73tyle.css", "text/css", b"body{}"),
                                      ("/codec.wasm", "application/wasm", b"\0asm"),
                                      ("/data.bin", "application/octet-stream", b"\1\2")]:
                status, headers, got = await get(port, path)
                assert (status, got) == (200, body), path
                assert headers["content-type"].startswith(ctype), path
    asyncio.run(main())


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/%2e%2e/x", "/%2E%2E/x", "/..%2fx", "/sub/../../x",
                                  "/..\\x", "/.secret", "/escape.txt", "/sub", "/sub/", "/missing.js",
                                  "/%ff", "/fingerprint/extra", "/x%00.js"])
def test_static_refuses_traversal_and_missing(web, path):
    async def main():
        async with serving(web) as (port, _):
            status, _, body = await get(port, path)
            assert status == 404 and b"secret" not in body and b"hidden" not in body
    asyncio.run(main())


def test_no_web_root_means_404_at_root():
    async def main():
        async with serving(None) as (port, _):
            assert (await get(port, "/"))[0] == 404
            assert (await get(port, "/index.html"))[0] == 404
    asyncio.run(main())


def test_head_has_headers_but_no_body(web):
    async def main():
        async with serving(web) as (port, _):
            for path, length in [("/fingerprint", 64), ("/app.js", 19)]:
                status, headers, body = await get(port, path, "HEAD")
                assert (status, body) == (200, b"")
                assert int(headers["content-length"]) == length
    asyncio.run(main())


def test_other_methods_and_malformed_requests(web):
    async def main():
        async with serving(web) as (port, _):
            status, headers, _ = await request(port, "POST /fingerprint HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
            assert status == 405 and headers["allow"] == "GET, HEAD"
            assert (await get(port, "/", "DELETE"))[0] == 405
            assert (await request(port, "GET /\r\n\r\n"))[0] == 400
            assert (await request(port, "GET / HTTP/2.0\r\n\r\n"))[0] == 400
            assert (await request(port, "GET index.html HTTP/1.1\r\n\r\n"))[0] == 400
            assert (await request(port, b"GET /\xff HTTP/1.1\r\n\r\n"))[0] == 400
            # absolute-form target, as a proxy would send it
            assert (await request(port, f"GET http://127.0.0.1:{port}/app.js HTTP/1.1\r\n\r\n"))[0] == 200
    asyncio.run(main())


def test_oversized_request_head_is_refused():
    async def main():
        async with serving() as (port, _):
            raw = "GET /healthz HTTP/1.1\r\nX-Pad: " + "a" * (2 * MAX_HEAD) + "\r\n\r\n"
            assert (await request(port, raw))[0] == 431
            assert (await get(port, "/healthz"))[0] == 200  # the server carries on
    asyncio.run(main())


def test_slow_client_times_out_and_early_close_is_harmless():
    async def main():
        async with serving(read_timeout=0.2) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # never finishes the head
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.startswith(b"HTTP/1.1 408 ")
            writer.close()
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HT")
            writer.close()  # gone before the head is complete
            assert (await get(port, "/healthz"))[0] == 200
    asyncio.run(main())


def test_port_zero_binds_a_free_port():
    async def main():
        async with serving() as (port_a, _), serving() as (port_b, _):
            assert port_a and port_b and port_a != port_b
    asyncio.run(main())


def test_metrics_and_health_may_be_awaitable():
    """The --workers supervisor answers /metrics and /healthz by asking its workers."""
    class Gathered:
        content_type = "text/plain; version=0.0.4; charset=utf-8"

        async def render(self) -> bytes:
            await asyncio.sleep(0)
            return b"moq_relay_workers 2.0\n"

    async def main():
        state = [True]

        async def health() -> bool:
            await asyncio.sleep(0)
            return state[0]

        server = await start_http("127.0.0.1", 0, fingerprint=FP, metrics=Gathered(), web_root=None, health=health)
        async with server:
            port = server.sockets[0].getsockname()[1]
            status, headers, body = await get(port, "/metrics")
            assert (status, body) == (200, b"moq_relay_workers 2.0\n")
            assert headers["content-type"] == Gathered.content_type
            assert (await get(port, "/healthz"))[0] == 200
            state[0] = False
            assert (await get(port, "/healthz"))[0] == 503
    asyncio.run(main())


def test_udp_counters_and_routing_gauges_are_exported():
    from moq.transport.stats import STATS

    text = RelayMetrics().render().decode()
    for name in ("datagrams_sent", "bytes_sent", "send_calls", "datagrams_received", "bytes_received"):
        assert f"# TYPE moq_relay_udp_{name}_total counter" in text
        assert f"moq_relay_udp_{name}_total {float(getattr(STATS, name))}" in text
    assert "moq_relay_upstream_subscriptions 0.0" in text and "moq_relay_namespaces 0.0" in text
