"""The sidebar's search finds what was said: a word only an answer contains finds its
conversation, with a marked snippet, and opens it at that answer."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.ui import Tab


def word_only_in(answer: str, *elsewhere: str) -> str:
    """A word of the answer that the question and title do not contain."""
    taken = {w.lower() for text in elsewhere for w in re.findall(r"\w+", text)}
    for word in re.findall(r"[A-Za-z]{5,}", answer):
        if word.lower() not in taken:
            return word
    raise AssertionError(f"no word of its own in the answer {answer!r}")


def test_a_word_inside_an_answer_finds_the_conversation_and_lands_on_it(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    question = "Describe the ocean in two sentences."
    tab.ask(question)
    conversation_id = tab.selected_conversation_id()
    stored = tab.api("GET", f"/api/conversations/{conversation_id}")
    answer = stored["messages"][-1]
    word = word_only_in(answer["content"], question, stored["title"])

    tab.new_chat()  # land there from another conversation
    tab.ask("Say hi.")
    tab.by("conversation-search").fill(word.lower())
    hit = tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]')
    snippet = hit.get_by_test_id("conversation-snippet")
    expect(snippet).to_be_visible()
    expect(snippet.locator("mark").first).to_have_text(re.compile(word, re.IGNORECASE))
    tab.shot("search-hit")
    hit.locator(".conversation-open").click()
    focused = tab.page.locator('[data-testid="message"][data-focused="true"]')
    expect(focused).to_have_attribute("data-id", answer["id"])
    expect(focused).to_be_in_viewport()
