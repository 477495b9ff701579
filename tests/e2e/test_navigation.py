"""Every page and conversation has its own address: Back and Forward move between them, and
a reload stays where it was."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.ui import Tab


def test_back_and_forward_go_through_chats_and_pages(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Say A.")
    first = tab.selected_conversation_id()
    tab.new_chat()
    tab.ask("Say B.")
    second = tab.selected_conversation_id()
    assert tab.page.url.endswith(f"#/c/{second}")
    tab.by("open-keys").click()
    expect(tab.by("keys-page")).to_be_visible()
    assert tab.page.url.endswith("#/keys")

    tab.page.go_back()
    expect(tab.by("keys-page")).to_have_count(0)
    expect(tab.user_messages().first).to_contain_text("Say B.")
    assert tab.selected_conversation_id() == second
    tab.page.go_back()
    expect(tab.user_messages().first).to_contain_text("Say A.")
    assert tab.selected_conversation_id() == first
    tab.page.go_forward()
    expect(tab.user_messages().first).to_contain_text("Say B.")

    tab.by("open-keys").click()
    tab.page.reload()
    expect(tab.by("keys-page")).to_be_visible()
    tab.page.go_back()
    expect(tab.user_messages().first).to_contain_text("Say B.")
    assert tab.page.url.endswith(f"#/c/{second}")
