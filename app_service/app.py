"""The app service's application factory."""

from __future__ import annotations

import atexit
from functools import partial

from flask import Flask, Response, jsonify

from app_service import accounts, api_keys, conversations, db, files, passthrough, ws_chat
from app_service.api_guard import install_api_guard
from app_service.chat import run_turn
from app_service.metrics import install_app_metrics
from app_service.settings import Settings
from app_service.status import install_status
from app_service.turn_registry import TurnRegistry
from app_service.upstream import UpstreamPool
from app_service.user_activity import UserActivity
from chatstack import __version__
from chatstack.errors import register_error_handlers
from chatstack.logs import configure_logging, install_request_ids
from chatstack.metrics import instrument_requests, metrics_response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app: migrate the database, connect to the model APIs, register routes."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    db.migrate(settings.db_path)
    conversations.recover_interrupted_messages(settings.db_path)

    app = Flask(__name__)
    # Uploads are the largest bodies; JSON routes check their own, smaller limit.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 64 * 1024
    app.extensions["chatstack_settings"] = settings
    pool = UpstreamPool(settings)
    pool.start()
    app.extensions["chatstack_upstreams"] = pool
    activity = UserActivity(settings.user_max_sockets, settings.user_max_active_turns)
    app.extensions["chatstack_user_activity"] = activity

    install_request_ids(app)  # before any hook that may answer (an API key check)
    instrument_requests(app)
    metrics = install_app_metrics(app, pool)
    turns = TurnRegistry(
        partial(run_turn, settings, pool, metrics), activity, settings.turn_max_seconds
    )
    app.extensions["chatstack_turns"] = turns
    # gunicorn's worker_exit hook stops them first (gunicorn.conf.py); this covers the rest.
    atexit.register(turns.shutdown)
    register_error_handlers(app)
    install_api_guard(app)  # /api: JSON content type, no cross-site caller, no-store
    db.init_app(app)
    for blueprint in (
        accounts.bp,
        api_keys.bp,
        conversations.bp,
        files.bp,
        passthrough.bp,
        ws_chat.bp,
    ):
        app.register_blueprint(blueprint)
    ws_chat.init_app(app)
    install_status(app, pool, settings)  # GET /api/admin/status and its sampler thread
    # Open here: only the app's own port serves it, and nginx only to METRICS_ALLOW.
    app.add_url_rule("/metrics", "metrics", metrics_response)

    @app.get("/api/health")
    def health() -> tuple[Response, int]:
        upstreams = pool.status()
        reachable = any(u["healthy"] for u in upstreams)
        body = {
            "status": "ok",
            "version": __version__,
            "model_api": {"reachable": reachable, "upstreams": upstreams},
        }
        return jsonify(body), 200

    return app
