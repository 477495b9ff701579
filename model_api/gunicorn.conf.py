"""gunicorn settings for the model API: one process holds the model, threads serve requests.

Run: gunicorn -c model_api/gunicorn.conf.py "model_api.app:create_app()"
MODEL_API_THREADS bounds concurrent requests (each stream holds a thread while it waits).
"""

from chatstack.gunicorn_config import load_or_exit, threaded_server
from model_api.settings import Settings

_settings = load_or_exit(Settings)
globals().update(
    threaded_server(
        _settings.host, _settings.port, _settings.threads, _settings.log_level, _settings.log_format
    )
)
