"""moq-publish: the streamer's tool (the OBS role): publish a test pattern, a media file or an
RTMP feed as MoQ tracks with a catalog."""

from __future__ import annotations

import argparse
import logging
import sys

from moq.cli import add_logging_options, add_tls_client_options, add_token_option
from moq.log import configure_logging
from moq.transport.endpoint import parse_url
from moq.transport.loop import run
from moq.transport.tls import normalize_fingerprint
from moq.wire.types import namespace_from_str

from .ingest import IngestError, Settings, open_source
from .packaging import parse_bitrate
from .run import Options, PublishRun
from .status import StatusLine

EPILOG = """\
tracks: video (H.264, avc1), audio (Opus, or AAC passed through), catalog (MSF) in --namespace.
OBS: Settings > Stream > Service "Custom", Server rtmp://HOST:1935/live, Stream Key KEY, with
  --input rtmp://0.0.0.0:1935/live/KEY (other apps/keys are refused).
passed-through H.264 keeps the input's key frames (--gop does not apply): a group is a GOP, and a
  viewer starts at a key frame, so the keyframe interval is the longest wait to join (a warning says
  so when it is long); set it in the encoder (OBS: Output > Keyframe Interval, 1-2 s).
exit status:
  0  done: --duration over, end of the file, or SIGINT/SIGTERM (a relay lost meanwhile is retried)
  1  internal error
  2  bad arguments or input: a file that cannot be read, an RTMP port already in use, a bad URL
  3  relay unreachable (3 attempts) or refused the namespace, or its TLS certificate is untrusted or
     not the --fingerprint one (not retried at the first connection; after a reconnect, given up
     after 10 s: a relay keeps its dev certificate only with the same --state-dir)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-publish", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="relay URL: moqt://host:port/path (raw QUIC) or https://host:port/path (WebTransport)")
    p.add_argument("--namespace", required=True, help="track namespace to publish, e.g. live/demo")
    p.add_argument("--input", default="testsrc", help="testsrc, a media FILE, or rtmp://0.0.0.0:1935/live/KEY")
    p.add_argument("--loop", action="store_true", help="restart a media file when it ends")
    p.add_argument("--duration", type=float, metavar="SEC", help="stop after SEC seconds")
    p.add_argument("--video-bitrate", default="2500k", help="H.264 bitrate (default 2500k)")
    p.add_argument("--gop", type=float, metavar="SEC",
                   help="seconds per group of pictures when re-encoding (default 2); passed-through H.264 keeps "
                        "the input's key frames: set the keyframe interval in the encoder (OBS)")
    p.add_argument("--size", default="1280x720", help="video size WxH (default 1280x720)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--no-audio", action="store_true", help="publish video only")
    add_tls_client_options(p)
    add_token_option(p)
    add_logging_options(p)
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 1280x720, got {text!r}") from None
    if w < 32 or h < 32 or w % 2 or h % 2 or w > 7680 or h > 4320:
        raise ValueError(f"--size must be even and between 32x32 and 7680x4320, got {text!r}")
    return w, h


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        width, height = _size(args.size)
        gop = 2.0 if args.gop is None else args.gop
        settings = Settings(width=width, height=height, fps=args.fps, bitrate=parse_bitrate(args.video_bitrate),
                            gop=gop, audio=not args.no_audio, gop_set=args.gop is not None)
        if args.fps <= 0 or args.fps > 240:
            raise ValueError(f"--fps must be in 1..240, got {args.fps}")
        if gop <= 0:
            raise ValueError(f"--gop must be positive, got {args.gop}")
        if args.duration is not None and args.duration <= 0:
            raise ValueError(f"--duration must be positive, got {args.duration}")
        namespace = namespace_from_str(args.namespace)
        if not namespace:
            raise ValueError("--namespace must not be empty")
        parse_url(args.url)
        if args.fingerprint:
            normalize_fingerprint(args.fingerprint)
        if args.log_level.upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown --log-level {args.log_level!r}")
    except ValueError as exc:
        print(f"moq-publish: {exc}", file=sys.stderr)
        return 2
    status = StatusLine.for_terminal(args.log_format)
    try:
        source = open_source(args.input, settings, loop=args.loop)
        source.check()
    except (IngestError, ValueError) as exc:
        print(f"moq-publish: {exc}", file=sys.stderr)
        return 2
    status.start()
    configure_logging(args.log_format, args.log_level)
    opts = Options(args.url, namespace, fingerprint=args.fingerprint, insecure=args.insecure,
                   duration=args.duration, gop=gop, token=args.token)
    try:
        return run(PublishRun(source, opts, status).run())
    finally:
        status.stop()


if __name__ == "__main__":
    sys.exit(main())
