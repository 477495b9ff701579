"""STUB — to be implemented."""

from flask import Blueprint

bp = Blueprint("passthrough", __name__)
