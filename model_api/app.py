"""The model API's application factory."""

from __future__ import annotations

from flask import Flask

from chatstack.errors import register_error_handlers
from chatstack.logs import configure_logging, install_request_ids
from chatstack.metrics import instrument_requests
from model_api.auth import require_api_key
from model_api.routes import bp
from model_api.runtime import ModelRuntime
from model_api.settings import Settings


def create_app(settings: Settings | None = None, runtime: ModelRuntime | None = None) -> Flask:
    """Build the app; the model starts loading in the background at once."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    install_request_ids(app)  # before any hook that may answer (an API key check)
    instrument_requests(app)
    register_error_handlers(app)
    require_api_key(app, settings.api_key)
    app.register_blueprint(bp)
    runtime = runtime or ModelRuntime(settings)
    app.extensions["model_runtime"] = runtime
    runtime.start()
    return app
