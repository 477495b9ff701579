"""The app service's settings: read from the environment here and nowhere else."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chatstack.envsettings import SettingsError, env_bool, env_choice, env_float, env_int, env_str

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    # One evented (gevent) worker: open sockets and streams cost a greenlet each, not a
    # thread; this bounds the connections it holds at once (gunicorn worker_connections).
    max_connections: int = 10_000
    model_api_urls: tuple[str, ...] = ("http://127.0.0.1:8001",)
    model_api_key: str = ""
    default_model: str = ""
    registration: str = "open"
    site_origins: tuple[str, ...] = ("https://localhost:8443",)
    cookie_secure: bool = True
    session_days: int = 30
    login_attempts: int = 10
    login_window_seconds: int = 900
    # Peers (nginx) whose X-Real-IP / X-Forwarded-For name the client: addresses or CIDRs.
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    ws_max_message_bytes: int = 256 * 1024
    ws_ping_seconds: float = 25.0
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 120.0
    upstream_health_seconds: float = 5.0
    status_interval_seconds: float = 5.0
    status_history_minutes: int = 10
    extract_timeout_seconds: float = 30.0
    extract_memory_mb: int = 1024
    # Per user (docs/uploads.md, "Limits"): uploads in progress at once, and storage.
    user_max_extractions: int = 2
    user_storage_bytes: int = 200 * 1024 * 1024
    chunk_tokens: int = 400
    chat_max_tokens: int = 512
    # The model titles a conversation after its first answer (titles.py).
    auto_titles: bool = True
    # The longest one chat answer may generate, listened to or not (docs/protocol.md).
    turn_max_seconds: float = 600.0
    # Fairness between users (docs/operators.md, "Limits per user").
    user_max_sockets: int = 16
    user_max_active_turns: int = 4
    user_max_tokens: int = 0  # 0: no ceiling beyond what the model's context allows
    log_level: str = "info"
    log_format: str = "text"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "chatstack.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            data_dir=Path(env_str(env, "DATA_DIR", str(PROJECT_ROOT / "data"))),
            host=env_str(env, "APP_HOST", "127.0.0.1"),
            port=env_int(env, "APP_PORT", 8000, minimum=1, maximum=65535),
            max_connections=env_int(
                env, "APP_MAX_CONNECTIONS", 10_000, minimum=16, maximum=100_000
            ),
            model_api_urls=_url_list(env, "MODEL_API_URLS", "http://127.0.0.1:8001"),
            model_api_key=env_str(env, "MODEL_API_KEY", ""),
            default_model=env_str(env, "DEFAULT_MODEL", ""),
            registration=env_choice(env, "REGISTRATION", "open", ("open", "closed")),
            site_origins=_url_list(env, "SITE_ORIGINS", _default_origin(env)),
            cookie_secure=env_bool(env, "COOKIE_SECURE", True),
            session_days=env_int(env, "SESSION_DAYS", 30, minimum=1),
            login_attempts=env_int(env, "LOGIN_ATTEMPTS", 10, minimum=1),
            login_window_seconds=env_int(env, "LOGIN_WINDOW_SECONDS", 900, minimum=1),
            trusted_proxies=_network_list(env, "TRUSTED_PROXIES", "127.0.0.0/8,::1"),
            max_upload_bytes=env_int(env, "MAX_UPLOAD_MB", 20, minimum=1) * 1024 * 1024,
            ws_max_message_bytes=env_int(env, "WS_MAX_MESSAGE_KB", 256, minimum=1) * 1024,
            ws_ping_seconds=env_float(env, "WS_PING_SECONDS", 25.0, minimum=1.0),
            upstream_connect_timeout=env_float(env, "UPSTREAM_CONNECT_TIMEOUT", 5.0, minimum=0.1),
            upstream_read_timeout=env_float(env, "UPSTREAM_READ_TIMEOUT", 120.0, minimum=1.0),
            upstream_health_seconds=env_float(env, "UPSTREAM_HEALTH_SECONDS", 5.0, minimum=0.5),
            status_interval_seconds=env_float(env, "STATUS_INTERVAL_SECONDS", 5.0, minimum=0.5),
            status_history_minutes=env_int(
                env, "STATUS_HISTORY_MINUTES", 10, minimum=1, maximum=1440
            ),
            extract_timeout_seconds=env_float(env, "EXTRACT_TIMEOUT_SECONDS", 30.0, minimum=1.0),
            extract_memory_mb=env_int(env, "EXTRACT_MEMORY_MB", 1024, minimum=64),
            user_max_extractions=env_int(env, "USER_MAX_EXTRACTIONS", 2, minimum=1, maximum=64),
            user_storage_bytes=env_int(env, "USER_STORAGE_MB", 200, minimum=1) * 1024 * 1024,
            chunk_tokens=env_int(env, "CHUNK_TOKENS", 400, minimum=50),
            chat_max_tokens=env_int(env, "CHAT_MAX_TOKENS", 512, minimum=1),
            auto_titles=env_bool(env, "AUTO_TITLES", True),
            turn_max_seconds=env_float(env, "TURN_MAX_SECONDS", 600.0, minimum=1.0),
            user_max_sockets=env_int(env, "USER_MAX_SOCKETS", 16, minimum=1),
            user_max_active_turns=env_int(env, "USER_MAX_ACTIVE_TURNS", 4, minimum=1),
            user_max_tokens=env_int(env, "USER_MAX_TOKENS", 0, minimum=0),
            log_level=env_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_format=env_choice(env, "LOG_FORMAT", "text", ("text", "json")),
        )


def _default_origin(env: Mapping[str, str]) -> str:
    """The site as nginx serves it (SERVER_NAME, HTTPS_PORT): browsers send it as Origin."""
    host = env_str(env, "SERVER_NAME", "localhost")
    port = env_int(env, "HTTPS_PORT", 8443, minimum=1, maximum=65535)
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def _network_list(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, normalised ("10.0.0.1" → "10.0.0.1/32")."""
    networks = []
    for item in (i.strip() for i in env_str(env, name, default).split(",")):
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name} must list IP addresses or CIDR networks separated by commas, got {item!r}"
            ) from None
    return tuple(networks)


def _url_list(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    urls = tuple(u.strip().rstrip("/") for u in env_str(env, name, default).split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name} must list http(s) URLs separated by commas, got {url!r}")
    return urls
