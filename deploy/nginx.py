"""Render the web tier's nginx.conf from DeploySettings, for the local stack and for compose.

Two variants of one config:
- ``local``: a complete nginx.conf for ``make run``, runnable by any user with
  ``nginx -p <run_dir> -c <run_dir>/nginx.conf``: ``daemon off``, and its pid, logs and
  temp folders under ``settings.run_dir``; listens on ``listen_address`` at ``https_port``
  and ``http_port``.
- ``compose``: nginx as the ``web`` container runs it: listens on 0.0.0.0:443/80 inside the
  container (the public ports stay ``https_port``/``http_port`` in redirects and the CSP),
  logs to stdout/stderr, and finds the app service by its compose name through Docker's DNS
  at request time (``resolver 127.0.0.11`` and a variable), so ``nginx -t`` and start-up do
  not need that name to resolve.

Run: python -m deploy.nginx [--variant compose] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nginx.config.api import Block, Config, EmptyBlock, Location
from nginx.config.api.options import KeyValuesMultiLines

from deploy.settings import DeploySettings

VARIANTS = ("local", "compose")

# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guideline 5.7).
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
TLS_CURVES = "X25519:prime256v1:secp384r1"
HSTS_SECONDS = 63072000  # two years, as Mozilla recommends

# A long answer streams for minutes; the proxy must not cut it (the app's own limit is lower).
PROXY_TIMEOUT = "600s"
# The chat socket stays open between turns; the app pings it every ~25 s.
WEBSOCKET_TIMEOUT = "3600s"
# The app accepts a body of MAX_UPLOAD_MB plus 64 KiB of multipart framing
# (app_service/app.py MAX_CONTENT_LENGTH). nginx's limit is exactly the same: with a wider
# one, a body between the two reaches the app, which refuses it by its Content-Length
# without reading it, and nginx, still sending, answers 502 instead of the app's 413.
UPLOAD_FRAMING_KB = 64
CA_CERT_TYPE = "application/x-x509-ca-cert"
IMMUTABLE = '"public, max-age=31536000, immutable"'
GZIP_TYPES = (
    "text/css text/plain text/xml application/javascript application/json "
    "application/manifest+json image/svg+xml"
)
# The types a Vite build serves; self-contained so neither variant depends on a mime.types path.
MIME_TYPES = {
    "text/html": "html htm",
    "text/css": "css",
    "text/plain": "txt",
    "text/xml": "xml",
    "application/javascript": "js mjs",
    "application/json": "json map",
    "application/manifest+json": "webmanifest",
    "application/wasm": "wasm",
    "image/svg+xml": "svg svgz",
    "image/png": "png",
    "image/jpeg": "jpg jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/x-icon": "ico",
    "font/woff": "woff",
    "font/woff2": "woff2",
    "font/ttf": "ttf",
    "font/otf": "otf",
}

# nginx's own errors, in the OpenAI shape the app uses (chatstack/errors.py), so a client
# reads the same JSON whether nginx or the app refused: status -> (type, code, message).
NGINX_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "bad_request", "The request could not be understood."),
    # METRICS_ALLOW's `deny all` (and any other refusal nginx makes itself).
    403: ("permission_error", "forbidden", "Your address may not read this."),
    404: ("not_found_error", "not_found", "Not found."),
    413: ("invalid_request_error", "request_too_large", ""),  # message names the limit
    429: (
        "rate_limit_error",
        "rate_limit_exceeded",
        "Too many requests from your address. Wait a few seconds and try again.",
    ),
    500: ("server_error", "internal_error", "The web server had an error."),
    502: ("server_error", "app_unavailable", "The app service is not answering. Try again soon."),
    503: ("server_error", "app_unavailable", "The app service is not available. Try again soon."),
    504: ("server_error", "app_timeout", "The app service took too long to answer."),
}


# limit_conn answers 429 as limit_req does; @error429 tells them apart by $limit_conn_status.
TOO_MANY_CONNECTIONS = (
    "rate_limit_error",
    "too_many_connections",
    "Too many open connections from your address. Close some tabs or streams and try again.",
)


def worker_open_files(settings: DeploySettings) -> int:
    """worker_rlimit_nofile: a descriptor per connection, as many again for the files a
    worker serves and its logs (nginx's own advice is "more than worker_connections")."""
    return 2 * settings.worker_connections


def render_nginx_conf(settings: DeploySettings, *, variant: str = "local") -> str:
    """The whole nginx.conf for `variant` ("local" or "compose") as text."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown nginx config variant {variant!r}; choose one of {VARIANTS}")
    local = variant == "local"
    run = settings.run_dir.resolve()
    main: dict[str, object] = {
        "worker_processes": "auto",
        "worker_rlimit_nofile": worker_open_files(settings),
    }
    if local:
        main.update(
            daemon="off",
            pid=str(run / "nginx.pid"),
            lock_file=str(run / "nginx.lock"),
            error_log=f"{run / 'error.log'} warn",
        )
    else:
        main["error_log"] = "stderr warn"
    config = Config(
        Block("events", worker_connections=settings.worker_connections),
        _http_block(settings, local),
        **main,
    )
    header = (
        "# Rendered by `python -m deploy.nginx"
        + ("" if local else " --variant compose")
        + "` from DeploySettings; edit deploy/nginx.py, not this file.\n"
    )
    return header + str(config).lstrip("\n") + "\n"


def write_nginx_conf(settings: DeploySettings, path: Path, variant: str = "local") -> Path:
    """Render and write the config (creating the folders the local variant uses)."""
    text = render_nginx_conf(settings, variant=variant)
    if variant == "local":
        for folder in _temp_folders(settings.run_dir.resolve()).values():
            Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def client_max_body_kb(settings: DeploySettings) -> int:
    return settings.max_upload_mb * 1024 + UPLOAD_FRAMING_KB


def public_port_suffix(port: int) -> str:
    return "" if port == 443 else f":{port}"


def content_security_policy(settings: DeploySettings) -> str:
    """The app's own origin and its wss: socket, nothing else."""
    socket_origin = f"wss://{settings.server_name}{public_port_suffix(settings.https_port)}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            # React sets inline style attributes; no inline scripts are allowed.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {socket_origin}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(settings: DeploySettings) -> list[str]:
    """add_header lines sent on every response; `always` adds them to errors too."""
    return [
        f'Strict-Transport-Security "max-age={HSTS_SECONDS}" always',
        f'Content-Security-Policy "{content_security_policy(settings)}" always',
        "X-Content-Type-Options nosniff always",
        "X-Frame-Options DENY always",
        "Referrer-Policy no-referrer always",
        'Permissions-Policy "camera=(), microphone=(), geolocation=()" always',
    ]


def error_json(status: int, settings: DeploySettings) -> str:
    error_type, code, message = NGINX_ERRORS[status]
    if status == 413:
        message = f"The request is larger than the {settings.max_upload_mb} MB upload limit."
    return _error_body(error_type, code, message)


def _error_body(error_type: str, code: str, message: str) -> str:
    body = json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}},
        separators=(",", ":"),
    )
    # nginx reads the body as a single-quoted string with $variables expanded.
    assert not set("'\\$") & set(body), body
    return body


ACCESS_LOG_FORMATS = {
    "text": 'chatstack \'$remote_addr - $remote_user [$time_local] "$request" $status '
    '$body_bytes_sent "$http_referer" "$http_user_agent" request_id=$request_id '
    "request_time=$request_time'",
    "json": 'chatstack escape=json \'{"ts":"$time_iso8601","level":"info",'
    '"logger":"nginx.access","request_id":"$request_id",'
    '"remote":"$remote_addr","method":"$request_method","path":"$uri",'
    '"status":$status,"bytes":$body_bytes_sent,"duration_s":$request_time}\'',
}


# ---- blocks ------------------------------------------------------------------------------


def _http_block(settings: DeploySettings, local: bool) -> Block:
    run = settings.run_dir.resolve()
    options: dict[str, object] = {
        "server_tokens": "off",
        "sendfile": "on",
        "tcp_nopush": "on",
        "keepalive_timeout": "65s",
        "charset": "utf-8",
        "default_type": "application/octet-stream",
        # One line per request with its id ($request_id, also sent to the app service as
        # X-Request-ID), in LOG_FORMAT like the services' own lines.
        "log_format": ACCESS_LOG_FORMATS[settings.log_format],
        "access_log": f"{run / 'access.log' if local else '/dev/stdout'} chatstack",
        "gzip": "on",
        "gzip_vary": "on",
        "gzip_min_length": 256,
        "gzip_comp_level": 5,
        "gzip_proxied": "any",
        "gzip_types": GZIP_TYPES,
        "limit_req_status": 429,
        "limit_req_log_level": "warn",
        "limit_conn_status": 429,
        "limit_conn_log_level": "warn",
    }
    if local:
        options.update(_temp_folders(run))
    else:
        # Docker's embedded DNS; the app service's address is looked up per request.
        options["resolver"] = "127.0.0.11 valid=10s ipv6=off"
        options["resolver_timeout"] = "5s"
    sections = [
        Block("types", **MIME_TYPES),
        KeyValuesMultiLines(
            "limit_req_zone",
            [
                f"$binary_remote_addr zone=login:10m rate={settings.login_rate_per_minute}r/m",
                f"$binary_remote_addr zone=chat:10m rate={settings.chat_rate_per_minute}r/m",
            ],
        ),
        KeyValuesMultiLines(
            "limit_conn_zone",
            [
                "$binary_remote_addr zone=ws_per_address:10m",
                "$binary_remote_addr zone=v1_per_address:10m",
            ],
        ),
        # Only a WebSocket upgrade is passed on, whatever its case: `Upgrade: h2c` to the
        # app would let a client tunnel HTTP/2 past nginx's rules (h2c smuggling).
        Block(
            "map $http_upgrade $websocket_upgrade",
            default='""',
            **{"~*^websocket$": "websocket"},
        ),
        Block("map $websocket_upgrade $connection_upgrade", default="close", websocket="upgrade"),
        # Any other upgrade on /ws is refused (400) rather than sent on as a plain request.
        Block(
            "map $http_upgrade $refused_upgrade",
            default="1",
            **{'""': "0", "~*^websocket$": "0"},
        ),
    ]
    if local:
        sections.append(Block("upstream app_service", server=settings.app_upstream))
    sections += [
        KeyValuesMultiLines("add_header", security_headers(settings)),
        EmptyBlock(_redirect_server(settings, local)),
        EmptyBlock(_https_server(settings, local)),
    ]
    return Block("http", *sections, **options)


def _temp_folders(run: Path) -> dict[str, str]:
    return {
        f"{kind}_temp_path": str(run / "tmp" / kind)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }


def _listen(settings: DeploySettings, local: bool, tls: bool) -> str:
    if local:
        port = settings.https_port if tls else settings.http_port
        address = f"{settings.listen_address}:{port}"
    else:
        address = "0.0.0.0:443" if tls else "0.0.0.0:80"
    return f"{address} ssl http2" if tls else address


def _redirect_server(settings: DeploySettings, local: bool) -> Block:
    https = f"https://$host{public_port_suffix(settings.https_port)}$request_uri"
    return Block(
        "server",
        Location("/", **{"return": f"301 {https}"}),
        listen=_listen(settings, local, tls=False),
        server_name=settings.server_name,
    )


def _https_server(settings: DeploySettings, local: bool) -> Block:
    https = f"https://$host{public_port_suffix(settings.https_port)}$request_uri"
    upstream = "http://app_service" if local else "http://$app_upstream"
    headers = security_headers(settings)
    v1_connections = f"v1_per_address {settings.v1_connections_per_address}"
    error_pages = [f"{status} = @error{status}" for status in NGINX_ERRORS]
    # Plain HTTP sent to the HTTPS port: send the client to the right URL.
    error_pages.append(f"497 =301 {https}")
    sections = [
        KeyValuesMultiLines("error_page", error_pages),
        Location("/", try_files="$uri $uri/ /index.html"),
        # index.html names the current hashed assets: always revalidate it.
        Location(
            "= /index.html",
            KeyValuesMultiLines("add_header", [*headers, "Cache-Control no-cache always"]),
        ),
        # Vite's hashed assets never change under one name; a missing one is a 404, not
        # index.html served as JavaScript.
        Location(
            "/assets/",
            KeyValuesMultiLines("add_header", [*headers, f"Cache-Control {IMMUTABLE} always"]),
            try_files="$uri =404",
            access_log="off",
        ),
        _proxy_location("/api/", upstream),
        _proxy_location("= /api/auth/login", upstream, limit="login burst=5 nodelay"),
        _proxy_location("= /api/auth/register", upstream, limit="login burst=5 nodelay"),
        _proxy_location("/v1/", upstream, connections=v1_connections),
        _proxy_location(
            "= /v1/chat/completions",
            upstream,
            limit="chat burst=10 nodelay",
            connections=v1_connections,
        ),
        _proxy_location(
            "= /v1/completions", upstream, limit="chat burst=10 nodelay", connections=v1_connections
        ),
        # A socket runs one answer at a time; limiting its handshakes bounds the rest, and
        # limit_conn the sockets one address keeps open.
        _websocket_location(
            "= /ws",
            upstream,
            limit="chat burst=10 nodelay",
            connections=f"ws_per_address {settings.ws_connections_per_address}",
        ),
        *_metrics_locations(settings, upstream),
        *_ca_locations(settings, headers),
        *(_error_location(status, settings) for status in NGINX_ERRORS),
    ]
    options: dict[str, object] = {
        "listen": _listen(settings, local, tls=True),
        "server_name": settings.server_name,
        "root": str(settings.web_root),
        "index": "index.html",
        "ssl_certificate": str(settings.tls_cert),
        "ssl_certificate_key": str(settings.tls_key),
        "ssl_protocols": TLS_PROTOCOLS,
        "ssl_ciphers": TLS_CIPHERS,
        "ssl_ecdh_curve": TLS_CURVES,
        "ssl_prefer_server_ciphers": "off",
        "ssl_session_timeout": "1d",
        "ssl_session_cache": "shared:TLS:10m",
        "ssl_session_tickets": "off",
        "client_max_body_size": f"{client_max_body_kb(settings)}k",
    }
    if not local:
        options["set"] = f"$app_upstream {settings.app_upstream}"
    return Block("server", *sections, **options)


def _ca_locations(settings: DeploySettings, headers: list[str]) -> list[Location]:
    """With the local CA, its certificate (public, like any CA's) at /ca.pem: the API keys
    page offers it, because programs do not trust it the way a clicked-through browser
    does. Its type lets the page tell it from index.html, which any other path returns."""
    if not settings.uses_local_ca:
        return []
    attachment = 'Content-Disposition "attachment; filename=chatstack-ca.pem" always'
    return [
        Location(
            "= /ca.pem",
            KeyValuesMultiLines(
                "add_header", [*headers, attachment, "Cache-Control no-cache always"]
            ),
            Block("types"),
            alias=str(settings.certs_dir / "ca.pem"),
            default_type=CA_CERT_TYPE,
        )
    ]


def _metrics_locations(settings: DeploySettings, upstream: str) -> list[Location]:
    """The app service's /metrics, only when METRICS_ALLOW names who may scrape it.

    Without it /metrics is not proxied at all (the path falls to the web app). The model
    API's metrics never pass through nginx: it is not on nginx's network.
    """
    if not settings.metrics_allow:
        return []
    # allow lines first, then deny: nginx takes the first rule that matches.
    rules = [KeyValuesMultiLines("allow", list(settings.metrics_allow))]
    rules.append(KeyValuesMultiLines("deny", ["all"]))
    return [_proxy_location("= /metrics", upstream, access_rules=rules)]


def _proxy_location(
    path: str,
    upstream: str,
    *,
    limit: str | None = None,
    connections: str | None = None,
    access_rules: list[KeyValuesMultiLines] | None = None,
) -> Location:
    """/api and /v1: replies unbuffered, so SSE reaches the client token by token; request
    bodies buffered (the default), so a slow upload holds an nginx connection, not one of
    the app's threads; timeouts that outlast a long answer."""
    options: dict[str, object] = {
        "proxy_pass": upstream,
        "proxy_http_version": "1.1",
        "proxy_buffering": "off",
        "proxy_cache": "off",
        "proxy_connect_timeout": "5s",
        "proxy_read_timeout": PROXY_TIMEOUT,
        "proxy_send_timeout": PROXY_TIMEOUT,
    }
    if limit:
        options["limit_req"] = f"zone={limit}"
    if connections:
        options["limit_conn"] = connections
    headers = KeyValuesMultiLines(
        "proxy_set_header",
        [
            "Host $host",
            "X-Real-IP $remote_addr",
            "X-Forwarded-For $proxy_add_x_forwarded_for",
            "X-Forwarded-Proto $scheme",
            # nginx's id for this request, not the client's: logs join on it.
            "X-Request-ID $request_id",
            # Drop the client's hop-by-hop headers: no upgrade here, nor a 101 tunnel.
            'Connection ""',
            'Upgrade ""',
        ],
    )
    return Location(path, headers, *(access_rules or []), **options)


def _websocket_location(path: str, upstream: str, *, limit: str, connections: str) -> Location:
    headers = KeyValuesMultiLines(
        "proxy_set_header",
        [
            "Host $host",
            "X-Real-IP $remote_addr",
            "X-Forwarded-For $proxy_add_x_forwarded_for",
            "X-Forwarded-Proto $scheme",
            "X-Request-ID $request_id",
            "Upgrade $websocket_upgrade",
            "Connection $connection_upgrade",
        ],
    )
    return Location(
        path,
        # The rewrite phase, before the limits count the request.
        Block("if ($refused_upgrade)", **{"return": 400}),
        headers,
        limit_req=f"zone={limit}",
        limit_conn=connections,
        proxy_pass=upstream,
        proxy_http_version="1.1",
        proxy_buffering="off",
        proxy_connect_timeout="5s",
        proxy_read_timeout=WEBSOCKET_TIMEOUT,
        proxy_send_timeout=WEBSOCKET_TIMEOUT,
    )


def _error_location(status: int, settings: DeploySettings) -> Location:
    sections: list[object] = []
    if status == 429:
        too_many = _error_body(*TOO_MANY_CONNECTIONS)
        sections.append(
            Block("if ($limit_conn_status = REJECTED)", **{"return": f"429 '{too_many}'"})
        )
    # A section, not an option: rewrite directives run in order, and the builder writes
    # options first, so an option `return` would come before the `if` and always win.
    sections.append(KeyValuesMultiLines("return", [f"{status} '{error_json(status, settings)}'"]))
    return Location(
        f"@error{status}",
        *sections,
        # An empty types map: the failed URI's extension (.js, .html) must not pick the type.
        Block("types"),
        default_type="application/json",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.nginx", description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, default="local")
    parser.add_argument("--output", type=Path, help="write here instead of printing")
    args = parser.parse_args(argv)
    settings = DeploySettings.from_env()
    if args.output:
        path = write_nginx_conf(settings, args.output, args.variant)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(render_nginx_conf(settings, variant=args.variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
