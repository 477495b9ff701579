"""Chatting: an answer streams in, stop, regenerate, and the conversation survives a reload."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Locator, expect

from tests.e2e.ui import ANSWER_TIMEOUT_MS, Tab


def streamed_lengths(trace: list[tuple[str, int]]) -> list[int]:
    """Text lengths seen while the answer was streaming, from the first 'streaming' on."""
    statuses = [status for status, _ in trace]
    assert "streaming" in statuses, trace
    start = statuses.index("streaming")
    return [length for status, length in trace[start:] if status == "streaming"]


def test_an_answer_streams_in_then_completes(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.trace_answers()
    tab.send("Say hello to me in one short sentence.")

    user = tab.user_messages().last
    expect(user).to_contain_text("Say hello to me in one short sentence.")
    answer = tab.last_answer()
    expect(answer).to_have_attribute("data-status", "streaming", timeout=ANSWER_TIMEOUT_MS)
    expect(tab.by("stop")).to_be_visible()
    expect(answer.get_by_test_id("message-content")).not_to_be_empty(timeout=ANSWER_TIMEOUT_MS)
    tab.shot("chat-streaming")
    tab.wait_answer("complete")
    tab.shot("chat-answer")

    trace = tab.answer_trace()
    lengths = streamed_lengths(trace)
    growing = sorted({length for length in lengths if length > 0})
    assert len(growing) >= 2, f"the text did not grow while streaming: {trace}"
    assert lengths == sorted(lengths), f"the streamed text shrank: {trace}"
    assert trace[-1][0] == "complete", trace
    assert trace[-1][1] >= growing[-1], trace
    expect(tab.by("stop")).to_have_count(0)
    expect(tab.by("send")).to_be_visible()

    # The sidebar lists the new conversation, selected, titled after the first message.
    conversation_id = tab.selected_conversation_id()
    stored = tab.api("GET", f"/api/conversations/{conversation_id}")
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["status"] == "complete"
    # Whitespace compared loosely on both sides: Markdown turns line breaks into blocks.
    shown = " ".join(answer.get_by_test_id("message-content").inner_text().split())
    assert shown and shown[:20] in " ".join(stored["messages"][1]["content"].split())
    selected = tab.page.locator('[data-testid="conversation-item"][aria-current="page"]')
    expect(selected).not_to_contain_text("New chat")
    # The first words, then the model's title once it has written one: the sidebar shows
    # whichever is stored, live.
    deadline = time.monotonic() + 15
    while True:
        title = tab.api("GET", f"/api/conversations/{conversation_id}")["title"]
        if title[:20] in selected.inner_text() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(selected).to_contain_text(title[:20])


def start_long_answer(tab: Tab) -> Locator:
    """In a new chat with room for a long answer, one that is streaming visibly; its content."""
    tab.new_chat()
    tab.by("open-settings").click()
    dialog = tab.by("settings-dialog")
    expect(dialog).to_be_visible()
    tab.by("settings-max-tokens").fill("1000")
    tab.by("settings-temperature").fill("0")
    tab.by("settings-save").click()
    expect(dialog).to_be_hidden()

    tab.send("Count from 1 to 300, one number after another, separated by commas.")
    answer = tab.last_answer()
    expect(answer).to_have_attribute("data-status", "streaming", timeout=ANSWER_TIMEOUT_MS)
    content = answer.get_by_test_id("message-content")
    expect(content).to_have_text(re.compile(r"\S{12}|(\S+\s+){6}"), timeout=ANSWER_TIMEOUT_MS)
    return content


def test_stop_ends_a_long_answer_and_marks_it_stopped(tab: Tab) -> None:
    tab.signed_in()
    content = start_long_answer(tab)
    answer = tab.last_answer()
    tab.by("stop").click()
    tab.wait_answer("stopped")
    expect(answer.get_by_test_id("message-status")).to_have_text(re.compile(r"^\s*Stopped\s*$"))
    expect(tab.by("stop")).to_have_count(0)
    tab.shot("chat-stopped")

    # Nothing more arrives once stopped; the stored answer is the stopped one.
    kept = content.inner_text()
    time.sleep(2)
    assert content.inner_text() == kept
    stored = tab.api("GET", f"/api/conversations/{tab.selected_conversation_id()}")
    last = stored["messages"][-1]
    assert last["status"] == "stopped", last
    assert last["usage"] is None or last["usage"].get("completion_tokens", 0) < 1000
    assert last["content"], last
    assert " ".join(last["content"].split())[:10] in " ".join(kept.split())


def test_regenerate_replaces_the_last_answer(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Name one fruit.")
    conversation_id = tab.selected_conversation_id()
    before = tab.api("GET", f"/api/conversations/{conversation_id}")["messages"]

    tab.trace_answers()
    tab.by("regenerate").click()
    expect(tab.last_answer()).to_have_attribute(
        "data-status", "streaming", timeout=ANSWER_TIMEOUT_MS
    )
    tab.wait_answer("complete")
    assert "streaming" in [status for status, _ in tab.answer_trace()]
    expect(tab.answers()).to_have_count(1)
    expect(tab.user_messages()).to_have_count(1)

    after = tab.api("GET", f"/api/conversations/{conversation_id}")["messages"]
    assert [m["role"] for m in after] == ["user", "assistant"]
    assert after[0]["id"] == before[0]["id"]
    assert after[1]["id"] != before[1]["id"], "the answer was not generated again"
    assert after[1]["status"] == "complete"


def test_reload_finds_the_conversation_and_the_sidebar_manages_it(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    question = "What colour is the sky on a clear day?"
    answer_text = tab.ask(question).get_by_test_id("message-content").inner_text()
    conversation_id = tab.selected_conversation_id()
    tab.new_chat()  # leave it, then come back after a reload

    tab.page.reload()
    item = tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]')
    expect(item).to_be_visible()
    item.click()
    expect(item).to_have_attribute("aria-current", "page")
    expect(tab.user_messages()).to_have_count(1)
    expect(tab.user_messages().first).to_contain_text(question)
    expect(tab.answers()).to_have_count(1)
    expect(tab.last_answer()).to_have_attribute("data-status", "complete")
    shown = tab.last_answer().get_by_test_id("message-content").inner_text()
    assert " ".join(shown.split()) == " ".join(answer_text.split())
    tab.shot("conversation-after-reload")

    # Search by title, rename inline, delete.
    search = tab.by("conversation-search")
    search.fill("colour is the sky")
    expect(tab.by("conversation-item")).to_have_count(1)
    search.fill("no conversation is called this")
    expect(tab.by("conversation-item")).to_have_count(0)
    search.fill("")
    expect(item).to_be_visible()

    item.click()
    item.hover()
    item.get_by_test_id("conversation-rename").click()
    title_input = tab.by("conversation-title-input")
    title_input.fill("Sky questions")
    title_input.press("Enter")
    expect(item).to_contain_text("Sky questions")
    assert tab.api("GET", f"/api/conversations/{conversation_id}")["title"] == "Sky questions"

    item.hover()
    item.get_by_test_id("conversation-delete").click()
    confirm = tab.page.get_by_role("alertdialog")  # deleting asks first
    expect(confirm).to_contain_text("Sky questions")
    tab.shot("conversation-delete-confirm")
    confirm.get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0)
    reply = tab.page.context.request.get(f"/api/conversations/{conversation_id}")
    assert reply.status == 404


def test_deleting_a_chat_while_it_streams_leaves_no_stop_and_no_trace(tab: Tab) -> None:
    tab.signed_in()
    start_long_answer(tab)
    conversation_id = tab.selected_conversation_id()
    item = tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]')
    item.hover()
    item.get_by_test_id("conversation-delete").click()
    tab.by("confirm-delete").click()
    # At once: gone from the list, no Stop left behind, and the composer takes a message.
    expect(item).to_have_count(0, timeout=3000)
    expect(tab.by("stop")).to_have_count(0, timeout=3000)
    expect(tab.page.locator('[aria-label="Answer in progress"]')).to_have_count(0)
    tab.ask("Say hello.")
    expect(item).to_have_count(0)
    tab.page.reload()
    expect(tab.by("composer")).to_be_visible()
    expect(item).to_have_count(0)
    reply = tab.page.context.request.get(f"/api/conversations/{conversation_id}")
    assert reply.status == 404
