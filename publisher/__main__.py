"""moq-publish: the streamer's tool (the OBS role): publish a test pattern, a media file or an
RTMP feed as MoQ tracks with a catalog."""

from __future__ import annotations

import argparse
import sys

from moq.cli import add_logging_options, add_tls_client_options


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-publish", description=__doc__)
    p.add_argument("url", help="relay URL: moqt://host:port/path (raw QUIC) or https://host:port/path (WebTransport)")
    p.add_argument("--namespace", required=True, help="track namespace to publish, e.g. live/demo")
    p.add_argument("--input", default="testsrc", help="testsrc, a media FILE, or rtmp://0.0.0.0:1935/live/KEY")
    p.add_argument("--loop", action="store_true", help="restart a media file when it ends")
    p.add_argument("--duration", type=float, metavar="SEC", help="stop after SEC seconds")
    p.add_argument("--video-bitrate", default="2500k", help="H.264 bitrate (default 2500k)")
    p.add_argument("--gop", type=float, default=2.0, metavar="SEC", help="seconds per group of pictures (default 2)")
    p.add_argument("--size", default="1280x720", help="video size WxH (default 1280x720)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--no-audio", action="store_true", help="publish video only")
    add_tls_client_options(p)
    add_logging_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("moq-publish: media publishing is not available in this version yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
