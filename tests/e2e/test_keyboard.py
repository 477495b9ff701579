"""The keyboard: a skip link first, shortcuts listed under `?`, ↑ to edit the last message,
Esc to stop, a new chat without the mouse."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.ui import ANSWER_TIMEOUT_MS, Tab


def test_skip_link_help_dialog_and_editing_the_last_message(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Say one word.")
    # The first Tab stop of the page is the skip link; it goes straight to the message box.
    first = tab.page.evaluate(
        "[...document.querySelectorAll('a[href], button, input, textarea, select, [tabindex]')]"
        ".find((el) => el.tabIndex >= 0)?.dataset.testid"
    )
    assert first == "skip-to-composer", first
    skip = tab.by("skip-to-composer")
    skip.focus()
    expect(skip).to_be_visible()  # shown while it has focus
    tab.page.keyboard.press("Enter")
    composer = tab.by("composer-input")
    expect(composer).to_be_focused()

    # ↑ in the empty box edits the last message; Esc leaves it as it was.
    tab.page.keyboard.press("ArrowUp")
    editor = tab.by("edit-input")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Say one word.")
    tab.page.keyboard.press("Escape")
    expect(editor).to_have_count(0)

    # `?` outside a text field lists the shortcuts.
    tab.page.evaluate("document.activeElement && document.activeElement.blur()")
    tab.page.keyboard.press("Shift+Slash")
    dialog = tab.by("shortcuts-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("New chat")
    expect(dialog).to_contain_text("Edit your last message")
    tab.page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    # Shift+Esc comes back to the message box from anywhere.
    tab.page.keyboard.press("Shift+Escape")
    expect(composer).to_be_focused()


def test_escape_stops_the_answer_and_a_chord_starts_a_new_chat(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.by("open-settings").click()
    tab.by("settings-max-tokens").fill("1000")
    tab.by("settings-save").click()
    tab.send("Count from 1 to 300, one number after another, separated by commas.")
    expect(tab.last_answer()).to_have_attribute(
        "data-status", "streaming", timeout=ANSWER_TIMEOUT_MS
    )
    tab.page.keyboard.press("Escape")
    tab.wait_answer("stopped")
    before = tab.by("conversation-item").count()
    tab.page.keyboard.press("Control+Shift+O")
    expect(tab.by("conversation-item")).to_have_count(before + 1)
