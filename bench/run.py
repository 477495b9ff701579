"""`python -m bench.run`: start the model API once per engine, warm it up, then load every
engine (and, with --full-stack, the stack in front of it) at each concurrency level in turn
— interleaved, so a drift of the machine touches all engines alike — and report."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.load import LevelResult, run_level
from bench.report import (
    comparisons,
    format_comparisons,
    format_row,
    format_table,
    write_chart,
    write_json,
)
from bench.servers import (
    ENGINES,
    EngineServers,
    RssSampler,
    add_full_stack,
    bench_tmp_dir,
    settle,
    start_engine,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--concurrency", type=int_list, help="levels, default 1,4,8,16")
    parser.add_argument("--tokens", type=int, help="max_tokens per request, default 64")
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="server configurations to run (bench/servers.py CONFIGS), default all: "
        + ",".join(ENGINES),
    )
    parser.add_argument(
        "--full-stack", action="store_true", help="also through nginx → app /v1 → model API"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: levels 1,4 with 16 tokens")
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per level (default max(4, 2×C): every client sends at least two)",
    )
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or ([1, 4] if args.quick else [1, 4, 8, 16])
    args.tokens = args.tokens or (16 if args.quick else 64)
    return args


def choose_engines(asked: str) -> list[str]:
    wanted = [name.strip() for name in asked.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    if not wanted:
        raise SystemExit("no engine to run")
    return wanted


def warm_up(servers: EngineServers, tokens: int) -> None:
    """First requests pay for lazy initialisation; they are not measured."""
    for target in servers.targets():
        level, _ = run_level(target, 2, tokens, 2)
        if level.errors:
            raise RuntimeError(f"warm-up of {target.name} failed: {level.first_error}")


def machine() -> dict:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = choose_engines(args.engines)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = RESULTS_DIR / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = bench_tmp_dir()
    started: list[EngineServers] = []
    levels: list[LevelResult] = []
    try:
        for engine in engines:
            print(f"starting the model API with ENGINE={engine} …", flush=True)
            servers = start_engine(engine, tmp)
            started.append(servers)
            if args.full_stack:
                print(f"starting app service + nginx in front of {engine} …", flush=True)
                add_full_stack(servers, tmp)
            warm_up(servers, args.tokens)
            print(f"  {engine}: {servers.health}", flush=True)
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1) / 2:
            print(
                f"warning: load average {load:.1f} on {os.cpu_count()} cores before the run: "
                "other work competes for the CPU and will skew the figures",
                flush=True,
            )
        print(format_table([]).splitlines()[0], flush=True)
        for c in args.concurrency:
            total = args.requests or max(4, 2 * c)
            for servers in started:
                for target in servers.targets():
                    with RssSampler(servers.worker_pid) as rss:
                        level, _ = run_level(target, c, args.tokens, total)
                    level.peak_rss_bytes = rss.peak
                    level.load_after = os.getloadavg()[0]
                    levels.append(level)
                    print(format_row(level), flush=True)
                    if level.first_error:
                        print(f"    first error: {level.first_error}", flush=True)
                    settle()
    finally:
        for servers in started:
            servers.stop()

    rows = comparisons(levels)
    meta = {
        "timestamp": stamp,
        "engines": engines,
        "full_stack": args.full_stack,
        "concurrency": args.concurrency,
        "max_tokens": args.tokens,
        "machine": machine(),
        "load_before": load,
        "servers": {s.engine: s.health for s in started},
        "logs": str(tmp),
    }
    print()
    print(format_table(levels))
    print()
    print(format_comparisons(rows))
    write_json(out_dir / "results.json", meta, levels, rows)
    title = f"chatstack bench {stamp} — {args.tokens} tokens, {meta['machine']['cores']} cores"
    charted = write_chart(out_dir / "chart.png", levels, title)
    print(f"\nresults: {out_dir / 'results.json'}")
    print(f"chart:   {out_dir / 'chart.png'}" if charted else "chart:   skipped (no matplotlib)")
    print(f"server logs: {tmp}")
    return 1 if any(level.errors for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
