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
import random
import resource
import secrets
import shutil
import sqlite3
import ssl
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.servers import rss_bytes, wait_healthy, worker_pid
from deploy.certs import ensure_certs
from tests.integration.nginx_server import (
    RunningNginx,
    loopback_settings,
    start_nginx,
    world_readable_dir,
)
from tests.servers import RunningServer, free_port, start_app_service, start_model_api

PASSWORD = "soak-password-1"
PROBE_SECONDS = 0.5
DOCUMENT = (
    "Soak handbook. The courier for the north office is named Ballantyne. "
    "Deliveries arrive on Tuesdays. The spare key is kept in the blue box.\n"
)
TERMINAL = ("complete", "stopped", "failed")


@dataclass
class SoakConfig:
    idle_sockets: int = 2000
    sockets_per_idle_user: int = 10
    chatters: int = 100
    turns: int = 3  # per chatter, at least; chatters go on until the restarts are done
    max_tokens: int = 32
    restart_model_api: bool = True
    restart_app: bool = True
    # The model API must admit every chatter at once, or turns wait in its queue (or get
    # 429) instead of streaming: the soak measures the front tiers, not the batch size.
    model_batch_size: int = 128
    model_waiting: int = 128
    handshakes_at_once: int = 50


@dataclass
class TurnRecord:
    user: str
    conversation_id: str
    content: str
    acked: bool = False  # the server sent user_message: it is stored
    answer_id: str | None = None
    received: str = ""
    ended: str | None = None  # done | error | dropped (the socket closed mid-turn)
    error_code: str | None = None
    ttft: float | None = None


@dataclass
class SoakReport:
    config: dict[str, Any]
    turns: int = 0
    turns_complete: int = 0
    chatters_answered_after_restarts: int = 0  # got a whole answer once the restarts were over
    turn_errors: dict[str, int] = field(default_factory=dict)  # by error code or "dropped"
    peak_streaming_turns: int = 0
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


# ---- the stack ---------------------------------------------------------------------------


class SoakStack:
    """model API, app service and nginx on loopback, each restartable on its own port."""

    def __init__(self, tmp: Path, config: SoakConfig) -> None:
        self.tmp = tmp
        self.config = config
        self.api_key = secrets.token_urlsafe(16)
        self.model_port = free_port()
        self.web_root = world_readable_dir("chatstack-soak-web-")
        self.run_dir = world_readable_dir("chatstack-soak-nginx-")
        (self.web_root / "index.html").write_text("<!doctype html><title>chatstack soak</title>")
        (self.web_root / "index.html").chmod(0o644)
        many = 60_000  # the soak comes from one address: nginx's per-address limits off
        self.settings = loopback_settings(
            tmp / "certs",
            self.web_root,
            self.run_dir,
            chat_rate_per_minute=many,
            login_rate_per_minute=many,
            ws_connections_per_address=many,
            v1_connections_per_address=many,
        )
        self.app_port = int(self.settings.app_upstream.rsplit(":", 1)[1])
        self.model_api: RunningServer | None = None
        self.app: RunningServer | None = None
        self.nginx: RunningNginx | None = None

    @property
    def url(self) -> str:
        return f"https://localhost:{self.settings.https_port}"

    @property
    def ca(self) -> str:
        return str(self.settings.certs_dir / "ca.pem")

    @property
    def db_path(self) -> Path:
        return self.tmp / "app" / "data" / "chatstack.db"

    def start(self) -> None:
        ensure_certs(self.settings)
        self.start_model_api()
        self.start_app()
        self.nginx = start_nginx(self.settings)
        self.nginx.wait_healthy()

    def start_model_api(self) -> None:
        folder = self.tmp / "model_api"
        folder.mkdir(parents=True, exist_ok=True)
        self.model_api = start_model_api(
            folder,
            port=self.model_port,
            MODEL_API_KEY=self.api_key,
            MAX_BATCH_SIZE=str(self.config.model_batch_size),
            MAX_WAITING=str(self.config.model_waiting),
        )
        wait_healthy(self.model_api)

    def start_app(self) -> None:
        folder = self.tmp / "app"
        folder.mkdir(parents=True, exist_ok=True)
        assert self.model_api is not None
        self.app = start_app_service(
            folder,
            self.model_api.url,
            port=self.app_port,
            MODEL_API_KEY=self.api_key,
            SITE_ORIGINS=self.settings.site_origin,
            COOKIE_SECURE="true",
            UPSTREAM_HEALTH_SECONDS="1",
            # Every idle user holds this many sockets, and the prober logs in all along.
            USER_MAX_SOCKETS=str(max(self.config.sockets_per_idle_user, 16)),
            LOGIN_ATTEMPTS="1000",
        )
        wait_healthy(self.app, "/api/health", timeout=120)

    def app_rss(self) -> int:
        assert self.app is not None
        return rss_bytes(worker_pid(self.app.proc.pid))

    def nginx_rss(self) -> int:
        assert self.nginx is not None
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.nginx.proc.pid:
                    total += rss_bytes(int(stat.parent.name))
            except (OSError, ValueError):
                continue
        return total + rss_bytes(self.nginx.proc.pid)

    def stop(self) -> None:
        for server in (self.nginx, self.app, self.model_api):
            if server is not None:
                server.stop()
        shutil.rmtree(self.web_root, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


# ---- clients -----------------------------------------------------------------------------


def https_session(stack: SoakStack) -> requests.Session:
    session = requests.Session()
    session.verify = stack.ca
    session.trust_env = False
    return session


def register(stack: SoakStack, name: str) -> requests.Session:
    """A new account through the registration API, signed in: the session holds its cookie."""
    session = https_session(stack)
    reply = session.post(
        stack.url + "/api/auth/register", json={"username": name, "password": PASSWORD}, timeout=60
    )
    reply.raise_for_status()
    return session


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


class Prober(threading.Thread):
    """Times GET /api/health and a login through nginx, all run long, in its own thread."""

    def __init__(self, stack: SoakStack, username: str) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.username = username
        self.health: list[float] = []
        self.login: list[float] = []
        self.failures = 0
        self.paused = threading.Event()  # set while a server is being restarted
        self.done = threading.Event()

    def run(self) -> None:
        session = https_session(self.stack)
        n = 0
        while not self.done.wait(PROBE_SECONDS):
            if self.paused.is_set():
                continue
            n += 1
            self._time(self.health, lambda: session.get(self.stack.url + "/api/health", timeout=10))
            if n % 4 == 0:
                self._time(
                    self.login,
                    lambda: session.post(
                        self.stack.url + "/api/auth/login",
                        json={"username": self.username, "password": PASSWORD},
                        timeout=10,
                    ),
                )

    def _time(self, into: list[float], call: Any) -> None:
        started = time.perf_counter()
        try:
            ok = call().status_code == 200
        except requests.RequestException:
            ok = False
        if self.paused.is_set():
            return  # a restart began meanwhile: not the steady state being measured
        if ok:
            into.append(time.perf_counter() - started)
        else:
            self.failures += 1


class Soak:
    def __init__(self, stack: SoakStack, config: SoakConfig) -> None:
        self.stack = stack
        self.config = config
        self.ssl = ssl.create_default_context(cafile=stack.ca)
        self.ws_url = f"wss://localhost:{stack.settings.https_port}/ws"
        self.origin = stack.settings.site_origin
        self.stopping = asyncio.Event()
        self.idle_open = 0
        self.idle_peak = 0
        self.streaming = 0
        self.streaming_peak = 0
        self.records: list[TurnRecord] = []
        self.sessions: dict[str, requests.Session] = {}  # the chatters', by name
        self.turns_started = 0
        self.turns_done = 0
        self.chaos_done = asyncio.Event()
        self.answered_after_chaos: set[str] = set()
        self.handshakes = asyncio.Semaphore(config.handshakes_at_once)

    async def _connect(self, cookie: str) -> ClientConnection:
        async with self.handshakes:
            ws = await connect(
                self.ws_url,
                ssl=self.ssl,
                additional_headers={"Cookie": cookie, "Origin": self.origin},
                open_timeout=60,
                ping_interval=None,  # the server pings; the client answers by itself
                max_size=2**22,
            )
            ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert ready["type"] == "ready", ready
            return ws

    async def idle_socket(self, cookie: str, opened: asyncio.Event) -> None:
        """One open tab: connected, quiet, reconnecting with a pause when dropped."""
        first = True
        while not self.stopping.is_set():
            try:
                ws = await self._connect(cookie)
            except (TimeoutError, OSError, websockets.WebSocketException):
                await asyncio.sleep(random.uniform(0.5, 2.0))
                continue
            if first:
                opened.set()
                first = False
            self.idle_open += 1
            self.idle_peak = max(self.idle_peak, self.idle_open)
            try:
                stop = asyncio.ensure_future(self.stopping.wait())
                closed = asyncio.ensure_future(ws.wait_closed())
                await asyncio.wait({stop, closed}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                closed.cancel()
            finally:
                self.idle_open -= 1
                await ws.close()
            if not self.stopping.is_set():
                await asyncio.sleep(random.uniform(0.5, 2.0))

    async def chatter(self, name: str, session: requests.Session) -> None:
        """A user: an upload, a conversation, then turns about the file."""
        file_id, conversation_id = await asyncio.to_thread(self._prepare, session)
        cookie = cookie_header(session)
        ws: ClientConnection | None = None
        n = 0
        attempts_after_chaos = 0
        while not self._chatter_done(name, n, attempts_after_chaos):
            if ws is None:
                try:
                    ws = await self._connect(cookie)
                except (TimeoutError, OSError, websockets.WebSocketException):
                    await asyncio.sleep(1.0)
                    continue
            record = TurnRecord(name, conversation_id, f"[{name} turn {n}] Who is the courier?")
            after_chaos = self.chaos_done.is_set()
            outcome = await self._turn(ws, record, file_id)
            if after_chaos:
                attempts_after_chaos += 1
                if outcome == "done":
                    self.answered_after_chaos.add(name)
            if outcome == "busy":  # an answer of ours still streams after a reconnect
                await asyncio.sleep(1.0)
                continue
            self.records.append(record)
            n += 1
            if outcome == "dropped":
                ws = None
            if outcome != "done":
                await asyncio.sleep(1.0)  # as a person would, before asking again
        if ws is not None:
            await ws.close()

    def _chatter_done(self, name: str, turns: int, attempts_after_chaos: int) -> bool:
        """Done after `turns` turns, the restarts, and one whole answer after them (the
        service must be back for everyone), or too many attempts at that answer."""
        if turns < self.config.turns or not self.chaos_done.is_set():
            return False
        return name in self.answered_after_chaos or attempts_after_chaos >= 30

    def _prepare(self, session: requests.Session) -> tuple[str, str]:
        url = self.stack.url
        reply = session.post(
            url + "/api/files", files={"file": ("handbook.txt", DOCUMENT)}, timeout=120
        )
        reply.raise_for_status()
        file_id = reply.json()["id"]
        reply = session.post(url + "/api/conversations", json={}, timeout=60)
        reply.raise_for_status()
        return file_id, reply.json()["id"]

    async def _turn(self, ws: ClientConnection, record: TurnRecord, file_id: str) -> str:
        frame = {
            "type": "send",
            "conversation_id": record.conversation_id,
            "content": record.content,
            "file_ids": [file_id],
            "settings": {"max_tokens": self.config.max_tokens},
        }
        sent = time.perf_counter()
        streaming = False
        try:
            await ws.send(json.dumps(frame))
            self.turns_started += 1
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 600))
                kind = reply["type"]
                if kind == "user_message":
                    record.acked = True
                elif kind == "start":
                    record.answer_id = reply["message"]["id"]
                elif kind == "delta":
                    if not streaming:
                        streaming = True
                        record.ttft = time.perf_counter() - sent
                        self.streaming += 1
                        self.streaming_peak = max(self.streaming_peak, self.streaming)
                    record.received += reply["content"]
                elif kind in ("done", "error"):
                    if kind == "error" and reply.get("code") == "busy" and not record.acked:
                        return "busy"
                    record.ended = kind
                    record.error_code = reply.get("code") if kind == "error" else None
                    if kind == "done":
                        self.turns_done += 1
                    return kind
        except (TimeoutError, websockets.WebSocketException, OSError):
            record.ended = "dropped"
            return "dropped"
        finally:
            if streaming:
                self.streaming -= 1

    async def wait_for(self, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the soak did not reach the expected state in time")
            await asyncio.sleep(0.2)

    async def chaos(self, prober: Prober) -> None:
        """Kill the model API mid-answer and start it again; then the app service."""
        chatters = self.config.chatters
        if self.config.restart_model_api:
            await self.wait_for(lambda: self.streaming >= max(1, chatters // 2), 900)
            prober.paused.set()
            assert self.stack.model_api is not None
            self.stack.model_api.kill()
            await asyncio.sleep(2)
            await asyncio.to_thread(self.stack.start_model_api)
            await asyncio.sleep(2)  # the app service's health check brings it back
            prober.paused.clear()
        if self.config.restart_app:
            done = self.turns_done
            await self.wait_for(lambda: self.turns_done >= done + max(1, chatters // 2), 900)
            await self.wait_for(lambda: self.streaming >= max(1, chatters // 4), 900)
            prober.paused.set()
            assert self.stack.app is not None
            self.stack.app.kill()
            await asyncio.sleep(1)
            await asyncio.to_thread(self.stack.start_app)
            prober.paused.clear()
        self.chaos_done.set()


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
        elif record.ended != "done" and not record.received.startswith(stored):
            problems.append(f"answer {record.answer_id}: stored text is not what was sent")
    return problems


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
    report.turns = len(soak.records)
    report.turns_complete = sum(1 for r in soak.records if r.ended == "done")
    report.chatters_answered_after_restarts = len(soak.answered_after_chaos)
    for r in soak.records:
        if r.ended != "done":
            key = r.error_code or r.ended or "unknown"
            report.turn_errors[key] = report.turn_errors.get(key, 0) + 1
    return soak


def run_soak(config: SoakConfig, tmp: Path, log: Any = print) -> SoakReport:
    """Start the stack in `tmp`, run the soak, check the invariants; always stops it."""
    raise_client_files_limit(config.idle_sockets + config.chatters * 4 + 1024)
    report = SoakReport(config=asdict(config))
    stack = SoakStack(tmp, config)
    try:
        log("starting model API, app service and nginx")
        stack.start()
        soak = asyncio.run(_drive(stack, config, report, log))
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
        f"{report.peak_streaming_turns} streaming at once at peak; not complete: "
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
