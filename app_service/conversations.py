"""STUB — being written."""

from pathlib import Path

from flask import Blueprint

bp = Blueprint("conversations", __name__)


def recover_interrupted_messages(db_path: Path) -> int:
    return 0
