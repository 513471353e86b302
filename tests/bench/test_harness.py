"""The benchmark harness's bookkeeping (bench/): measurement windows, client layout, percentiles,
/proc accounting and the report.  No load and no timing here: `make bench` runs the load."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections import Counter

from bench import report
from bench.load import FRAMES_PER_PROC, SUBS_PER_PROC, Result, Spec, layout, percentile, spread
from bench.loadgen.common import HEADER, bucket
from bench.loadgen.fastread import parse_frame
from bench.procs import INTEROP_PYTHON, LOADGEN, cpu_seconds, descendants, parse_metrics, peak_rss_mb, rss_mb
from bench.scenarios import rss_summary


def test_window_starts_and_ends_on_group_boundaries():
    spec = Spec("fan-out", 10, 625, per_group=30, warmup=2, measure=6)
    s0, s1 = spec.window()
    assert s0 % 30 == 0 and s1 % 30 == 0
    assert s0 >= 2 * 625 and s1 >= 8 * 625 and s1 - s0 >= 6 * 625 - 30
    assert spec.object_bytes(s0, s1) == (s1 - s0) * 1000


def test_long_groups_window_on_objects_and_count_first_objects():
    spec = Spec("moq-bench S2", 5, 30, size=2666, first_size=21333, per_group=150, warmup=1, measure=3)
    s0, s1 = spec.window()
    assert (s0, s1) == (30, 120)  # groups last 5 s: the window cannot wait for a group start
    spec = Spec("s", 1, 30, size=10, first_size=100, per_group=150, warmup=0, measure=10)
    assert spec.object_bytes(0, 300) == 2 * 100 + 298 * 10


def test_layout_spreads_subscriptions_over_processes():
    for n, rate in ((1, 625), (10, 625), (50, 625), (100, 100), (1, 20000), (800, 50)):
        counts = layout(n, rate)
        assert sum(counts) == n and min(counts) >= 1
        assert max(counts) - min(counts) <= 1
        assert max(counts) <= max(SUBS_PER_PROC, 1) or len(counts) == n
    assert len(layout(100, 625)) > len(layout(10, 625))
    assert layout(40, FRAMES_PER_PROC / 40 * 3) == [14, 13, 13]


def test_percentile_and_histogram_buckets():
    hist = Counter({bucket(us): 1 for us in range(1, 1001)})
    assert percentile(hist, 0.5) == 0.5 and percentile(hist, 0.99) == 0.99
    assert percentile(Counter(), 0.5) is None
    assert bucket(999) == 999 and bucket(12_345) == 12_300 and bucket(2_345_678) == 2_345_000


def test_payload_header_round_trips():
    payload = HEADER.pack(7, 3, 213, 123456789) + bytes(100)
    assert HEADER.unpack_from(payload) == (7, 3, 213, 123456789)


def test_proc_accounting_includes_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; sum(range(10**7)); time.sleep(30)"])
    try:
        me = descendants(os.getpid())
        assert os.getpid() in me and child.pid in me
        assert peak_rss_mb([child.pid]) > 1 and peak_rss_mb(me) > peak_rss_mb([os.getpid()])
        assert cpu_seconds(me) >= cpu_seconds([os.getpid()])
    finally:
        child.kill()
        child.wait()


def test_report_renders_results_errors_and_saturation():
    ok = Result("fan-out", "ours", "IETF moqt-18", "N=10 x 625/s", 10, offered_objs=6250, delivered_objs=6250,
                delivered_frac=1.0, mbits=50, p50_ms=1, p99_ms=5, max_ms=9, relay_cpu_pct=50, cpu_us_per_obj=80,
                relay_rss_mb=55, relay_pkts=6000, clients_cpu_pct=95, client_max_pct=40, client_procs=2,
                extra={"subs_us_per_frame": 38.4}).as_dict()
    bad = Result("workers", "ours", "IETF moqt-18", "N=50 x 625/s workers=2", 50,
                 error="relay exited (code 2)").as_dict()
    table = report.load_table([ok, bad])
    assert "6,250 (100.0%)" in table and "| 95 (40, 2; subs 38 µs/frame) ⚠ clients saturated |" in table
    assert "**error**: relay exited (code 2)" in table
    text = report.targets([ok, bad], {"pkts": 30000}, [], [])
    assert "N=50 x 625/s workers=2" in text and "not measured" in text and "20%" in text


def test_spread_puts_the_larger_shares_first():
    assert spread(8, 3) == [3, 3, 2] and spread(2, 4) == [1, 1, 0, 0] and spread(0, 2) == [0, 0]


def test_metrics_per_worker_and_summed():
    body = (
        "# HELP moq_relay_namespaces Namespaces.\n"
        'moq_relay_namespaces{worker="0"} 1.0\n'
        'moq_relay_namespaces{worker="1"} 0.0\n'
        'moq_relay_requests_refused_total{reason="not_found",worker="1"} 2.0\n'
        'moq_relay_requests_refused_total{reason="protocol",worker="1"} 3.0\n'
        "moq_relay_workers 2.0\n"
        "moq_relay_objects_in_total 7.0\n"
    )
    per = parse_metrics(body)
    assert per["0"] == {"namespaces": 1.0}
    assert per["1"] == {"namespaces": 0.0, "requests_refused": 5.0}
    assert per[""] == {"workers": 2.0, "objects_in": 7.0}


def test_fast_reader_parses_uniffi_option_frame():
    payload = HEADER.pack(1, 2, 33, 44) + bytes(972)
    buf = struct.pack(">bi", 1, len(payload)) + payload + struct.pack(">Q", 99)
    head, size = parse_frame(buf[:5 + HEADER.size])
    assert size == 1000 and HEADER.unpack_from(head) == (1, 2, 33, 44)
    assert parse_frame(b"\x00") is None and parse_frame(struct.pack(">bi", 0, 0)) is None
    head, size = parse_frame(struct.pack(">bi", 1, 3) + b"abc" + struct.pack(">Q", 5))
    assert (head, size) == (b"abc", 3)  # a payload shorter than the header: only its own bytes


def test_fast_reader_matches_the_pinned_moq_rs_bindings():
    """sub.py falls back to the public API (twice the CPU) if moq-rs's generated bindings change."""
    out = subprocess.run([INTEROP_PYTHON, "-c", "import fastread; print(fastread.available())"], cwd=LOADGEN,
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_rss_summary_slope_edges_and_stalled_close():
    samples = [[0.0, 50.0, 12], [5.0, 60.0, 12], [10.0, 60.0, 12], [15.0, 60.5, 11], [20.0, 61.0, 11],
               [25.0, 61.5, 11]]
    out = rss_summary(samples, after=10)
    assert (out["rss_start_mb"], out["rss_max_sample_mb"], out["rss_end_mb"]) == (60.0, 61.5, 61.5)
    assert out["slope_mb_per_min"] == 6.0  # 0.1 MB/s after warm-up; the warm-up's jump is not counted
    assert out["stalled_closed_s"] == 15.0
    flat = rss_summary([[t, 70.0, None] for t in range(0, 300, 5)], after=30)
    assert flat["slope_mb_per_min"] == 0.0 and flat["stalled_closed_s"] is None
    assert rss_summary([[0.0, 1.0, 3]], after=10)["rss_start_mb"] is None


def test_rss_of_this_process():
    assert 1 < rss_mb([os.getpid()]) <= peak_rss_mb([os.getpid()]) + 1


def test_soak_and_workers_reporting():
    assert Spec("soak", 10, 625, warmup=30, measure=269, stalled=1).label == "N=10 x 625/s + 1 stopped, 300 s"
    soak = {"scenario": "soak", "relay": "ours", "protocol": "IETF moqt-18", "load": Spec(
        "soak", 10, 625, warmup=30, measure=269, stalled=1, stall_cycle=(7, 0.3)).label, "seconds": 300, "delivered_frac": 1.0, "lost": 0,
        "p99_ms": 9.5, "relay_cpu_pct": 60, "peak_rss_mb": 70, "rss_start_mb": 60.0, "rss_max_sample_mb": 62.0,
        "rss_end_mb": 61.0, "slope_mb_per_min": 0.2, "stalled_closed_s": 35.0, "error": ""}
    assert soak["load"] == "N=10 x 625/s + 1 stalled, 300 s"
    table = report.soak_table([soak, {**soak, "relay": "moq-rs", "error": "relay exited"}])
    assert "| 100.0% (0) | 9.5 | 60 | 60.0 / 62.0 / 61.0 | 70.0 | +0.20 | 35 s |" in table
    assert "**error**: relay exited" in table
    text = report.targets([], None, [], [], [soak, {**soak, "slope_mb_per_min": 3.0, "relay": "moq-rs"}])
    assert "5-minute run with a stalled subscriber: met (+0.20 MB/min" in text and "MISSED" not in text
    w2 = Result("workers", "ours", "IETF moqt-18", "N=50 x 625/s workers=2", 50, delivered_frac=0.5, p99_ms=900,
                clients_cpu_pct=150, client_max_pct=60).as_dict()
    text = report.targets([w2], None, [], [])
    assert "workers=2: ≥ 99% delivered, p99 ≤ 25 ms: MISSED (50.0%" in text and "clients were saturated" in text
    assert "⚠ *clients saturated*" in report.load_table([w2])


def test_ramp_goes_up_while_clean_and_down_after_a_failing_start(monkeypatch):
    import asyncio

    from bench import scenarios

    def run(limit: int, first: int | None, counts=(100, 200, 400, 800)) -> tuple[list[int], dict]:
        async def fake(spec, *_):
            return Result(spec.scenario, "ours", "p", spec.label, spec.n, lost=0 if spec.n <= limit else 7)

        monkeypatch.setattr(scenarios, "run_load", fake)
        results, summary = asyncio.run(scenarios.ramp("S1", list(counts), None, "ours", "p", 1, 3, 1e18, first))
        return [r.n for r in results], summary

    assert run(200, 200) == ([200, 400], {"scenario": "moq-bench S1", "relay": "ours", "protocol": "p",
                                          "zero_loss_max": 200, "stopped": "N=400: 7 lost"})
    steps, summary = run(100, 200)
    assert steps == [100, 200] and summary["zero_loss_max"] == 100 and summary["stopped"] == "N=200: 7 lost"
    steps, summary = run(50, 200)
    assert steps == [100, 200] and summary["zero_loss_max"] == 0
    steps, summary = run(10**6, 200)
    assert steps == [200, 400, 800] and summary["stopped"] == "all counts up to 800 clean"
    steps, summary = run(400, None)
    assert steps == [100, 200, 400, 800] and summary["zero_loss_max"] == 400
