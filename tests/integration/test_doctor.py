"""`python -m deploy.doctor --json` as an operator runs it, against the real servers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import ROOT, RunningServer, free_port

pytestmark = pytest.mark.integration


def run_doctor(tmp_path: Path, **env: str) -> tuple[int, dict[str, dict]]:
    """The doctor's exit status and its checks by name; the repository's .env is ignored."""
    done = subprocess.run(
        [sys.executable, "-m", "deploy.doctor", "--json", "--env-file", str(tmp_path / "no.env")],
        cwd=ROOT,
        env={**_clean_environ(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout, done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] is (done.returncode == 0)
    return done.returncode, {check["name"]: check for check in body["checks"]}


def _clean_environ() -> dict[str, str]:
    """The test process's environment without the stack's own variables."""
    stack = {"MODEL_API_PORT", "APP_PORT", "HTTPS_PORT", "HTTP_PORT", "CERTS_DIR", "DEVICE"}
    stack |= {"TLS_CERT", "TLS_KEY", "SERVER_NAME", "LISTEN_ADDRESS", "MODEL_PATH", "APP_HOST"}
    return {k: v for k, v in os.environ.items() if k not in stack}


def port_of(server: RunningServer) -> str:
    return str(urlsplit(server.url).port)


def test_doctor_on_the_running_services_without_nginx(
    tmp_path: Path, model_api: RunningServer, app_server: RunningServer
) -> None:
    status, checks = run_doctor(
        tmp_path,
        MODEL_API_PORT=port_of(model_api),
        APP_PORT=port_of(app_server),
        HTTPS_PORT=str(free_port()),
        CERTS_DIR=str(tmp_path / "certs"),
    )
    assert checks["model API"]["status"] == "ok", checks["model API"]
    assert "serving SmolLM2-135M-Instruct on cpu" in checks["model API"]["message"]
    assert checks["app service"]["status"] == "ok", checks["app service"]
    assert model_api.url in checks["app service"]["message"]
    for name in ("PyTorch", "transformers", "model files"):
        assert checks[name]["status"] == "ok", checks[name]
    if shutil.which("nvidia-smi") is None:
        assert checks["GPU & driver"]["status"] == "skip"
        assert "no NVIDIA GPU/driver found" in checks["GPU & driver"]["message"]
        assert "the model runs on the CPU" in checks["GPU & driver"]["message"]
        assert checks["CUDA (as PyTorch sees it)"]["status"] in ("skip", "warn")
    nginx = checks["nginx (HTTPS)"]
    assert nginx["status"] == "fail" and "not answering" in nginx["message"]
    assert "make run" in nginx["fix"]
    certificate = checks["TLS certificate"]
    assert certificate["status"] == "fail" and "make certs" in certificate["fix"]
    assert status == 1


def test_doctor_sees_a_stopped_stack_fast(tmp_path: Path) -> None:
    ports = {name: str(free_port()) for name in ("MODEL_API_PORT", "APP_PORT", "HTTPS_PORT")}
    _, checks = run_doctor(tmp_path, **ports, CERTS_DIR=str(tmp_path / "certs"))
    for name in ("model API", "app service", "nginx (HTTPS)"):
        assert checks[name]["status"] == "fail"
        assert "connection refused" in checks[name]["message"]
        assert "make run" in checks[name]["fix"]


@pytest.fixture
def nginx_stack(tmp_path: Path, app_server: RunningServer) -> Iterator[dict[str, str]]:
    """nginx with certificates from `make certs`' code in front of the app service; yields
    the environment that describes it."""
    from deploy.certs import ensure_certs
    from deploy.settings import DeploySettings
    from tests.integration import nginx_server  # `make test` installs nginx

    web_root = nginx_server.world_readable_dir("chatstack-doctor-web-")
    run_dir = nginx_server.world_readable_dir("chatstack-doctor-nginx-")
    (web_root / "index.html").write_text("<!doctype html><title>chatstack</title>")
    (web_root / "index.html").chmod(0o644)
    env = {
        "SERVER_NAME": "localhost",
        "HTTPS_PORT": str(free_port()),
        "HTTP_PORT": str(free_port()),
        "CERTS_DIR": str(tmp_path / "certs"),
        "APP_PORT": port_of(app_server),
        "WEB_ROOT": str(web_root),
        "NGINX_RUN_DIR": str(run_dir),
    }
    settings = DeploySettings.from_env(env)
    ensure_certs(settings)
    nginx = nginx_server.start_nginx(settings)
    try:
        nginx.wait_healthy()
        yield env
    finally:
        nginx.stop()
        shutil.rmtree(web_root, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_doctor_on_the_whole_stack_behind_nginx(
    tmp_path: Path, model_api: RunningServer, nginx_stack: dict[str, str]
) -> None:
    _, checks = run_doctor(tmp_path, MODEL_API_PORT=port_of(model_api), **nginx_stack)
    for name in (
        "model API",
        "app service",
        "nginx config",
        "TLS certificate",
        "nginx (HTTPS)",
    ):
        assert checks[name]["status"] == "ok", checks[name]
    assert "ca.pem" in checks["nginx (HTTPS)"]["message"]
