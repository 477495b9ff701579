"""Import in the browser: a ChatGPT export becomes conversations with their branches, the
imported chat opens, and its formula renders with KaTeX (fonts under the CSP)."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.e2e.ui import Tab
from tests.import_samples import chatgpt_export_bytes


def import_file(tab: Tab, name: str, data: bytes) -> None:
    tab.by("import-file").set_input_files(
        {"name": name, "mimeType": "application/json", "buffer": data}
    )


def test_import_a_chatgpt_export_and_open_the_imported_chat(tab: Tab) -> None:
    tab.signed_in()
    import_file(tab, "conversations.json", chatgpt_export_bytes())
    expect(tab.by("toast").last).to_contain_text("Imported 2 conversations")
    items = tab.by("conversation-item")
    expect(items.filter(has_text="Weekend trip")).to_have_count(1)
    expect(items.filter(has_text="What is this?")).to_have_count(1)
    # The first one opens on the branch ChatGPT showed, its other versions a click away.
    expect(tab.user_messages()).to_have_count(1)
    expect(tab.user_messages().first).to_contain_text("Plan a weekend in Porto")
    expect(tab.last_answer()).to_contain_text("Start at Livraria Lello.")
    expect(tab.last_answer().get_by_test_id("branch-position")).to_have_text("2/2")
    tab.user_messages().first.get_by_test_id("branch-prev").click()
    expect(tab.last_answer()).to_contain_text("Tram 28 goes to Alfama.")
    tab.shot("imported-branches")

    items.filter(has_text="What is this?").locator(".conversation-open").click()
    answer = tab.last_answer()
    expect(answer.locator(".katex")).to_have_count(1)
    expect(answer.get_by_test_id("message-content")).not_to_contain_text("$")
    # KaTeX's fonts came from our own origin (a data: font would break the CSP, and the
    # console check at teardown would say so).
    tab.page.wait_for_function("document.fonts.status === 'loaded'")
    tab.shot("imported-math")


def test_a_hostile_file_is_refused_in_words_and_imports_nothing(tab: Tab) -> None:
    tab.signed_in()
    tab.console.expect_http_error(400, "/api/conversations/import")
    import_file(tab, "broken.json", json.dumps([{"mapping": "no"}]).encode())
    expect(tab.by("toast").last).to_contain_text("Nothing was imported")
    assert tab.api("GET", "/api/conversations")["conversations"] == []
