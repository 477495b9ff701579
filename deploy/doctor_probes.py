"""The doctor's probes: everything that touches the machine or the network.

NVML for the GPUs (`read_gpus`, from chatstack/gpu.py, which the services' metrics share),
PyTorch and the installed libraries, HTTP and HTTPS requests to the services, `nginx -t` on
a rendered config, and the certificate files. The checks in
`deploy/doctor_checks.py` judge what these return; tests replace them with fakes. Heavy
imports (pynvml, torch, cryptography) happen inside the functions, so importing this module
stays fast.
"""

from __future__ import annotations

import errno
import http.client
import importlib
import importlib.metadata
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chatstack.gpu import GpuReport, read_gpus  # noqa: F401 - the doctor's GPU probe
from deploy.settings import DeploySettings

# ---- GPUs and PyTorch ----------------------------------------------------------------------


@dataclass(frozen=True)
class TorchFacts:
    version: str
    cuda_version: str | None
    cuda_available: bool
    device_count: int
    device_names: list[str]


def read_torch_facts() -> TorchFacts:
    """CUDA as PyTorch sees it; ImportError when PyTorch is missing or broken."""
    try:
        import torch
    except Exception as exc:
        raise ImportError(str(exc)) from exc
    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    return TorchFacts(
        version=torch.__version__,
        cuda_version=torch.version.cuda,
        cuda_available=available,
        device_count=count,
        device_names=[torch.cuda.get_device_name(i) for i in range(count)],
    )


def installed_version(package: str) -> str | None:
    """The version pip installed of `package`, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_error(package: str) -> Exception | None:
    """Why `package` fails to import, or None when it imports."""
    try:
        importlib.import_module(package)
    except Exception as exc:
        return exc
    return None


# ---- HTTP and HTTPS ------------------------------------------------------------------------


def fetch_json(url: str, timeout: float) -> tuple[int, Any]:
    """(HTTP status, JSON body or None); OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from exc
    return status, _json_or_none(raw)


def fetch_https(
    address: str, port: int, server_name: str, path: str, ca: Path | None, timeout: float
) -> tuple[int, Any]:
    """GET over TLS from `address`, verifying the certificate for `server_name` (SNI and
    Host too), so the nginx on this machine is checked whatever the name resolves to."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    raw_socket = socket.create_connection((address, port), timeout=timeout)
    try:
        tls = context.wrap_socket(raw_socket, server_hostname=server_name)
    except BaseException:
        raw_socket.close()
        raise
    connection = http.client.HTTPConnection(server_name, port, timeout=timeout)
    connection.sock = tls
    try:
        connection.request("GET", path, headers={"Host": f"{server_name}:{port}"})
        reply = connection.getresponse()
        return reply.status, _json_or_none(reply.read())
    except http.client.HTTPException as exc:
        raise OSError(f"a broken HTTP reply: {exc}") from exc
    finally:
        connection.close()


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def describe_error(exc: BaseException) -> str:
    """A connection error in words."""
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused: nothing listens there"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer within the timeout"
    if isinstance(exc, socket.gaierror):
        return f"the name does not resolve ({exc.strerror})"
    return str(exc) or type(exc).__name__


# ---- nginx and the certificate files -------------------------------------------------------


def find_nginx() -> str | None:
    # Debian installs it in /usr/sbin, which a normal user's PATH often lacks.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def test_nginx_conf(
    nginx: str, settings: DeploySettings, write_conf: Callable[..., Any]
) -> tuple[bool, str]:
    """Render the local config into a scratch prefix and run `nginx -t` on it."""
    with tempfile.TemporaryDirectory(prefix="chatstack-doctor-") as scratch:
        prefix = Path(scratch)
        conf = prefix / "nginx.conf"
        write_conf(replace(settings, run_dir=prefix), conf, "local")
        command = [nginx, "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return False, "nginx -t took longer than 15 s"
        return done.returncode == 0, done.stderr + done.stdout


def read_certificate(path: Path) -> Any:
    """The first certificate of a PEM file; OSError or ValueError when it cannot be read."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def find_local_ca(certs_dir: Path) -> Path | None:
    """The CA `make certs` made, which a local nginx's certificate chains to, if present."""
    from deploy.certs import CA_CERT

    return certs_dir / CA_CERT if (certs_dir / CA_CERT).is_file() else None
