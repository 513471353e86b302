"""Options shared by the command-line programs (moq-relay, moq-publish, moq-view)."""

from __future__ import annotations

import argparse
import os


def add_logging_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-format", choices=("console", "json"), default="console",
                   help="log line format on stderr (default: console)")
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default: info)")


def add_tls_client_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--insecure", action="store_true",
                   help="accept any server certificate (development only)")
    g.add_argument("--fingerprint", metavar="HEX",
                   help="accept only the server certificate with this SHA-256 (hex, as the relay prints it)")


def add_token_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", metavar="JWT", default=os.environ.get("MOQ_TOKEN") or None,
                   help="authorization token sent in SETUP (see moq-token; default: env MOQ_TOKEN). "
                   "Prefer MOQ_TOKEN: a command line is visible to other local users")
