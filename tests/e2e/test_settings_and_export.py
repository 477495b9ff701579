"""Per-conversation settings are kept; a conversation downloads as Markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.ui import Tab
from tests.integration.conftest import MODEL

SYSTEM_PROMPT = "You are a terse assistant. Answer in one short sentence."


def open_settings(tab: Tab):
    tab.by("open-settings").click()
    dialog = tab.by("settings-dialog")
    expect(dialog).to_be_visible()
    return dialog


def test_settings_are_saved_and_kept(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Hello")
    conversation_id = tab.selected_conversation_id()

    open_settings(tab)
    model = tab.by("settings-model")
    expect(model.locator("option", has_text=MODEL)).to_have_count(1)
    tab.by("settings-system-prompt").fill(SYSTEM_PROMPT)
    tab.by("settings-max-tokens").fill("24")
    tab.by("settings-temperature").fill("0")
    tab.by("settings-top-p").fill("0.9")
    tab.shot("settings-dialog")
    tab.by("settings-save").click()
    expect(tab.by("settings-dialog")).to_be_hidden()

    stored = tab.api("GET", f"/api/conversations/{conversation_id}")
    assert stored["system_prompt"] == SYSTEM_PROMPT
    assert stored["max_tokens"] == 24
    assert stored["temperature"] == 0
    assert stored["top_p"] == 0.9

    def assert_shown() -> None:
        open_settings(tab)
        expect(tab.by("settings-system-prompt")).to_have_value(SYSTEM_PROMPT)
        expect(tab.by("settings-max-tokens")).to_have_value("24")
        expect(tab.by("settings-top-p")).to_have_value("0.9")
        assert float(tab.by("settings-temperature").input_value()) == 0
        tab.page.keyboard.press("Escape")  # the dialog closes from the keyboard
        expect(tab.by("settings-dialog")).to_be_hidden()

    assert_shown()
    tab.page.reload()
    tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]').click()
    assert_shown()

    # The next turn uses them: at most 24 tokens.
    tab.ask("Tell me a long story about a dragon.")
    last = tab.api("GET", f"/api/conversations/{conversation_id}")["messages"][-1]
    assert last["usage"]["completion_tokens"] <= 24, last["usage"]


def test_export_downloads_markdown_and_json(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    question = "Say hi to the export test."
    answer = tab.ask(question).get_by_test_id("message-content").inner_text().strip()
    conversation_id = tab.selected_conversation_id()

    with tab.page.expect_download() as markdown_download:
        tab.by("export-md").click()
    download = markdown_download.value
    assert download.suggested_filename.endswith(".md"), download.suggested_filename
    markdown = Path(download.path()).read_text(encoding="utf-8")
    assert "## You" in markdown and "## Assistant" in markdown, markdown
    assert question in markdown
    assert " ".join(answer.split())[:20] in " ".join(markdown.split())

    with tab.page.expect_download() as json_download:
        tab.by("export-json").click()
    download = json_download.value
    assert download.suggested_filename.endswith(".json"), download.suggested_filename
    exported = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert exported["id"] == conversation_id
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert exported["messages"][0]["content"] == question
    assert exported["messages"][1]["status"] == "complete"
