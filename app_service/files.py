"""STUB — to be implemented."""

from flask import Blueprint

bp = Blueprint("files", __name__)
