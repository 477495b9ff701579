"""The soak's stack — model API, app service and nginx with TLS on loopback, each
restartable on its own port — and the signed-in HTTPS sessions of its users."""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

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
