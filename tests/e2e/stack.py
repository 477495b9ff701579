"""The whole stack for the browser tests: the web build, a test CA, the app service and
nginx (local variant) on free loopback ports, in front of the real model API.

The web build is copied into a world-readable folder because nginx's workers run as
`nobody` when the tests run as root (see tests/integration/nginx_server.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from deploy.certs import ensure_certs
from tests.integration.conftest import API_KEY
from tests.integration.nginx_server import (
    RunningNginx,
    loopback_settings,
    start_nginx,
    world_readable_dir,
)
from tests.servers import ROOT, RunningServer, start_app_service

WEB_DIR = ROOT / "web"
# Small, so that "too large" needs only a few MB; nginx and the app service share it.
MAX_UPLOAD_MB = 2
# Answers stay short unless a test asks for more in the settings dialog.
CHAT_MAX_TOKENS = 40


@dataclass
class Site:
    """The running stack as a browser sees it."""

    nginx: RunningNginx
    app: RunningServer
    ca: Path
    max_upload_mb: int

    @property
    def url(self) -> str:
        return self.nginx.url

    def http(self) -> requests.Session:
        """A requests Session that trusts the test CA (and not REQUESTS_CA_BUNDLE)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca)
        return session


def build_web(web_root: Path) -> None:
    """`npm ci` when web/node_modules is missing, `npm run build`, and web/dist copied
    into web_root with modes nginx's workers can read."""
    if not (WEB_DIR / "package.json").is_file():
        raise RuntimeError("web/package.json is missing: there is no web app to test")
    if not (WEB_DIR / "node_modules").is_dir():
        run_npm(["ci", "--no-audit", "--no-fund"])
    run_npm(["run", "build"])
    dist = WEB_DIR / "dist"
    if not (dist / "index.html").is_file():
        raise RuntimeError("npm run build left no web/dist/index.html")
    shutil.copytree(dist, web_root, dirs_exist_ok=True)
    for path in [web_root, *web_root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def run_npm(args: list[str]) -> None:
    done = subprocess.run(
        ["npm", *args],
        cwd=WEB_DIR,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},  # readable failures
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"npm {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def start_site(tmp: Path, model_api_url: str, web_root: Path, run_dir: Path) -> Site:
    """Certificates, the app service and nginx; waits until nginx reaches the app service.
    The caller stops site.nginx and site.app."""
    settings = loopback_settings(
        run_dir / "certs",  # where nginx's workers can read ca.pem, which /ca.pem serves
        web_root,
        run_dir,
        max_upload_mb=MAX_UPLOAD_MB,
        # Every test signs up or logs in from 127.0.0.1; the production limit would trip.
        login_rate_per_minute=600,
    )
    app_port = int(settings.app_upstream.rsplit(":", 1)[1])
    certs = settings.certs_dir
    ensure_certs(settings)
    app = start_app_service(
        tmp,
        model_api_url,
        port=app_port,
        MODEL_API_KEY=API_KEY,
        SITE_ORIGINS=settings.site_origin,
        COOKIE_SECURE="true",
        MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
        CHAT_MAX_TOKENS=str(CHAT_MAX_TOKENS),
        UPSTREAM_HEALTH_SECONDS="1",
    )
    try:
        app.wait_healthy("/api/health")
        nginx = start_nginx(settings)
    except BaseException:
        app.stop()
        raise
    try:
        nginx.wait_healthy()
    except BaseException:
        nginx.stop()
        app.stop()
        raise
    return Site(nginx=nginx, app=app, ca=certs / "ca.pem", max_upload_mb=MAX_UPLOAD_MB)


@contextmanager
def running_site(tmp: Path, model_api_urls: str, web_root: Path) -> Iterator[Site]:
    """A whole site (its own app service and nginx) in front of `model_api_urls` (comma
    separated), stopped on the way out."""
    run_dir = fresh_run_dir()
    try:
        site = start_site(tmp, model_api_urls, web_root, run_dir)
        try:
            yield site
        finally:
            site.nginx.stop()
            site.app.stop()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def fresh_web_root() -> Path:
    return world_readable_dir("chatstack-e2e-web-")


def fresh_run_dir() -> Path:
    return world_readable_dir("chatstack-e2e-nginx-")
