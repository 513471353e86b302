"""moq-view: subscribe to a broadcast's catalog and tracks and report what arrives: one JSON
line per object with --json (else a human summary per track), and optionally an MP4
recording of the media, remuxed without re-encoding."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from moq.cli import add_logging_options, add_tls_client_options, add_token_option
from moq.log import configure_logging
from moq.media.catalog import CatalogTrack
from moq.transport.endpoint import parse_url
from moq.transport.loop import run
from moq.transport.tls import normalize_fingerprint

from .mp4 import MediaInfo, Mp4Writer
from .stats import format_bitrate
from .subscribe import AUTO, EXIT_NO_DATA, EXIT_OK, Received, Viewer, ViewError, ViewResult, connect, reconnect

EXIT_OUTPUT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EPILOG = """\
tracks:
  (no --track)    the media tracks the catalog lists (it says which); without a catalog, video
  video, audio    the publisher's default track names (the catalog is read alongside, when there is one)
  catalog         the MSF catalog: SUBSCRIBE + joining FETCH, so the latest complete catalog comes first
  all             the catalog and every track it lists (video and audio when there is no catalog)
  NAME            any other track of the namespace

--json prints, per object:
  {"track": T, "group": G, "subgroup": S, "object": O, "bytes": N, "latency_ms": X}
  (latency = now - the LOC capture timestamp; null without one, e.g. catalog objects)
and on exit:
  {"summary": true, "objects": N, "groups": G, "gaps": K, "latency_ms_p50": X, "latency_ms_p99": Y}
  (gaps = lost media: subgroup streams reset (by the relay, e.g. a late group dropped, or upstream)
  + missing group ids between received groups + missing object ids inside groups; stderr says
  which), and one row per gap, a reset as it happens, the others before the summary:
  {"track": T, "group": G, "subgroup": S, "gap": "reset", "code": C}
  {"track": T, "group": G, "gap": "missing"}
  {"track": T, "group": G, "gap": "objects", "missing": N}

exit status (the rule: 0 means media arrived for all of --duration, or, without it, until
every track ended; a broadcast that is over earlier, however it says so, is 5; gaps are reported,
not an error):
  0  data received for the whole duration (or until the tracks ended, without --duration, or Ctrl-C)
  1  the --output file could not be written
  2  bad command line (a bad --fingerprint, --duration, URL, or an --output extension other than
     .mp4, .m4v, .mov or .mkv)
  3  cannot reach the relay, its TLS certificate is untrusted or not the --fingerprint one, no answer
     from it, or it went away and did not come back within 30 s (a lost session is resumed:
     GOAWAY, a restart or a silent relay lead to reconnecting with backoff and subscribing again)
  4  unknown namespace or track (the subscription was refused)
  5  no or insufficient data: nothing received, a track ended (PUBLISH_DONE) or the catalog said the
     broadcast is complete before --duration was over, a media track stalled, or no video key
     frame to start the recording
  130  interrupted before the subscriptions were set up

--output (MP4, or Matroska for .mkv) starts the file at a key frame: a recorded video track
also gets a joining FETCH of its current group, and a recorded audio track of its last groups,
so the recording begins at once with both; those objects are older than the live ones (up to
one GOP), and their latency_ms says so.  Audio lost in a gap is filled with silence, so audio
and video stay in step after it.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-view", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="relay URL: moqt://host:port/path (raw QUIC) or https://host:port/path (WebTransport)")
    p.add_argument("--namespace", required=True, help="track namespace, e.g. live/demo")
    p.add_argument("--track", metavar="video|audio|catalog|all|NAME",
                   help="what to subscribe to (default: the media tracks the catalog lists, else video)")
    p.add_argument("--duration", type=float, metavar="SEC",
                   help="stop after SEC seconds (default: until the tracks end or Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print one JSON line per object and a summary line")
    p.add_argument("--output", metavar="FILE.mp4",
                   help="record the received audio/video into an MP4 (or .mkv: Matroska) file (no re-encoding; "
                        "starts at a key frame)")
    add_tls_client_options(p)
    add_token_option(p)
    add_logging_options(p)
    p.set_defaults(log_level="warning")
    return p


def media_info(kind: str, entry: CatalogTrack | None) -> MediaInfo:
    if entry is None:
        return MediaInfo(kind)
    channels = entry.channel_config
    return MediaInfo(kind, entry.codec, entry.width, entry.height, entry.framerate, entry.samplerate,
                     int(channels) if channels and channels.isdigit() else None)


def err(msg: str) -> None:
    print(f"moq-view: {msg}", file=sys.stderr, flush=True)


class Output:
    """Where received objects go: JSON lines on stdout, the MP4 writer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = args.json
        self.writer = Mp4Writer(args.output) if args.output else None
        self.broken = False

    def on_object(self, rx: Received) -> None:
        if self.json and not self.broken:
            try:
                sys.stdout.write(json.dumps(rx.json()) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                self.broken = True

    def on_gap(self, row: dict) -> None:
        if self.json and not self.broken:
            try:
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                self.broken = True

    def on_media(self, rx: Received) -> None:
        if self.writer is not None:
            self.writer.add(rx.track, rx.payload, rx.props, rx.arrival_us)

    def on_track(self, name: str, kind: str, entry: CatalogTrack | None) -> None:
        if self.writer is not None:
            self.writer.expect(name, media_info(kind, entry))

    def on_track_failed(self, name: str) -> None:
        if self.writer is not None:
            self.writer.forget(name)

    def summary(self, args: argparse.Namespace, result: ViewResult) -> None:
        if self.broken:
            return
        with contextlib.suppress(BrokenPipeError):
            if self.json:
                for t in result.stats.tracks.values():
                    for row in t.gap_rows():
                        print(json.dumps(row))
                print(json.dumps(result.stats.summary()), flush=True)
                return
            total = sum(t.bytes for t in result.stats.tracks.values())
            print(f"{args.namespace} from {args.url}: {result.elapsed:.1f} s, {result.stats.objects} objects, "
                  f"{format_bitrate(total * 8 / result.elapsed if result.elapsed > 0 else None)}")
            for row in result.stats.table(result.elapsed):
                print("  " + row)
            if self.writer is not None and self.writer.written:
                print(f"recorded {self.writer.report()}")
            sys.stdout.flush()


async def view(args: argparse.Namespace) -> int:
    if args.output and (problem := Mp4Writer.check_path(args.output)):
        err(f"--output: {problem}")
        return EXIT_OUTPUT
    out = Output(args)
    try:
        conn = await connect(args.url, fingerprint=args.fingerprint, insecure=args.insecure, token=args.token)
    except ViewError as exc:
        err(exc.message)
        return exc.code
    viewer = Viewer(conn, args.namespace, args.track or AUTO, join_video=out.writer is not None,
                    on_object=out.on_object, on_media=out.on_media, on_track=out.on_track,
                    on_track_failed=out.on_track_failed, on_warning=lambda m: err(f"warning: {m}"), on_gap=out.on_gap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
    result: ViewResult | None = None
    try:
        starting = asyncio.create_task(viewer.start())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ViewError):
                await starting
            err("interrupted")
            return EXIT_INTERRUPTED
        starting.result()  # raises ViewError
        if viewer.chosen:
            err(f"tracks: {', '.join(viewer.chosen)} (from the catalog; choose with --track)")
        result = await viewer.run(args.duration, stop)
        deadline = None if args.duration is None else viewer.t0 + args.duration
        while viewer.lost is not None and not stop.is_set():  # the relay restarted or vanished: go back
            if not await reconnect(viewer, args.url, stop, deadline, err, fingerprint=args.fingerprint,
                                   insecure=args.insecure, token=args.token):
                break
            result = await viewer.run(args.duration, stop)
    except ViewError as exc:
        err(exc.message)
        return exc.code
    finally:
        await viewer.close()
        if out.writer is not None:
            out.writer.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
    out.summary(args, result)
    for t in result.stats.tracks.values():
        if (gaps := t.describe_gaps()) is not None:
            err(f"warning: {gaps}")
    code = EXIT_OK
    for problem in result.problems():
        err(problem)
        code = EXIT_NO_DATA
    w = out.writer
    if w is not None:
        for warning in w.warnings:
            err(f"warning: {args.output}: {warning}")
        if w.error is not None:
            err(w.error)
            code = code or EXIT_OUTPUT
        elif w.written and args.json:
            err(f"recorded {w.report()}")
        elif not w.written:
            err(f"nothing recorded in {args.output}: no media track with a key frame / decodable data")
            code = code or EXIT_NO_DATA
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    try:
        parse_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    try:  # one line, like moq-publish
        if args.fingerprint:
            normalize_fingerprint(args.fingerprint)
        if args.output and Mp4Writer.container_format(args.output) is None:
            raise ValueError(f"--output {args.output}: unsupported extension; use .mp4, .m4v, .mov or .mkv")
    except ValueError as exc:
        err(f"--fingerprint: {exc}" if args.fingerprint and "fingerprint" in str(exc) else str(exc))
        return EXIT_USAGE
    configure_logging(args.log_format, args.log_level)
    try:
        return run(view(args))
    except KeyboardInterrupt:  # before the signal handlers are in place
        err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
