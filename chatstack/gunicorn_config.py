"""What both services' gunicorn configs share: one process, logs to stdout; the model API
runs threads (its model is busy computing), the app service greenlets (it mostly waits)."""

from __future__ import annotations

import logging
import resource
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


def evented_server(
    host: str, port: int, connections: int, log_level: str, log_format: str = "text"
) -> dict[str, Any]:
    """gunicorn settings for a single-process gevent service that holds many sockets.

    Each open WebSocket or stream is a greenlet waiting on its socket, not a thread, so
    thousands cost memory, not scheduling; `connections` bounds them (worker_connections).
    gunicorn's gevent worker monkey-patches the standard library before the app is loaded,
    so threads, sockets, subprocesses and `requests` all yield to the event loop.
    """
    settings = threaded_server(host, port, 1, log_level, log_format)
    del settings["threads"]
    settings.update(
        worker_class="gevent",
        worker_connections=connections,
        # The loop's heartbeat: a worker whose loop is blocked this long is restarted.
        timeout=60,
    )
    raise_open_files_limit(connections + 256)
    return settings


def raise_open_files_limit(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards `wanted` (never past the hard limit): every
    connection is a descriptor, and the common default of 1024 would cap the sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        soft = ceiling
    if soft != resource.RLIM_INFINITY and soft < wanted:
        logging.getLogger(__name__).warning(
            "open files are limited to %d (hard limit), below the %d connections configured; "
            "raise it (ulimit -n, or compose's ulimits: nofile)",
            soft,
            wanted,
        )
    return soft
