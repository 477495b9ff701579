"""gunicorn settings for the model API: one process holds the model, threads serve requests.

Run: gunicorn -c model_api/gunicorn.conf.py "model_api.app:create_app()"
Every running or waiting generation holds a thread for its whole life, so the threads are
sized from the engine's capacity plus a reserve (model_api/settings.py): a request beyond
the queue is answered 429 at once and /health answers while the engine is full.
"""

from chatstack.gunicorn_config import load_or_exit, threaded_server
from model_api.settings import Settings

_settings = load_or_exit(Settings)
globals().update(
    threaded_server(
        _settings.host, _settings.port, _settings.threads, _settings.log_level, _settings.log_format
    )
)
# gunicorn stops accepting at worker_connections (1000 by default): it must stay above the
# threads, or requests a free thread could answer would wait in the listen backlog.
worker_connections = max(1000, _settings.threads + 100)
