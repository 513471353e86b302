"""One load run: a relay process, a moq-rs publisher, N moq-rs subscriptions over several processes.

The measurement window is a range of global object sequence numbers [s0, s1), fixed before the
run from the schedule (object k is sent at t0 + k/rate): s0 is the first object of the first group
that starts after the warm-up, s1 the first of the first group after the measuring time, so a
subscriber that joined mid-group is never charged for the objects before its join.  (For groups
longer than a quarter of the measuring time, as in moq-bench S2, the window edges are objects, not
group starts; every subscription is made before the publisher starts, so there is no mid-group join.)
Objects lost = expected - received inside the window; an object arriving more than TAIL seconds after
the window closes counts as lost.  CPU figures come from /proc over the same span of time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from .procs import PYTHON, BenchError, Procs, Relay, cpu_seconds, peak_rss_mb, rss_mb

TAIL = 1.0
#: our relay's /metrics counters reported as rates over the window (objects_in shows a starved ingest)
RELAY_RATES = ("udp_datagrams_sent", "udp_datagrams_received", "udp_send_calls", "objects_in", "objects_out",
               "dropped_groups")
#: A moq-rs subscriber costs 50-100 us of CPU per received frame at a steady 1000 B flow through its
#: public API (measured here: about 30 us in the Python side of its bindings, one uniffi future per
#: frame, the rest in its Rust threads), and several times that while a relay delivers groups late.
#: sub.py's fast reader (loadgen/fastread.py) lowers that to about 35-40 us for the subscriptions that
#: are not latency probes.  A process's Python thread is one core at most, so no process gets more
#: than FRAMES_PER_PROC frames/s or SUBS_PER_PROC connections.  Fewer, fuller processes cost less per
#: frame here than more of them (each has its own Rust runtime threads; at N=50 x 625 under load:
#: 5 processes ~120 us/frame, 2 processes ~46 us/frame), so the fast reader's processes take 16k/s.
FRAMES_PER_PROC = int(os.environ.get("BENCH_FRAMES_PER_PROC", "16000"))
SUBS_PER_PROC = 50
#: subscriptions (spread over the processes) that read each frame on arrival and give the latency
#: figures; the others count objects from buffers read every BATCH_MS (their latency is not reported)
PROBES = 8
BATCH_MS = 50
MAX_PROCS = 8
PLACE_TRIES = 12  # publisher connections until it lands on a worker whose namespaces reach all workers


@dataclass
class Spec:
    scenario: str
    n: int
    rate: float  # objects/s offered by the publisher
    size: int = 1000
    per_group: int = 30
    first_size: int = 0  # first object of each group (0: size)
    datagram: bool = False
    warmup: float = 2.0
    measure: float = 6.0
    workers: int | None = None  # our relay's --workers (None: flag not passed)
    publisher: str = "moq-rs"  # or "ours" (bench/ourpub.py, our library)
    stalled: int = 0  # extra subscriptions in one process SIGSTOPped for the whole run (not counted)
    #: (stopped s, running s): SIGCONT the stalled process for a moment now and then, so that its QUIC
    #: connection outlives the idle timeout while it stays stalled; None: stopped throughout
    stall_cycle: tuple[float, float] | None = None
    sample_s: float = 0.0  # sample the relay's RSS this often (0: never)

    @property
    def label(self) -> str:
        w = f" workers={self.workers}" if self.workers else ""
        p = " (our publisher)" if self.publisher == "ours" else ""
        how = "stalled" if self.stall_cycle else "stopped"
        st = f" + {self.stalled} {how}, {self.warmup + self.measure + TAIL:g} s" if self.stalled else ""
        return f"N={self.n} x {self.rate:g}/s{w}{p}{st}"

    def window(self) -> tuple[int, int]:
        def edge(t: float) -> int:
            k = math.ceil(t * self.rate)
            if self.per_group / self.rate <= self.measure / 4:
                k = math.ceil(k / self.per_group) * self.per_group
            return k

        return edge(self.warmup), edge(self.warmup + self.measure)

    def object_bytes(self, s0: int, s1: int) -> int:
        first = self.first_size or self.size
        firsts = sum(1 for k in range(s0, s1) if k % self.per_group == 0)
        return firsts * first + (s1 - s0 - firsts) * self.size


@dataclass
class Result:
    scenario: str
    relay: str
    protocol: str
    load: str
    n: int
    offered_objs: float = 0.0  # objects/s offered to all subscribers together
    delivered_objs: float = 0.0
    delivered_frac: float = 0.0
    mbits: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    lost: int = 0
    relay_cpu_pct: float = 0.0
    cpu_us_per_obj: float | None = None
    relay_rss_mb: float = 0.0
    relay_pkts: float | None = None  # packets/s out of the relay (relay /metrics, else subscribers' QUIC stats)
    pkts_source: str = ""
    clients_cpu_pct: float = 0.0  # publisher + subscriber processes together, % of one core
    client_max_pct: float = 0.0  # the busiest client process
    client_procs: int = 0
    udp_drops: int = 0  # system-wide UDP RcvbufErrors during the window (any process on the machine)
    error: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def layout(n: int, rate: float) -> list[int]:
    """Subscriptions per subscriber process."""
    procs = max(math.ceil(n / SUBS_PER_PROC), math.ceil(n * rate / FRAMES_PER_PROC), 1)
    procs = min(procs, n, MAX_PROCS) if n <= SUBS_PER_PROC * MAX_PROCS else math.ceil(n / SUBS_PER_PROC)
    return spread(n, procs)


def spread(n: int, parts: int) -> list[int]:
    """n items over `parts` as evenly as possible, the larger shares first."""
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def percentile(hist: Counter[int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for us in sorted(hist):
        seen += hist[us]
        if seen > rank:
            return us / 1000
    return max(hist) / 1000


async def sleep_until_ns(t_ns: int) -> None:
    await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / 1e9))


StartRelay = Callable[[Procs], Awaitable[Relay]]


async def run_load(spec: Spec, start_relay: StartRelay, relay_name: str, protocol: str) -> Result:
    res = Result(spec.scenario, relay_name, protocol, spec.label, spec.n)
    procs = Procs()
    try:
        await _run(spec, start_relay, procs, res)
    except (BenchError, OSError, ValueError, KeyError) as exc:
        msg = str(exc)
        res.error = msg if len(msg) <= 700 else msg[:200] + " ... " + msg[-500:]
    finally:
        await procs.aclose()
    return res


async def _run(spec: Spec, start_relay: StartRelay, procs: Procs, res: Result) -> None:
    relay = await start_relay(procs)
    res.protocol = relay.protocol
    scheme = "moqt" if relay.kind == "ours" else os.environ.get("BENCH_MOQRS_SCHEME", "https")
    s0, s1 = spec.window()
    window_s = (s1 - s0) / spec.rate
    common = [relay.url(scheme), relay.fingerprint, "--broadcast", "bench/load", "--track", "data"]
    total = spec.warmup + spec.measure + TAIL
    pub_args = [*common, "--rate", str(spec.rate), "--size", str(spec.size), "--first-size", str(spec.first_size),
                "--per-group", str(spec.per_group), "--max-seconds", str(total + 10),
                *(["--datagram"] if spec.datagram else [])]
    tries = 0
    while True:
        tries += 1
        if spec.publisher == "ours":
            pub = await procs.start("publisher (ours)", PYTHON, "-m", "bench.ourpub", *pub_args)
        else:
            pub = await procs.loadgen("publisher", "pub.py", *pub_args)
        await pub.json(30, "ready")
        if (spec.workers or 1) < 2 or await announced_everywhere(relay, spec.workers):
            break
        if tries == PLACE_TRIES:
            raise BenchError(f"publisher: namespace not seen by all {spec.workers} workers after {tries} tries")
        await retire(relay, pub)  # it landed on the hub: a new connection (new source port) hashes anew
    res.extra["publisher_tries"] = tries
    counts = layout(spec.n, spec.rate)
    res.client_procs = len(counts) + 1
    probes = spread(min(PROBES, spec.n), len(counts))
    subs = [await procs.loadgen(f"subscribers[{i}]", "sub.py", *common, "--count", str(c), "--s0", str(s0),
                                "--s1", str(s1), *(["--datagram"] if spec.datagram else []),
                                "--probes", str(p), "--batch-ms", str(BATCH_MS),
                                *os.environ.get("BENCH_SUB_ARGS", "").split())
            for i, (c, p) in enumerate(zip(counts, probes))]
    for s, c in zip(subs, counts):
        await s.json(20 + c * 0.3, "ready")
    stalled = cycler = None
    if spec.stalled:  # subscribed like the others, then SIGSTOPped before the first object: it never reads
        stalled = await procs.loadgen("stalled subscriber", "sub.py", *common, "--count", str(spec.stalled),
                                      "--probes", "0")
        await stalled.json(20 + spec.stalled * 0.3, "ready")
        os.kill(stalled.pid, signal.SIGSTOP)
        if spec.stall_cycle:
            cycler = asyncio.create_task(cycle_stop(stalled.pid, *spec.stall_cycle))
    clients = [pub, *subs]
    pub.send("go")
    t0 = (await pub.json(10, "t0"))["t0"]
    sampler = asyncio.create_task(sample_relay(relay, t0, spec.sample_s, res)) if spec.sample_s else None
    await sleep_until_ns(t0 + int(spec.warmup * 1e9))
    for s in subs:
        s.send("mark")
    a = _sample(relay, clients, await relay.metrics())
    await sleep_until_ns(t0 + int((spec.warmup + window_s) * 1e9))
    for s in subs:
        s.send("mark")
    b = _sample(relay, clients, await relay.metrics())
    res.relay_rss_mb = round(peak_rss_mb(relay.pids()), 1)
    await sleep_until_ns(t0 + int((spec.warmup + window_s + TAIL) * 1e9))
    if sampler is not None:
        sampler.cancel()
    for s in subs:
        s.send("stop")
    reports = [await s.json(20, "received") for s in subs]
    if cycler is not None:
        cycler.cancel()
    if stalled is not None:
        stalled.kill()  # SIGKILL ends a stopped process too
    pub.send("stop")
    pub_report = await pub.json(10, "sent")
    _fill(res, spec, s0, s1, a, b, reports, pub_report)


async def cycle_stop(pid: int, stopped: float, running: float) -> None:
    """SIGSTOP pid, and SIGCONT it for `running` seconds after every `stopped` seconds."""
    with contextlib.suppress(ProcessLookupError):
        while True:
            await asyncio.sleep(stopped)
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(running)
            os.kill(pid, signal.SIGSTOP)


async def sample_relay(relay: Relay, t0: int, every: float, res: Result) -> None:
    """Every `every` seconds from t0: [seconds since t0, relay RSS MiB (VmRSS, all its processes),
    sessions open, cache MB (our relay's /metrics, else None)] into res.extra["rss_samples"]."""
    samples = res.extra.setdefault("rss_samples", [])
    k = 0
    while True:
        await sleep_until_ns(t0 + int(k * every * 1e9))
        m = await relay.metrics() or {}
        samples.append([round((time.monotonic_ns() - t0) / 1e9, 1), round(rss_mb(relay.pids()), 1),
                        m.get("sessions"), round(m["cache_bytes"] / 1e6, 1) if "cache_bytes" in m else None])
        k += 1


async def announced_everywhere(relay: Relay, workers: int, wait: float = 3.0) -> bool:
    """Does every worker of our relay know the publisher's namespace (moq_relay_namespaces >= 1)?

    Why: moq-rs subscribers find a broadcast by its announcement (SUBSCRIBE_NAMESPACE), and a worker
    learns of namespaces only from its own sessions and its children: a worker other than the hub
    (worker 0) never hears of a namespace published on another worker, so its moq-rs subscribers wait
    forever.  With 2 workers, a publisher on worker 1 is announced to the hub too, so the harness
    reconnects the publisher until it lands there (the kernel's 4-tuple hash picks the worker)."""
    end = time.monotonic() + wait
    while True:
        per = await relay.metrics(per_worker=True) or {}
        seen = [w for w, m in per.items() if w != "" and m.get("namespaces", 0) >= 1]
        if len(seen) >= workers:
            return True
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.1)


async def retire(relay: Relay, pub, wait: float = 5.0) -> None:
    """Close a publisher cleanly and wait until no worker knows its namespace any more: a killed
    one would stay announced until its QUIC idle timeout, and subscribers would be routed to it."""
    pub.send("stop")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pub.proc.wait(), wait)
    pub.kill()
    end = time.monotonic() + wait
    while time.monotonic() < end:
        per = await relay.metrics(per_worker=True) or {}
        if not any(m.get("namespaces", 0) for w, m in per.items() if w):
            return
        await asyncio.sleep(0.1)


def udp_errors() -> tuple[int, int]:
    """System-wide UDP (InErrors, RcvbufErrors) from /proc/net/snmp: packets the kernel dropped
    because a receiver did not read its socket fast enough (a saturated client shows up here)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [ln.split() for ln in f if ln.startswith("Udp:")]
        stats = dict(zip(rows[0][1:], map(int, rows[1][1:])))
        return stats.get("InErrors", 0), stats.get("RcvbufErrors", 0)
    except (OSError, IndexError, ValueError):
        return 0, 0


def _sample(relay: Relay, clients: list, metrics: dict[str, float] | None) -> dict:
    return {"t": time.monotonic(), "relay": cpu_seconds(relay.pids()), "metrics": metrics or {},
            "clients": [cpu_seconds([c.pid]) for c in clients], "udp": udp_errors()}


def _fill(res: Result, spec: Spec, s0: int, s1: int, a: dict, b: dict, reports: list[dict], pub: dict) -> None:
    dt = b["t"] - a["t"]
    expected = (s1 - s0) * spec.n
    received = sum(r["received"] for r in reports)
    window_s = (s1 - s0) / spec.rate
    hist: Counter[int] = Counter()
    for r in reports:
        hist.update({int(k): v for k, v in r["hist"].items()})
    res.offered_objs = round(spec.n * spec.rate, 1)
    res.delivered_objs = round(received / window_s, 1)
    res.delivered_frac = round(received / expected, 4) if expected else 0.0
    res.mbits = round(spec.object_bytes(s0, s1) * (received / max(1, expected)) * spec.n * 8 / window_s / 1e6, 2)
    res.p50_ms, res.p99_ms = percentile(hist, 0.50), percentile(hist, 0.99)
    res.max_ms = max((r["max_us"] for r in reports), default=0) / 1000 if hist else None
    res.lost = expected - received
    cpu = b["relay"] - a["relay"]
    res.relay_cpu_pct = round(100 * cpu / dt, 1)
    res.cpu_us_per_obj = round(cpu / (received * dt / window_s) * 1e6, 1) if received else None
    per_client = [(y - x) / dt * 100 for x, y in zip(a["clients"], b["clients"])]
    res.clients_cpu_pct = round(sum(per_client), 1)
    res.client_max_pct = round(max(per_client), 1)
    rates = {k: round((b["metrics"][k] - v) / dt, 1) for k, v in a["metrics"].items()
             if k in b["metrics"] and k in RELAY_RATES}
    if "udp_datagrams_sent" in rates:
        res.relay_pkts, res.pkts_source = round(rates["udp_datagrams_sent"]), "relay /metrics"
    else:
        marks = [r.get("packets") or [] for r in reports]
        if all(len(m) == 2 and None not in m for m in marks):
            res.relay_pkts = round(sum(m[1] - m[0] for m in marks) / dt)
            res.pkts_source = "subscribers' QUIC stats"
    res.udp_drops = b["udp"][1] - a["udp"][1]
    res.extra = {**res.extra, "relay_per_s": rates, "udp_in_errors": b["udp"][0] - a["udp"][0],
                 "expected": expected, "received": received, "window": [s0, s1], "published": pub.get("sent"),
                 "sub_reader": reports[0].get("reader"), "probes": sum(r.get("probes", 0) for r in reports),
                 "publisher_behind_ms": pub.get("behind_ms"), "per_sub_min": min(r["per_sub_min"] for r in reports),
                 "subs_py_cpu_s": round(sum(r.get("py_cpu_s", 0) for r in reports), 2),
                 "subs_cpu_s": round(sum(r.get("cpu_s", 0) for r in reports), 2),
                 "subs_us_per_frame": round(sum(r.get("cpu_s", 0) for r in reports) * 1e6
                                            / max(1, sum(r["total"] for r in reports)), 1),
                 "frames_total": sum(r["total"] for r in reports),
                 "missing_sample": sorted({k for r in reports for k in r.get("missing", [])})[:20]}
