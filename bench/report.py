"""Output of a run: a markdown table on stdout, JSON under bench/results/ (timestamped file and
latest.json) and a PNG chart of latency and CPU against load for both relays."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: a client process above this share of a core, or all clients together above this share of the one
#: core they have, may have limited the figures: the table marks the row.
SATURATED_PCT = 85.0
#: the soak's RSS counts as flat when its least-squares slope after warm-up is within this
FLAT_MB_PER_MIN = 0.5


def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": loadavg()}


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages: other work on a shared machine shows here."""
    return [round(x, 2) for x in os.getloadavg()]


def _f(x, fmt: str = "{:,.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _lat(r: dict) -> str:
    return "–" if r.get("p50_ms") is None else f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.0f}"


def short(error: str) -> str:
    """An error on one table line: its start and its end (a usage message ends with the reason)."""
    text = " ".join(error.replace("|", "/").split())
    return text if len(text) <= 200 else f"{text[:70]} … {text[-120:]}"


def _in(r: dict) -> float | None:
    """Objects/s the relay received from its publisher (our relay's /metrics objects_in)."""
    return (r.get("extra") or {}).get("relay_per_s", {}).get("objects_in")


def _per_frame(r: dict) -> str:
    """The subscriber processes' CPU per frame they received (from ready to stop, Rust threads included)."""
    us = (r.get("extra") or {}).get("subs_us_per_frame")
    return f"; subs {us:.0f} µs/frame" if us else ""


def saturated(r: dict) -> bool:
    return r.get("client_max_pct", 0) > SATURATED_PCT or r.get("clients_cpu_pct", 0) > SATURATED_PCT


def load_table(rows: list[dict]) -> str:
    head = ("| scenario | relay (protocol) | load | delivered obj/s (of offered) | Mbit/s | latency p50 / p99 / max ms "
            "| lost | relay in obj/s | relay CPU % | CPU µs/obj | relay pkts/s | relay RSS MB "
            "| clients CPU % (busiest, procs; subscribers' CPU per frame) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        relay = f"{r['relay']} ({r['protocol']})"
        if r.get("error"):
            lines.append(f"| {r['scenario']} | {relay} | {r['load']} | **error**: {short(r['error'])} "
                         "| | | | | | | | | |")
            continue
        sat = " ⚠ clients saturated" if saturated(r) else ""
        lines.append(
            f"| {r['scenario']} | {relay} | {r['load']} | {r['delivered_objs']:,.0f} ({100 * r['delivered_frac']:.1f}%) "
            f"| {r['mbits']:,.1f} | {_lat(r)} | {r['lost']:,} | {_f(_in(r), '{:,.0f}')} | {r['relay_cpu_pct']:.0f} | {_f(r['cpu_us_per_obj'])} "
            f"| {_f(r['relay_pkts'], '{:,.0f}')} | {r['relay_rss_mb']:.0f} "
            f"| {r['clients_cpu_pct']:.0f} ({r['client_max_pct']:.0f}, {r['client_procs']}{_per_frame(r)}){sat} |")
    if any(saturated(r) for r in rows if not r.get("error")):
        lines.append(f"\n⚠ *clients saturated*: the load generators together used more than {SATURATED_PCT:.0f}% of a "
                     "core, or one of their processes did. On a 2-core machine the relay then competes with its "
                     "own load for CPU, so the row measures the machine as much as the relay.")
    return "\n".join(lines)


def soak_table(soaks: list[dict]) -> str:
    if not soaks:
        return ""
    out = ["| soak: one more subscriber SIGSTOPped | relay (protocol) | delivered to the others (lost) "
           "| p99 ms | relay CPU % | relay RSS start / max / end MB (VmRSS after warm-up) | peak RSS MB (VmHWM) "
           "| RSS slope after warm-up MB/min | stalled session closed by the relay after |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in soaks:
        relay = f"{r['relay']} ({r['protocol']})"
        if r.get("error"):
            out.append(f"| {r['load']} | {relay} | **error**: {short(r['error'])} | | | | | | |")
            continue
        closed = "–" if r.get("stalled_closed_s") is None else f"{r['stalled_closed_s']:.0f} s"
        out.append(f"| {r['load']} | {relay} | {100 * r['delivered_frac']:.1f}% ({r['lost']:,}) | {_f(r['p99_ms'])} "
                   f"| {r['relay_cpu_pct']:.0f} | {_f(r['rss_start_mb'])} / {_f(r['rss_max_sample_mb'])} / "
                   f"{_f(r['rss_end_mb'])} | {_f(r['peak_rss_mb'])} | {_f(r['slope_mb_per_min'], '{:+.2f}')} "
                   f"| {closed} |")
    return "\n".join(out)


def other_tables(ceiling: dict | None, g2g: list[dict], ramps: list[dict], soaks: list[dict] = ()) -> str:
    out = []
    if ceiling:
        if ceiling.get("error"):
            out.append(f"**aioquic ceiling**: error: {short(ceiling['error'])}")
        else:
            out.append(f"**aioquic ceiling** (one bulk stream, two processes, our transport): "
                       f"{ceiling['mbytes_s']:.1f} MB/s, {ceiling['pkts']:,} packets/s ({ceiling['pkts_source']}); "
                       f"sender CPU {ceiling['sender_cpu_pct']:.0f}%, receiver CPU {ceiling['receiver_cpu_pct']:.0f}%"
                       + (f"; {ceiling['us_per_pkt']} µs of sender CPU per packet" if "us_per_pkt" in ceiling else ""))
    if g2g:
        out.append("\n| glass-to-glass (moq-publish testsrc → moq-view --json) | p50 ms | p99 ms | objects | gaps "
                   "| relays' CPU % |\n|---|---|---|---|---|---|")
        for r in g2g:
            if r.get("error"):
                out.append(f"| {r['load']} | **error**: {short(r['error'])} | | | | |")
            else:
                out.append(f"| {r['load']} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | {r['objects']} | {r['gaps']} "
                           f"| {r['relay_cpu_pct']:.0f} |")
    if ramps:
        out.append("\n| moq-bench profile (draft-evens-moq-bench-00) | relay (protocol) | largest N with zero loss "
                   "(1 relay core) | ramp stopped at |\n|---|---|---|---|")
        for r in ramps:
            out.append(f"| {r['scenario']} | {r['relay']} ({r['protocol']}) | {r['zero_loss_max']} | {r['stopped']} |")
    if soaks:
        out.append("\n" + soak_table(list(soaks)))
    return "\n".join(out)


def targets(rows: list[dict], ceiling: dict | None, g2g: list[dict], ramps: list[dict],
            soaks: list[dict] = ()) -> str:
    """Issue 9's targets, reported (never asserted)."""
    def find(scenario_prefix: str, load: str) -> dict | None:
        return next((r for r in rows if r["relay"] == "ours" and r["scenario"].startswith(scenario_prefix)
                     and r["load"] == load and not r.get("error")), None)

    def ok(r: dict | None) -> str:
        if r is None:
            return "not measured"
        good = r["delivered_frac"] >= 0.99 and (r["p99_ms"] or 1e9) <= 25
        sat = "; the clients were saturated, so this measures the machine" if saturated(r) else ""
        return f"{'met' if good else 'MISSED'} ({100 * r['delivered_frac']:.1f}%, p99 {_f(r['p99_ms'])} ms{sat})"

    out = ["\nTargets (issue 9; our relay):"]
    for scen, load in (("N=100", "N=100 x 100/s"), ("high rate", "N=1 x 10000/s"), ("high rate", "N=10 x 2500/s"),
                       ("workers", "N=50 x 625/s workers=2")):
        out.append(f"- {load}: ≥ 99% delivered, p99 ≤ 25 ms: {ok(find(scen, load))}")
    ours = [r for r in rows if r["relay"] == "ours" and not r.get("error") and r.get("relay_pkts")]
    if ours and ceiling and ceiling.get("pkts"):
        peak = max(r["relay_pkts"] for r in ours)
        out.append(f"- relay packets/s at saturation ≥ 70% of the ceiling: peak {peak:,.0f} of {ceiling['pkts']:,} "
                   f"= {100 * peak / ceiling['pkts']:.0f}%")
    per_obj = [r["cpu_us_per_obj"] for r in ours if r.get("cpu_us_per_obj") and r["delivered_objs"] > 3000]
    if per_obj:
        out.append(f"- CPU per delivered object ≤ 53 µs (a third of 160): best {min(per_obj):.0f} µs at > 3000 obj/s")
    for r in ramps:
        if r["relay"] == "ours":
            goal = 500 if r["scenario"].endswith("S1") else 100
            out.append(f"- {r['scenario']} ≥ {goal} subscribers per core: {r['zero_loss_max']}")
    for r in g2g:
        if r["load"].startswith("3") and r.get("p50_ms") is not None:
            out.append(f"- glass-to-glass p50 < 100 ms through 3 relays: {r['p50_ms']:.0f} ms")
    for r in soaks:
        if r["relay"] == "ours" and not r.get("error") and r.get("slope_mb_per_min") is not None:
            flat = abs(r["slope_mb_per_min"]) <= FLAT_MB_PER_MIN
            out.append(f"- relay RSS flat over a {r['seconds'] / 60:g}-minute run with a stalled subscriber: "
                       f"{'met' if flat else 'MISSED'} ({r['slope_mb_per_min']:+.2f} MB/min after warm-up, "
                       f"{_f(r['rss_start_mb'])} → {_f(r['rss_end_mb'])} MB; flat means within ±{FLAT_MB_PER_MIN} MB/min)")
    return "\n".join(out)


def write(doc: dict, mode: str) -> tuple[Path, Path | None]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"bench-{mode}-{stamp}.json"
    text = json.dumps(doc, indent=1)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path, chart(doc["load"], RESULTS / f"bench-{mode}-{stamp}.png", doc.get("soak") or [])


def chart(rows: list[dict], path: Path, soaks: list[dict] = ()) -> Path | None:
    """p99 latency and relay CPU (% and µs/object) against offered objects/s, one series per relay;
    and the relay's RSS over the soak."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    good = [r for r in rows if not r.get("error") and r["scenario"] in ("fan-out", "N=100 x 100", "high rate",
                                                                         "workers")]
    soaks = [r for r in soaks if r.get("samples")]
    if not good and not soaks:
        return None
    panels = (3 if good else 0) + (1 if soaks else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5.4 * panels, 4.8), squeeze=False)
    axes = list(axes[0])
    if soaks:
        ax = axes.pop()
        for r in soaks:
            ax.plot([t for t, *_ in r["samples"]], [mb for _, mb, *_ in r["samples"]], marker=".",
                    label=f"{r['relay']} ({r['protocol']})")
        ax.axvline(soaks[0]["warmup_s"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("seconds into the soak (dashed: end of warm-up)")
        ax.set_title(f"relay RSS (MiB), {soaks[0]['load']}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    series: dict[str, list[dict]] = {}
    for r in good:
        series.setdefault(f"{r['relay']} ({r['protocol']})" + (f" {r['load'].split()[-1]}" if "workers" in r["load"]
                                                                  else ""), []).append(r)
    for name, rs in series.items():
        rs = sorted(rs, key=lambda r: r["offered_objs"])
        x = [r["offered_objs"] for r in rs]
        style = {"marker": "o", "linestyle": ":", "label": name}  # two scenarios may share an offered load
        axes[0].plot(x, [r["p99_ms"] or float("nan") for r in rs], **style)
        axes[1].plot(x, [r["relay_cpu_pct"] for r in rs], **style)
        axes[2].plot(x, [r["cpu_us_per_obj"] or float("nan") for r in rs], **style)
    for ax, title in zip(axes, ("latency p99 (ms, log)", "relay CPU (% of one core)", "relay CPU µs per delivered object (log)")):
        ax.set_xlabel("offered objects/s (all subscribers)")
        ax.set_title(title)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    if good:
        axes[0].set_yscale("log")
        axes[2].set_yscale("log")
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    latest = path.parent / "latest.png"
    latest.write_bytes(path.read_bytes())
    return path
