"""The soak's load: idle tabs, chatting users and the prober, on one asyncio loop (the
prober on a thread of its own, so the loop's own lag does not count in its figures)."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.soak_stack import PASSWORD, SoakConfig, SoakStack, cookie_header, https_session

PROBE_SECONDS = 0.5
DOCUMENT = (
    "Soak handbook. The courier for the north office is named Ballantyne. "
    "Deliveries arrive on Tuesdays. The spare key is kept in the blue box.\n"
)


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
        # In flight: sent, not yet ended (each holds its socket and, once the model API took
        # it, an upstream stream). Streaming: tokens arriving.
        self.in_flight = 0
        self.in_flight_peak = 0
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
            if outcome != "done":  # as a person would, a few seconds before asking again
                await asyncio.sleep(random.uniform(2.0, 4.0))
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
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)
        try:
            await ws.send(json.dumps(frame))
            self.turns_started += 1
            request_id = None
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 600))
                kind = reply["type"]
                # A socket gets every frame of the user's answers: after a reconnect, the
                # resume and the rest of the answer still generating (docs/protocol.md).
                # Only this turn's frames count for this record.
                if not self._ours(reply, request_id, record):
                    continue
                if kind == "user_message":
                    record.acked = True
                    request_id = reply["request_id"]
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
            self.in_flight -= 1
            if streaming:
                self.streaming -= 1

    @staticmethod
    def _ours(frame: dict[str, Any], request_id: str | None, record: TurnRecord) -> bool:
        kind = frame["type"]
        if kind == "resume" or frame.get("conversation_id") not in (None, record.conversation_id):
            return False
        if kind == "delta":
            return frame["message_id"] == record.answer_id
        if kind in ("start", "done"):
            return frame["request_id"] == request_id
        if kind == "error":  # a refusal (busy) names no request id; a turn's error does
            return frame.get("request_id") in (None, request_id)
        return True  # user_message: the first frame of the turn this record sent

    async def wait_for(self, condition: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the soak did not reach the expected state in time")
            await asyncio.sleep(0.2)

    def _busy(self, share: float) -> bool:
        """Most chatters have a turn in flight, and answers are arriving: mid-answer."""
        return self.in_flight >= max(1, int(self.config.chatters * share)) and self.streaming > 0

    async def chaos(self, prober: Prober) -> None:
        """Kill the model API mid-answer and start it again; then the app service."""
        if self.config.restart_model_api:
            await self._crash_mid_answer(prober, "model_api", self.stack.start_model_api)
            await asyncio.sleep(2)  # the app service's health check brings it back
        if self.config.restart_app:
            await self._crash_mid_answer(prober, "app", self.stack.start_app)
        self.chaos_done.set()

    async def _crash_mid_answer(self, prober: Prober, name: str, start: Any) -> None:
        """Once more answers have completed and most users have a turn in flight, SIGKILL
        the stack's `name` server and start it again; the prober pauses meanwhile."""
        wanted = self.turns_done + max(1, self.config.chatters // 2)
        await self.wait_for(lambda: self.turns_done >= wanted, 900)
        await self.wait_for(lambda: self._busy(0.8), 900)
        prober.paused.set()
        server = getattr(self.stack, name)
        assert server is not None
        server.kill()
        await asyncio.sleep(1)
        await asyncio.to_thread(start)
        prober.paused.clear()
