"""The chat socket drops (as when the app service restarts): the page says it is
reconnecting, comes back by itself, and chatting goes on."""

from __future__ import annotations

import re

from playwright.sync_api import WebSocketRoute, expect

from tests.e2e.ui import Tab


class FlakyServer:
    """Routes the page's /ws through Playwright to the real server, and can drop it and
    refuse new connections until told to come back."""

    def __init__(self) -> None:
        self.down = False
        self.connections = 0
        self._open: tuple[WebSocketRoute, WebSocketRoute] | None = None

    def handle(self, route: WebSocketRoute) -> None:
        if self.down:
            route.close(code=1011, reason="server restarting")
            return
        self.connections += 1
        self._open = (route, route.connect_to_server())

    def drop(self) -> None:
        self.down = True
        assert self._open is not None, "the page never opened the chat socket"
        page_side, server_side = self._open
        server_side.close(code=1012, reason="server restarting")
        page_side.close(code=1012, reason="server restarting")


def test_a_dropped_socket_reconnects_by_itself_and_says_so(tab: Tab) -> None:
    server = FlakyServer()
    tab.page.route_web_socket(re.compile(r"/ws$"), server.handle)
    tab.signed_in()
    tab.new_chat()
    tab.ask("Say hi.")
    expect(tab.by("connection-status")).to_have_count(0)
    assert server.connections == 1

    server.drop()
    status = tab.by("connection-status")
    expect(status).to_be_visible()
    expect(status).to_contain_text("Reconnecting")
    tab.shot("chat-reconnecting")
    tab.page.wait_for_timeout(1500)  # a retry or two is refused meanwhile
    expect(status).to_be_visible()

    server.down = False
    expect(status).to_have_count(0, timeout=30_000)
    assert server.connections == 2
    tab.ask("Say bye.")
    expect(tab.answers()).to_have_count(2)
