"""The scenarios of issue 9 beyond plain load runs: the aioquic ceiling, glass-to-glass through
1 and 3 relays, and the moq-bench profile ramps.  Each returns plain dicts for the report."""

from __future__ import annotations

import asyncio
import time

from .load import TAIL, Result, Spec, StartRelay, run_load
from .procs import PYTHON, BenchError, Procs, cpu_seconds, start_our_relay

# draft-evens-moq-bench-00 profiles
S1 = {"rate": 50.0, "size": 120, "per_group": 1, "datagram": True}  # audio: a 120 B datagram every 20 ms
S2 = {"rate": 30.0, "size": 2666, "first_size": 21333, "per_group": 150}  # audio+360p video on streams


async def ceiling(warmup: float = 1.0, measure: float = 5.0) -> dict:
    """aioquic alone: one bulk stream, sender and receiver processes (bench/ceiling.py)."""
    procs = Procs()
    out: dict = {"scenario": "ceiling", "relay": "aioquic alone", "protocol": "raw QUIC, one stream"}
    try:
        recv = await procs.start("ceiling receiver", PYTHON, "-m", "bench.ceiling", "recv")
        info = await recv.json(30, "port")
        recv.drain_stdout()
        send = await procs.start("ceiling sender", PYTHON, "-m", "bench.ceiling", "send",
                                 f"moqt://127.0.0.1:{info['port']}/", info["fingerprint"],
                                 "--warmup", str(warmup), "--measure", str(measure))
        r0 = cpu_seconds([recv.pid])
        rep = await send.json(warmup + measure + 30, "bytes")
        r1 = cpu_seconds([recv.pid])
        secs = rep["seconds"]
        out.update(mbytes_s=round(rep["bytes"] / secs / 1e6, 1), sender_cpu_pct=round(100 * rep["cpu_s"] / secs, 1),
                   receiver_cpu_pct=round(100 * (r1 - r0) / (warmup + measure), 1))
        if rep["datagrams"]:
            out.update(pkts=round(rep["datagrams"] / secs), pkts_source="sender STATS.datagrams_sent",
                       us_per_pkt=round(rep["cpu_s"] / rep["datagrams"] * 1e6, 1))
        else:
            out.update(pkts=round(rep["bytes"] / 1452 / secs), pkts_source="estimated: bytes / 1452 "
                       "(STATS.datagrams_sent read 0)")
    except (BenchError, OSError, KeyError) as exc:
        out["error"] = str(exc)[-700:]
    finally:
        await procs.aclose()
    return out


async def glass_to_glass(hops: int, seconds: float = 6.0, warmup: float = 2.0) -> dict:
    """moq-publish --input testsrc -> 1 relay, or edge -> origin -> edge -> moq-view --json."""
    procs = Procs()
    out: dict = {"scenario": "glass-to-glass", "relay": "ours", "protocol": "IETF moqt-18",
                 "load": f"{hops} relay{'s' if hops > 1 else ''}, testsrc 640x360 30 fps + audio"}
    try:
        relays = []
        if hops == 1:
            relays.append(await start_our_relay(procs))
            first = last = relays[0]
        else:
            origin = await start_our_relay(procs, name="origin")
            up = ("--upstream", origin.url(), "--upstream-fingerprint", origin.fingerprint)
            first = await start_our_relay(procs, *up, name="edge A")
            last = await start_our_relay(procs, *up, name="edge B")
            relays += [origin, first, last]
        pub = await procs.start("moq-publish", PYTHON, "-m", "publisher", first.url(), "--namespace", "bench/g2g",
                                "--input", "testsrc", "--size", "640x360", "--fps", "30",
                                "--fingerprint", first.fingerprint, "--duration", str(warmup + seconds + 20),
                                "--log-level", "info", merge_stderr=True)
        end = time.monotonic() + 30
        while "connected" not in await pub.line(max(0.1, end - time.monotonic())):
            pass
        pub.drain_stdout()
        await asyncio.sleep(warmup)
        pids = [p for r in relays for p in r.pids()]
        c0, t0 = cpu_seconds(pids), time.monotonic()
        view = await procs.start("moq-view", PYTHON, "-m", "viewer", last.url(), "--namespace", "bench/g2g",
                                 "--track", "video", "--json", "--duration", str(seconds),
                                 "--fingerprint", last.fingerprint, "--log-level", "warning")
        summary = await view.json(seconds + 40, "summary")
        dt = time.monotonic() - t0
        out.update(p50_ms=summary.get("latency_ms_p50"), p99_ms=summary.get("latency_ms_p99"),
                   objects=summary.get("objects"), gaps=summary.get("gaps"),
                   relay_cpu_pct=round(100 * (cpu_seconds(pids) - c0) / dt, 1))
    except (BenchError, OSError, KeyError) as exc:
        out["error"] = str(exc)[-700:]
    finally:
        await procs.aclose()
    return out


async def ramp(profile: str, counts: list[int], start_relay: StartRelay, relay: str, protocol: str,
               warmup: float, measure: float, deadline: float, first: int | None = None) -> tuple[list[Result], dict]:
    """The largest subscriber count in `counts` with zero loss: the profile's figure for this relay.

    Starts at `first` (default: the smallest count) and goes up while a step is clean; if the first
    step loses objects it goes down instead.  Each figure is thus bracketed by the next count failing
    (or being the last), in fewer steps than a ramp from the bottom when `first` is a good guess."""
    params = S1 if profile == "S1" else S2
    counts = sorted(counts)
    results: list[Result] = []
    clean: dict[int, bool] = {}
    i = counts.index(first) if first in counts else 0
    stop = ""
    while 0 <= i < len(counts):
        if time.monotonic() > deadline:
            stop = "time budget"
            break
        n = counts[i]
        r = await run_load(Spec(f"moq-bench {profile}", n, warmup=warmup, measure=measure, **params),
                           start_relay, relay, protocol)
        results.append(r)
        clean[n] = not r.error and not r.lost
        if not clean[n]:
            stop = f"N={n}: error" if r.error else f"N={n}: {r.lost} lost"
        step = 1 if clean[n] else -1
        if (step > 0 and stop) or (step < 0 and any(clean.values())):
            break  # up after a failure below would retry; down after a clean step is done
        i += step
    best = max((n for n, ok in clean.items() if ok), default=0)
    if not stop and best == counts[-1]:
        stop = f"all counts up to {counts[-1]} clean"
    results.sort(key=lambda r: r.n)
    return results, {"scenario": f"moq-bench {profile}", "relay": relay, "protocol": results[0].protocol
                     if results else protocol, "zero_loss_max": best, "stopped": stop}


SOAK = {"n": 10, "rate": 625.0, "warmup": 30.0, "sample_s": 5.0}  # the soak's load and sampling
#: The stalled subscriber runs for 0.3 s every 7 s and is stopped otherwise: stopped throughout, its
#: QUIC connection dies at the idle timeout (10 s with moq-rs) and the relay rightly closes it, after
#: which no stalled subscriber is present.  Waking it briefly keeps it connected, and stalled 96% of
#: the time, for the whole run ("stop" is the stopped-throughout variant).
STALL_CYCLE = (7.0, 0.3)


async def soak(seconds: float, start_relay: StartRelay, relay: str, protocol: str,
               stall: str = "cycle") -> tuple[Result, dict]:
    """N=10 x 625 obj/s for `seconds` with one more subscriber SIGSTOPped (stall="cycle": but for 0.3 s
    every 7 s) for the whole run: is the relay's RSS flat?  RSS (VmRSS) is sampled every 5 s; delivery
    counts the other subscribers only."""
    warmup = min(SOAK["warmup"], seconds / 4)
    spec = Spec("soak", SOAK["n"], SOAK["rate"], warmup=warmup, measure=seconds - warmup - TAIL, stalled=1,
                sample_s=SOAK["sample_s"], stall_cycle=STALL_CYCLE if stall == "cycle" else None)
    r = await run_load(spec, start_relay, relay, protocol)
    out = {"scenario": "soak", "relay": relay, "protocol": r.protocol, "load": spec.label, "seconds": seconds,
           "warmup_s": warmup, "stall": stall, "delivered_frac": r.delivered_frac, "lost": r.lost, "p99_ms": r.p99_ms,
           "relay_cpu_pct": r.relay_cpu_pct, "peak_rss_mb": r.relay_rss_mb, "error": r.error,
           **rss_summary(r.extra.get("rss_samples", []), warmup)}
    return r, out


def rss_summary(samples: list[list], after: float) -> dict:
    """RSS at the first sample after warm-up, the largest and the last sample, the least-squares slope
    (MiB/min) of the samples after warm-up, and when the relay closed the stalled subscriber's session
    (the first sample with fewer sessions open than the first sample: the others stay connected)."""
    late = [(t, mb) for t, mb, *_ in samples if t >= after]
    out: dict = {"rss_start_mb": None, "rss_max_sample_mb": None, "rss_end_mb": None, "slope_mb_per_min": None,
                 "stalled_closed_s": None, "samples": samples}
    if late:
        out.update(rss_start_mb=late[0][1], rss_end_mb=late[-1][1], rss_max_sample_mb=max(mb for _, mb in late))
    if len(late) >= 3:
        n = len(late)
        mt = sum(t for t, _ in late) / n
        mm = sum(mb for _, mb in late) / n
        var = sum((t - mt) ** 2 for t, _ in late)
        if var > 0:
            out["slope_mb_per_min"] = round(60 * sum((t - mt) * (mb - mm) for t, mb in late) / var, 3)
    counts = [(s[0], s[2]) for s in samples if len(s) > 2 and s[2] is not None]
    if counts:
        out["stalled_closed_s"] = next((t for t, n in counts if n < counts[0][1]), None)
    return out
