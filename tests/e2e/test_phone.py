"""A phone-sized screen: the sidebar hides behind its toggle, and chatting works."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.browser import PHONE
from tests.e2e.ui import Tab


def test_a_phone_can_open_the_sidebar_and_chat(open_tab) -> None:
    tab: Tab = open_tab(**PHONE)
    tab.signed_in()
    expect(tab.by("sidebar")).to_be_hidden()
    expect(tab.by("sidebar-toggle")).to_be_visible()
    expect(tab.by("composer-input")).to_be_in_viewport()
    tab.shot("phone-chat")

    tab.by("sidebar-toggle").tap()
    expect(tab.by("sidebar")).to_be_visible()
    tab.shot("phone-sidebar")
    tab.new_chat(tap=True)
    expect(tab.by("sidebar")).to_be_hidden()  # choosing a chat on a phone closes the list

    answer = tab.ask("Say hello in three words.")
    expect(answer.get_by_test_id("message-content")).not_to_be_empty()
    expect(answer).to_be_in_viewport()
    width = tab.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px wide)"
    tab.shot("phone-answer")

    tab.by("sidebar-toggle").tap()
    expect(
        tab.page.locator('[data-testid="conversation-item"][aria-current="page"]')
    ).to_be_visible()
