"""gunicorn settings for the model API: one process holds the model, threads serve requests.

Run: gunicorn -c model_api/gunicorn.conf.py "model_api.app:create_app()"
"""

from chatstack.envsettings import SettingsError
from model_api.settings import Settings

try:
    _settings = Settings.from_env()
except SettingsError as exc:  # one clear line instead of gunicorn's traceback
    raise SystemExit(f"configuration error: {exc}") from None

bind = f"{_settings.host}:{_settings.port}"
# One worker: the model lives once in memory; a second process would load it again.
workers = 1
# Each open request (a stream can last minutes) holds a thread while the engine works.
worker_class = "gthread"
threads = _settings.threads
# gthread's heartbeat runs apart from request threads, so long streams are not killed;
# this only bounds a worker that stops answering altogether.
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level
# gunicorn 27's control socket has one default path per user: several servers on one
# machine (the model API and the app service) would fight over it. We do not use it.
control_socket_disable = True
