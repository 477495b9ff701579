"""`chatstack doctor`: each check against fakes, loopback servers and generated certificates."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import shutil
import ssl
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deploy import doctor
from deploy import doctor_checks as dc
from deploy import doctor_probes as probes
from deploy.doctor_checks import CheckResult, Context
from deploy.doctor_probes import GpuReport, TorchFacts
from tests.servers import free_port

NO_GPU = GpuReport([], error="NVML: NVML Shared Library Not Found")
H100 = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "memory_used_mb": 1024,
    "memory_total_mb": 81559,
    "temperature_c": 34,
    "power_w": 71.5,
    "utilization_pct": 0,
}
CPU_TORCH = TorchFacts("2.13.0+cpu", None, False, 0, [])
CUDA_TORCH = TorchFacts("2.13.0+cu128", "12.8", True, 1, ["NVIDIA H100 80GB HBM3"])


def context(tmp_path: Path, **env: str) -> Context:
    """A context that sees only `env` (no .env, no process environment)."""
    base = {"MODELS_DIR": str(tmp_path / "models"), "CERTS_DIR": str(tmp_path / "certs")}
    return Context({**base, **env}, timeout=1.0)


def with_facts(ctx: Context, gpus: GpuReport = NO_GPU, torch: TorchFacts = CPU_TORCH) -> Context:
    ctx.gpus = gpus  # type: ignore[misc] - fills the cached properties
    ctx.torch = torch  # type: ignore[misc]
    return ctx


# ---- GPU & driver ------------------------------------------------------------------------


def test_no_gpu_is_reported_cleanly_as_running_on_the_cpu(tmp_path: Path) -> None:
    result = dc.check_gpu(with_facts(context(tmp_path)))
    assert result.status == "skip"
    assert "no NVIDIA GPU/driver found" in result.message
    assert "the model runs on the CPU" in result.message


def test_device_cuda_without_a_gpu_fails_with_a_fix(tmp_path: Path) -> None:
    result = dc.check_gpu(with_facts(context(tmp_path, DEVICE="cuda")))
    assert result.status == "fail"
    assert "DEVICE=cuda" in result.message
    assert "nvidia-smi" in result.fix and "DEVICE=auto" in result.fix


def test_a_gpu_is_described_like_nvidia_smi(tmp_path: Path) -> None:
    report = GpuReport([H100], driver="570.86.15", cuda_driver="12.8")
    result = dc.check_gpu(with_facts(context(tmp_path, DEVICE="cuda"), gpus=report))
    assert result.status == "ok"
    for part in ("570.86.15", "H100", "1.0/79.6 GiB used", "34 °C", "72 W"):
        assert part in result.message
    assert result.details["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_a_hot_gpu_is_a_warning(tmp_path: Path) -> None:
    report = GpuReport([{**H100, "temperature_c": 91}], driver="570.86.15")
    result = dc.check_gpu(with_facts(context(tmp_path), gpus=report))
    assert result.status == "warn" and "hot" in result.message


def fake_pynvml(*, init_error: bool = False) -> types.ModuleType:
    """Just enough of nvidia-ml-py for read_gpus, with one GPU or with no driver at all."""
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        def __str__(self) -> str:
            return "NVML Shared Library Not Found"

    def init() -> None:
        if init_error:
            raise NVMLError_LibraryNotFound()

    def not_supported(*_: object) -> None:
        raise NVMLError("Not Supported")

    nvml.NVMLError = NVMLError  # type: ignore[attr-defined]
    nvml.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    nvml.shutdowns = 0  # type: ignore[attr-defined]

    def shutdown() -> None:
        nvml.shutdowns += 1  # type: ignore[attr-defined]

    memory = types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30)
    nvml.__dict__.update(
        nvmlInit=init,
        nvmlShutdown=shutdown,
        nvmlSystemGetDriverVersion=lambda: "570.86.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetMemoryInfo=lambda h: memory,
        nvmlDeviceGetTemperature=lambda h, sensor: 40,
        nvmlDeviceGetPowerUsage=lambda h: 120_000,
        nvmlDeviceGetUtilizationRates=not_supported,
    )
    return nvml


def test_read_gpus_reads_what_nvml_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(__import__("sys").modules, "pynvml", nvml)
    report = probes.read_gpus()
    assert report.driver == "570.86.15" and report.cuda_driver == "12.8"
    assert report.gpus == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "memory_used_mb": 2048,
            "memory_total_mb": 81920,
            "temperature_c": 40,
            "power_w": 120.0,
            "utilization_pct": None,  # not supported on this board: left out, not an error
        }
    ]
    assert nvml.shutdowns == 1  # type: ignore[attr-defined]


def test_read_gpus_without_a_driver_is_a_report_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake_pynvml(init_error=True))
    report = probes.read_gpus()
    assert report.gpus == [] and report.error == "NVML: NVML Shared Library Not Found"


def test_read_gpus_on_this_machine_matches_its_driver() -> None:
    report = probes.read_gpus()
    if shutil.which("nvidia-smi") is None:  # this machine kind and CI: no NVIDIA driver
        assert report.gpus == [] and "NVML" in (report.error or "")
    else:
        assert report.gpus and report.error is None


# ---- CUDA --------------------------------------------------------------------------------


def test_cpu_torch_without_a_gpu_runs_on_the_cpu(tmp_path: Path) -> None:
    result = dc.check_cuda(with_facts(context(tmp_path)))
    assert result.status == "skip"
    assert "CPU-only build" in result.message and "runs on the CPU" in result.message


def test_device_cuda_with_cpu_torch_fails_and_says_how_to_get_a_cuda_build(
    tmp_path: Path,
) -> None:
    result = dc.check_cuda(with_facts(context(tmp_path, DEVICE="cuda")))
    assert result.status == "fail"
    assert "DEVICE=cuda" in result.message
    assert "CUDA build of torch" in result.fix and "DEVICE=auto" in result.fix


def test_a_gpu_that_pytorch_cannot_use_is_a_warning(tmp_path: Path) -> None:
    ctx = with_facts(context(tmp_path), gpus=GpuReport([H100], driver="570.86.15"))
    result = dc.check_cuda(ctx)
    assert result.status == "warn" and "GPU is present" in result.message


def test_a_usable_gpu_with_device_cpu_is_a_warning(tmp_path: Path) -> None:
    ctx = with_facts(context(tmp_path, DEVICE="cpu"), torch=CUDA_TORCH)
    result = dc.check_cuda(ctx)
    assert result.status == "warn" and "DEVICE=auto" in result.fix


def test_cuda_seen_by_pytorch_is_ok(tmp_path: Path) -> None:
    result = dc.check_cuda(with_facts(context(tmp_path), torch=CUDA_TORCH))
    assert result.status == "ok"
    assert "CUDA 12.8" in result.message and result.details["device_count"] == 1


def test_cuda_is_skipped_when_pytorch_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> TorchFacts:
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(probes, "read_torch_facts", missing)
    result = dc.check_cuda(context(tmp_path))
    assert result.status == "skip" and "PyTorch" in result.message


def test_read_torch_facts_on_this_machine() -> None:
    facts = probes.read_torch_facts()
    assert facts.version.startswith("2.")
    assert facts.device_count == len(facts.device_names)


# ---- Python, PyTorch, transformers --------------------------------------------------------


def test_python_environment_is_reported(tmp_path: Path) -> None:
    result = dc.check_python(context(tmp_path))
    assert result.status in ("ok", "warn") and "Python 3." in result.message


def test_pinned_versions_come_from_pyproject() -> None:
    assert dc.pinned_requirement(dc.PROJECT_ROOT, "torch") == "torch==2.13.0"
    assert dc.pinned_requirement(dc.PROJECT_ROOT, "transformers").startswith("transformers>=")
    assert dc.pinned_requirement(dc.PROJECT_ROOT, "no-such-package") is None


def test_installed_pytorch_matches_the_pin(tmp_path: Path) -> None:
    result = dc.check_torch(context(tmp_path))
    assert result.status == "ok", result
    assert "torch==2.13.0" in result.message


def test_transformers_is_checked_against_its_range(tmp_path: Path) -> None:
    result = dc.check_transformers(context(tmp_path))
    assert result.status == "ok", result
    assert result.details["wanted"].startswith("transformers>=")


def test_a_version_other_than_the_pin_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.optional-dependencies]\nmodel = ["torch==9.9.9"]\n'
    )
    ctx = context(tmp_path)
    ctx.root = tmp_path
    result = dc.check_torch(ctx)
    assert result.status == "warn"
    assert "torch==9.9.9" in result.message and "make install" in result.fix


def test_a_missing_library_fails_with_make_install(tmp_path: Path) -> None:
    result = dc.check_library(context(tmp_path), "x", "no-such-package-xyz", "X")
    assert result.status == "fail" and "make install" in result.fix


# ---- model files -------------------------------------------------------------------------


def model_folder(path: Path, *, converted: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(b"\0" * 2**20)
    (path / "tokenizer.json").write_text("{}")
    if converted:
        (path / ".converted").write_text("")
    return path


def test_missing_embedded_model_fails_with_make_install(tmp_path: Path) -> None:
    result = dc.check_model_files(context(tmp_path))
    assert result.status == "fail"
    assert "does not exist" in result.message and "make install" in result.fix


def test_a_converted_embedded_model_is_ok(tmp_path: Path) -> None:
    model_folder(tmp_path / "models" / "SmolLM2-135M-Instruct")
    result = dc.check_model_files(context(tmp_path))
    assert result.status == "ok", result
    assert "llama" in result.message and result.details["weights_mb"] == 1


def test_an_interrupted_conversion_fails_with_make_install(tmp_path: Path) -> None:
    model_folder(tmp_path / "models" / "SmolLM2-135M-Instruct", converted=False)
    result = dc.check_model_files(context(tmp_path))
    assert result.status == "fail" and "make install" in result.fix


def test_a_model_folder_without_weights_names_what_is_missing(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "mine")
    (folder / "model.safetensors").unlink()
    (folder / "tokenizer.json").unlink()
    result = dc.check_model_files(context(tmp_path, MODEL_PATH=str(folder)))
    assert result.status == "fail"
    assert "weights" in result.message and "tokenizer" in result.message
    assert "MODEL_PATH" in result.fix


def test_gguf_files(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    assert dc.check_model_files(context(tmp_path, MODEL_PATH=str(gguf))).status == "fail"
    gguf.write_bytes(b"GGUF")
    assert dc.check_model_files(context(tmp_path, MODEL_PATH=str(gguf))).status == "ok"


def test_a_hub_id_is_a_warning_about_internet_access(tmp_path: Path) -> None:
    result = dc.check_model_files(context(tmp_path, MODEL_PATH="Qwen/Qwen2.5-0.5B-Instruct"))
    assert result.status == "warn" and "internet" in result.message


# ---- services ----------------------------------------------------------------------------


class FakeServer:
    """A loopback HTTP(S) server answering every GET with one status and body."""

    def __init__(self, status: int, body: object, tls: ssl.SSLContext | None = None) -> None:
        reply = body if isinstance(body, bytes) else json.dumps(body).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[FakeServer] = []

    def start(status: int, body: object, tls: ssl.SSLContext | None = None) -> int:
        servers.append(FakeServer(status, body, tls))
        return servers[-1].port

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("key", [None, "", "   "])
def test_an_empty_model_api_key_is_a_warning_with_a_fix(tmp_path: Path, key: str | None) -> None:
    env = {} if key is None else {"MODEL_API_KEY": key}
    result = dc.check_model_api_key(context(tmp_path, **env))
    assert result.status == "warn"
    assert "MODEL_API_KEY is empty" in result.message and "any" in result.message
    assert ".env" in result.fix and "make run" in result.fix and "secrets" in result.fix
    assert result.layer == "services"


def test_the_example_placeholder_key_is_a_warning(tmp_path: Path) -> None:
    result = dc.check_model_api_key(
        context(tmp_path, MODEL_API_KEY="change-me-to-a-long-random-string")
    )
    assert result.status == "warn" and ".env.example" in result.message


def test_a_model_api_key_is_ok_and_never_shown(tmp_path: Path) -> None:
    key = "k" * 43
    result = dc.check_model_api_key(context(tmp_path, MODEL_API_KEY=key))
    assert result.status == "ok" and "43 characters" in result.message
    assert key not in json.dumps(result.as_dict())


def test_the_key_check_runs_before_the_services(tmp_path: Path) -> None:
    names = [check.__name__ for check in dc.CHECKS]
    assert names.index("check_model_api_key") < names.index("check_model_api")


def test_a_stopped_model_api_fails_with_the_start_command(tmp_path: Path) -> None:
    result = dc.check_model_api(context(tmp_path, MODEL_API_PORT=str(free_port())))
    assert result.status == "fail"
    assert "not answering" in result.message and "connection refused" in result.message
    assert "make run" in result.fix and "model_api.app:create_app()" in result.fix


def test_a_stopped_app_service_fails_with_the_start_command(tmp_path: Path) -> None:
    result = dc.check_app_service(context(tmp_path, APP_PORT=str(free_port())))
    assert result.status == "fail"
    assert "not answering" in result.message and "make run" in result.fix


def test_a_healthy_model_api(tmp_path: Path, serve) -> None:
    body = {"status": "ok", "model": "m", "device": "cpu", "dtype": "float32", "running": 1}
    result = dc.check_model_api(context(tmp_path, MODEL_API_PORT=str(serve(200, body))))
    assert result.status == "ok"
    assert "serving m on cpu as float32" in result.message and "1 running" in result.message


def test_a_loading_model_api_is_a_warning(tmp_path: Path, serve) -> None:
    port = serve(503, {"status": "loading", "model": "m"})
    result = dc.check_model_api(context(tmp_path, MODEL_API_PORT=str(port)))
    assert result.status == "warn" and "loading" in result.message


def test_a_model_that_failed_to_load_shows_the_error(tmp_path: Path, serve) -> None:
    port = serve(503, {"status": "failed", "error": "ModelLoadError: MODEL_PATH /x missing"})
    result = dc.check_model_api(context(tmp_path, MODEL_API_PORT=str(port)))
    assert result.status == "fail" and "MODEL_PATH /x missing" in result.message


def test_something_else_on_the_port_is_named(tmp_path: Path, serve) -> None:
    port = serve(200, b"<html>hello</html>")
    result = dc.check_model_api(context(tmp_path, MODEL_API_PORT=str(port)))
    assert result.status == "fail" and "not the model API" in result.message


def test_an_app_service_that_cannot_reach_the_model_api(tmp_path: Path, serve) -> None:
    upstream = {"url": "http://127.0.0.1:8001", "healthy": False, "error": "connection refused"}
    body = {
        "status": "ok",
        "version": "0.1.0",
        "model_api": {"reachable": False, "upstreams": [upstream]},
    }
    result = dc.check_app_service(context(tmp_path, APP_PORT=str(serve(200, body))))
    assert result.status == "fail"
    assert "reaches no model API" in result.message and "connection refused" in result.message
    assert "MODEL_API_URLS" in result.fix


def test_a_healthy_app_service(tmp_path: Path, serve) -> None:
    upstream = {"url": "http://127.0.0.1:8001", "healthy": True, "error": None}
    body = {
        "status": "ok",
        "version": "0.1.0",
        "model_api": {"reachable": True, "upstreams": [upstream]},
    }
    result = dc.check_app_service(context(tmp_path, APP_PORT=str(serve(200, body))))
    assert result.status == "ok" and "http://127.0.0.1:8001" in result.message


# ---- nginx, over TLS ---------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A local CA and a server certificate for localhost, made by `make certs`' code."""
    from deploy.certs import ensure_certs
    from deploy.settings import DeploySettings

    folder = tmp_path / "certs"
    ensure_certs(
        DeploySettings(
            certs_dir=folder, tls_cert=folder / "server.pem", tls_key=folder / "server-key.pem"
        )
    )
    return folder


def tls_context(certs: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    return context


def test_a_stopped_nginx_fails_with_the_start_command(tmp_path: Path) -> None:
    result = dc.check_nginx(context(tmp_path, HTTPS_PORT=str(free_port())))
    assert result.status == "fail"
    assert "not answering" in result.message and "make run" in result.fix


def test_nginx_verified_with_the_local_ca(tmp_path: Path, certs: Path, serve) -> None:
    port = serve(200, {"status": "ok", "version": "0.1.0"}, tls=tls_context(certs))
    result = dc.check_nginx(context(tmp_path, HTTPS_PORT=str(port)))
    assert result.status == "ok", result
    assert "ca.pem" in result.message


def test_an_untrusted_certificate_fails(tmp_path: Path, certs: Path, serve) -> None:
    port = serve(200, {"status": "ok"}, tls=tls_context(certs))
    (certs / "ca.pem").unlink()  # now only the system's CAs are trusted
    result = dc.check_nginx(context(tmp_path, HTTPS_PORT=str(port)))
    assert result.status == "fail"
    assert "not trusted" in result.message and "make certs" in result.fix


def test_nginx_without_its_upstream_says_so(tmp_path: Path, certs: Path, serve) -> None:
    port = serve(502, {"error": {"message": "down"}}, tls=tls_context(certs))
    result = dc.check_nginx(context(tmp_path, HTTPS_PORT=str(port)))
    assert result.status == "fail"
    assert "cannot reach the app service" in result.message and "make run" in result.fix


# ---- nginx config ------------------------------------------------------------------------


def test_missing_nginx_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probes, "find_nginx", lambda: None)
    result = dc.check_nginx_config(context(tmp_path))
    assert result.status == "fail" and "apt-get install nginx-light" in result.fix


NGINX = probes.find_nginx()


def test_the_rendered_config_passes_nginx_t(tmp_path: Path, certs: Path) -> None:
    result = dc.check_nginx_config(context(tmp_path))
    assert result.status == "ok", result
    assert not list(tmp_path.glob("run*")), "the scratch prefix is not the real run folder"


def test_a_config_without_certificates_fails_with_make_certs(tmp_path: Path) -> None:
    result = dc.check_nginx_config(context(tmp_path))
    assert result.status == "fail"
    assert "cannot load certificate" in result.message and "make certs" in result.fix


# ---- certificate expiry ------------------------------------------------------------------


def write_certificate(folder: Path, *, days_left: float, names: tuple[str, ...] = ("localhost",)):
    """A self-signed certificate and key expiring `days_left` days from now."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt = [
        x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
        for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_a_missing_certificate_fails_with_make_certs(tmp_path: Path) -> None:
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "fail"
    assert "no certificate" in result.message and "make certs" in result.fix


def test_an_expired_certificate_fails(tmp_path: Path) -> None:
    write_certificate(tmp_path / "certs", days_left=-2)
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "fail" and "expired" in result.message and "make certs" in result.fix


def test_a_certificate_expiring_soon_is_a_warning(tmp_path: Path) -> None:
    write_certificate(tmp_path / "certs", days_left=10.5)
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "warn" and "in 10 days" in result.message
    assert result.details["days_left"] == 10


def test_a_valid_certificate_is_ok(tmp_path: Path) -> None:
    write_certificate(tmp_path / "certs", days_left=200, names=("localhost", "127.0.0.1"))
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "ok" and "localhost, 127.0.0.1" in result.message


def test_a_certificate_for_another_name_is_a_warning(tmp_path: Path) -> None:
    write_certificate(tmp_path / "certs", days_left=200, names=("example.org",))
    result = dc.check_certificate(context(tmp_path, SERVER_NAME="chat.example.com"))
    assert result.status == "warn" and "SERVER_NAME" in result.message


def test_a_ca_key_left_in_certs_dir_is_a_warning(tmp_path: Path) -> None:
    """CERTS_DIR is mounted into the web container; an older `make certs` kept the CA's key
    there."""
    write_certificate(tmp_path / "certs", days_left=200, names=("localhost",))
    (tmp_path / "certs" / "ca-key.pem").write_text("a key")
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "warn" and "ca-key.pem" in result.message
    assert "make certs" in result.fix


def test_a_certificate_without_its_key_fails(tmp_path: Path) -> None:
    write_certificate(tmp_path / "certs", days_left=200)
    (tmp_path / "certs" / "server-key.pem").unlink()
    result = dc.check_certificate(context(tmp_path))
    assert result.status == "fail" and "private key" in result.message


# ---- running checks and the output -------------------------------------------------------


def test_a_bad_setting_is_a_failed_check_naming_the_variable(tmp_path: Path) -> None:
    result = doctor.run_check(dc.check_model_api, context(tmp_path, MODEL_API_PORT="eighty"))
    assert result.status == "fail"
    assert "MODEL_API_PORT" in result.message and ".env" in result.fix


def test_a_crashing_check_does_not_stop_the_others(tmp_path: Path) -> None:
    def check_broken(ctx: Context) -> CheckResult:
        raise RuntimeError("boom")

    result = doctor.run_check(check_broken, context(tmp_path))
    assert result.status == "fail" and "boom" in result.message


def fake_checks(*statuses: str):
    def make(i: int, status: str):
        def check(ctx: Context) -> CheckResult:
            return CheckResult(f"layer{i}", f"check {i}", status, f"message {i}", f"fix {i}")

        return check

    return tuple(make(i, s) for i, s in enumerate(statuses))


def test_json_output_shape_and_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "CHECKS", fake_checks("ok", "skip", "fail"))
    status = doctor.main(["doctor", "--json", "--env-file", str(tmp_path / "none")])
    body = json.loads(capsys.readouterr().out)
    assert status == 1 and body["ok"] is False
    assert [c["status"] for c in body["checks"]] == ["ok", "skip", "fail"]
    assert set(body["checks"][0]) == {"layer", "name", "status", "message", "fix", "details"}
    assert body["checks"][2] == {
        "layer": "layer2",
        "name": "check 2",
        "status": "fail",
        "message": "message 2",
        "fix": "fix 2",
        "details": {},
    }


def test_warnings_alone_exit_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "CHECKS", fake_checks("ok", "warn"))
    assert doctor.main(["--json", "--env-file", str(tmp_path / "none")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_text_output_marks_each_check_and_indents_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "CHECKS", fake_checks("ok", "warn", "fail", "skip"))
    assert doctor.main(["--env-file", str(tmp_path / "none")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "[ ok ] check 0  message 0" in lines
    assert "[FAIL] check 2  message 2" in lines
    fix_line = lines[lines.index("[FAIL] check 2  message 2") + 1]
    assert fix_line.startswith(" ") and fix_line.strip() == "fix: fix 2"
    assert not any("fix 0" in line for line in lines)  # an ok check needs no fix
    assert "1 of 4 checks failed" in lines[-1]


def test_the_env_file_is_read_on_top_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def check_env(ctx: Context) -> CheckResult:
        seen.append(ctx.env["MODEL_API_PORT"])
        return CheckResult("l", "n", "ok", "m")

    env_file = tmp_path / ".env"
    env_file.write_text("MODEL_API_PORT=9101\n")
    monkeypatch.setenv("MODEL_API_PORT", "9100")
    monkeypatch.setattr(doctor, "CHECKS", (check_env,))
    doctor.main(["--env-file", str(env_file)])
    assert seen == ["9101"]  # as `make run` does: .env wins
