"""Headless Debian Chromium through Playwright, and a watch on each page's console.

Every test ends by asserting that its pages logged no console error and threw no
uncaught exception. The only errors a test may accept are HTTP error statuses it
provoked on purpose (Chromium logs "Failed to load resource: … status of 401" for a
fetch that gets one): each is declared by status and path with `expect_http_error`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
# Keep Chromium off the network: no updates, no sync, no QUIC probes.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

_HTTP_STATUS = re.compile(r"status of (\d{3})")


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@dataclass
class ConsoleWatch:
    """Console errors and page errors of one page, and the HTTP errors a test expects."""

    errors: list[str] = field(default_factory=list)
    expected: set[tuple[int, str]] = field(default_factory=set)

    def attach(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def expect_http_error(self, status: int, path: str) -> None:
        """Accept Chromium's log line for a response with this status from this path."""
        self.expected.add((status, path))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        status = _HTTP_STATUS.search(message.text)
        path = urlsplit(message.location.get("url", "")).path
        if status and (int(status.group(1)), path) in self.expected:
            return
        self.errors.append(f"console error: {message.text} (at {message.location.get('url')})")
