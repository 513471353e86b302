"""moq-relay: a caching, fan-out MoQ relay; raw QUIC and WebTransport on one UDP port.

Configuration precedence: defaults < TOML file (--config) < MOQ_RELAY_* environment < flags.
SIGTERM or SIGINT starts a graceful drain: GOAWAY to every session, up to --drain-timeout
seconds for them to leave, then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import structlog

from moq import api
from moq.log import configure_logging
from moq.session import SessionConfig
from moq.transport.loop import run
from moq.transport.tls import ServerCredentials

from .config import ConfigError, RelayConfig, build_parser, load_config
from .http import start_http
from .metrics import RelayMetrics
from .relay import Relay

log = structlog.get_logger("relay")


def default_web_root() -> Path | None:
    """The web viewer shipped with the package (viewer/web), served at / on --http."""
    import viewer

    root = Path(viewer.__file__).resolve().parent / "web"
    return root if (root / "index.html").is_file() else None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1" if host != "::" else "[::1]"
    return f"[{host}]" if ":" in host else host


async def serve_relay(cfg: RelayConfig, *, ready: asyncio.Event | None = None) -> int:
    creds = ServerCredentials.load(cfg.cert, cfg.key) if cfg.cert and cfg.key else ServerCredentials.dev()
    metrics = RelayMetrics()
    relay = Relay(cfg, metrics)
    host, port = cfg.bind_address
    full = 0

    def session_config() -> SessionConfig:
        return SessionConfig(implementation="moq-relay/0.1", max_incoming_requests=cfg.max_requests_per_session,
                             max_object_size=cfg.max_object_size)

    def on_connection(conn) -> None:
        nonlocal full
        if len(relay.connections) >= cfg.max_sessions:
            full += 1
            metrics.requests_refused.labels(reason="session_limit").inc()
            log.warning("session_refused", reason="max_sessions", peer=conn.transport.peer)
            conn.close(0x1, "relay is full")
            return
        relay.add_connection(conn)

    server = await api.serve(host, port, credentials=creds, handler=relay, on_connection=on_connection,
                             config=session_config)
    stop = asyncio.Event()
    http = None
    if cfg.http_address is not None:
        hh, hp = cfg.http_address
        http = await start_http(hh, hp, fingerprint=creds.fingerprint, metrics=metrics,
                                web_root=cfg.web_root or default_web_root(), health=lambda: not stop.is_set())
        hp = http.sockets[0].getsockname()[1]
    if cfg.upstream:
        relay.start_upstream(cfg.upstream, cfg.upstream_fingerprint)
    uh = _url_host(host)
    print(f"moq-relay {cfg.node_name}: listening on udp {host}:{server.port}", flush=True)
    print(f"  raw QUIC:     moqt://{uh}:{server.port}/", flush=True)
    print(f"  WebTransport: https://{uh}:{server.port}/", flush=True)
    print(f"  certificate sha256: {creds.fingerprint}", flush=True)
    if http is not None:
        print(f"  http:         http://{_url_host(hh)}:{hp}/ (/fingerprint /metrics /healthz)", flush=True)
    if cfg.upstream:
        print(f"  upstream:     {cfg.upstream}", flush=True)
    log.info("relay_started", bind=f"{host}:{server.port}", http=cfg.http, node=cfg.node_name)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("relay_draining", sessions=len(relay.connections), timeout_s=cfg.drain_timeout)
    await relay.drain(cfg.drain_timeout)
    server.close()
    if http is not None:
        http.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 2.0)
    except TimeoutError:
        pass
    log.info("relay_stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"moq-relay: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log_format, cfg.log_level)
    return run(serve_relay(cfg))


__all__ = ["main", "serve_relay", "build_parser"]

if __name__ == "__main__":
    sys.exit(main())
