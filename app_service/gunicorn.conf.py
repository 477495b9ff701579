"""gunicorn settings for the app service.

Run: gunicorn -c app_service/gunicorn.conf.py "app_service.app:create_app()"
"""

from app_service.settings import Settings
from chatstack.envsettings import SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:  # one clear line instead of gunicorn's traceback
    raise SystemExit(f"configuration error: {exc}") from None

bind = f"{_settings.host}:{_settings.port}"
# One process: SQLite and the upstream pool's in-flight counts live in it. Scale out by
# running more model APIs, not more app workers (see docs/operators.md).
workers = 1
# A flask-sock WebSocket holds its thread for as long as the socket is open, so the thread
# count bounds open chats plus ordinary requests: APP_THREADS (default 64).
worker_class = "gthread"
threads = _settings.threads
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level
# gunicorn 27's control socket has one default path per user: several servers on one
# machine (the model API and the app service) would fight over it. We do not use it.
control_socket_disable = True
