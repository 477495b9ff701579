"""Answers belong to the server, not to the page (docs/protocol.md, "Turns belong to the
server"): a reload, a second tab and a stop followed by Continue all see one answer go on."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.ui import ANSWER_TIMEOUT_MS, Tab
from tests.integration.chat_client import LONG_ANSWER

# Room for an answer that is still streaming well after the test has acted (the story prompt
# runs past it), yet ends in a few tens of seconds on a CPU.
ANSWER_TOKENS = 300
# Characters to see before acting mid-answer, and to see added after it.
SOME_TEXT = 40


def long_answers(tab: Tab, conversation_id: str) -> None:
    tab.api(
        "PATCH", f"/api/conversations/{conversation_id}", max_tokens=ANSWER_TOKENS, temperature=0
    )


def start_long_answer(tab: Tab) -> tuple[str, str, int]:
    """A new conversation whose answer is streaming and has some text: (conversation id,
    answer message id, characters received so far)."""
    tab.signed_in()
    conversation_id = tab.new_chat()
    long_answers(tab, conversation_id)
    tab.send(LONG_ANSWER)
    answer = tab.last_answer()
    expect(answer).to_have_attribute("data-status", "streaming", timeout=ANSWER_TIMEOUT_MS)
    message_id = answer.get_attribute("data-id")
    assert message_id and message_id.startswith("msg_"), message_id
    return conversation_id, message_id, tab.wait_chars_above(message_id, SOME_TEXT)


def stored_answer(tab: Tab, conversation_id: str) -> dict:
    messages = tab.api("GET", f"/api/conversations/{conversation_id}")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    return messages[-1]


def generating_mark(tab: Tab, conversation_id: str):
    item = tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]')
    return item.get_by_test_id("conversation-generating")


def test_a_reload_mid_answer_resumes_the_same_answer(tab: Tab) -> None:
    conversation_id, message_id, before = start_long_answer(tab)
    expect(generating_mark(tab, conversation_id)).to_be_visible()

    tab.page.reload()
    answer = tab.last_answer()
    # The same message, still streaming, with at least the text seen before the reload.
    expect(answer).to_have_attribute("data-id", message_id)
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(tab.by("stop")).to_be_visible()
    expect(generating_mark(tab, conversation_id)).to_have_attribute(
        "aria-label", "Answer in progress"
    )
    resumed = tab.answer_chars(message_id)
    assert resumed >= before, (before, resumed)
    tab.trace_answers()
    tab.wait_chars_above(message_id, resumed + SOME_TEXT)
    tab.shot("resume-after-reload")

    tab.wait_answer("complete")
    trace = tab.answer_trace()
    grown = sorted({chars for status, chars in trace if status == "streaming"})
    assert len(grown) >= 2, f"the answer did not stream after the reload: {trace}"
    expect(generating_mark(tab, conversation_id)).to_have_count(0)
    expect(tab.by("send")).to_be_visible()
    expect(tab.answers()).to_have_count(1)

    stored = stored_answer(tab, conversation_id)
    assert stored["id"] == message_id
    assert stored["status"] == "complete", stored
    assert tab.answer_chars(message_id) == len(stored["content"])


def test_a_second_tab_sees_the_same_answer_stream(tab: Tab) -> None:
    conversation_id, message_id, _ = start_long_answer(tab)

    second = tab.same_session_tab()
    second.page.goto(f"/#/c/{conversation_id}")
    answer = second.last_answer()
    expect(answer).to_have_attribute("data-id", message_id)
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(second.by("stop")).to_be_visible()
    expect(generating_mark(second, conversation_id)).to_be_visible()
    second.trace_answers()
    seen = second.answer_chars(message_id)
    second.wait_chars_above(message_id, seen + SOME_TEXT)
    second.shot("resume-second-tab")

    first_answer = tab.wait_answer("complete")
    second_answer = second.wait_answer("complete")
    trace = second.answer_trace()
    assert len({chars for status, chars in trace if status == "streaming"}) >= 2, trace

    stored = stored_answer(tab, conversation_id)
    assert stored["status"] == "complete", stored
    assert tab.answer_chars(message_id) == second.answer_chars(message_id) == len(stored["content"])
    first_text = first_answer.get_by_test_id("message-content").inner_text()
    assert first_text, "the answer is empty"
    assert second_answer.get_by_test_id("message-content").inner_text() == first_text
    expect(second.answers()).to_have_count(1)
    expect(second.user_messages()).to_have_count(1)
    assert not second.console.errors, "\n".join(second.console.errors)


def test_stop_then_continue_goes_on_with_the_stopped_answer(tab: Tab) -> None:
    conversation_id, message_id, _ = start_long_answer(tab)
    expect(tab.by("continue")).to_have_count(0)  # nothing to continue while it streams

    tab.by("stop").click()
    answer = tab.wait_answer("stopped")
    expect(answer.get_by_test_id("message-status")).to_have_text(re.compile(r"^\s*Stopped\s*$"))
    stopped = stored_answer(tab, conversation_id)
    assert stopped["status"] == "stopped" and stopped["content"], stopped
    expect(tab.by("regenerate")).to_be_visible()
    button = tab.by("continue")
    expect(button).to_have_attribute("aria-label", "Continue")
    tab.shot("continue-offered")

    button.click()
    expect(answer).to_have_attribute("data-status", "streaming", timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_attribute("data-id", message_id)  # the same message goes on
    expect(tab.by("continue")).to_have_count(0)
    tab.wait_chars_above(message_id, len(stopped["content"]) + SOME_TEXT)
    tab.shot("continue-streaming")

    tab.by("stop").click()
    tab.wait_answer("stopped")
    expect(tab.answers()).to_have_count(1)
    continued = stored_answer(tab, conversation_id)
    assert continued["id"] == message_id
    assert continued["content"].startswith(stopped["content"]), (stopped, continued)
    assert len(continued["content"]) > len(stopped["content"]) + SOME_TEXT, continued
    assert tab.answer_chars(message_id) == len(continued["content"])
