"""What both services' gunicorn configs share: one process, threads, logs to stdout."""

from __future__ import annotations

from typing import Any

from chatstack.envsettings import SettingsError
from chatstack.logs import gunicorn_logconfig


def load_or_exit(settings_cls: Any) -> Any:
    """Settings from the environment, or one clear line instead of gunicorn's traceback."""
    try:
        return settings_cls.from_env()
    except SettingsError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


def threaded_server(
    host: str, port: int, threads: int, log_level: str, log_format: str = "text"
) -> dict[str, Any]:
    """gunicorn settings for a single-process, many-thread service."""
    return {
        "bind": f"{host}:{port}",
        # One process: it holds the model (model API) or the SQLite writer and the upstream
        # pool's counts (app service). Scale by more processes of the tier, not workers.
        "workers": 1,
        # An open request — a stream or a WebSocket — holds one thread for its whole life.
        "worker_class": "gthread",
        "threads": threads,
        # gthread's heartbeat runs apart from request threads, so long streams are not
        # killed; this only bounds a worker that stops answering altogether.
        "timeout": 120,
        "graceful_timeout": 10,
        "keepalive": 5,
        # The app logs one access line per request itself (chatstack/logs.py), with its
        # request id and in LOG_FORMAT; gunicorn's own lines go through the same formatter.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level,
        "logconfig_dict": gunicorn_logconfig(log_level, log_format),
        # gunicorn 27's control socket has one default path per user: two servers on one
        # machine would fight over it, and nothing here uses it.
        "control_socket_disable": True,
    }
