"""Starting the real nginx (local variant of deploy/nginx.py) on loopback for tests.

When the tests run as root, nginx's workers run as `nobody`: the web root and the run
folder must be reachable by any user, so they live in their own 0755 temporary folders
rather than under pytest's 0700 tmp_path. Keys and certificates are read by the master
before it drops privileges, so they may stay in tmp_path.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from deploy.nginx import write_nginx_conf
from deploy.settings import DeploySettings
from tests.servers import RunningServer

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def loopback_settings(
    certs: Path, web_root: Path, run_dir: Path, **overrides: object
) -> DeploySettings:
    """The web tier on free loopback ports, with its certificates in `certs` and the app
    service expected on `app_upstream` (also a free port unless given)."""
    from tests.servers import free_port

    fields: dict[str, object] = {
        "server_name": "localhost",
        "https_port": free_port(),
        "http_port": free_port(),
        "listen_address": "127.0.0.1",
        "tls_cert": certs / "server.pem",
        "tls_key": certs / "server-key.pem",
        "certs_dir": certs,
        "web_root": web_root,
        "app_upstream": f"127.0.0.1:{free_port()}",
        "run_dir": run_dir,
        **overrides,
    }
    return DeploySettings(**fields)  # type: ignore[arg-type]


def nginx_available() -> bool:
    return Path(NGINX).is_file()


def world_readable_dir(prefix: str) -> Path:
    """A fresh temporary folder that nginx's unprivileged workers can enter; remove it
    with shutil.rmtree when done."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def check_config(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on a config; the result holds nginx's verdict in stderr."""
    return subprocess.run(
        [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


class RunningNginx(RunningServer):
    """nginx in the foreground with its own prefix (settings.run_dir), killed with its group."""

    def __init__(self, settings: DeploySettings) -> None:
        self.settings = settings
        run_dir = settings.run_dir
        conf = write_nginx_conf(settings, run_dir / "nginx.conf", "local")
        super().__init__(
            [NGINX, "-p", str(run_dir), "-c", str(conf)],
            {},
            run_dir / "nginx.out",
            f"https://{settings.server_name}:{settings.https_port}",
        )
        self.http_url = f"http://{settings.server_name}:{settings.http_port}"
        self.ca = settings.certs_dir / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def wait_healthy(self, path: str = "/api/health", timeout: float = 30) -> None:
        """Healthy once nginx answers over TLS and reaches the app service."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.log()}")
            try:
                if requests.get(self.url + path, verify=self.ca, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"nginx not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        error_log = self.settings.run_dir / "error.log"
        tail = error_log.read_text(errors="replace")[-3000:] if error_log.is_file() else ""
        return super().log() + tail


def start_nginx(settings: DeploySettings) -> RunningNginx:
    """Render the local config into settings.run_dir and start nginx on it (not yet waited
    for: call wait_healthy())."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    return RunningNginx(settings)
