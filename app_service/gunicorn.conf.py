"""gunicorn settings for the app service.

Run: gunicorn -c app_service/gunicorn.conf.py "app_service.app:create_app()"
A flask-sock WebSocket holds its thread for as long as it is open, so APP_THREADS (default
64) bounds open chat sockets plus ordinary requests: size it for your concurrent users.
"""

from app_service.settings import Settings
from chatstack.gunicorn_config import load_or_exit, threaded_server

_settings = load_or_exit(Settings)
globals().update(
    threaded_server(
        _settings.host, _settings.port, _settings.threads, _settings.log_level, _settings.log_format
    )
)
