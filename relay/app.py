"""moq-relay: a caching, fan-out MoQ relay (raw QUIC and WebTransport on one UDP port)."""

from __future__ import annotations

import argparse
import sys

from moq.cli import add_logging_options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-relay", description=__doc__)
    p.add_argument("--bind", default="127.0.0.1:4443", help="UDP address to listen on (default 127.0.0.1:4443)")
    p.add_argument("--cert", metavar="PEM", help="TLS certificate chain (default: a generated dev certificate)")
    p.add_argument("--key", metavar="PEM", help="TLS private key for --cert")
    p.add_argument("--http", metavar="ADDR", help="serve /fingerprint, /metrics, /healthz on this TCP address")
    p.add_argument("--config", metavar="TOML", help="configuration file")
    p.add_argument("--drain-timeout", type=float, default=5.0, metavar="SEC",
                   help="seconds to drain sessions after SIGTERM/SIGINT (default 5)")
    add_logging_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("moq-relay: the relay is not available in this version yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
