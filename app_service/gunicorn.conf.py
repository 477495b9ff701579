"""gunicorn settings for the app service: one gevent worker.

Run: gunicorn -c app_service/gunicorn.conf.py "app_service.app:create_app()"
An open chat WebSocket or /v1 stream is a greenlet waiting on its socket, not a thread:
APP_MAX_CONNECTIONS (default 10,000) bounds the connections held at once.
"""

from app_service.settings import Settings
from chatstack.gunicorn_config import evented_server, load_or_exit

_settings = load_or_exit(Settings)
globals().update(
    evented_server(
        _settings.host,
        _settings.port,
        _settings.max_connections,
        _settings.log_level,
        _settings.log_format,
    )
)


def worker_exit(server: object, worker: object) -> None:
    """Before the worker goes: answers still generating are stopped and stored `failed`
    with their text, ready to be continued after the restart (docs/protocol.md)."""
    app = getattr(worker, "wsgi", None)
    turns = getattr(app, "extensions", {}).get("chatstack_turns")
    if turns is not None:
        turns.shutdown()
