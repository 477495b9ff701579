"""Branches in the browser: edit a question and switch between its versions; regenerate twice
and page through the three answers; the choice survives a reload."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.ui import ANSWER_TIMEOUT_MS, Tab


def stored_path(tab: Tab, conversation_id: str) -> list[dict]:
    return tab.api("GET", f"/api/conversations/{conversation_id}")["messages"]


def test_edit_a_question_and_switch_between_the_two_branches(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Name one colour.")
    tab.ask("Name one animal.")
    conversation_id = tab.selected_conversation_id()
    first_question = tab.user_messages().first

    first_question.get_by_test_id("edit-message").click()
    editor = first_question.get_by_test_id("edit-input")
    expect(editor).to_have_value("Name one colour.")
    editor.fill("Name one planet.")
    editor.press("Enter")
    # The new version replaces the old one and all that followed it, then its answer streams.
    expect(tab.user_messages()).to_have_count(1)
    expect(tab.user_messages().first).to_contain_text("Name one planet.")
    tab.wait_answer("complete")
    expect(tab.answers()).to_have_count(1)
    question = tab.user_messages().first
    expect(question.get_by_test_id("branch-position")).to_have_text("2/2")
    tab.shot("branch-edited")

    question.get_by_test_id("branch-prev").click()
    expect(tab.user_messages()).to_have_count(2, timeout=ANSWER_TIMEOUT_MS)
    expect(tab.user_messages().first).to_contain_text("Name one colour.")
    expect(tab.user_messages().nth(1)).to_contain_text("Name one animal.")
    expect(tab.user_messages().first.get_by_test_id("branch-position")).to_have_text("1/2")
    assert [m["content"] for m in stored_path(tab, conversation_id) if m["role"] == "user"] == [
        "Name one colour.",
        "Name one animal.",
    ]

    # The server remembers the branch: a reload shows it, and the next turn follows it.
    tab.page.reload()
    expect(tab.user_messages()).to_have_count(2, timeout=ANSWER_TIMEOUT_MS)
    tab.user_messages().first.get_by_test_id("branch-next").click()
    expect(tab.user_messages()).to_have_count(1)
    expect(tab.user_messages().first).to_contain_text("Name one planet.")


def test_regenerate_twice_and_page_through_three_answers(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.ask("Say a word.")
    conversation_id = tab.selected_conversation_id()
    for n in (2, 3):
        tab.by("regenerate").click()
        expect(tab.last_answer().get_by_test_id("branch-position")).to_have_text(
            f"{n}/{n}", timeout=ANSWER_TIMEOUT_MS
        )
        tab.wait_answer("complete")
    ids = stored_path(tab, conversation_id)[1]["sibling_ids"]
    assert len(ids) == 3

    answer = tab.last_answer()
    for expected_id, position in ((ids[1], "2/3"), (ids[0], "1/3")):
        answer.get_by_test_id("branch-prev").click()
        expect(tab.last_answer()).to_have_attribute("data-id", expected_id)
        expect(tab.last_answer().get_by_test_id("branch-position")).to_have_text(position)
    expect(tab.last_answer().get_by_test_id("branch-prev")).to_be_disabled()
    tab.last_answer().get_by_test_id("branch-next").click()
    expect(tab.last_answer()).to_have_attribute("data-id", ids[1])

    # Deleting a version asks first, then the conversation shows the newest one left.
    tab.last_answer().get_by_test_id("branch-delete").click()
    tab.by("confirm-delete").click()
    expect(tab.last_answer()).to_have_attribute("data-id", ids[2])
    expect(tab.last_answer().get_by_test_id("branch-position")).to_have_text("2/2")
    assert stored_path(tab, conversation_id)[1]["sibling_ids"] == [ids[0], ids[2]]
