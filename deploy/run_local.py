"""`make run`: start the stack as local processes, wait for health, stop all on Ctrl-C.

Every service gets the environment from `.env` (like compose's `env_file`) on top of the
process environment, and the same command its container runs (deploy/services.py).
Run: python -m deploy.run_local
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.services import STACK, Service

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; # comments and blank lines skipped; surrounding quotes removed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip().removeprefix("export ").strip()] = value
    return values


def stack_env() -> dict[str, str]:
    return {**os.environ, **read_env_file(ROOT / ".env")}


def service_url(service: Service, env: dict[str, str]) -> str:
    port = env.get(service.port_variable) or service.default_port
    return f"http://127.0.0.1:{port}"


def wait_healthy(service: Service, proc: subprocess.Popen, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{service.name} exited with status {proc.returncode}; see above")
        try:
            with urllib.request.urlopen(url + service.health_path, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{service.name} did not become healthy within {timeout:.0f} s")


def start(service: Service, env: dict[str, str]) -> subprocess.Popen:
    command = [str(BIN / service.command[0]), *service.command[1:]]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def stop_all(processes: list[subprocess.Popen]) -> None:
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(processes):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    env = stack_env()
    processes: list[subprocess.Popen] = []
    # SIGTERM (e.g. from a supervisor) ends the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for service in STACK:
            proc = start(service, env)
            processes.append(proc)
            url = service_url(service, env)
            wait_healthy(service, proc, url, timeout=300)
            print(f"chatstack: {service.name} is up at {url}", flush=True)
        print("chatstack: ready. Ctrl-C stops everything.", flush=True)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("chatstack: a service exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nchatstack: stopping", flush=True)
        return 0
    finally:
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
