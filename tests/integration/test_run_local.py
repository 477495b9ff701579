"""`make run`'s runner: the whole stack comes up behind nginx and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import requests

from tests.integration.nginx_server import world_readable_dir
from tests.servers import ROOT, free_port


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_the_runner_starts_everything_and_ctrl_c_stops_it(tmp_path) -> None:
    ports = {
        name: str(free_port()) for name in ("MODEL_API_PORT", "APP_PORT", "HTTPS_PORT", "HTTP_PORT")
    }
    shared = world_readable_dir("runner")  # nginx workers (nobody) read the web root
    env = {
        **os.environ,
        **ports,
        "MODEL_API_URLS": f"http://127.0.0.1:{ports['MODEL_API_PORT']}",
        "DATA_DIR": str(tmp_path / "data"),
        "CERTS_DIR": str(tmp_path / "certs"),
        "NGINX_RUN_DIR": str(shared / "run"),
        "WEB_ROOT": str(shared / "www"),
        # A key in the environment: the runner then writes none into the repository's .env.
        "MODEL_API_KEY": "run-local-test-key",
    }
    runner = subprocess.Popen(
        [sys.executable, "-m", "deploy.run_local"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = runner.stdout.readline()
            assert line, "the runner exited:\n" + "".join(lines)
            lines.append(line)
            if "chatstack: ready at" in line:
                break
        site = f"https://localhost:{ports['HTTPS_PORT']}"
        assert f"ready at {site}" in lines[-1]
        ca = str(tmp_path / "certs" / "ca.pem")
        health = requests.get(site + "/api/health", verify=ca, timeout=10).json()
        assert health["model_api"]["reachable"] is True
        page = requests.get(site + "/", verify=ca, timeout=10)
        assert page.status_code == 200 and "chatstack" in page.text
        spawned = children_of(runner.pid)
        assert len(spawned) == 3  # model API, app service, nginx

        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=30) == 0
        for pid in spawned:
            assert not os.path.exists(f"/proc/{pid}"), f"process {pid} outlived the runner"
    finally:
        if runner.poll() is None:
            runner.kill()
        runner.stdout.close()
        shutil.rmtree(shared, ignore_errors=True)
