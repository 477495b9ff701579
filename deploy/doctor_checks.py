"""The doctor's checks, one function per layer of the stack, from the GPU up to nginx.

Each check takes a `Context` and returns a `CheckResult` saying in words what it found and,
when something is wrong, how to fix it. What touches the machine (NVML, PyTorch, HTTP,
`nginx -t`, the certificate files) is asked through `deploy/doctor_probes.py`, which tests
replace; heavy imports happen inside the functions, so importing this module stays fast.
"""

from __future__ import annotations

import json
import shlex
import ssl
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from app_service.settings import Settings as AppSettings
from deploy import doctor_probes as probes
from deploy.doctor_probes import GpuReport, TorchFacts, describe_error
from deploy.services import APP_SERVICE, MODEL_API
from deploy.settings import PROJECT_ROOT, DeploySettings
from model_api.settings import Settings as ModelSettings

Status = Literal["ok", "warn", "fail", "skip"]

START_STACK = "start the stack with `make run`"
# `make certs` runs deploy/certs.py; `make run` also makes certificates when none exist.
MAKE_CERTS = "`make certs` (`.venv/bin/python -m deploy.certs`)"
CERT_WARN_DAYS = 30
# The commented-out example in .env.example: uncommented as it is, it is no secret.
EXAMPLE_MODEL_API_KEY = "change-me-to-a-long-random-string"
NEW_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
HOT_GPU_CELSIUS = 85


@dataclass(frozen=True)
class CheckResult:
    layer: str
    name: str
    status: Status
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    """The environment the stack runs with, its settings read lazily (a bad value is a
    failed check, not a crash), and facts more than one check needs."""

    env: Mapping[str, str]
    timeout: float = 2.0
    root: Path = PROJECT_ROOT

    @cached_property
    def model(self) -> ModelSettings:
        return ModelSettings.from_env(self.env)

    @cached_property
    def app(self) -> AppSettings:
        return AppSettings.from_env(self.env)

    @cached_property
    def deploy(self) -> DeploySettings:
        return DeploySettings.from_env(self.env)

    @cached_property
    def gpus(self) -> GpuReport:
        return probes.read_gpus()

    @cached_property
    def torch(self) -> TorchFacts:
        return probes.read_torch_facts()


def _reporter(layer: str, name: str) -> Callable[..., CheckResult]:
    """A check's result builder: result(status, message, fix="", **details)."""

    def result(status: Status, message: str, fix: str = "", /, **details: Any) -> CheckResult:
        return CheckResult(layer, name, status, message, fix, details)

    return result


def _start_command(service_command: tuple[str, ...]) -> str:
    return f"{START_STACK} (this service alone: `.venv/bin/{shlex.join(service_command)}`)"


def _connect_host(host: str) -> str:
    """Where to reach a server listening on `host` from this machine."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


# ---- hardware, CUDA, Python, libraries --------------------------------------------------


def check_gpu(ctx: Context) -> CheckResult:
    result = _reporter("hardware", "GPU & driver")

    report = ctx.gpus
    wants_cuda = ctx.model.device == "cuda"
    if not report.gpus:
        why = report.error or "no NVIDIA GPU found"
        if wants_cuda:
            return result(
                "fail",
                f"DEVICE=cuda, but no NVIDIA GPU/driver was found ({why})",
                "install the NVIDIA driver so that `nvidia-smi` lists the GPU, "
                "or set DEVICE=auto (or cpu) in .env to run the model on the CPU",
            )
        return result("skip", f"no NVIDIA GPU/driver found ({why}); the model runs on the CPU")
    described = "; ".join(_describe_gpu(g) for g in report.gpus)
    details = {"driver": report.driver, "cuda_driver": report.cuda_driver, "gpus": report.gpus}
    hot = [g for g in report.gpus if (g.get("temperature_c") or 0) >= HOT_GPU_CELSIUS]
    if hot:
        return result(
            "warn",
            f"driver {report.driver}: {described}; GPU {hot[0]['index']} runs hot",
            "check the cooling and airflow; `nvidia-smi -q -d PERFORMANCE` shows throttling",
            **details,
        )
    return result("ok", f"driver {report.driver}: {described}", **details)


def _describe_gpu(gpu: dict[str, Any]) -> str:
    parts = [f"GPU {gpu['index']} {gpu['name']}"]
    if gpu.get("memory_total_mb"):
        parts.append(
            f"{gpu['memory_used_mb'] / 1024:.1f}/{gpu['memory_total_mb'] / 1024:.1f} GiB used"
        )
    if gpu.get("temperature_c") is not None:
        parts.append(f"{gpu['temperature_c']} °C")
    if gpu.get("power_w") is not None:
        parts.append(f"{gpu['power_w']:.0f} W")
    return ", ".join(parts)


def check_cuda(ctx: Context) -> CheckResult:
    result = _reporter("CUDA", "CUDA (as PyTorch sees it)")

    try:
        facts = ctx.torch
    except ImportError:
        return result("skip", "PyTorch is not importable, so CUDA cannot be checked (see below)")
    device = ctx.model.device
    details = {
        "available": facts.cuda_available,
        "cuda_version": facts.cuda_version,
        "device_count": facts.device_count,
        "devices": facts.device_names,
    }
    if facts.cuda_available:
        found = (
            f"PyTorch sees {facts.device_count} CUDA device(s) "
            f"({', '.join(facts.device_names)}) with CUDA {facts.cuda_version}"
        )
        if device == "cpu":
            return result(
                "warn",
                f"{found}, but DEVICE=cpu keeps the model on the CPU",
                "set DEVICE=auto (or cuda) in .env to use the GPU",
                **details,
            )
        return result("ok", f"{found}; the model runs on the GPU", **details)

    if facts.cuda_version is None:
        why = f"PyTorch {facts.version} is a CPU-only build"
        how = (
            "install a CUDA build of torch (same version) from PyTorch's wheel index for your "
            "driver, e.g. `.venv/bin/pip install torch==2.13.0 --index-url "
            "https://download.pytorch.org/whl/cu128`"
        )
    else:
        why = f"PyTorch is built for CUDA {facts.cuda_version} but finds no usable GPU"
        how = (
            "check that `nvidia-smi` works and that the driver supports "
            f"CUDA {facts.cuda_version} or newer"
        )
    if device == "cuda":
        return result("fail", f"DEVICE=cuda, but {why}", f"{how}; or set DEVICE=auto", **details)
    if ctx.gpus.gpus:
        return result(
            "warn",
            f"an NVIDIA GPU is present, but {why}; the model runs on the CPU",
            how,
            **details,
        )
    if ctx.model.dtype == "float16":
        return result(
            "warn",
            f"no CUDA ({why}), and DTYPE=float16 is slow or unsupported on the CPU",
            "set DTYPE=auto (float32) or bfloat16 in .env",
            **details,
        )
    return result("skip", f"no CUDA: {why}; the model runs on the CPU", **details)


def check_python(ctx: Context) -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    in_venv = sys.prefix != sys.base_prefix
    details = {"version": version, "executable": sys.executable, "virtualenv": in_venv}
    if not in_venv:
        return CheckResult(
            "Python",
            "Python environment",
            "warn",
            f"Python {version} outside a virtualenv ({sys.executable}); "
            "the stack runs from .venv, so what is checked here may differ",
            "run `make doctor` (it uses .venv/bin/python)",
            details,
        )
    return CheckResult(
        "Python", "Python environment", "ok", f"Python {version} in {sys.prefix}", "", details
    )


def pinned_requirement(root: Path, package: str) -> str | None:
    """The requirement (e.g. 'torch==2.13.0') pyproject.toml states for a package, if any."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    for requirement in (r for group in groups for r in group):
        name = requirement.split(";")[0]
        for separator in "=<>!~[ ":
            name = name.split(separator)[0]
        if name.strip().lower() == package:
            return requirement.replace(" ", "")
    return None


def _satisfies(version: str, requirement: str) -> bool | None:
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return None
    return Requirement(requirement).specifier.contains(version, prereleases=True)


def check_library(ctx: Context, layer: str, package: str, title: str) -> CheckResult:
    """Installed, importable and the version pyproject.toml asks for."""
    wanted = pinned_requirement(ctx.root, package)
    version = probes.installed_version(package)
    if version is None:
        return CheckResult(
            layer,
            title,
            "fail",
            f"{title} is not installed in {sys.prefix}",
            "run `make install` (it installs the pinned versions into .venv)",
        )
    exc = probes.import_error(package)
    if exc is not None:
        return CheckResult(
            layer,
            title,
            "fail",
            f"{title} {version} is installed but fails to import: {describe_error(exc)}",
            f"reinstall it: `.venv/bin/pip install --force-reinstall '{wanted or package}'`",
        )
    details = {"version": version, "wanted": wanted}
    if wanted and _satisfies(version, wanted) is False:
        return CheckResult(
            layer,
            title,
            "warn",
            f"{title} {version} is installed, but pyproject.toml asks for {wanted}",
            "run `make install` to install the version the stack is tested with",
            details,
        )
    wanted_note = f" (pyproject.toml: {wanted})" if wanted else ""
    return CheckResult(layer, title, "ok", f"{title} {version}{wanted_note}", "", details)


def check_torch(ctx: Context) -> CheckResult:
    return check_library(ctx, "PyTorch", "torch", "PyTorch")


def check_transformers(ctx: Context) -> CheckResult:
    return check_library(ctx, "transformers", "transformers", "transformers")


# ---- the model ---------------------------------------------------------------------------

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_files(ctx: Context) -> CheckResult:
    result = _reporter("model", "model files")

    settings = ctx.model
    path = Path(settings.model_path)
    embedded = path == settings.embedded_model_dir
    convert = "run `make install` to convert the embedded model"
    elsewhere = "or point MODEL_PATH in .env at a model folder, a .gguf file or a hub id"
    if path.suffix == ".gguf":
        if path.is_file():
            size = path.stat().st_size / 2**20
            return result("ok", f"GGUF file {path} ({size:.0f} MB)", path=str(path))
        return result(
            "fail", f"MODEL_PATH names a GGUF file that does not exist: {path}", elsewhere
        )
    if not path.exists():
        looks_hub_id = not path.is_absolute() and not settings.model_path.startswith(".")
        if looks_hub_id and not path.parent.is_dir() and settings.model_path.count("/") == 1:
            return result(
                "warn",
                f"MODEL_PATH {settings.model_path} is a Hugging Face hub id: downloaded at start, "
                "which needs internet access",
                "download it once (`hf download <id> --local-dir models/<name>`) and point "
                "MODEL_PATH at the folder",
            )
        fix = (
            f"{convert} ({settings.embedded_model_dir})" if embedded else f"{convert}, {elsewhere}"
        )
        return result("fail", f"the model folder {path} does not exist", fix)
    if not path.is_dir():
        return result("fail", f"MODEL_PATH {path} is neither a folder nor a .gguf file", elsewhere)
    return _judge_model_folder(path, embedded, convert, elsewhere)


def _judge_model_folder(path: Path, embedded: bool, convert: str, elsewhere: str) -> CheckResult:
    missing = []
    config: dict[str, Any] = {}
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        missing.append("config.json")
    except (OSError, ValueError) as exc:
        missing.append(f"a readable config.json ({exc})")
    weights = [p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern)]
    if not weights:
        missing.append("weights (*.safetensors or *.bin)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json or tokenizer.model)")
    if embedded and not missing and not (path / ".converted").is_file():
        missing.append("the .converted marker (the conversion was interrupted)")
    if missing:
        fix = convert if embedded else f"complete the folder, {elsewhere}"
        return CheckResult(
            "model", "model files", "fail", f"{path} lacks {', '.join(missing)}", fix
        )
    size = sum(p.stat().st_size for p in weights) / 2**20
    kind = config.get("model_type", "unknown type")
    return CheckResult(
        "model",
        "model files",
        "ok",
        f"{path.name}: {kind}, {size:.0f} MB of weights, tokenizer present",
        "",
        {"path": str(path), "model_type": kind, "weights_mb": round(size)},
    )


# ---- the services -----------------------------------------------------------------------


def check_model_api_key(ctx: Context) -> CheckResult:
    """The shared key the app service sends and the model API requires; never shown."""
    result = _reporter("services", "model API key")

    key = ctx.model.api_key
    set_it = (
        f"`make run` writes a random MODEL_API_KEY into .env when it has none; or set "
        f"MODEL_API_KEY in .env to the output of `{NEW_KEY}`, and restart both services "
        "(`make run`, or `docker compose up -d`)"
    )
    if not key:
        return result(
            "warn",
            "MODEL_API_KEY is empty: the model API answers anyone who can reach its port",
            set_it,
        )
    if key == EXAMPLE_MODEL_API_KEY:
        return result("warn", "MODEL_API_KEY is the example value from .env.example", set_it)
    return result("ok", f"set ({len(key)} characters), the same for both services")


def check_model_api(ctx: Context) -> CheckResult:
    result = _reporter("services", "model API")

    url = f"http://{_connect_host(ctx.model.host)}:{ctx.model.port}{MODEL_API.health_path}"
    start = _start_command(MODEL_API.command)
    try:
        status, body = probes.fetch_json(url, ctx.timeout)
    except OSError as exc:
        return result("fail", f"not answering at {url} ({describe_error(exc)})", start, url=url)
    if not isinstance(body, dict) or "status" not in body:
        return result(
            "fail",
            f"something that is not the model API answers at {url} (HTTP {status})",
            "stop whatever listens on that port, or set MODEL_API_PORT to a free one",
            url=url,
        )
    details = {"url": url, "health": body}
    if status == 200 and body["status"] == "ok":
        return result(
            "ok",
            f"serving {body.get('model')} on {body.get('device')} as {body.get('dtype')}; "
            f"{body.get('running', 0)} running, {body.get('waiting', 0)} waiting",
            **details,
        )
    if body["status"] == "loading":
        return result(
            "warn",
            f"up at {url} but still loading the model",
            "wait: the embedded model loads in seconds, a large one can take minutes",
            **details,
        )
    error = body.get("error") or body["status"]
    return result(
        "fail",
        f"up at {url} but not serving: {error}",
        "read the model API's log; the error names the cause (MODEL_PATH, DEVICE, DTYPE, "
        "memory), then restart it (`make run`)",
        **details,
    )


def check_app_service(ctx: Context) -> CheckResult:
    result = _reporter("services", "app service")

    url = f"http://{_connect_host(ctx.app.host)}:{ctx.app.port}{APP_SERVICE.health_path}"
    try:
        status, body = probes.fetch_json(url, ctx.timeout)
    except OSError as exc:
        start = _start_command(APP_SERVICE.command)
        return result("fail", f"not answering at {url} ({describe_error(exc)})", start, url=url)
    if status != 200 or not isinstance(body, dict) or "model_api" not in body:
        return result(
            "fail",
            f"something that is not the app service answers at {url} (HTTP {status})",
            "stop whatever listens on that port, or set APP_PORT to a free one",
            url=url,
        )
    upstreams = body["model_api"].get("upstreams") or []
    details = {"url": url, "version": body.get("version"), "upstreams": upstreams}
    if body["model_api"].get("reachable"):
        healthy = [u["url"] for u in upstreams if u.get("healthy")]
        return result(
            "ok",
            f"version {body.get('version')} up, reaching the model API at {', '.join(healthy)}",
            **details,
        )
    down = "; ".join(f"{u.get('url')}: {u.get('error') or 'down'}" for u in upstreams)
    return result(
        "fail",
        f"up at {url}, but it reaches no model API ({down or 'none configured'})",
        "start the model API (`make run`); MODEL_API_URLS must point at it and MODEL_API_KEY "
        "must be the same for both services",
        **details,
    )


# ---- the web tier: nginx's config, the certificate, nginx itself -------------------------


def check_nginx_config(ctx: Context) -> CheckResult:
    result = _reporter("web", "nginx config")

    nginx = probes.find_nginx()
    if nginx is None:
        return result(
            "fail",
            "nginx is not installed",
            "as root: `apt-get install nginx-light` (then `make run` starts it)",
        )
    try:
        from deploy.nginx import write_nginx_conf
    except ImportError as exc:
        return result("skip", f"the config renderer is not available ({exc})")
    ok, output = probes.test_nginx_conf(nginx, ctx.deploy, write_nginx_conf)
    if ok:
        return result("ok", f"the rendered local config passes `{nginx} -t`", nginx=nginx)
    problem = _nginx_problem(output)
    if "certificate" in problem or "_key" in problem or ".pem" in problem:
        fix = f"run {MAKE_CERTS}, or set TLS_CERT/TLS_KEY to readable certificate files"
    else:
        fix = "the line above names the directive; check the settings it comes from in .env"
    return result("fail", f"`nginx -t` rejects the rendered config: {problem}", fix, output=output)


def _nginx_problem(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "[emerg]" in line or "[crit]" in line or "[alert]" in line:
            # OpenSSL's error stack after "(SSL:" says nothing an operator can act on.
            return line.split("] ", 1)[-1].split(" (SSL:")[0]
    return lines[-1] if lines else "no output"


def check_certificate(ctx: Context) -> CheckResult:
    result = _reporter("web", "TLS certificate")

    settings = ctx.deploy
    make_certs = (
        f"run {MAKE_CERTS} for a local CA and a certificate for localhost, or set TLS_CERT and "
        "TLS_KEY to yours (Let's Encrypt: /etc/letsencrypt/live/<name>/fullchain.pem and "
        "privkey.pem)"
    )
    if not settings.tls_cert.is_file():
        return result("fail", f"no certificate at {settings.tls_cert}", make_certs)
    if not settings.tls_key.is_file():
        return result("fail", f"no private key at {settings.tls_key}", make_certs)
    try:
        cert = probes.read_certificate(settings.tls_cert)
    except (OSError, ValueError) as exc:
        return result("fail", f"{settings.tls_cert} is not a PEM certificate ({exc})", make_certs)
    from deploy.certs import CA_KEY

    judged = judge_certificate(cert, settings.tls_cert, settings.server_name)
    legacy_ca_key = settings.certs_dir / CA_KEY
    if judged.status == "ok" and legacy_ca_key.exists():
        return result(
            "warn",
            f"{legacy_ca_key} lies beside the certificate, where nginx and the web container "
            "read: whoever can read it can sign a certificate for any name",
            f"run {MAKE_CERTS}: it moves the CA's key to CA_DIR ({settings.ca_dir})",
            **judged.details,
        )
    return judged


def judge_certificate(cert: Any, path: Path, server_name: str) -> CheckResult:
    """Expired: fail; under CERT_WARN_DAYS left or not naming SERVER_NAME: warn."""
    from datetime import UTC, datetime

    from cryptography import x509

    result = _reporter("web", "TLS certificate")
    expires = cert.not_valid_after_utc
    days = (expires - datetime.now(UTC)).days
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        addresses = alt_names.get_values_for_type(x509.IPAddress)
        names = [*alt_names.get_values_for_type(x509.DNSName), *map(str, addresses)]
    details = {"path": str(path), "expires": expires.isoformat(), "days_left": days, "names": names}
    renew = f"run {MAKE_CERTS} for a new local one, or renew yours (`certbot renew`)"
    when = expires.strftime("%Y-%m-%d")
    if expires <= datetime.now(UTC):
        return result("fail", f"{path} expired on {when}", renew, **details)
    if days < CERT_WARN_DAYS:
        return result("warn", f"{path} expires on {when}, in {days} days", renew, **details)
    if names and not any(_name_matches(server_name, n) for n in names):
        return result(
            "warn",
            f"{path} is for {', '.join(names)}, not SERVER_NAME {server_name}: browsers refuse it",
            f"set SERVER_NAME to a name the certificate holds, or make one for it: {MAKE_CERTS}",
            **details,
        )
    valid_for = ", ".join(names) or "its subject"
    return result("ok", f"valid until {when} ({days} days) for {valid_for}", **details)


def _name_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.split(".", 1)[-1] == pattern[2:] and host.count(".") >= 2
    return host.lower() == pattern.lower()


def check_nginx(ctx: Context) -> CheckResult:
    result = _reporter("web", "nginx (HTTPS)")

    settings = ctx.deploy
    url = f"{settings.site_origin}/api/health"
    ca = probes.find_local_ca(settings.certs_dir)
    trust = f"the local CA {ca}" if ca else "the system's trusted CAs"
    address = _connect_host(settings.listen_address)
    try:
        status, body = probes.fetch_https(
            address, settings.https_port, settings.server_name, "/api/health", ca, ctx.timeout
        )
    except OSError as exc:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return result(
                "fail",
                f"{url} answers, but its certificate is not trusted by {trust}: "
                f"{exc.verify_message}",
                f"run {MAKE_CERTS} and restart nginx (`make run`); browsers need the local CA "
                "trusted (see the README)",
                url=url,
            )
        return result(
            "fail", f"not answering at {url} ({describe_error(exc)})", START_STACK, url=url
        )
    if status in (502, 503, 504):
        return result(
            "fail",
            f"nginx is up but cannot reach the app service at {settings.app_upstream} "
            f"(HTTP {status})",
            "start the app service (`make run`); APP_UPSTREAM/APP_PORT must name where it listens",
            url=url,
        )
    if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
        return result("ok", f"{url} answers through TLS, verified with {trust}", url=url)
    return result(
        "warn",
        f"{url} answered HTTP {status}, not the app service's health",
        "check that the rendered nginx config is the one running (`make run` renders it)",
        url=url,
    )


# Bottom-up, as the stack is built (figure 3-3): a failure low down explains those above it.
CHECKS: tuple[Callable[[Context], CheckResult], ...] = (
    check_gpu,
    check_cuda,
    check_python,
    check_torch,
    check_transformers,
    check_model_files,
    check_model_api_key,
    check_model_api,
    check_app_service,
    check_nginx_config,
    check_certificate,
    check_nginx,
)
