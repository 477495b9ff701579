"""The rendered nginx.conf: `nginx -t` accepts both variants, crossplane parses them strictly,
and the directives the web tier's contract rests on are there."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import crossplane
import pytest

from deploy.certs import ensure_certs
from deploy.nginx import TLS_CIPHERS, main, render_nginx_conf, write_nginx_conf
from deploy.settings import DeploySettings

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SECURITY_HEADERS = {
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    certs_dir = tmp_path_factory.mktemp("tls") / "certs"  # the CA key goes in its ca/
    ensure_certs(
        DeploySettings(
            certs_dir=certs_dir,
            tls_cert=certs_dir / "server.pem",
            tls_key=certs_dir / "server-key.pem",
        )
    )
    return certs_dir


@pytest.fixture
def settings(tmp_path: Path, certs: Path) -> DeploySettings:
    web_root = tmp_path / "www"
    web_root.mkdir()
    return DeploySettings(
        server_name="chat.example.com",
        https_port=8443,
        http_port=8080,
        tls_cert=certs / "server.pem",
        tls_key=certs / "server-key.pem",
        certs_dir=certs,
        web_root=web_root,
        app_upstream="127.0.0.1:8000",
        max_upload_mb=20,
        run_dir=tmp_path / "run",
        login_rate_per_minute=10,
        chat_rate_per_minute=60,
    )


def nginx_test(settings: DeploySettings, variant: str) -> subprocess.CompletedProcess[str]:
    conf = write_nginx_conf(settings, settings.run_dir / f"{variant}.conf", variant)
    return subprocess.run(
        [NGINX, "-t", "-p", str(settings.run_dir), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def parse(settings: DeploySettings, variant: str) -> list[dict]:
    """Strict crossplane parse: every directive known, in an allowed context, with valid
    arguments. crossplane 0.5 does not model the entries of `types` and `map` blocks
    (MIME types, map keys), so those two blocks are checked separately."""
    conf = write_nginx_conf(settings, settings.run_dir / f"{variant}.conf", variant)
    payload = crossplane.parse(
        str(conf),
        single=True,
        strict=True,
        check_ctx=True,
        check_args=True,
        ignore=("types", "map"),
    )
    assert payload["status"] == "ok", payload["errors"]
    return crossplane.parse(str(conf), single=True)["config"][0]["parsed"]


def walk(block: list[dict], context: tuple[str, ...] = ()) -> Iterator[tuple[tuple, dict]]:
    for stmt in block:
        yield context, stmt
        if "block" in stmt:
            label = " ".join([stmt["directive"], *stmt["args"]])
            yield from walk(stmt["block"], (*context, label))


def find(parsed: list[dict], directive: str) -> list[tuple[tuple, list[str]]]:
    return [(ctx, stmt["args"]) for ctx, stmt in walk(parsed) if stmt["directive"] == directive]


def block_of(parsed: list[dict], label: str) -> list[dict]:
    matches = [
        stmt["block"]
        for _, stmt in walk(parsed)
        if "block" in stmt and " ".join([stmt["directive"], *stmt["args"]]) == label
    ]
    assert len(matches) == 1, (label, len(matches))
    return matches[0]


def args_of(block: list[dict], directive: str) -> list[list[str]]:
    return [stmt["args"] for stmt in block if stmt["directive"] == directive]


def servers(parsed: list[dict]) -> list[list[dict]]:
    """The redirect server, then the HTTPS one."""
    http = block_of(parsed, "http")
    return [stmt["block"] for stmt in http if stmt["directive"] == "server"]


# ---- nginx itself and crossplane ---------------------------------------------------------


def test_nginx_accepts_the_local_variant(settings: DeploySettings) -> None:
    result = nginx_test(settings, "local")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@pytest.mark.parametrize("upstream", ["127.0.0.1:8000", "app_service:8000"])
def test_nginx_accepts_the_compose_variant(settings: DeploySettings, upstream: str) -> None:
    # app_service does not resolve here: the variable + resolver keep nginx from looking it
    # up before a request needs it, as it would fail to outside Docker's network.
    result = nginx_test(dataclasses.replace(settings, app_upstream=upstream), "compose")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_crossplane_parses_strictly(settings: DeploySettings, variant: str) -> None:
    parsed = parse(settings, variant)
    (mime,) = [s["block"] for s in block_of(parsed, "http") if s["directive"] == "types"]
    assert ["application/javascript", "js", "mjs"] in [[s["directive"], *s["args"]] for s in mime]
    upgrade = block_of(parsed, "map $http_upgrade $websocket_upgrade")
    assert [[s["directive"], *s["args"]] for s in upgrade] == [
        ["default", ""],
        ["~*^websocket$", "websocket"],
    ]


def test_unknown_variant_is_refused(settings: DeploySettings) -> None:
    with pytest.raises(ValueError, match="kubernetes"):
        render_nginx_conf(settings, variant="kubernetes")


# ---- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_tls_follows_mozilla_intermediate(settings: DeploySettings, variant: str) -> None:
    https = servers(parse(settings, variant))[1]
    assert args_of(https, "ssl_protocols") == [["TLSv1.2", "TLSv1.3"]]
    assert args_of(https, "ssl_ciphers") == [[TLS_CIPHERS]]
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in TLS_CIPHERS and "CBC" not in TLS_CIPHERS
    assert args_of(https, "ssl_prefer_server_ciphers") == [["off"]]
    assert args_of(https, "ssl_session_tickets") == [["off"]]
    assert args_of(https, "ssl_session_timeout") == [["1d"]]
    assert args_of(https, "ssl_certificate") == [[str(settings.tls_cert)]]
    assert args_of(https, "ssl_certificate_key") == [[str(settings.tls_key)]]


def test_local_listens_on_the_configured_address(settings: DeploySettings) -> None:
    redirect, https = servers(parse(settings, "local"))
    assert args_of(https, "listen") == [["127.0.0.1:8443", "ssl", "http2"]]
    assert args_of(redirect, "listen") == [["127.0.0.1:8080"]]


def test_compose_listens_on_443_and_80_in_the_container(settings: DeploySettings) -> None:
    redirect, https = servers(parse(settings, "compose"))
    assert args_of(https, "listen") == [["0.0.0.0:443", "ssl", "http2"]]
    assert args_of(redirect, "listen") == [["0.0.0.0:80"]]


@pytest.mark.parametrize(("port", "target"), [(8443, ":8443"), (443, "")])
def test_http_redirects_to_https_with_the_public_port(
    settings: DeploySettings, port: int, target: str
) -> None:
    for variant in ("local", "compose"):
        redirect = servers(parse(dataclasses.replace(settings, https_port=port), variant))[0]
        location = block_of(redirect, "location /")
        assert args_of(location, "return") == [["301", f"https://$host{target}$request_uri"]]


# ---- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_server_tokens_off_and_headers_always(settings: DeploySettings, variant: str) -> None:
    parsed = parse(settings, variant)
    assert [args for ctx, args in find(parsed, "server_tokens")] == [["off"]]
    add_headers = find(parsed, "add_header")
    assert add_headers
    for ctx, args in add_headers:
        assert args[-1] == "always", (ctx, args)


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_every_block_with_its_own_headers_repeats_the_security_headers(
    settings: DeploySettings, variant: str
) -> None:
    """add_header in a block drops the inherited ones: every block that adds any must add
    all the security headers, or its responses go out without them."""
    by_block: dict[tuple, set[str]] = {}
    for ctx, args in find(parse(settings, variant), "add_header"):
        by_block.setdefault(ctx, set()).add(args[0])
    assert ("http",) in by_block
    for ctx, names in by_block.items():
        assert names >= SECURITY_HEADERS, (ctx, SECURITY_HEADERS - names)


def test_csp_allows_the_app_and_its_socket_only(settings: DeploySettings) -> None:
    headers = dict(args[:2] for _, args in find(parse(settings, "local"), "add_header"))
    csp = [part.strip() for part in headers["Content-Security-Policy"].split(";")]
    assert "default-src 'self'" in csp
    assert "connect-src 'self' wss://chat.example.com:8443" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert not any("*" in part or "http:" in part for part in csp)
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_csp_socket_origin_drops_port_443(settings: DeploySettings) -> None:
    text = render_nginx_conf(dataclasses.replace(settings, https_port=443))
    assert "connect-src 'self' wss://chat.example.com;" in text


# ---- static files ------------------------------------------------------------------------


def test_static_files_spa_fallback_and_caching(settings: DeploySettings) -> None:
    parsed = parse(settings, "local")
    https = servers(parsed)[1]
    assert args_of(https, "root") == [[str(settings.web_root)]]
    assert args_of(block_of(https, "location /"), "try_files") == [["$uri", "$uri/", "/index.html"]]
    assets = block_of(https, "location /assets/")
    assert ["Cache-Control", "public, max-age=31536000, immutable", "always"] in args_of(
        assets, "add_header"
    )
    index = block_of(https, "location = /index.html")
    assert ["Cache-Control", "no-cache", "always"] in args_of(index, "add_header")
    http = block_of(parsed, "http")
    assert args_of(http, "gzip") == [["on"]]
    assert "text/event-stream" not in args_of(http, "gzip_types")[0]


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_the_local_ca_is_offered_at_ca_pem_only_when_it_signed_the_certificate(
    settings: DeploySettings, certs: Path, tmp_path: Path, variant: str
) -> None:
    https = servers(parse(settings, variant))[1]
    ca = block_of(https, "location = /ca.pem")
    assert args_of(ca, "alias") == [[str(certs / "ca.pem")]]
    assert args_of(ca, "default_type") == [["application/x-x509-ca-cert"]]
    assert ["Cache-Control", "no-cache", "always"] in args_of(ca, "add_header")

    # The operator's own certificate (TLS_CERT/TLS_KEY): nothing to trust by hand.
    own = tmp_path / "own"
    own.mkdir()
    for name in ("server.pem", "server-key.pem"):
        shutil.copy(certs / name, own / name)
    operator = dataclasses.replace(
        settings, tls_cert=own / "server.pem", tls_key=own / "server-key.pem"
    )
    assert not operator.uses_local_ca
    https = servers(parse(operator, variant))[1]
    assert not any(
        isinstance(d, dict) and d.get("directive") == "location" and d["args"] == ["=", "/ca.pem"]
        for d in https
    )


# ---- proxying ----------------------------------------------------------------------------

PROXIED = (
    "location /api/",
    "location /v1/",
    "location = /api/auth/login",
    "location = /api/auth/register",
    "location = /v1/chat/completions",
    "location = /v1/completions",
)


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_api_and_v1_proxy_unbuffered_with_long_timeouts(
    settings: DeploySettings, variant: str
) -> None:
    https = servers(parse(settings, variant))[1]
    upstream = "http://app_service" if variant == "local" else "http://$app_upstream"
    for label in PROXIED:
        location = block_of(https, label)
        assert args_of(location, "proxy_pass") == [[upstream]], label
        assert args_of(location, "proxy_buffering") == [["off"]], label
        assert args_of(location, "proxy_http_version") == [["1.1"]], label
        assert args_of(location, "proxy_read_timeout") == [["600s"]], label
        forwarded = {args[0]: args[1] for args in args_of(location, "proxy_set_header")}
        assert forwarded["X-Real-IP"] == "$remote_addr", label
        assert forwarded["X-Forwarded-For"] == "$proxy_add_x_forwarded_for", label
        assert forwarded["X-Forwarded-Proto"] == "$scheme", label
        assert forwarded["Host"] == "$host", label
        assert forwarded["X-Request-ID"] == "$request_id", label


def map_entries(parsed: list[dict], label: str) -> dict[str, str]:
    return {stmt["directive"]: stmt["args"][0] for stmt in block_of(parsed, label)}


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_websocket_upgrade(settings: DeploySettings, variant: str) -> None:
    parsed = parse(settings, variant)
    ws = block_of(servers(parsed)[1], "location = /ws")
    forwarded = {args[0]: args[1] for args in args_of(ws, "proxy_set_header")}
    assert forwarded["Upgrade"] == "$websocket_upgrade"
    assert forwarded["Connection"] == "$connection_upgrade"
    assert args_of(ws, "proxy_http_version") == [["1.1"]]
    assert int(args_of(ws, "proxy_read_timeout")[0][0].rstrip("s")) >= 600
    # Only `websocket` (any case) is passed on as an upgrade; Connection follows it.
    assert map_entries(parsed, "map $http_upgrade $websocket_upgrade") == {
        "default": "",
        "~*^websocket$": "websocket",
    }
    assert map_entries(parsed, "map $websocket_upgrade $connection_upgrade") == {
        "default": "close",
        "websocket": "upgrade",
    }


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_a_non_websocket_upgrade_on_ws_is_refused(settings: DeploySettings, variant: str) -> None:
    """`Upgrade: h2c` (or anything but websocket) never reaches the app as an upgrade: it
    is a 400 from nginx, before any limit counts it."""
    parsed = parse(settings, variant)
    assert map_entries(parsed, "map $http_upgrade $refused_upgrade") == {
        "default": "1",
        "": "0",
        "~*^websocket$": "0",
    }
    ws = block_of(servers(parsed)[1], "location = /ws")
    (refusal,) = [stmt for stmt in ws if stmt["directive"] == "if"]
    assert refusal["args"] == ["$refused_upgrade"]
    assert args_of(refusal["block"], "return") == [["400"]]


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_api_and_v1_never_pass_an_upgrade_on(settings: DeploySettings, variant: str) -> None:
    https = servers(parse(settings, variant))[1]
    for label in PROXIED:
        forwarded = {
            args[0]: args[1:] for args in args_of(block_of(https, label), "proxy_set_header")
        }
        assert forwarded["Upgrade"] == [""], label
        assert forwarded["Connection"] == [""], label


def test_local_upstream_and_compose_resolver(settings: DeploySettings) -> None:
    local = parse(settings, "local")
    assert args_of(block_of(local, "upstream app_service"), "server") == [["127.0.0.1:8000"]]
    assert find(local, "resolver") == []
    compose = parse(dataclasses.replace(settings, app_upstream="app_service:8000"), "compose")
    assert [args for _, args in find(compose, "resolver")] == [
        ["127.0.0.11", "valid=10s", "ipv6=off"]
    ]
    assert args_of(servers(compose)[1], "set") == [["$app_upstream", "app_service:8000"]]


# ---- limits ------------------------------------------------------------------------------


def test_body_limit_matches_the_app(settings: DeploySettings) -> None:
    # app_service/app.py: MAX_CONTENT_LENGTH = MAX_UPLOAD_MB MiB + 64 KiB of framing.
    https = servers(parse(settings, "local"))[1]
    assert args_of(https, "client_max_body_size") == [[f"{20 * 1024 + 64}k"]]


def test_rate_limits_on_login_and_chat(settings: DeploySettings) -> None:
    settings = dataclasses.replace(settings, login_rate_per_minute=7, chat_rate_per_minute=42)
    parsed = parse(settings, "local")
    zones = [args for _, args in find(parsed, "limit_req_zone")]
    assert ["$binary_remote_addr", "zone=login:10m", "rate=7r/m"] in zones
    assert ["$binary_remote_addr", "zone=chat:10m", "rate=42r/m"] in zones
    assert [args for _, args in find(parsed, "limit_req_status")] == [["429"]]
    https = servers(parsed)[1]
    for label, zone in (
        ("location = /api/auth/login", "login"),
        ("location = /api/auth/register", "login"),
        ("location = /v1/chat/completions", "chat"),
        ("location = /v1/completions", "chat"),
    ):
        (limit,) = args_of(block_of(https, label), "limit_req")
        assert limit[0] == f"zone={zone}", label
        assert limit[1].startswith("burst="), label


# 2,000 idle chat sockets and 100 streaming answers, each a client and an upstream
# connection; any one worker may be handed all of them (docs/web-tier.md).
TEAM_CONNECTIONS = 2 * (2000 + 100)


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_workers_hold_a_teams_connections(settings: DeploySettings, variant: str) -> None:
    parsed = parse(settings, variant)
    ((worker_connections,),) = args_of(block_of(parsed, "events"), "worker_connections")
    ((rlimit,),) = [args for ctx, args in find(parsed, "worker_rlimit_nofile") if ctx == ()]
    assert int(worker_connections) >= 1.5 * TEAM_CONNECTIONS  # with room for pages and API
    # Each connection is a descriptor, plus the files a worker serves and logs to.
    assert int(rlimit) >= 2 * int(worker_connections)


def test_worker_connections_is_a_setting(settings: DeploySettings) -> None:
    from chatstack.envsettings import SettingsError

    assert DeploySettings.from_env({}).worker_connections == 8192
    custom = DeploySettings.from_env({"NGINX_WORKER_CONNECTIONS": "16384"})
    parsed = parse(dataclasses.replace(settings, worker_connections=16384), "local")
    assert args_of(block_of(parsed, "events"), "worker_connections") == [["16384"]]
    assert [args for _, args in find(parsed, "worker_rlimit_nofile")] == [["32768"]]
    assert custom.worker_connections == 16384
    # The compose file's nofile ulimit (65536) caps the descriptors: 2 x 32768.
    with pytest.raises(SettingsError, match="NGINX_WORKER_CONNECTIONS"):
        DeploySettings.from_env({"NGINX_WORKER_CONNECTIONS": "40000"})


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_open_connections_per_address_on_ws_and_v1(settings: DeploySettings, variant: str) -> None:
    settings = dataclasses.replace(
        settings, ws_connections_per_address=5, v1_connections_per_address=3
    )
    parsed = parse(settings, variant)
    zones = [args for _, args in find(parsed, "limit_conn_zone")]
    assert ["$binary_remote_addr", "zone=ws_per_address:10m"] in zones
    assert ["$binary_remote_addr", "zone=v1_per_address:10m"] in zones
    assert [args for _, args in find(parsed, "limit_conn_status")] == [["429"]]
    https = servers(parsed)[1]
    assert args_of(block_of(https, "location = /ws"), "limit_conn") == [["ws_per_address", "5"]]
    for label in ("location /v1/", "location = /v1/chat/completions", "location = /v1/completions"):
        assert args_of(block_of(https, label), "limit_conn") == [["v1_per_address", "3"]], label
    for label in ("location /api/", "location = /api/auth/login"):
        assert args_of(block_of(https, label), "limit_conn") == [], label


def test_connection_limits_default_for_a_team_behind_one_address() -> None:
    defaults = DeploySettings.from_env({})
    assert (defaults.ws_connections_per_address, defaults.v1_connections_per_address) == (32, 16)
    custom = DeploySettings.from_env(
        {"WS_CONNECTIONS_PER_ADDRESS": "200", "V1_CONNECTIONS_PER_ADDRESS": "50"}
    )
    assert (custom.ws_connections_per_address, custom.v1_connections_per_address) == (200, 50)


def test_too_many_connections_is_its_own_429(settings: DeploySettings) -> None:
    """limit_conn and limit_req both answer 429; $limit_conn_status tells them apart, so the
    client reads which limit it hit."""
    location = block_of(servers(parse(settings, "local"))[1], "location @error429")
    (branch,) = [stmt for stmt in location if stmt["directive"] == "if"]
    assert branch["args"] == ["$limit_conn_status", "=", "REJECTED"]
    ((code, body),) = args_of(branch["block"], "return")
    assert code == "429"
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_connections")
    assert set(error) == {"message", "type", "param", "code"}
    ((_, rate_body),) = args_of(location, "return")
    assert json.loads(rate_body)["error"]["code"] == "rate_limit_exceeded"
    # Rewrite directives run in order: the branch must come before the unconditional return.
    order = [stmt["directive"] for stmt in location if stmt["directive"] in ("if", "return")]
    assert order == ["if", "return"]


@pytest.mark.parametrize("status", [400, 404, 413, 429, 502, 504])
def test_nginx_errors_are_openai_shaped_json(settings: DeploySettings, status: int) -> None:
    https = servers(parse(settings, "local"))[1]
    assert [str(status), "=", f"@error{status}"] in args_of(https, "error_page")
    location = block_of(https, f"location @error{status}")
    assert args_of(location, "default_type") == [["application/json"]]
    ((code, body),) = args_of(location, "return")
    assert code == str(status)
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if status == 413:
        assert "20 MB" in error["message"]
    if status == 429:
        assert error["type"] == "rate_limit_error"


# ---- files and the command ---------------------------------------------------------------


def test_local_variant_keeps_everything_under_run_dir(settings: DeploySettings) -> None:
    parsed = parse(settings, "local")
    run = str(settings.run_dir.resolve())
    assert [args for _, args in find(parsed, "daemon")] == [["off"]]
    assert find(parsed, "pid")[0][1] == [f"{run}/nginx.pid"]
    assert find(parsed, "error_log")[0][1][0] == f"{run}/error.log"
    assert find(parsed, "access_log")[0][1] == [f"{run}/access.log", "chatstack"]
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        ((_, args),) = find(parsed, f"{kind}_temp_path")
        assert args[0].startswith(run + "/")
        assert Path(args[0]).is_dir()  # write_nginx_conf made it


def test_compose_variant_logs_to_the_container_output(settings: DeploySettings) -> None:
    parsed = parse(settings, "compose")
    assert find(parsed, "daemon") == []  # the image's command passes -g 'daemon off;'
    assert find(parsed, "error_log")[0][1][0] == "stderr"
    assert find(parsed, "access_log")[0][1] == ["/dev/stdout", "chatstack"]
    assert find(parsed, "client_body_temp_path") == []


def test_main_writes_the_config(
    settings: DeploySettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SERVER_NAME", "chat.example.org")
    monkeypatch.setenv("NGINX_RUN_DIR", str(tmp_path / "run"))
    out = tmp_path / "out" / "nginx.conf"
    assert main(["--variant", "compose", "--output", str(out)]) == 0
    text = out.read_text()
    assert "server_name chat.example.org;" in text
    assert "listen 0.0.0.0:443 ssl http2;" in text


@pytest.mark.parametrize("variant", ["local", "compose"])
def test_metrics_are_not_published_unless_allowed(settings: DeploySettings, variant: str) -> None:
    https = servers(parse(settings, variant))[1]
    assert not [b for b in https if b["directive"] == "location" and "/metrics" in b["args"]]
    allowed = dataclasses.replace(settings, metrics_allow=("10.0.0.0/8", "127.0.0.1"))
    metrics = block_of(servers(parse(allowed, variant))[1], "location = /metrics")
    rules = [(d["directive"], d["args"]) for d in metrics if d["directive"] in ("allow", "deny")]
    assert rules == [("allow", ["10.0.0.0/8"]), ("allow", ["127.0.0.1"]), ("deny", ["all"])]


def test_metrics_allow_must_name_addresses() -> None:
    from chatstack.envsettings import SettingsError

    assert DeploySettings.from_env({"METRICS_ALLOW": "10.0.0.0/8,::1"}).metrics_allow == (
        "10.0.0.0/8",
        "::1",
    )
    with pytest.raises(SettingsError, match="METRICS_ALLOW"):
        DeploySettings.from_env({"METRICS_ALLOW": "everyone"})


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_log_names_the_request_id(settings: DeploySettings, log_format: str) -> None:
    parsed = parse(dataclasses.replace(settings, log_format=log_format), "local")
    (log_format_args,) = [args for _, args in find(parsed, "log_format")]
    assert log_format_args[0] == "chatstack"
    assert "$request_id" in " ".join(log_format_args)
    if log_format == "json":
        assert log_format_args[1] == "escape=json"
