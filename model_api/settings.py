"""The model API's settings: read from the environment here and nowhere else."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chatstack.envsettings import SettingsError, env_choice, env_float, env_int, env_str

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
# Threads beyond the generations the engine holds: /health, /metrics, /tokenize, /v1/models
# and the requests it refuses with a 429 must find one while every generation holds its own.
THREADS_RESERVE = 16
MAX_THREADS = 1024


@dataclass(frozen=True)
class Settings:
    model_path: str
    model_name: str
    models_dir: Path
    device: str = "auto"
    dtype: str = "auto"
    quantization: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8001
    api_key: str = ""
    threads: int = 0  # 0: generation_capacity + THREADS_RESERVE
    max_body_bytes: int = 8 * 1024 * 1024
    max_model_len: int = 0
    keepalive_seconds: float = 15.0
    log_level: str = "info"
    log_format: str = "text"
    engine: str = "batching"
    max_batch_size: int = 32
    max_waiting: int = 64
    prefill_chunk_tokens: int = 256
    kv_cache_mb: int = 1024
    prefix_cache_mb: int = 256  # 0: no prefix cache
    decoder: str = "auto"  # "transformers": transformers' forward even where ours applies
    torch_threads: int = 0  # 0: PyTorch's own choice (one per core)

    def __post_init__(self) -> None:
        if not self.threads:
            object.__setattr__(self, "threads", self.min_threads)

    @property
    def embedded_model_dir(self) -> Path:
        return self.models_dir / EMBEDDED_MODEL_DIRNAME

    @property
    def generation_capacity(self) -> int:
        """Generations the engine holds at once, running and queued; one more gets a 429."""
        running = self.max_batch_size if self.engine == "batching" else 1
        return running + self.max_waiting

    @property
    def min_threads(self) -> int:
        """Threads that let every held generation stream while the reserve still answers."""
        return self.generation_capacity + THREADS_RESERVE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        models_dir = Path(env_str(env, "MODELS_DIR", str(PROJECT_ROOT / "models")))
        default_path = str(models_dir / EMBEDDED_MODEL_DIRNAME)
        settings = cls(
            model_path=env_str(env, "MODEL_PATH", default_path),
            model_name=env_str(env, "MODEL_NAME", EMBEDDED_MODEL_NAME),
            models_dir=models_dir,
            device=env_choice(env, "DEVICE", "auto", ("auto", "cpu", "cuda")),
            dtype=env_choice(env, "DTYPE", "auto", ("auto", "float32", "bfloat16", "float16")),
            quantization=env_choice(env, "QUANTIZATION", "auto", ("auto", "none", "int4")),
            host=env_str(env, "MODEL_API_HOST", "127.0.0.1"),
            port=env_int(env, "MODEL_API_PORT", 8001, minimum=1, maximum=65535),
            api_key=env_str(env, "MODEL_API_KEY", ""),
            threads=env_int(env, "MODEL_API_THREADS", 0, minimum=2, maximum=MAX_THREADS),
            max_body_bytes=env_int(env, "MODEL_API_MAX_BODY_MB", 8, minimum=1) * 1024 * 1024,
            max_model_len=env_int(env, "MAX_MODEL_LEN", 0, minimum=0),
            keepalive_seconds=env_float(env, "SSE_KEEPALIVE_SECONDS", 15.0, minimum=0.1),
            log_level=env_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_format=env_choice(env, "LOG_FORMAT", "text", ("text", "json")),
            engine=env_choice(env, "ENGINE", "batching", ("batching", "sequential")),
            max_batch_size=env_int(env, "MAX_BATCH_SIZE", 32, minimum=1, maximum=256),
            max_waiting=env_int(env, "MAX_WAITING", 64, minimum=1),
            prefill_chunk_tokens=env_int(env, "PREFILL_CHUNK_TOKENS", 256, minimum=16),
            kv_cache_mb=env_int(env, "KV_CACHE_MB", 1024, minimum=16),
            prefix_cache_mb=env_int(env, "PREFIX_CACHE_MB", 256, minimum=0),
            decoder=env_choice(env, "DECODER", "auto", ("auto", "transformers")),
            torch_threads=env_int(env, "TORCH_THREADS", 0, minimum=0, maximum=256),
        )
        check_threads(settings)
        return settings


def check_threads(settings: Settings) -> None:
    """Refuse a thread count that lets a request wait for a thread instead of a 429.

    gunicorn queues a connection that finds no free thread, unanswered: streams beyond the
    threads would hang rather than be refused, and /health would look dead while busy.
    """
    running = "MAX_BATCH_SIZE" if settings.engine == "batching" else "1"
    capacity = f"{running} + MAX_WAITING"
    sizing = f"{capacity} + {THREADS_RESERVE} = {settings.min_threads}"
    if settings.threads < settings.min_threads:
        raise SettingsError(
            f"MODEL_API_THREADS={settings.threads} is below {sizing} (ENGINE={settings.engine}): "
            "every running or waiting generation holds a thread, and /health, /metrics and "
            "refusals need the rest; unset MODEL_API_THREADS to size it, or lower MAX_WAITING"
        )
    if settings.min_threads > MAX_THREADS:
        raise SettingsError(
            f"{sizing} threads is more than {MAX_THREADS}; lower MAX_WAITING or MAX_BATCH_SIZE"
        )
