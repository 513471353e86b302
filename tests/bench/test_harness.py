"""The benchmark harness's bookkeeping (bench/): measurement windows, client layout, percentiles,
/proc accounting and the report.  No load and no timing here: `make bench` runs the load."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from bench import report
from bench.load import FRAMES_PER_PROC, SUBS_PER_PROC, Result, Spec, layout, percentile
from bench.loadgen.common import HEADER, bucket
from bench.procs import cpu_seconds, descendants, peak_rss_mb


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
                relay_rss_mb=55, relay_pkts=6000, clients_cpu_pct=95, client_max_pct=40, client_procs=2).as_dict()
    bad = Result("workers", "ours", "IETF moqt-18", "N=50 x 625/s workers=2", 50,
                 error="relay exited (code 2)").as_dict()
    table = report.load_table([ok, bad])
    assert "6,250 (100.0%)" in table and "clients saturated" in table
    assert "**error**: relay exited (code 2)" in table
    text = report.targets([ok, bad], {"pkts": 30000}, [], [])
    assert "N=50 x 625/s workers=2" in text and "not measured" in text and "20%" in text
