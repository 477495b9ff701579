"""Starting real servers for tests: a free loopback port, health polling, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningServer:
    """A real server process (gunicorn) on 127.0.0.1, its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, url: str) -> None:
        self.url = url
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the workers too
        )

    def wait_healthy(self, path: str = "/health", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + path, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet, or too busy loading the model to answer in time
            time.sleep(0.3)
        raise TimeoutError(f"server not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """Die at once, workers and all, as a crashed machine or container does."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


def serving(server: RunningServer, health_path: str = "/health") -> Iterator[RunningServer]:
    """Wait until `server` is healthy, yield it, stop it: `yield from` it in a fixture."""
    try:
        server.wait_healthy(health_path)
        yield server
    finally:
        server.stop()


def wait_for_idle_model(model_api: RunningServer, within: float = 20) -> dict:
    """Poll the model API until nothing runs or waits: a left client's generation ended."""
    deadline = time.monotonic() + within
    while True:
        health = requests.get(model_api.url + "/health", timeout=5).json()
        if health["running"] == 0 and health["waiting"] == 0:
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"the model kept generating for nobody: {health}")
        time.sleep(0.2)


def start_model_api(tmp_dir: Path, port: int | None = None, **env: str) -> RunningServer:
    """The model API under gunicorn, exactly as `make run` starts it, on a free port."""
    port = port or free_port()
    server_env = {"MODEL_API_HOST": "127.0.0.1", "MODEL_API_PORT": str(port), **env}
    args = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        "model_api/gunicorn.conf.py",
        "model_api.app:create_app()",
    ]
    return RunningServer(args, server_env, tmp_dir / "model_api.log", f"http://127.0.0.1:{port}")


def start_app_service(
    tmp_dir: Path, model_api_url: str, port: int | None = None, **env: str
) -> RunningServer:
    """The app service under gunicorn, exactly as `make run` starts it, on a free port."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(port),
        "DATA_DIR": str(tmp_dir / "data"),
        "MODEL_API_URLS": model_api_url,
        # Tests speak plain HTTP on loopback; browsers only send Secure cookies over HTTPS.
        "COOKIE_SECURE": "false",
        "SITE_ORIGINS": url,
        **env,
    }
    args = [
        str(VENV_BIN / "gunicorn"),
        "-c",
        "app_service/gunicorn.conf.py",
        "app_service.app:create_app()",
    ]
    return RunningServer(args, server_env, tmp_dir / "app_service.log", url)
