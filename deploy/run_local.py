"""`make run`: the whole stack as local processes, with the commands compose runs.

Writes a random MODEL_API_KEY into `.env` when neither `.env` nor the environment has one,
prepares what the web tier needs (the web app's build, certificates, the
rendered nginx config), then starts the model API, the app service and nginx in order,
waiting for each to be healthy, and stops them all on Ctrl-C or SIGTERM. Every process gets
the environment from `.env` (like compose's `env_file`) on top of the process environment.
Run: python -m deploy.run_local
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from chatstack.envsettings import SettingsError
from deploy.services import STACK, Service
from deploy.settings import DeploySettings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WEB_DIR = ROOT / "web"


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


# `MODEL_API_KEY=` with nothing (or only empty quotes) after it: no key.
_EMPTY_KEY_LINE = re.compile(r"""^\s*(export\s+)?MODEL_API_KEY\s*=\s*(""|'')?\s*$""")


def ensure_model_api_key(env_file: Path, environ: Mapping[str, str]) -> str | None:
    """Give the stack a shared key when it has none: append a random MODEL_API_KEY to
    `env_file` (made 0600 if missing; an empty `MODEL_API_KEY=` line is replaced) and say
    so in one line. A key in the file or in `environ` is never touched. Returns the new
    key, or None when there already was one."""
    if read_env_file(env_file).get("MODEL_API_KEY") or environ.get("MODEL_API_KEY", "").strip():
        return None
    # URL-safe base64: no quoting needed for the shell (`. ./.env`) or compose.
    key = secrets.token_urlsafe(32)
    line = f"MODEL_API_KEY={key}"
    if env_file.is_file():
        old = env_file.read_text().splitlines()
        empty = [i for i, text in enumerate(old) if _EMPTY_KEY_LINE.match(text)]
        lines = [text for text in old if not _EMPTY_KEY_LINE.match(text)]
        lines.insert(empty[0] if empty else len(lines), line)
        env_file.write_text("\n".join(lines) + "\n")
    else:
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# Written by `make run`: the key the app service sends to the model API.\n")
            f.write(line + "\n")
    print(f"chatstack: wrote a random MODEL_API_KEY into {env_file} (both services read it)")
    return key


def stack_env() -> dict[str, str]:
    return {**os.environ, **read_env_file(ROOT / ".env")}


def service_url(service: Service, env: dict[str, str]) -> str:
    port = env.get(service.port_variable) or service.default_port
    return f"http://127.0.0.1:{port}"


# ---- preparing the web tier ---------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise SystemExit("nginx is not installed: sudo apt-get install nginx-light")
    return found


def build_web(web_root: Path) -> None:
    """The React app, built straight into the folder nginx serves (WEB_ROOT)."""
    if shutil.which("npm") is None:
        raise SystemExit("npm is not installed: the web app needs Node.js 20+ and npm")
    if not (WEB_DIR / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB_DIR, check=True)
    build = ["npm", "run", "build", "--", "--outDir", str(web_root), "--emptyOutDir"]
    subprocess.run(build, cwd=WEB_DIR, check=True)


def prepare_nginx(settings: DeploySettings) -> list[str]:
    """Certificates (made once), the rendered config; returns nginx's command line."""
    from deploy.certs import ensure_certs
    from deploy.nginx import write_nginx_conf

    ensure_certs(settings)
    conf = settings.run_dir / "nginx.conf"
    write_nginx_conf(settings, conf, variant="local")
    command = [
        nginx_binary(),
        "-p",
        str(settings.run_dir),
        "-c",
        str(conf),
        "-e",
        str(settings.run_dir / "error.log"),
    ]
    subprocess.run([*command, "-t", "-q"], check=True)
    return command


# ---- running ------------------------------------------------------------------------------


def wait_until(
    check_url: str,
    proc: subprocess.Popen,
    name: str,
    timeout: float,
    context: ssl.SSLContext | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with status {proc.returncode}; see above")
        try:
            with urllib.request.urlopen(check_url, timeout=2, context=context) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not become healthy within {timeout:.0f} s")


def start_service(service: Service, env: dict[str, str]) -> subprocess.Popen:
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
    ensure_model_api_key(ROOT / ".env", os.environ)
    env = stack_env()
    try:
        settings = DeploySettings.from_env(env)
    except SettingsError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    build_web(settings.web_root)
    nginx_command = prepare_nginx(settings)
    processes: list[subprocess.Popen] = []
    # Ctrl-C and SIGTERM (a supervisor) end the stack alike; SIGINT is set explicitly
    # because a shell starts background jobs with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for service in STACK:
            proc = start_service(service, env)
            processes.append(proc)
            url = service_url(service, env)
            wait_until(url + service.health_path, proc, service.name, timeout=300)
            print(f"chatstack: {service.name} is up at {url}", flush=True)
        nginx = subprocess.Popen(nginx_command, cwd=ROOT, env=env)
        processes.append(nginx)
        # A liveness probe only (`make doctor` verifies the certificate): the operator's
        # certificate may not name the loopback address nginx is reached at here.
        probe = ssl.create_default_context()
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE
        host = (
            "127.0.0.1"
            if settings.listen_address in ("0.0.0.0", "::")
            else (settings.listen_address)
        )
        wait_until(
            f"https://{host}:{settings.https_port}/api/health",
            nginx,
            "nginx",
            timeout=30,
            context=probe,
        )
        print(f"chatstack: ready at {settings.site_origin}  (Ctrl-C stops everything)", flush=True)
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
