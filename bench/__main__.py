"""`make bench` / `make bench-quick`: run the scenarios of issue 9, print a markdown table, write
JSON (and a PNG chart) under bench/results/.

    python -m bench            # everything, both relays, and a 5-minute soak of our relay: < 10 minutes
    python -m bench --quick    # fan-out N=10 and N=50 against our relay only, < 1 minute
    python -m bench --soak 300 # only the soak (RSS with a stalled subscriber), for each of --relays

Figures are reported, never asserted.  The machine is shared, so they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import signal
import sys
import time

from moq.transport.loop import run

from . import report
from .load import Result, Spec, run_load
from .procs import kill_all, start_moqrs_relay, start_our_relay
from .scenarios import ceiling, glass_to_glass, ramp, soak

RUN_SECONDS = 10  # a load run with its start-up and teardown, for the time budget
SOAK_SLACK = 12  # the soak's start-up and teardown
#: where each moq-bench ramp starts (it goes up while clean, down if the first step loses objects):
#: both relays were clean at 200 and lost objects at 400 on the 2-core machine, for S1 and S2
RAMP_FIRST = {"S1": 200, "S2": 200}


def ours(workers: int | None = None):
    flags = ("--workers", str(workers)) if workers else ()
    return lambda procs: start_our_relay(procs, *flags)


RELAYS = {"ours": (ours(), "IETF moqt-18"), "moq-rs": (start_moqrs_relay, "moq-lite")}


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.deadline = time.monotonic() + a.budget
        self.machine = report.machine()  # with the load average before the run
        self.rows: list[dict] = []
        self.ceiling: dict | None = None
        self.g2g: list[dict] = []
        self.ramps: list[dict] = []
        self.soaks: list[dict] = []
        #: the scenarios before the soak end by here, so that the soak always has its time
        self.soak_seconds = 0.0 if a.quick else (a.soak or a.soak_seconds)
        self.deadline_before_soak = self.deadline - (self.soak_seconds + SOAK_SLACK if self.soak_seconds else 0)

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    async def load(self, scenario: str, relay: str, n: int, rate: float, workers: int | None = None,
                   publisher: str = "moq-rs") -> None:
        spec = Spec(scenario, n, rate, warmup=self.a.warmup, measure=self.a.measure, workers=workers,
                    publisher=publisher)
        start, protocol = (ours(workers), "IETF moqt-18") if workers else RELAYS[relay]
        if time.monotonic() + RUN_SECONDS > self.deadline_before_soak:
            r = Result(scenario, relay, protocol, spec.label, n, error="skipped: time budget")
        else:
            self.log(f"{scenario}: {relay} {spec.label}")
            r = await run_load(spec, start, relay, protocol)
            if r.error:
                self.log(f"  error: {r.error[:300]}")
            else:
                self.log(f"  {100 * r.delivered_frac:.1f}% delivered, p99 {r.p99_ms} ms, relay CPU "
                         f"{r.relay_cpu_pct}%, clients CPU {r.clients_cpu_pct}%")
        self.rows.append(r.as_dict())

    async def quick(self) -> None:
        for n in (10, 50):
            await self.load("fan-out", "ours", n, 625)

    async def full(self) -> None:
        relays = self.a.relays
        self.log("ceiling: aioquic alone")
        self.ceiling = await ceiling(measure=3.0)
        for n in (1, 10, 50, 100):
            for relay in relays:
                await self.load("fan-out", relay, n, 625)
        for relay in relays:
            await self.load("N=100 x 100", relay, 100, 100)
        for n, rate in ((1, 10000), (1, 20000), (10, 2500)):
            for relay in relays:
                await self.load("high rate", relay, n, rate)
        if "ours" in relays:  # is our relay's ingest limited by the moq-rs draft-18 publisher? (relay in obj/s)
            await self.load("high rate", "ours", 1, 10000, publisher="ours")
        if "ours" in relays:
            for w in self.a.workers:
                if w == 1 and (same := self.fanout_row(50)):  # the same load and relay: not run twice
                    self.rows.append({**same, "scenario": "workers", "load": same["load"] + " workers=1",
                                      "extra": {**same["extra"], "note": "the fan-out N=50 row (--workers 1 is "
                                                                        "the default)"}})
                    continue
                await self.load("workers", "ours", 50, 625, workers=w)
            for hops in (1, 3):
                if time.monotonic() + 25 < self.deadline_before_soak:
                    self.log(f"glass-to-glass: {hops} relay(s)")
                    self.g2g.append(await glass_to_glass(hops, seconds=5.0, warmup=1.5))
        for profile, counts in (("S1", self.a.s1), ("S2", self.a.s2)):
            for relay in relays:
                start, protocol = RELAYS[relay]
                self.log(f"moq-bench {profile} ramp: {relay} {counts}")
                results, summary = await ramp(profile, counts, start, relay, protocol, warmup=1.0, measure=3.0,
                                              deadline=self.deadline_before_soak - RUN_SECONDS,
                                              first=RAMP_FIRST[profile])
                self.rows += [r.as_dict() for r in results]
                self.ramps.append(summary)
        if self.soak_seconds and "ours" in relays:  # the moq-rs relay's soak: --soak SECONDS alone
            await self.soak(["ours"])

    def fanout_row(self, n: int) -> dict | None:
        return next((r for r in self.rows if r["scenario"] == "fan-out" and r["relay"] == "ours" and r["n"] == n
                     and not r.get("error")), None)

    async def soak(self, relays: list[str]) -> None:
        for relay in relays:
            start, protocol = RELAYS[relay]
            self.log(f"soak: {relay}, {self.soak_seconds:g} s, one subscriber SIGSTOPped "
                     + ("throughout" if self.a.soak_stall == "stop" else "(but 0.3 s every 7 s)"))
            r, summary = await soak(self.soak_seconds, start, relay, protocol, stall=self.a.soak_stall)
            self.rows.append(r.as_dict())
            self.soaks.append(summary)
            self.log(f"  RSS {summary['rss_start_mb']} -> {summary['rss_end_mb']} MB (peak {summary['peak_rss_mb']}), "
                     f"slope {summary['slope_mb_per_min']} MB/min" + (f"; error: {r.error[:300]}" if r.error else ""))

    def output(self, mode: str, started: float) -> None:
        doc = {"mode": mode, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "seconds": round(time.time() - started, 1), "machine": {**self.machine, "loadavg_end": report.loadavg()},
               "settings": {"warmup_s": self.a.warmup, "measure_s": self.a.measure},
               "load": self.rows, "ceiling": self.ceiling, "glass_to_glass": self.g2g, "moq_bench": self.ramps,
               "soak": self.soaks}
        path, png = report.write(doc, mode)
        m = doc["machine"]
        print(f"\n## moq relay benchmark ({mode}, {doc['started_utc']}, {m['cpus']} CPUs {m['cpu_model']}, "
              f"{doc['seconds']:.0f} s; load average {m['loadavg_start'][0]:.1f} before, {m['loadavg_end'][1]:.1f} "
              "over the last 5 minutes)\n")
        print(report.load_table(self.rows))
        extra = report.other_tables(self.ceiling, self.g2g, self.ramps, self.soaks)
        if extra:
            print("\n" + extra)
        if mode == "full":
            print(report.targets(self.rows, self.ceiling, self.g2g, self.ramps, self.soaks))
        print(f"\nJSON: {path}" + (f"\nchart: {png}" if png else "\nchart: not drawn (no load figures, or matplotlib missing)"))


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fan-out N=10 and N=50, our relay only (< 1 minute)")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="run only the soak (N=10 x 625 with a SIGSTOPped subscriber), this long, for each of --relays")
    p.add_argument("--soak-seconds", type=float, default=300.0,
                   help="the soak's length in the full run (0: no soak)")
    p.add_argument("--soak-stall", choices=("cycle", "stop"), default="cycle",
                   help="the stalled subscriber: cycle = SIGSTOPped but for 0.3 s every 7 s, so it stays connected; "
                        "stop = SIGSTOPped throughout (its connection dies at the QUIC idle timeout)")
    p.add_argument("--warmup", type=float, default=1.5, help="seconds before each measurement window")
    p.add_argument("--measure", type=float, default=3.5, help="seconds in each measurement window")
    p.add_argument("--workers", type=ints, default=[1, 2], help="our relay's --workers values for N=50 x 625")
    p.add_argument("--relays", type=lambda s: s.split(","), default=["ours", "moq-rs"])
    p.add_argument("--s1", type=ints, default=[100, 200, 400, 800], help="moq-bench S1 subscriber counts")
    p.add_argument("--s2", type=ints, default=[50, 100, 200, 400], help="moq-bench S2 subscriber counts")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run (default 590, quick 55, --soak: its length + 60 per relay)")
    a = p.parse_args()
    a.budget = a.budget or (55.0 if a.quick else (a.soak + 60) * len(a.relays) if a.soak else 590.0)
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # atexit kills the children
    bench, started = Bench(a), time.time()
    mode = "quick" if a.quick else "soak" if a.soak else "full"
    try:
        run(bench.quick() if a.quick else bench.soak(a.relays) if a.soak else bench.full())
    except KeyboardInterrupt:
        kill_all()
        bench.log("interrupted: writing what was measured")
    finally:
        kill_all()
        with contextlib.suppress(Exception):
            asyncio.set_event_loop(None)
    bench.output(mode, started)


if __name__ == "__main__":
    main()
