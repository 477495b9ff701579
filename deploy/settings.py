"""Settings of the web tier (nginx, TLS) and of the local runner, from the environment.

The same variables render the nginx config for `make run` and for the compose `web`
service; only the upstream addresses and paths differ between the two.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chatstack.envsettings import SettingsError, env_choice, env_int, env_str

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DeploySettings:
    server_name: str = "localhost"
    https_port: int = 8443
    http_port: int = 8080
    # Where nginx listens; compose binds 0.0.0.0 inside the container.
    listen_address: str = "127.0.0.1"
    tls_cert: Path = PROJECT_ROOT / "deploy" / "certs" / "server.pem"
    tls_key: Path = PROJECT_ROOT / "deploy" / "certs" / "server-key.pem"
    certs_dir: Path = PROJECT_ROOT / "deploy" / "certs"
    # The local CA's private key (CA_DIR): beside CERTS_DIR, never in it, because CERTS_DIR
    # is what nginx reads and the web container mounts. None: `ca/` beside CERTS_DIR.
    ca_dir: Path | None = None
    web_root: Path = PROJECT_ROOT / "web" / "dist"
    # host:port of the app service as nginx reaches it.
    app_upstream: str = "127.0.0.1:8000"
    max_upload_mb: int = 20
    # nginx's prefix for the local stack: its config, pid, logs and temp folders.
    run_dir: Path = PROJECT_ROOT / "deploy" / "run"
    login_rate_per_minute: int = 10
    chat_rate_per_minute: int = 60
    log_format: str = "text"  # LOG_FORMAT, shared with both services: nginx's access log too
    # Addresses/CIDRs allowed to scrape the app service's /metrics through nginx; empty:
    # nginx does not publish it.
    metrics_allow: tuple[str, ...] = ()
    # Connections one nginx worker holds (NGINX_WORKER_CONNECTIONS); each proxied request or
    # socket takes two. Sized in docs/web-tier.md for 2,000 idle sockets + 100 streams.
    worker_connections: int = 8192
    # Open chat sockets and /v1 requests per client address (limit_conn): a user's tabs, or
    # a team behind one NAT address, must fit.
    ws_connections_per_address: int = 32
    v1_connections_per_address: int = 16

    def __post_init__(self) -> None:
        if self.ca_dir is None:
            object.__setattr__(self, "ca_dir", self.certs_dir.parent / "ca")

    @property
    def uses_local_ca(self) -> bool:
        """The certificate is the one deploy/certs.py makes and signs with its own CA (not
        TLS_CERT/TLS_KEY of the operator's): clients must be told to trust `ca.pem`."""
        return (
            self.tls_cert == self.certs_dir / "server.pem"
            and self.tls_key == self.certs_dir / "server-key.pem"
        )

    @property
    def site_origin(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.server_name}{port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeploySettings:
        env = os.environ if env is None else env
        certs_dir = Path(env_str(env, "CERTS_DIR", str(cls.certs_dir)))
        ca_dir = Path(env_str(env, "CA_DIR", str(certs_dir.parent / "ca")))
        if ca_dir.resolve().is_relative_to(certs_dir.resolve()):
            raise SettingsError(
                f"CA_DIR={ca_dir} lies in CERTS_DIR={certs_dir}, which nginx reads and the web "
                "container mounts: the CA's key must live elsewhere"
            )
        app_host = env_str(env, "APP_HOST", "127.0.0.1")
        app_port = env_int(env, "APP_PORT", 8000, minimum=1, maximum=65535)
        return cls(
            server_name=env_str(env, "SERVER_NAME", "localhost"),
            https_port=env_int(env, "HTTPS_PORT", 8443, minimum=1, maximum=65535),
            http_port=env_int(env, "HTTP_PORT", 8080, minimum=1, maximum=65535),
            listen_address=env_str(env, "LISTEN_ADDRESS", "127.0.0.1"),
            tls_cert=Path(env_str(env, "TLS_CERT", str(certs_dir / "server.pem"))),
            tls_key=Path(env_str(env, "TLS_KEY", str(certs_dir / "server-key.pem"))),
            certs_dir=certs_dir,
            ca_dir=ca_dir,
            web_root=Path(env_str(env, "WEB_ROOT", str(cls.web_root))),
            app_upstream=env_str(env, "APP_UPSTREAM", f"{app_host}:{app_port}"),
            max_upload_mb=env_int(env, "MAX_UPLOAD_MB", 20, minimum=1),
            run_dir=Path(env_str(env, "NGINX_RUN_DIR", str(cls.run_dir))),
            login_rate_per_minute=env_int(env, "LOGIN_RATE_PER_MINUTE", 10, minimum=1),
            chat_rate_per_minute=env_int(env, "CHAT_RATE_PER_MINUTE", 60, minimum=1),
            log_format=env_choice(env, "LOG_FORMAT", "text", ("text", "json")),
            metrics_allow=_address_list(env, "METRICS_ALLOW"),
            # At most half the web container's nofile ulimit (65536): two descriptors each.
            worker_connections=env_int(
                env, "NGINX_WORKER_CONNECTIONS", 8192, minimum=512, maximum=32768
            ),
            ws_connections_per_address=env_int(env, "WS_CONNECTIONS_PER_ADDRESS", 32, minimum=1),
            v1_connections_per_address=env_int(env, "V1_CONNECTIONS_PER_ADDRESS", 16, minimum=1),
        )


def _address_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR ranges, each checked (nginx's `allow` syntax)."""
    values = tuple(part.strip() for part in env_str(env, name, "").split(",") if part.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name} must list IP addresses or CIDR ranges, got {value!r}"
            ) from None
    return values
