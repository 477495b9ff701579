"""Server-sent events framing, written once for every streaming endpoint."""

from __future__ import annotations

import json
from typing import Any

# Proxies (nginx) must pass each event on at once; browsers must not cache the stream.
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
SSE_MIMETYPE = "text/event-stream"
DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"


def sse_data(payload: dict[str, Any]) -> str:
    """One `data:` event holding a JSON object."""
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"
