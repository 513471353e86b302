"""The fuzz driver.

    python -m fuzz list                              # the targets
    python -m fuzz all --seconds 600                 # each target in turn, 600 s shared (make fuzz)
    python -m fuzz all --runs 3000 --seed 1 --fresh  # bounded and reproducible (the make test run)
    python -m fuzz run control_frames --seconds 60   # one target (extra libFuzzer flags after --)
    python -m fuzz replay control_frames crash-...   # re-run saved inputs, showing the traceback

The engine is Atheris (libFuzzer driving CPython with coverage of the instrumented `moq`
package).  Without Atheris the driver falls back to a seeded random mutator over the same
seeds: no coverage guidance, but the same rule and checks.  The long runs keep their corpus
in fuzz/corpus/TARGET and crashing inputs in fuzz/artifacts/ (both untracked); `--fresh`
uses a throwaway corpus so that a seeded run does the same thing every time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAX_LEN = 4096
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
_COV = re.compile(r"#\d+\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def _atheris():
    try:
        import atheris
    except ImportError:
        return None
    return atheris


def _targets(instrument: bool):
    atheris = _atheris() if instrument else None
    if atheris is not None:
        with atheris.instrument_imports(include=["moq"]):
            from fuzz import targets
    else:
        from fuzz import targets
    return targets


def _write_seeds(target: str, directory: Path) -> int:
    from fuzz.seeds import seeds

    directory.mkdir(parents=True, exist_ok=True)
    items = seeds(target)
    for i, data in enumerate(items):
        (directory / f"seed-{i:04d}").write_bytes(data)
    return len(items)


def _write_dict(path: Path) -> None:
    """A libFuzzer dictionary of the protocol's code points as they appear on the wire: message
    and stream types, parameter and option types, flags, statuses (varint-encoded)."""
    from moq.wire import control as c
    from moq.wire import data as d
    from moq.wire.types import ParamType
    from moq.wire.varint import encode_varint

    values = {cls.TYPE for cls in c.REGISTRY.values()} | {int(t) for t in ParamType}
    values |= {d.STREAM_TYPE_FETCH, d.STREAM_TYPE_SETUP, d.STREAM_TYPE_PADDING, d.DATAGRAM_TYPE_PADDING,
               d.END_OF_NON_EXISTENT_RANGE, d.END_OF_UNKNOWN_RANGE, 0x10, 0x11, 0x14, 0x15, 0x30, 0x35, 0x3D, 0x7D,
               (1 << 62), (1 << 64) - 1, 0xFFFF}
    lines = ["".join(f"\\x{b:02x}" for b in encode_varint(v)) for v in sorted(values)]
    lines += ["".join(f"\\x{b:02x}" for b in encode_varint(cls.TYPE) + b"\x00\x00") for cls in c.REGISTRY.values()]
    path.write_text("".join(f'"{line}"\n' for line in lines))


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    atheris = _atheris()
    targets = _targets(instrument=atheris is not None)
    if args.target not in targets.TARGETS:
        sys.exit(f"unknown target {args.target!r}; try: python -m fuzz list")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{args.target}-") as tmp:
        seed_dir = Path(tmp) / "seeds"
        _write_seeds(args.target, seed_dir)
        corpus = Path(tmp) / "corpus" if args.fresh else Path(args.corpus or HERE / "corpus" / args.target)
        corpus.mkdir(parents=True, exist_ok=True)
        artifacts = Path(args.artifacts or HERE / "artifacts")
        artifacts.mkdir(parents=True, exist_ok=True)
        if atheris is None:
            return _mutate(targets, args, corpus, seed_dir)
        _write_dict(Path(tmp) / "moq.dict")
        flags = [f"-seed={args.seed}", f"-max_len={MAX_LEN}", "-timeout=10", "-rss_limit_mb=1024",
                 f"-dict={Path(tmp) / 'moq.dict'}",
                 "-print_final_stats=1", f"-artifact_prefix={artifacts}/{args.target}-"]
        if args.runs:
            flags.append(f"-runs={args.runs}")
        if args.seconds:
            flags.append(f"-max_total_time={max(1, int(args.seconds))}")
        name, check = args.target, targets.check

        def one(data: bytes) -> None:
            check(name, data)

        print(f"engine: atheris {getattr(atheris, '__version__', '')} (libFuzzer)", flush=True)
        atheris.Setup([sys.argv[0], *flags, *extra, str(corpus), str(seed_dir)], one)
        atheris.Fuzz()  # exits the process
    return 0


def _mutate(targets, args, corpus: Path, seed_dir: Path) -> int:
    """The fallback engine: seeded random byte mutations of the seeds, no coverage guidance."""
    rng = random.Random(args.seed)
    pool = [p.read_bytes() for d in (seed_dir, corpus) for p in sorted(d.iterdir())] or [b""]
    deadline = time.monotonic() + (args.seconds or 1e9)
    runs = args.runs or (1 << 62)
    print("engine: random mutation (atheris is not installed: no coverage guidance)", flush=True)
    n = 0
    while n < runs and time.monotonic() < deadline:
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.randrange(5), rng.randint(0, len(data))
            if op == 0 and pos < len(data):
                data[pos] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif op == 2:
                del data[pos:pos + rng.randint(1, 8)]
            elif op == 3:
                data[pos:pos] = rng.choice(pool)[: rng.randint(1, 16)]
            elif pos < len(data):
                data[pos] ^= 1 << rng.randrange(8)
        data = bytes(data[:MAX_LEN])
        n += 1
        try:
            targets.check(args.target, data)
        except Exception:
            traceback.print_exc()
            path = Path(args.artifacts or HERE / "artifacts") / f"{args.target}-crash-{n}"
            path.write_bytes(data)
            print(f"==> crash on input {data.hex()} (saved to {path})", flush=True)
            print(f"stat::number_of_executed_units: {n}", flush=True)
            return 1
    print(f"stat::number_of_executed_units: {n}", flush=True)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    from fuzz.targets import RUN_WEIGHT, TARGETS

    names = args.targets.split(",") if args.targets else list(TARGETS)
    per = args.seconds / len(names) if args.seconds else 0
    results, failed = [], []
    for name in names:
        cmd = [sys.executable, "-m", "fuzz", "run", name, "--seed", str(args.seed)]
        if args.runs:
            cmd += ["--runs", str(max(100, int(args.runs * RUN_WEIGHT.get(name, 1.0))))]
        if per:
            cmd += ["--seconds", str(max(1, int(per)))]
        if args.fresh:
            cmd.append("--fresh")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = proc.stdout
        stats = {k: int(v) for k, v in _STAT.findall(out)}
        cov = _COV.findall(out)
        row = {"target": name, "runs": stats.get("number_of_executed_units", 0), "rc": proc.returncode,
               "seconds": round(time.monotonic() - started, 1), "cov": int(cov[-1][0]) if cov else None,
               "corpus": int(cov[-1][2]) if cov else None}
        results.append(row)
        if proc.returncode != 0:
            failed.append(name)
            print(out[-6000:], file=sys.stderr)
        print(f"{name:16} runs {row['runs']:>9}  cov {row['cov']!s:>5}  corpus {row['corpus']!s:>5}  "
              f"{row['seconds']:>6} s  {'ok' if proc.returncode == 0 else 'FAILED'}", flush=True)
    total = sum(r["runs"] for r in results)
    print(f"total runs {total}; {len(failed)} failing target(s){': ' + ', '.join(failed) if failed else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from fuzz import targets

    bad = 0
    for path in args.inputs:
        data = Path(path).read_bytes()
        try:
            targets.check(args.target, data)
            print(f"{path}: ok")
        except Exception:
            bad += 1
            print(f"{path}: {data.hex()}")
            traceback.print_exc()
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1:], argv[: argv.index("--")]
    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    run = sub.add_parser("run")
    run.add_argument("target")
    every = sub.add_parser("all")
    every.add_argument("--targets", default="", help="comma-separated subset")
    every.add_argument("--json", default="", help="write the per-target results here")
    for p in (run, every):
        p.add_argument("--runs", type=int, default=0, help="iterations per target")
        p.add_argument("--seconds", type=float, default=0, help="time (all: shared by the targets)")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--fresh", action="store_true", help="a throwaway corpus (reproducible runs)")
    run.add_argument("--corpus", default="")
    run.add_argument("--artifacts", default="")
    rep = sub.add_parser("replay")
    rep.add_argument("target")
    rep.add_argument("inputs", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        from fuzz.targets import TARGETS

        for name, fn in TARGETS.items():
            print(f"{name:16} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.cmd == "run":
        return cmd_run(args, extra)
    if args.cmd == "all":
        return cmd_all(args)
    return cmd_replay(args)


if __name__ == "__main__":
    sys.exit(main())
