"""UpstreamPool against small real HTTP servers on loopback: routing, health, errors."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask

from app_service.settings import Settings
from app_service.upstream import UpstreamPool
from app_service.upstream_wire import UpstreamError, iter_raw
from chatstack.errors import APIError
from tests.servers import free_port

Behaviour = Callable[["Handler", dict], None]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, *_args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake.connections.append(self.connection)

    def do_GET(self) -> None:
        self._dispatch({})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self._dispatch(json.loads(self.rfile.read(length) or b"{}"))

    def _dispatch(self, body: dict) -> None:
        fake = self.server.fake
        fake.seen.append((self.path, dict(self.headers), body))
        behaviour = fake.routes.get(self.path)
        if behaviour is None:
            send_json(self, 404, {"error": {"message": "no route", "type": "x"}})
        else:
            behaviour(self, body)

    # ---- writing ------------------------------------------------------------------------

    def start_chunked(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def send_json(
    handler: Handler, status: int, body: object, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def chunk_for(text: str) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]}


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeUpstream

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up on purpose are what these tests are about

    def serve(self) -> None:
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()


class FakeUpstream:
    """An OpenAI-compatible engine whose every route the test can change."""

    def __init__(self, models: tuple[str, ...] | None = ("m",)) -> None:
        self.seen: list[tuple[str, dict, dict]] = []
        self.connections: list[socket.socket] = []
        self.health_status = 200
        self.models = models
        self.stream_closed = threading.Event()
        self.routes: dict[str, Behaviour] = {
            "/health": lambda h, _b: send_json(h, self.health_status, {"status": "ok"}),
            "/v1/models": self._models,
            "/v1/chat/completions": self.stream_words(["Hel", "lo"]),
            "/tokenize": lambda h, _b: send_json(h, 200, {"count": 3, "max_model_len": 99}),
        }
        self.server = FakeServer(("127.0.0.1", 0), Handler)
        self.server.fake = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.server.serve()

    def _models(self, handler: Handler, _body: dict) -> None:
        if self.models is None:
            send_json(handler, 404, {"detail": "Not Found"})
            return
        data = [{"id": m, "object": "model", "owned_by": self.url} for m in self.models]
        send_json(handler, 200, {"object": "list", "data": data})

    def stream_words(self, words: list[str], done: bool = True) -> Behaviour:
        def behaviour(handler: Handler, _body: dict) -> None:
            handler.start_chunked()
            for word in words:
                handler.chunk(sse(chunk_for(word)))
            if done:
                handler.chunk(b"data: [DONE]\n\n")
            handler.end_chunked()

        return behaviour

    def stream_forever(self) -> Behaviour:
        """Sends a chunk every 20 ms until the client goes away, and records that."""

        def behaviour(handler: Handler, _body: dict) -> None:
            handler.start_chunked()
            try:
                for _ in range(500):
                    handler.chunk(sse(chunk_for("x")))
                    time.sleep(0.02)
            except OSError:
                self.stream_closed.set()

        return behaviour

    def chat_requests(self) -> list[dict]:
        return [body for path, _h, body in self.seen if path == "/v1/chat/completions"]

    def stop(self) -> None:
        """Stop listening and drop kept-alive connections too, like a process that died."""
        self.server.shutdown()
        self.server.server_close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def fakes() -> Iterator[list[FakeUpstream]]:
    made: list[FakeUpstream] = []
    yield made
    for fake in made:
        fake.stop()


def make_fake(fakes: list[FakeUpstream], **kwargs) -> FakeUpstream:
    fake = FakeUpstream(**kwargs)
    fakes.append(fake)
    return fake


def make_pool(*urls: str, **overrides) -> UpstreamPool:
    defaults = {
        "upstream_connect_timeout": 1.0,
        "upstream_read_timeout": 2.0,
        "upstream_health_seconds": 0.1,
        "max_connections": 64,
    }
    settings = Settings(
        data_dir=Path("/nonexistent"), model_api_urls=urls, **{**defaults, **overrides}
    )
    return UpstreamPool(settings)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


# ---- routing --------------------------------------------------------------------------------


def test_a_request_goes_to_the_upstream_with_fewest_in_flight(fakes) -> None:
    a, b = make_fake(fakes), make_fake(fakes)
    pool = make_pool(a.url, b.url)
    with pool.open("/v1/chat/completions", CHAT, stream=True) as first:
        with pool.open("/v1/chat/completions", CHAT, stream=True) as second:
            assert first.url != second.url
            assert [u["in_flight"] for u in pool.status()] == [1, 1]
            with pool.open("/v1/chat/completions", CHAT, stream=True):
                assert sorted(u["in_flight"] for u in pool.status()) == [1, 2]
        with pool.open("/v1/chat/completions", CHAT, stream=True) as third:
            assert third.url == second.url  # the one with nothing in flight
    assert [u["in_flight"] for u in pool.status()] == [0, 0]


def test_idle_upstreams_share_sequential_requests(fakes) -> None:
    a, b = make_fake(fakes), make_fake(fakes)
    pool = make_pool(a.url, b.url)
    for _ in range(4):
        list(pool.stream_chat(CHAT))
    assert len(a.chat_requests()) == 2
    assert len(b.chat_requests()) == 2


def test_requests_go_to_the_upstream_serving_the_model(fakes) -> None:
    a, b = make_fake(fakes, models=("alpha",)), make_fake(fakes, models=("beta",))
    pool = make_pool(a.url, b.url)
    pool.check_health()
    assert [u["models"] for u in pool.status()] == [["alpha"], ["beta"]]
    for _ in range(3):
        list(pool.stream_chat({**CHAT, "model": "beta"}))
    assert len(b.chat_requests()) == 3
    assert a.chat_requests() == []
    with pytest.raises(UpstreamError) as err:
        list(pool.stream_chat({**CHAT, "model": "gamma"}))
    assert err.value.status == 404
    assert err.value.code == "model_not_found"
    assert "alpha, beta" in err.value.message


def test_a_model_whose_upstream_is_down_is_unavailable_not_missing(fakes) -> None:
    a, b = make_fake(fakes, models=("alpha",)), make_fake(fakes, models=("beta",))
    pool = make_pool(a.url, b.url)
    pool.check_health()
    a.stop()
    for _ in range(2):  # first the failed connection takes it out, then it is known down
        with pytest.raises(UpstreamError) as err:
            list(pool.stream_chat({**CHAT, "model": "alpha"}))
        assert err.value.status == 503
    assert [u["healthy"] for u in pool.status()] == [False, True]
    assert len(list(pool.stream_chat({**CHAT, "model": "beta"}))) == 2


def test_an_upstream_without_a_model_list_may_serve_any_model(fakes) -> None:
    listed, unlisted = make_fake(fakes, models=("alpha",)), make_fake(fakes, models=None)
    pool = make_pool(listed.url, unlisted.url)
    pool.check_health()
    assert pool.status()[1]["models"] is None
    list(pool.stream_chat({**CHAT, "model": "other"}))
    assert len(unlisted.chat_requests()) == 1


def test_models_is_the_union_of_healthy_upstreams(fakes) -> None:
    a, b = make_fake(fakes, models=("alpha", "shared")), make_fake(fakes, models=("shared",))
    pool = make_pool(a.url, b.url)
    listing = pool.models()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["alpha", "shared"]


def test_a_turns_default_model_comes_from_the_health_check_without_a_round_trip(fakes) -> None:
    down, up = make_fake(fakes, models=("gone",)), make_fake(fakes, models=("beta", "gamma"))
    pool = make_pool(down.url, up.url)
    assert pool.first_model() == "gone"  # nothing checked yet: asked for, in order
    down.health_status = 500
    pool.check_health()
    listed = sum(path == "/v1/models" for path, _, _ in up.seen)
    assert pool.first_model() == "beta"
    assert sum(path == "/v1/models" for path, _, _ in up.seen) == listed
    empty = make_pool(make_fake(fakes, models=()).url)
    with pytest.raises(UpstreamError) as none:
        empty.first_model()
    assert none.value.code == "no_models"


# ---- health ---------------------------------------------------------------------------------


def test_an_unreachable_upstream_is_taken_out_and_the_request_goes_elsewhere(fakes) -> None:
    alive = make_fake(fakes)
    pool = make_pool(dead_url(), alive.url)
    for _ in range(3):
        assert [c["choices"][0]["delta"]["content"] for c in pool.stream_chat(CHAT)] == [
            "Hel",
            "lo",
        ]
    dead, live = pool.status()
    assert dead["healthy"] is False
    assert "refused" in dead["error"]
    assert live["healthy"] is True
    assert len(alive.chat_requests()) == 3


def test_no_healthy_upstream_is_a_503_that_says_so() -> None:
    pool = make_pool(dead_url(), dead_url())
    with pytest.raises(UpstreamError) as err:
        list(pool.stream_chat(CHAT))
    assert err.value.status == 503
    assert "model service is unavailable" in err.value.message
    assert [u["healthy"] for u in pool.status()] == [False, False]
    with pytest.raises(UpstreamError) as again:
        pool.tokenize({"model": "m", "prompt": "x"})
    assert again.value.status == 503
    with pytest.raises(UpstreamError):
        pool.models()


def test_an_unhealthy_upstream_returns_when_its_health_answers_200(fakes) -> None:
    fake = make_fake(fakes)
    fake.health_status = 503
    pool = make_pool(fake.url)
    pool.check_health()
    assert pool.status()[0]["healthy"] is False
    with pytest.raises(UpstreamError) as err:
        list(pool.stream_chat(CHAT))
    assert err.value.status == 503
    assert fake.chat_requests() == []
    fake.health_status = 200
    pool.start()
    try:
        deadline = time.monotonic() + 5
        while not pool.status()[0]["healthy"]:
            assert time.monotonic() < deadline, "the health checker never restored it"
            time.sleep(0.05)
    finally:
        pool.stop()
    assert len(list(pool.stream_chat(CHAT))) == 2


def test_a_restarted_upstream_comes_back() -> None:
    port = free_port()
    pool = make_pool(f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamError):
        list(pool.stream_chat(CHAT))
    assert pool.status()[0]["healthy"] is False
    fake = FakeUpstream()
    fake.stop()
    # Bring a server up on the very port that was dead.
    fake.server = FakeServer(("127.0.0.1", port), Handler)
    fake.server.fake = fake
    fake.server.serve()
    try:
        pool.check_health()
        assert pool.status()[0]["healthy"] is True
        assert len(list(pool.stream_chat(CHAT))) == 2
    finally:
        fake.stop()


# ---- requests and errors --------------------------------------------------------------------


def test_stream_chat_asks_for_a_stream_with_usage_and_sends_the_key(fakes) -> None:
    fake = make_fake(fakes)
    pool = make_pool(fake.url, model_api_key="secret-key")
    chunks = list(pool.stream_chat({**CHAT, "stream_options": {"other": 1}}))
    assert len(chunks) == 2
    _path, headers, body = next(s for s in fake.seen if s[0] == "/v1/chat/completions")
    assert body["stream"] is True
    assert body["stream_options"] == {"other": 1, "include_usage": True}
    assert body["messages"] == CHAT["messages"]
    assert headers["Authorization"] == "Bearer secret-key"


def test_no_key_header_without_a_key(fakes) -> None:
    fake = make_fake(fakes)
    list(make_pool(fake.url).stream_chat(CHAT))
    assert "Authorization" not in fake.seen[-1][1]


def test_an_openai_error_keeps_its_status_and_fields(fakes) -> None:
    fake = make_fake(fakes)
    error = {"message": "n must be 1", "type": "invalid_request_error", "param": "n", "code": "x"}
    fake.routes["/v1/chat/completions"] = lambda h, _b: send_json(h, 400, {"error": error})
    pool = make_pool(fake.url)
    with pytest.raises(UpstreamError) as err:
        list(pool.stream_chat(CHAT))
    assert err.value.status == 400
    assert err.value.body() == {"error": error}
    assert pool.status()[0]["healthy"] is True  # a client error says nothing about health


def test_vllm_flat_and_tgi_string_errors_are_understood(fakes) -> None:
    fake = make_fake(fakes)
    pool = make_pool(fake.url)
    flat = {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}
    fake.routes["/tokenize"] = lambda h, _b: send_json(h, 400, flat)
    with pytest.raises(UpstreamError) as err:
        pool.tokenize({"model": "m", "prompt": "x"})
    assert (err.value.status, err.value.message) == (400, "too long")
    fake.routes["/tokenize"] = lambda h, _b: send_json(h, 422, {"error": "bad input"})
    with pytest.raises(UpstreamError) as err:
        pool.tokenize({"model": "m", "prompt": "x"})
    assert (err.value.status, err.value.message) == (422, "bad input")


def test_a_non_json_error_is_a_502(fakes) -> None:
    fake = make_fake(fakes)

    def html_error(handler: Handler, _body: dict) -> None:
        data = b"<html>Internal Server Error</html>"
        handler.send_response(500)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    fake.routes["/v1/chat/completions"] = html_error
    with pytest.raises(UpstreamError) as err:
        list(make_pool(fake.url).stream_chat(CHAT))
    assert err.value.status == 502
    assert "500" in err.value.message


def test_a_refused_model_api_key_is_not_passed_on_as_a_401(fakes) -> None:
    fake = make_fake(fakes)
    refusal = {"error": {"message": "Incorrect API key provided.", "type": "x"}}
    fake.routes["/tokenize"] = lambda h, _b: send_json(h, 401, refusal)
    with pytest.raises(UpstreamError) as err:
        make_pool(fake.url).tokenize({"model": "m", "prompt": "x"})
    assert err.value.status == 502
    assert err.value.code == "upstream_auth_failed"


def test_tokenize_returns_the_upstream_answer(fakes) -> None:
    fake = make_fake(fakes)
    assert make_pool(fake.url).tokenize({"model": "m", "prompt": "x"}) == {
        "count": 3,
        "max_model_len": 99,
    }
    assert fake.seen[-1][0] == "/tokenize"
    assert fake.seen[-1][2] == {"model": "m", "prompt": "x"}


def test_a_read_timeout_is_a_504(fakes) -> None:
    fake = make_fake(fakes)

    def slow(handler: Handler, _body: dict) -> None:
        time.sleep(1.5)  # longer than the pool's read timeout
        send_json(handler, 200, {"count": 1, "max_model_len": 9})

    fake.routes["/tokenize"] = slow
    started = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        make_pool(fake.url, upstream_read_timeout=0.5).tokenize({"model": "m", "prompt": "x"})
    assert err.value.status == 504
    assert time.monotonic() - started < 1.4


def test_an_error_frame_in_the_stream_raises(fakes) -> None:
    fake = make_fake(fakes)

    def fails(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(sse(chunk_for("par")))
        handler.chunk(sse({"error": {"message": "engine broke", "type": "server_error"}}))
        handler.chunk(b"data: [DONE]\n\n")
        handler.end_chunked()

    fake.routes["/v1/chat/completions"] = fails
    received = []
    with pytest.raises(UpstreamError) as err:
        for chunk in make_pool(fake.url).stream_chat(CHAT):
            received.append(chunk)
    assert len(received) == 1
    assert err.value.status == 502
    assert err.value.message == "engine broke"


def test_keepalive_comments_are_skipped(fakes) -> None:
    fake = make_fake(fakes)

    def with_comments(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(b": keep-alive\n\n")
        handler.chunk(sse(chunk_for("a")))
        handler.chunk(b": keep-alive\n\ndata: [DONE]\n\n")
        handler.end_chunked()

    fake.routes["/v1/chat/completions"] = with_comments
    assert len(list(make_pool(fake.url).stream_chat(CHAT))) == 1


def test_a_stream_that_ends_without_done_raises(fakes) -> None:
    fake = make_fake(fakes)
    fake.routes["/v1/chat/completions"] = fake.stream_words(["a"], done=False)
    with pytest.raises(UpstreamError) as err:
        list(make_pool(fake.url).stream_chat(CHAT))
    assert err.value.status == 502
    assert "stopped while answering" in err.value.message


def test_an_upstream_dying_mid_stream_is_a_502_and_takes_it_out(fakes) -> None:
    fake = make_fake(fakes)

    def dies(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(sse(chunk_for("a")))
        handler.wfile.write(b"40\r\npartial")  # a chunk cut short, then the socket closes
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    fake.routes["/v1/chat/completions"] = dies
    pool = make_pool(fake.url)
    received = []
    with pytest.raises(UpstreamError) as err:
        for chunk in pool.stream_chat(CHAT):
            received.append(chunk)
    assert len(received) == 1
    assert err.value.status == 502
    assert "stopped while answering" in err.value.message
    assert pool.status()[0] == {**pool.status()[0], "healthy": False, "in_flight": 0}


def test_closing_the_stream_closes_the_upstream_connection(fakes) -> None:
    fake = make_fake(fakes)
    fake.routes["/v1/chat/completions"] = fake.stream_forever()
    pool = make_pool(fake.url)
    stream = pool.stream_chat(CHAT)
    next(stream)
    next(stream)
    assert pool.status()[0]["in_flight"] == 1
    stream.close()
    assert pool.status()[0]["in_flight"] == 0
    assert fake.stream_closed.wait(5), "the upstream kept streaming to nobody"


def test_abort_from_another_thread_ends_a_stream_waiting_for_tokens(fakes) -> None:
    fake = make_fake(fakes)
    gate = threading.Event()

    def stalls(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(sse(chunk_for("a")))
        gate.wait(10)  # a model busy elsewhere: nothing to read for a long time

    fake.routes["/v1/chat/completions"] = stalls
    pool = make_pool(fake.url, upstream_read_timeout=30)
    aborts: list[Callable[[], None]] = []
    received: list[dict] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            received.extend(pool.stream_chat(CHAT, on_open=aborts.append))
        except BaseException as exc:
            errors.append(exc)

    consumer = threading.Thread(target=consume)
    consumer.start()
    deadline = time.monotonic() + 5
    while not received:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)  # the consumer is now blocked reading
    started = time.monotonic()
    aborts[0]()
    consumer.join(5)
    gate.set()
    assert not consumer.is_alive(), "abort did not wake the blocked read"
    assert time.monotonic() - started < 1
    assert errors == [] and len(received) == 1
    assert pool.status()[0]["healthy"] is True  # a stop is not an upstream failure
    assert pool.status()[0]["in_flight"] == 0


def test_a_late_abort_does_nothing(fakes) -> None:
    fake = make_fake(fakes)
    pool = make_pool(fake.url)
    aborts: list[Callable[[], None]] = []
    assert len(list(pool.stream_chat(CHAT, on_open=aborts.append))) == 2
    aborts[0]()
    assert len(list(pool.stream_chat(CHAT))) == 2
    assert pool.tokenize({"model": "m", "prompt": "x"})["count"] == 3


def test_open_yields_any_status_and_iter_raw_relays_bytes_as_they_come(fakes) -> None:
    fake = make_fake(fakes)
    gate = threading.Event()

    def gated(handler: Handler, _body: dict) -> None:
        handler.start_chunked()
        handler.chunk(b"data: first\n\n")
        gate.wait(5)
        handler.chunk(b"data: second\n\n")
        handler.end_chunked()

    fake.routes["/v1/completions"] = gated
    pool = make_pool(fake.url)
    with pool.open("/v1/completions", {"model": "m"}, stream=True) as reply:
        pieces = iter_raw(reply)
        assert next(pieces) == b"data: first\n\n"  # not held back waiting for more
        gate.set()
        assert b"".join(pieces) == b"data: second\n\n"
    with pool.open("/v1/nothing", {"model": "m"}, stream=False) as reply:
        assert reply.status_code == 404


def test_nan_in_a_body_is_a_400_not_a_crash(fakes) -> None:
    fake = make_fake(fakes)
    with pytest.raises(APIError) as err:
        list(make_pool(fake.url).stream_chat({**CHAT, "temperature": float("nan")}))
    assert err.value.status == 400
    assert fake.chat_requests() == []


# ---- a busy model API -----------------------------------------------------------------------

BUSY_PATHS = ("/v1/chat/completions", "/v1/completions", "/tokenize")


def make_busy(fake: FakeUpstream, retry_after: str | None = "7") -> None:
    """Every generation route answers as our model API does with a full queue."""
    error = {"message": "The server is busy.", "type": "rate_limit_error", "code": "server_busy"}
    headers = {"Retry-After": retry_after} if retry_after else {}
    for path in BUSY_PATHS:
        fake.routes[path] = lambda h, _b: send_json(h, 429, {"error": error}, headers)


def requests_to(fake: FakeUpstream, path: str) -> int:
    return sum(1 for seen, _h, _b in fake.seen if seen == path)


def assert_all_healthy_and_idle(pool: UpstreamPool) -> None:
    status = pool.status()
    assert all(u["healthy"] and u["in_flight"] == 0 for u in status), status


def test_a_busy_upstream_passes_the_chat_to_another_and_stays_healthy(fakes) -> None:
    busy, free = make_fake(fakes), make_fake(fakes)
    make_busy(busy)
    pool = make_pool(busy.url, free.url)
    for _ in range(4):
        assert [c["choices"][0]["delta"]["content"] for c in pool.stream_chat(CHAT)] == [
            "Hel",
            "lo",
        ]
    assert requests_to(busy, "/v1/chat/completions") >= 1  # tried, refused, passed on
    assert requests_to(free, "/v1/chat/completions") == 4
    assert_all_healthy_and_idle(pool)
    assert pool.tokenize({"model": "m", "prompt": "x"})["count"] == 3
    with pool.open("/v1/completions", {"model": "m"}, stream=False) as reply:
        assert reply.status_code == 404  # the free fake has no such route: it was reached


def test_when_every_upstream_is_busy_the_chat_gets_a_429_model_busy(fakes) -> None:
    first, second = make_fake(fakes), make_fake(fakes)
    make_busy(first, retry_after="7")
    make_busy(second, retry_after="3")
    pool = make_pool(first.url, second.url)
    opened: list[object] = []
    with pytest.raises(UpstreamError) as err:
        list(pool.stream_chat(CHAT, on_open=opened.append))
    assert (err.value.status, err.value.code) == (429, "model_busy")
    assert "busy with other requests" in err.value.message
    assert err.value.headers == {"Retry-After": "3"}  # the sooner of the two
    assert opened == []  # nothing was generated, so there is nothing to stop
    assert [requests_to(f, "/v1/chat/completions") for f in (first, second)] == [1, 1]
    assert_all_healthy_and_idle(pool)
    pool.check_health()  # both answer /health: busy is not down
    assert_all_healthy_and_idle(pool)


def test_a_busy_answer_reaches_v1_clients_and_tokenize_as_a_429(fakes) -> None:
    fake = make_fake(fakes)
    make_busy(fake)
    pool = make_pool(fake.url)
    for stream in (False, True):
        body = {"model": "m", "stream": stream}
        with pytest.raises(UpstreamError) as err, pool.open("/v1/completions", body, stream=stream):
            pytest.fail("a busy answer was passed on as a reply")
        assert (err.value.status, err.value.code) == (429, "model_busy")
        with Flask(__name__).app_context():  # how the /v1 pass-through renders it
            rendered = err.value.response()
        assert rendered.status_code == 429
        assert rendered.headers["Retry-After"] == "7"
        assert rendered.json["error"]["type"] == "rate_limit_error"
    with pytest.raises(UpstreamError) as err:
        pool.tokenize({"model": "m", "prompt": "x"})
    assert (err.value.status, err.value.code) == (429, "model_busy")
    assert_all_healthy_and_idle(pool)


def test_a_busy_answer_without_retry_after_invents_none(fakes) -> None:
    fake = make_fake(fakes)
    make_busy(fake, retry_after=None)
    with pytest.raises(UpstreamError) as err:
        list(make_pool(fake.url).stream_chat(CHAT))
    assert (err.value.status, err.value.headers) == (429, {})


def test_a_connection_closed_without_an_answer_is_tried_once_more(fakes) -> None:
    """A kept-alive connection the server closes as it is reused: the request goes again on
    a fresh one, and the upstream stays in."""
    fake = make_fake(fakes)
    hang_ups = []

    def hang_up_once(handler: Handler, _body: dict) -> None:
        if not hang_ups:
            hang_ups.append(1)
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)  # no status line, nothing
            return
        send_json(handler, 200, {"count": 3, "max_model_len": 99})

    fake.routes["/tokenize"] = hang_up_once
    pool = make_pool(fake.url)
    assert pool.tokenize({"model": "m", "prompt": "x"})["count"] == 3
    assert [path for path, _h, _b in fake.seen].count("/tokenize") == 2
    assert pool.status()[0]["healthy"] is True


def test_a_connection_closed_without_an_answer_twice_is_an_error(fakes) -> None:
    fake = make_fake(fakes)

    def hang_up(handler: Handler, _body: dict) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    fake.routes["/tokenize"] = hang_up
    pool = make_pool(fake.url)
    with pytest.raises(UpstreamError) as failed:
        pool.tokenize({"model": "m", "prompt": "x"})
    assert failed.value.status == 502
    assert [path for path, _h, _b in fake.seen].count("/tokenize") == 2  # not more
