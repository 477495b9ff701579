"""The servers a benchmark drives: one model API per engine, and optionally the full stack
(nginx with a test CA → app service → that model API) with a user API key in front of it.

Servers start the way the integration tests start them (tests/servers.py), on free loopback
ports, so the benchmark measures what `make run` serves.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from deploy.certs import ensure_certs
from tests.integration.nginx_server import (
    RunningNginx,
    loopback_settings,
    nginx_available,
    start_nginx,
    world_readable_dir,
)
from tests.servers import RunningServer, start_app_service, start_model_api

MODEL = "SmolLM2-135M-Instruct"
# What each benchmarked server runs. `baseline` is issue 6's reference point, one
# generation at a time on the fp32 weights; the others run the model API's defaults
# (int4 linears on a CPU, see model_api/quantization.py) with one engine or the other.
CONFIGS: dict[str, dict[str, str]] = {
    "baseline": {"ENGINE": "sequential", "QUANTIZATION": "none"},
    "sequential": {"ENGINE": "sequential"},
    "batching": {"ENGINE": "batching"},
    # The batching engine on transformers' forward (before chatstack's own decoder).
    "batching-transformers": {"ENGINE": "batching", "DECODER": "transformers"},
}
ENGINES = tuple(CONFIGS)


def worker_pid(master_pid: int) -> int:
    """The gunicorn worker (the child of the master) that holds the model."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    if children.is_file():
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            return int(stat.parent.name)
    raise RuntimeError(f"no worker process under gunicorn master {master_pid}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (children of any of its threads), parents first."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue += [int(child) for child in children.read_text().split()]
            except OSError:
                continue  # that thread ended meanwhile
    return found


def tree_rss_bytes(pid: int) -> int:
    """The VmRSS of a process and its descendants, summed (pages they share count twice)."""
    total = rss_bytes(pid)
    for child in process_tree(pid)[1:]:
        try:
            total += rss_bytes(child)
        except OSError:
            continue  # exited meanwhile
    return total


class RssSampler:
    """Samples a process's VmRSS (with `tree`, its descendants' too) every `interval`
    seconds in a thread; `peak` is the max."""

    def __init__(self, pid: int, interval: float = 0.1, tree: bool = False) -> None:
        self.pid = pid
        self.interval = interval
        self._measure = tree_rss_bytes if tree else rss_bytes
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._measure(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Target:
    """An OpenAI-compatible base URL to load, with what a client needs to reach it."""

    name: str  # "sequential", "batching/full-stack", ...
    engine: str
    path: str  # "direct" | "full-stack"
    base_url: str  # ends in /v1
    api_key: str
    verify: str | bool = True


@dataclass
class EngineServers:
    """One engine's model API and, with --full-stack, the stack in front of it."""

    engine: str
    model_api: RunningServer
    api_key: str
    health: dict = field(default_factory=dict)
    app: RunningServer | None = None
    nginx: RunningNginx | None = None
    user_key: str = ""
    _dirs: list[Path] = field(default_factory=list)

    @property
    def worker_pid(self) -> int:
        return worker_pid(self.model_api.proc.pid)

    def rss_sampler(self) -> RssSampler:
        return RssSampler(self.worker_pid)

    def targets(self) -> list[Target]:
        found = [
            Target(self.engine, self.engine, "direct", self.model_api.url + "/v1", self.api_key)
        ]
        if self.nginx is not None:
            found.append(
                Target(
                    f"{self.engine}/full-stack",
                    self.engine,
                    "full-stack",
                    self.nginx.url + "/v1",
                    self.user_key,
                    str(self.nginx.ca),
                )
            )
        return found

    def stop(self) -> None:
        for server in (self.nginx, self.app, self.model_api):
            if server is not None:
                server.stop()
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)


def wait_healthy(server: RunningServer, path: str = "/health", timeout: float = 300) -> None:
    """Like RunningServer.wait_healthy, but a slow answer while the model loads (the load
    holds the GIL) is a reason to ask again, not to give up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.wait_healthy(path, timeout=max(1.0, deadline - time.monotonic()))
            return
        except requests.Timeout:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_engine(engine: str, tmp: Path) -> EngineServers:
    """The model API configured as CONFIGS[engine], healthy; raises if it does not come up.
    Its threads are sized by the model API itself, from its engine's queue."""
    api_key = secrets.token_urlsafe(16)
    log_dir = tmp / engine
    log_dir.mkdir(parents=True, exist_ok=True)
    env = CONFIGS[engine]
    server = start_model_api(log_dir, **env, MODEL_API_KEY=api_key)
    try:
        wait_healthy(server)
        health = requests.get(server.url + "/health", timeout=10).json()
    except BaseException:  # SystemExit too: a killed run must not leave it behind
        server.stop()
        raise
    reported = health.get("engine")
    if reported is not None and reported != env["ENGINE"]:
        server.stop()
        raise RuntimeError(f"asked for ENGINE={env['ENGINE']}, the server runs {reported!r}")
    return EngineServers(engine, server, api_key, health)


def add_full_stack(servers: EngineServers, tmp: Path) -> None:
    """nginx (TLS, test CA) → app service → this engine's model API, plus a user's API key."""
    if not nginx_available():
        raise RuntimeError("--full-stack needs nginx (make system-deps installs it)")
    stack_tmp = tmp / f"{servers.engine}-stack"
    stack_tmp.mkdir(parents=True, exist_ok=True)
    # nginx's workers run as nobody: web root and run folder must be world-readable.
    web_root = world_readable_dir("chatstack-bench-web-")
    run_dir = world_readable_dir("chatstack-bench-nginx-")
    servers._dirs += [web_root, run_dir]
    (web_root / "index.html").write_text("<!doctype html><title>chatstack bench</title>")
    (web_root / "index.html").chmod(0o644)
    settings = loopback_settings(
        stack_tmp / "certs",
        web_root,
        run_dir,
        # The benchmark sends far more than a person would: nginx's limit must not shape it.
        # 100/ms, because a level's C requests start in the same millisecond and the zone's
        # burst of 10 would turn the 12th away (it did at C=16 with 100,000/min).
        chat_rate_per_minute=6_000_000,
        v1_connections_per_address=60_000,
    )
    app_port = int(settings.app_upstream.rsplit(":", 1)[1])
    certs = settings.certs_dir
    ensure_certs(settings)
    servers.app = start_app_service(
        stack_tmp,
        servers.model_api.url,
        port=app_port,
        MODEL_API_KEY=servers.api_key,
        SITE_ORIGINS=settings.site_origin,
        COOKIE_SECURE="true",
        # Its one user stands for a team: the per-account share of the batch must not cap it.
        USER_MAX_ACTIVE_TURNS="1024",
    )
    wait_healthy(servers.app, "/api/health", timeout=60)
    servers.nginx = start_nginx(settings)
    servers.nginx.wait_healthy()
    user = requests.Session()
    user.verify = str(certs / "ca.pem")
    user.trust_env = False
    reply = user.post(
        servers.nginx.url + "/api/auth/register",
        json={"username": f"bench_{uuid.uuid4().hex[:8]}", "password": secrets.token_hex(12)},
        timeout=30,
    )
    reply.raise_for_status()
    reply = user.post(servers.nginx.url + "/api/keys", json={"name": "bench"}, timeout=30)
    reply.raise_for_status()
    servers.user_key = reply.json()["key"]


def bench_tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="chatstack-bench-"))


def settle(seconds: float = 1.0) -> None:
    """A pause between levels so one level's tail does not overlap the next one's start."""
    time.sleep(seconds)
