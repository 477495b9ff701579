"""The whole web tier through the real nginx on loopback: TLS with a test CA, headers,
static files, proxying of REST, SSE and WebSocket, nginx's own limits, the openai npm client.

nginx listens on 127.0.0.1 only; `localhost` resolves to 127.0.0.1 here (and clients that
try ::1 first fall back to it), so the URLs are https://localhost:<port>, which the test
certificate names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import simple_websocket

from deploy.certs import ensure_certs
from deploy.settings import DeploySettings
from tests.integration.chat_client import close_websocket
from tests.integration.conftest import API_KEY, MODEL, PASSWORD
from tests.integration.nginx_server import (
    RunningNginx,
    loopback_settings,
    start_nginx,
    world_readable_dir,
)
from tests.npm_openai import npm_client_dir
from tests.servers import RunningServer, start_app_service

INDEX_HTML = "<!doctype html><title>chatstack</title><div id=root></div>"
ASSET = "app-abc123.js"
ASSET_JS = "export const greeting = 'hello from a hashed asset';\n" * 40
# Low, so that a test can reach it; the default is 32.
WS_PER_ADDRESS = 3
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Stack:
    nginx: RunningNginx
    app: RunningServer
    settings: DeploySettings
    ca: Path
    user: requests.Session
    api_key: str

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def origin(self) -> str:
        return self.settings.site_origin


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("nginx")
    web_root = world_readable_dir("chatstack-web-")
    run_dir = world_readable_dir("chatstack-nginx-")
    (web_root / "index.html").write_text(INDEX_HTML)
    (web_root / "assets").mkdir(mode=0o755)
    (web_root / "assets" / ASSET).write_text(ASSET_JS)
    for path in (web_root / "index.html", web_root / "assets" / ASSET):
        path.chmod(0o644)
    settings = loopback_settings(
        run_dir / "certs",  # where nginx's workers can read ca.pem, which /ca.pem serves
        web_root,
        run_dir,
        max_upload_mb=1,
        ws_connections_per_address=WS_PER_ADDRESS,
    )
    app_port = int(settings.app_upstream.rsplit(":", 1)[1])
    certs = settings.certs_dir
    ensure_certs(settings)
    app = start_app_service(
        tmp,
        model_api.url,
        port=app_port,
        MODEL_API_KEY=API_KEY,
        SITE_ORIGINS=settings.site_origin,
        COOKIE_SECURE="true",
        MAX_UPLOAD_MB="1",
        UPSTREAM_HEALTH_SECONDS="1",
    )
    nginx = None
    try:
        app.wait_healthy("/api/health")
        nginx = start_nginx(settings)
        nginx.wait_healthy()
        # One account for the module: registrations count against the login rate limit.
        user = requests.Session()
        user.verify = str(certs / "ca.pem")
        user.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment beats verify
        reply = user.post(
            nginx.url + "/api/auth/register",
            json={"username": f"nginx_{uuid.uuid4().hex[:8]}", "password": PASSWORD},
        )
        assert reply.status_code == 201, reply.text
        reply = user.post(nginx.url + "/api/keys", json={"name": "through nginx"})
        assert reply.status_code == 201, reply.text
        yield Stack(nginx, app, settings, certs / "ca.pem", user, reply.json()["key"])
    finally:
        if nginx is not None:
            nginx.stop()
        app.stop()
        shutil.rmtree(web_root, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def get(stack: Stack, path: str, **kwargs) -> requests.Response:
    return requests.get(stack.url + path, verify=stack.ca, timeout=30, **kwargs)


def assert_security_headers(reply: requests.Response, stack: Stack) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert reply.headers.get(name) == value, (name, reply.status_code, reply.url)
    csp = reply.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert f"connect-src 'self' wss://localhost:{stack.settings.https_port}" in csp
    assert "frame-ancestors 'none'" in csp
    # No version anywhere: the Server header is the bare product name.
    assert reply.headers.get("Server") == "nginx"


def assert_nginx_error(reply: requests.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    error = reply.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    return error


# ---- TLS and redirects -------------------------------------------------------------------


def test_http_redirects_to_https_keeping_host_path_and_query(stack: Stack) -> None:
    reply = requests.get(
        stack.nginx.http_url + "/some/route?x=1", allow_redirects=False, timeout=10
    )
    assert reply.status_code == 301
    assert reply.headers["Location"] == f"{stack.url}/some/route?x=1"
    assert reply.headers["Server"] == "nginx"


def test_plain_http_on_the_https_port_is_redirected(stack: Stack) -> None:
    reply = requests.get(
        f"http://localhost:{stack.settings.https_port}/x", allow_redirects=False, timeout=10
    )
    assert reply.status_code == 301
    assert reply.headers["Location"] == f"{stack.url}/x"


def handshake(stack: Stack, context: ssl.SSLContext) -> str:
    address = ("127.0.0.1", stack.settings.https_port)
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused_by_the_server(stack: Stack, version) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(stack.ca)
    # Let the client offer the old version at all: Debian's OpenSSL refuses it by default.
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    with pytest.raises(ssl.SSLError) as refused:
        handshake(stack, context)
    # The server's protocol_version alert, not the client failing to offer the version.
    assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_accepted(stack: Stack, version) -> None:
    context = ssl.create_default_context(cafile=str(stack.ca))
    context.minimum_version = version
    context.maximum_version = version
    assert handshake(stack, context) == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


# ---- headers and static files ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/some/route", 200),
        (f"/assets/{ASSET}", 200),
        ("/assets/missing-0000.js", 404),  # nginx's own 404
        ("/api/health", 200),
        ("/api/no-such-route", 404),  # the app's 404, proxied
        ("/api/conversations", 401),  # the app's 401 without a session
        ("/v1/models", 401),  # the pass-through without a key
    ],
)
def test_security_headers_on_every_response(stack: Stack, path: str, status: int) -> None:
    reply = get(stack, path)
    assert reply.status_code == status
    assert_security_headers(reply, stack)


def test_nginx_errors_are_json_without_a_version(stack: Stack) -> None:
    reply = get(stack, "/assets/missing-0000.js")
    error = assert_nginx_error(reply, 404, "not_found")
    assert error["type"] == "not_found_error"
    assert "nginx" not in reply.text
    # A request nginx itself rejects as malformed.
    with socket.create_connection(("127.0.0.1", stack.settings.https_port), timeout=10) as raw:
        context = stack.nginx.ssl_context()
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n")
            answer = tls.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer
    assert '"code":"bad_request"' in answer
    assert "Server: nginx\r\n" in answer and "nginx/" not in answer
    assert "X-Frame-Options: DENY" in answer


def test_spa_fallback_serves_index_html_revalidated(stack: Stack) -> None:
    for path in ("/", "/some/route", "/c/abc/deeper"):
        reply = get(stack, path)
        assert reply.status_code == 200
        assert reply.text == INDEX_HTML
        assert reply.headers["Content-Type"].startswith("text/html")
        assert reply.headers["Cache-Control"] == "no-cache"


def test_hashed_assets_are_cached_for_a_year_and_gzipped(stack: Stack) -> None:
    reply = get(stack, f"/assets/{ASSET}", headers={"Accept-Encoding": "gzip"})
    assert reply.status_code == 200
    assert reply.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert reply.headers["Content-Type"].startswith("application/javascript")
    assert reply.headers["Content-Encoding"] == "gzip"
    assert reply.text == ASSET_JS
    assert_security_headers(reply, stack)


def test_the_local_ca_downloads_from_ca_pem(stack: Stack) -> None:
    reply = get(stack, "/ca.pem")
    assert reply.status_code == 200
    assert reply.content == stack.ca.read_bytes()
    assert reply.headers["Content-Type"] == "application/x-x509-ca-cert"
    assert "attachment" in reply.headers["Content-Disposition"]
    assert_security_headers(reply, stack)


# ---- proxying ----------------------------------------------------------------------------


def test_one_request_id_runs_through_nginx_the_app_and_the_model_api(
    stack: Stack, model_api: RunningServer
) -> None:
    reply = requests.post(
        stack.url + "/v1/chat/completions",
        # A client's own id is not trusted at the edge: nginx's replaces it.
        headers={"Authorization": f"Bearer {stack.api_key}", "X-Request-ID": "client-chosen"},
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hi."}],
            "max_tokens": 4,
        },
        verify=stack.ca,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    rid = reply.headers["X-Request-ID"]
    assert len(rid) == 32 and int(rid, 16) >= 0, rid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        access = (stack.settings.run_dir / "access.log").read_text()
        if f"request_id={rid}" in access:
            break
        time.sleep(0.2)  # nginx writes its access line after the response
    assert f"request_id={rid}" in access
    app_lines = [line for line in stack.app.log().splitlines() if rid in line]
    model_lines = [line for line in model_api.log().splitlines() if rid in line]
    assert any("POST /v1/chat/completions 200" in line for line in app_lines), app_lines
    assert any("POST /v1/chat/completions 200" in line for line in model_lines), model_lines
    assert "client-chosen" not in stack.app.log()


def test_first_sse_chunk_arrives_long_before_the_answer_ends(stack: Stack) -> None:
    start = time.monotonic()
    first = done = None
    chunks = 0
    with requests.post(
        stack.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {stack.api_key}"},
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from 1 to 200, separated by commas."}],
            "max_tokens": 150,
            "temperature": 0,
            "stream": True,
        },
        verify=stack.ca,
        stream=True,
        timeout=(10, 120),
    ) as reply:
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in reply.headers
        for line in reply.iter_lines(chunk_size=None):
            if not line.startswith(b"data: "):
                continue
            if line == b"data: [DONE]":
                done = time.monotonic() - start
                break
            chunks += 1
            if first is None:
                first = time.monotonic() - start
    assert first is not None and done is not None
    assert chunks >= 20
    # Unbuffered: the first token is there within the first part of the stream's life.
    assert first < 0.3 * done, (first, done)


def test_a_whole_websocket_chat_turn_through_wss(stack: Stack) -> None:
    reply = stack.user.post(stack.url + "/api/conversations", json={})
    assert reply.status_code == 201, reply.text
    conversation_id = reply.json()["id"]
    cookies = "; ".join(f"{c.name}={c.value}" for c in stack.user.cookies)
    socket_url = f"wss://localhost:{stack.settings.https_port}/ws"
    ws = simple_websocket.Client.connect(
        socket_url,
        headers={"Origin": stack.origin, "Cookie": cookies},
        ssl_context=stack.nginx.ssl_context(),
    )
    try:

        def recv() -> dict:
            raw = ws.receive(timeout=120)
            assert raw is not None, "no frame within the timeout"
            return json.loads(raw)

        assert recv()["type"] == "ready"
        ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation_id": conversation_id,
                    "content": "What is the capital of France?",
                    "settings": {"temperature": 0, "max_tokens": 16},
                }
            )
        )
        frames = [recv()]
        while frames[-1]["type"] not in ("done", "error"):
            frames.append(recv())
    finally:
        close_websocket(ws)
    types = [f["type"] for f in frames]
    assert types[:2] == ["user_message", "start"], types
    assert types[-1] == "done", frames[-1]
    deltas = [f["content"] for f in frames if f["type"] == "delta"]
    assert len(deltas) >= 2
    assert frames[-1]["message"]["content"] == "".join(deltas)
    assert frames[-1]["message"]["status"] == "complete"


def test_a_socket_from_another_origin_is_refused(stack: Stack) -> None:
    cookies = "; ".join(f"{c.name}={c.value}" for c in stack.user.cookies)
    with pytest.raises(simple_websocket.ConnectionError):
        simple_websocket.Client.connect(
            f"wss://localhost:{stack.settings.https_port}/ws",
            headers={"Origin": "https://evil.example", "Cookie": cookies},
            ssl_context=stack.nginx.ssl_context(),
        )


def cookie_header(stack: Stack) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in stack.user.cookies)


def exchange(stack: Stack, request: str) -> tuple[str, dict[str, str], str]:
    """One raw HTTP/1.1 request over TLS: (status line, headers, body). A 101's socket is
    closed after its headers."""
    address = ("127.0.0.1", stack.settings.https_port)
    with (
        socket.create_connection(address, timeout=30) as raw,
        stack.nginx.ssl_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data and (chunk := tls.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status, *lines = head.decode(errors="replace").split("\r\n")
        fields = (line.partition(":") for line in lines)
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        length = int(headers.get("content-length", 0))
        while len(body) < length and (chunk := tls.recv(65536)):
            body += chunk
    return status, headers, body.decode(errors="replace")


def socket_request(stack: Stack, upgrade: str, connection: str = "Upgrade") -> str:
    """A chat-socket handshake as a signed-in browser sends it, with `upgrade` as given."""
    return (
        "GET /ws HTTP/1.1\r\n"
        "Host: localhost\r\n"
        f"Upgrade: {upgrade}\r\n"
        f"Connection: {connection}\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        f"Origin: {stack.origin}\r\n"
        f"Cookie: {cookie_header(stack)}\r\n"
        "\r\n"
    )


@pytest.mark.parametrize("upgrade", ["h2c", "websocket, h2c", "TLS/1.2"])
def test_a_non_websocket_upgrade_on_ws_is_refused_by_nginx(stack: Stack, upgrade: str) -> None:
    """`Upgrade: h2c` to the app could open an HTTP/2 tunnel past nginx's rules: nginx
    answers it itself and the app never sees it (nginx's own errors carry no request id;
    everything the app answers does)."""
    status, headers, body = exchange(
        stack, socket_request(stack, upgrade, connection="Upgrade, HTTP2-Settings")
    )
    assert status.startswith("HTTP/1.1 400"), (status, body)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert "x-request-id" not in headers, "the request reached the app service"
    assert headers["x-frame-options"] == "DENY"


def test_a_websocket_upgrade_in_any_case_reaches_the_app(stack: Stack) -> None:
    status, headers, _ = exchange(stack, socket_request(stack, "WebSocket"))
    assert status.startswith("HTTP/1.1 101"), status
    assert headers["upgrade"].lower() == "websocket"
    # RFC 6455's example key and its accept value: the app completed the handshake.
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def open_chat_socket(stack: Stack) -> simple_websocket.Client:
    ws = simple_websocket.Client.connect(
        f"wss://localhost:{stack.settings.https_port}/ws",
        headers={"Origin": stack.origin, "Cookie": cookie_header(stack)},
        ssl_context=stack.nginx.ssl_context(),
    )
    assert json.loads(ws.receive(timeout=30))["type"] == "ready"
    return ws


def test_open_sockets_per_address_are_limited_with_a_json_429(stack: Stack) -> None:
    sockets = [open_chat_socket(stack) for _ in range(WS_PER_ADDRESS)]
    try:
        status, headers, body = exchange(stack, socket_request(stack, "websocket"))
        assert status.startswith("HTTP/1.1 429"), (status, body)
        assert headers["content-type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_connections")
        assert headers["x-frame-options"] == "DENY"
        # A closed socket makes room for another.
        close_websocket(sockets.pop())
        deadline = time.monotonic() + 15
        while True:
            status, _, _ = exchange(stack, socket_request(stack, "websocket"))
            if status.startswith("HTTP/1.1 101") or time.monotonic() > deadline:
                break
            time.sleep(1)  # nginx frees the slot once the tunnel to the app has closed
        assert status.startswith("HTTP/1.1 101"), status
    finally:
        for ws in sockets:
            close_websocket(ws)


def test_npm_openai_client_streams_through_nginx(stack: Stack) -> None:
    client_dir = npm_client_dir()
    run = subprocess.run(
        ["node", "stream.mjs"],
        cwd=client_dir,
        env={
            **os.environ,
            "OPENAI_BASE_URL": stack.url + "/v1",
            "OPENAI_API_KEY": stack.api_key,
            "MODEL": MODEL,
            "PROMPT": "What is the capital of France?",
            "MAX_TOKENS": "16",
            "NODE_EXTRA_CA_CERTS": str(stack.ca),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text, _, tail = run.stdout.rpartition("[chunks=")
    assert int(tail.split("]")[0]) >= 2, run.stdout
    assert text.strip(), run.stdout


# ---- limits ------------------------------------------------------------------------------


def test_an_oversized_upload_is_a_json_413_from_nginx(stack: Stack) -> None:
    big = b"a line of text\n" * (3 * 1024 * 1024 // 15)
    reply = stack.user.post(stack.url + "/api/files", files={"file": ("big.txt", big)})
    error = assert_nginx_error(reply, 413, "request_too_large")
    assert "1 MB" in error["message"]
    assert_security_headers(reply, stack)
    # Just over the file limit but within the body limit both share: the app's own 413.
    over = b"x" * (1024 * 1024 + 10 * 1024)
    reply = stack.user.post(stack.url + "/api/files", files={"file": ("over.txt", over)})
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "file_too_large"
    assert_security_headers(reply, stack)
    assert get(stack, "/api/health").status_code == 200


# Late: it leaves the chat zone exhausted for a few seconds.
def test_chat_rate_limit_answers_429_json(stack: Stack) -> None:
    # A bad key is refused by the app without generating, so the burst costs nothing.
    statuses, limited = [], None
    for _ in range(40):
        reply = requests.post(
            stack.url + "/v1/chat/completions",
            headers={"Authorization": "Bearer sk-not-a-key"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            verify=stack.ca,
            timeout=30,
        )
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            limited = reply
            break
    assert limited is not None, statuses
    assert set(statuses[:-1]) == {401}
    error = assert_nginx_error(limited, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert_security_headers(limited, stack)


# Last: it leaves the login zone exhausted for most of a minute.
def test_login_rate_limit_answers_429_json(stack: Stack) -> None:
    statuses, limited = [], None
    for _ in range(30):
        reply = requests.post(
            stack.url + "/api/auth/login",
            json={"username": f"nobody_{uuid.uuid4().hex[:6]}", "password": "wrong password"},
            verify=stack.ca,
            timeout=30,
        )
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            limited = reply
            break
    assert limited is not None, statuses
    # nginx's limit (burst 5), well before the app's own failed-login limit.
    assert set(statuses[:-1]) == {401}
    assert len(statuses) <= 8, statuses
    error = assert_nginx_error(limited, 429, "rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert_security_headers(limited, stack)
