"""Code both chatstack services share: error shapes, SSE framing, settings helpers."""

__version__ = "0.1.0"
