"""The soak: the whole stack (nginx with TLS → app service → model API) holding a team's
load through a model API crash and an app service crash, then checking nothing was lost.

`make soak` runs the full size (docs/benchmark.md); the integration test
tests/integration/test_soak.py runs a small one and asserts the same invariants. Accounts
are made through the registration API, never by writing to the database.

While N idle authenticated chat sockets stay open (reconnecting, as a browser does, when
the app service restarts) and M users chat — an upload each, then turns that use it — a
prober times GET /api/health and a login every PROBE_SECONDS. Mid-run the model API is
killed (SIGKILL) and started again, then the app service. At the end every turn is
checked against what the server stored.
"""

from __future__ import annotations

import asyncio
import json
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.soak_load import Prober, Soak
from bench.soak_stack import SoakConfig, SoakStack, cookie_header, register

__all__ = ["SoakConfig", "SoakReport", "run_soak"]

TERMINAL = ("complete", "stopped", "failed")


@dataclass
class SoakReport:
    config: dict[str, Any]
    turns: int = 0
    turns_complete: int = 0
    chatters_answered_after_restarts: int = 0  # got a whole answer once the restarts were over
    turn_errors: dict[str, int] = field(default_factory=dict)  # by error code or "dropped"
    peak_turns_in_flight: int = 0  # sent and not ended, through nginx and the app service
    peak_streaming_turns: int = 0  # of those, tokens arriving
    idle_sockets_open_peak: int = 0
    idle_sockets_open_end: int = 0
    health_ms: dict[str, float] = field(default_factory=dict)
    login_ms: dict[str, float] = field(default_factory=dict)
    ttft_ms: dict[str, float] = field(default_factory=dict)
    probe_failures: int = 0
    app_rss_mb_before: float = 0.0
    app_rss_mb_idle: float = 0.0
    kb_per_idle_socket: float = 0.0
    nginx_rss_mb: float = 0.0
    integrity: str = ""
    problems: list[str] = field(default_factory=list)  # anything lost or left wrong

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 1)

    return {
        "n": len(ordered),
        "p50": pick(0.50),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": round(ordered[-1] * 1000, 1),
        "mean": round(statistics.fmean(ordered) * 1000, 1),
    }


# ---- checking what was stored ------------------------------------------------------------


def check_stored(stack: SoakStack, soak: Soak) -> list[str]:
    """Every acknowledged message stored once; every answer terminal, holding what its
    client was sent (all of it when done, a prefix when cut short)."""
    problems: list[str] = []
    conversations: dict[str, list[dict[str, Any]]] = {}
    for record in soak.records:
        if record.conversation_id in conversations:
            continue
        session = soak.sessions[record.user]
        reply = session.get(stack.url + f"/api/conversations/{record.conversation_id}", timeout=60)
        if reply.status_code != 200:
            problems.append(f"{record.user}: conversation unreadable ({reply.status_code})")
            continue
        conversations[record.conversation_id] = reply.json()["messages"]
    for messages in conversations.values():
        for message in messages:
            if message["status"] not in TERMINAL:
                problems.append(f"message {message['id']} left {message['status']!r}")
    for record in soak.records:
        messages = conversations.get(record.conversation_id, [])
        asked = [m for m in messages if m["role"] == "user" and m["content"] == record.content]
        if record.acked and len(asked) != 1:
            problems.append(f"{record.user}: {record.content!r} stored {len(asked)} times")
        if record.answer_id is None:
            continue
        answer = next((m for m in messages if m["id"] == record.answer_id), None)
        if answer is None:
            problems.append(f"{record.user}: answer {record.answer_id} missing")
            continue
        stored = answer["content"]
        if record.ended == "done" and stored != record.received:
            problems.append(f"answer {record.answer_id}: stored text differs from what was sent")
        elif record.ended != "done" and not cut_short_agrees(record, stored):
            problems.append(f"answer {record.answer_id}: stored text is not what was sent")
    return problems


def cut_short_agrees(record: Any, stored: str) -> bool:
    """An answer cut short stores a prefix of what its client got; one whose socket dropped
    may also have gone on after the drop (answers outlive their sockets)."""
    if record.received.startswith(stored):
        return True
    return record.ended == "dropped" and stored.startswith(record.received)


def integrity(db_path: Path) -> str:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# ---- the run -----------------------------------------------------------------------------


def raise_client_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def _drive(stack: SoakStack, config: SoakConfig, report: SoakReport, log: Any) -> Soak:
    soak = Soak(stack, config)
    report.app_rss_mb_before = stack.app_rss() / 2**20
    idle_users = -(-config.idle_sockets // config.sockets_per_idle_user)
    log(f"registering {idle_users} idle users and {config.chatters} chatters")
    names = [f"idle_{i}_{secrets.token_hex(3)}" for i in range(idle_users)]
    idle_sessions = await asyncio.gather(*(asyncio.to_thread(register, stack, n) for n in names))
    chatter_names = [f"chat_{i}_{secrets.token_hex(3)}" for i in range(config.chatters)]
    chatter_sessions = await asyncio.gather(
        *(asyncio.to_thread(register, stack, n) for n in chatter_names)
    )
    probe_name = f"probe_{secrets.token_hex(3)}"
    await asyncio.to_thread(register, stack, probe_name)
    soak.sessions = dict(zip(chatter_names, chatter_sessions, strict=True))

    log(f"opening {config.idle_sockets} idle sockets")
    idle_tasks = []
    opened_events = []
    for i in range(config.idle_sockets):
        opened = asyncio.Event()
        opened_events.append(opened)
        cookie = cookie_header(idle_sessions[i // config.sockets_per_idle_user])
        idle_tasks.append(asyncio.ensure_future(soak.idle_socket(cookie, opened)))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened_events)), 900)
    await asyncio.sleep(3)
    report.app_rss_mb_idle = stack.app_rss() / 2**20
    report.kb_per_idle_socket = round(
        (report.app_rss_mb_idle - report.app_rss_mb_before) * 1024 / max(config.idle_sockets, 1),
        1,
    )
    report.nginx_rss_mb = round(stack.nginx_rss() / 2**20, 1)
    log(
        f"{soak.idle_open} idle sockets open; app worker {report.app_rss_mb_idle:.0f} MB "
        f"({report.kb_per_idle_socket} KB per socket)"
    )

    prober = Prober(stack, probe_name)
    prober.start()
    log(
        f"{config.chatters} users chatting; restarts: model API {config.restart_model_api}, "
        f"app service {config.restart_app}"
    )
    chatters = [
        asyncio.ensure_future(soak.chatter(n, s))
        for n, s in zip(chatter_names, chatter_sessions, strict=True)
    ]
    await soak.chaos(prober)
    log("restarts done; letting the chatters finish")
    await asyncio.gather(*chatters)
    await soak.wait_for(lambda: soak.idle_open >= config.idle_sockets, 300)
    report.idle_sockets_open_end = soak.idle_open
    prober.done.set()
    prober.join(timeout=30)
    soak.stopping.set()
    await asyncio.gather(*idle_tasks, return_exceptions=True)

    report.health_ms = percentiles(prober.health)
    report.login_ms = percentiles(prober.login)
    report.probe_failures = prober.failures
    report.ttft_ms = percentiles([r.ttft for r in soak.records if r.ttft is not None])
    report.idle_sockets_open_peak = soak.idle_peak
    report.peak_streaming_turns = soak.streaming_peak
    report.peak_turns_in_flight = soak.in_flight_peak
    report.turns = len(soak.records)
    report.turns_complete = sum(1 for r in soak.records if r.ended == "done")
    report.chatters_answered_after_restarts = len(soak.answered_after_chaos)
    for r in soak.records:
        if r.ended != "done":
            key = r.error_code or r.ended or "unknown"
            report.turn_errors[key] = report.turn_errors.get(key, 0) + 1
    return soak


def run_in_own_loop(coroutine: Any) -> Any:
    """asyncio.run on a thread of its own: the caller's thread may already run a loop (a
    test session that drove a browser with Playwright's sync API does)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="soak-loop", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_soak(config: SoakConfig, tmp: Path, log: Any = print) -> SoakReport:
    """Start the stack in `tmp`, run the soak, check the invariants; always stops it."""
    raise_client_files_limit(config.idle_sockets + config.chatters * 4 + 1024)
    report = SoakReport(config=asdict(config))
    stack = SoakStack(tmp, config)
    try:
        log("starting model API, app service and nginx")
        stack.start()
        soak = run_in_own_loop(_drive(stack, config, report, log))
        report.problems = check_stored(stack, soak)
        report.integrity = integrity(stack.db_path)
        if report.integrity != "ok":
            report.problems.append(f"PRAGMA integrity_check: {report.integrity}")
        if report.chatters_answered_after_restarts < config.chatters:
            report.problems.append(
                f"only {report.chatters_answered_after_restarts} of {config.chatters} users got "
                "a whole answer after the restarts"
            )
        if report.idle_sockets_open_end < config.idle_sockets:
            report.problems.append(
                f"only {report.idle_sockets_open_end} of {config.idle_sockets} idle sockets "
                "were open at the end"
            )
    finally:
        stack.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--idle-sockets", type=int, default=defaults.idle_sockets)
    parser.add_argument("--chatters", type=int, default=defaults.chatters)
    parser.add_argument("--turns", type=int, default=defaults.turns)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--no-restarts", action="store_true", help="no model API/app kill")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    config = SoakConfig(
        idle_sockets=args.idle_sockets,
        chatters=args.chatters,
        turns=args.turns,
        max_tokens=args.max_tokens,
        restart_model_api=not args.no_restarts,
        restart_app=not args.no_restarts,
    )
    started = time.monotonic()
    # A kill of the soak (Ctrl-C, SIGTERM) must still stop the servers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="chatstack-soak-"))
    try:
        report = run_soak(config, tmp, log=lambda line: print(f"soak: {line}", flush=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(report.to_json())
    print(render(report, time.monotonic() - started))
    print(f"soak: report written to {out}")
    return 1 if report.problems else 0


def render(report: SoakReport, seconds: float) -> str:
    def row(name: str, p: dict[str, float]) -> str:
        if not p:
            return f"| {name} | – | – | – | – | 0 |"
        return f"| {name} | {p['p50']} | {p['p95']} | {p['p99']} | {p['max']} | {int(p['n'])} |"

    lines = [
        f"soak finished in {seconds:.0f} s",
        f"idle sockets: {report.idle_sockets_open_peak} open at peak, "
        f"{report.idle_sockets_open_end} at the end",
        f"turns: {report.turns} ({report.turns_complete} complete), "
        f"{report.peak_turns_in_flight} in flight at once at peak, "
        f"{report.peak_streaming_turns} of them receiving tokens; not complete: "
        f"{report.turn_errors or 'none'}",
        f"app worker RSS: {report.app_rss_mb_before:.0f} MB before the sockets, "
        f"{report.app_rss_mb_idle:.0f} MB with them ({report.kb_per_idle_socket} KB per "
        f"idle socket); nginx {report.nginx_rss_mb} MB",
        "",
        "| latency (ms) | p50 | p95 | p99 | max | n |",
        "|---|---|---|---|---|---|",
        row("GET /api/health", report.health_ms),
        row("login", report.login_ms),
        row("time to first token", report.ttft_ms),
        "",
        f"probe failures outside restarts: {report.probe_failures}",
        f"PRAGMA integrity_check: {report.integrity}",
        "nothing lost" if not report.problems else "PROBLEMS:\n  " + "\n  ".join(report.problems),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
