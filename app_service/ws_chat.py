"""STUB — being written."""

from flask import Blueprint, Flask

bp = Blueprint("ws_chat", __name__)


def init_app(app: Flask) -> None:
    pass
