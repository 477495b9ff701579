"""Files: a PDF dropped on the chat and a DOCX picked with the file input are uploaded and
used by the answer (its sources name them); too large and wrong-type files are refused in
words."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.stack import MAX_UPLOAD_MB
from tests.e2e.ui import Tab
from tests.upload_samples import make_docx, make_pdf

PDF_NAME = "zephyr-notes.pdf"
PDF_FACT = "The secret code word of the Zephyr project is PERIWINKLE."
DOCX_NAME = "harbour-report.docx"
DOCX_FACT = "The lighthouse of Port Wendel is painted bright orange."


def attach_and_ask(tab: Tab, name: str, question: str):
    chip = tab.by("upload-chip").filter(has_text=name)
    expect(chip).to_have_attribute("data-state", "ready")
    tab.send(question)
    user = tab.user_messages().last
    expect(user.get_by_test_id("message-attachments")).to_contain_text(name)
    expect(tab.by("upload-chip")).to_have_count(0)  # the composer is clear for the next one
    return tab.wait_answer("complete")


def test_a_dropped_pdf_is_used_by_the_answer(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    tab.drop_files([(PDF_NAME, "application/pdf", make_pdf([PDF_FACT]))])
    expect(tab.by("upload-chip").filter(has_text=PDF_NAME)).to_be_visible()
    tab.shot("upload-dropped-pdf")
    answer = attach_and_ask(tab, PDF_NAME, "What is the secret code word of the Zephyr project?")
    expect(answer.get_by_test_id("message-sources")).to_contain_text(PDF_NAME)
    tab.shot("upload-answer-with-sources")
    stored = tab.api("GET", f"/api/conversations/{tab.selected_conversation_id()}")
    assert [s["file_name"] for s in stored["messages"][-1]["sources"]] == [PDF_NAME]
    # The small model usually repeats the fact; the sources above are the firm check.
    said = answer.get_by_test_id("message-content").inner_text()
    print(f"answer mentions PERIWINKLE: {'PERIWINKLE' in said.upper()} ({said!r})")


def test_a_picked_docx_is_used_by_the_answer(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    expect(tab.by("attach")).to_be_visible()
    tab.pick_files([(DOCX_NAME, "application/octet-stream", make_docx([DOCX_FACT]))])
    answer = attach_and_ask(tab, DOCX_NAME, "What colour is the lighthouse of Port Wendel?")
    expect(answer.get_by_test_id("message-sources")).to_contain_text(DOCX_NAME)


def test_too_large_and_wrong_type_files_are_refused_in_words(tab: Tab) -> None:
    tab.signed_in()
    tab.new_chat()
    # The app may check first in the browser; if it asks the server, these are the answers.
    tab.console.expect_http_error(413, "/api/files")
    tab.console.expect_http_error(415, "/api/files")

    big = b"a line of plain text\n" * ((MAX_UPLOAD_MB * 1024 * 1024) // 21 + 5000)
    tab.pick_files([("too-big.txt", "text/plain", big)])
    too_large = re.compile(r"too large|too big", re.I)
    expect(tab.by("upload-error").filter(has_text=too_large)).to_be_visible()
    expect(tab.by("upload-chip").filter(has_text="too-big.txt")).not_to_have_attribute(
        "data-state", "ready"
    )
    tab.shot("upload-too-large")

    wrong_type = re.compile(r"type|not supported|unsupported|can.t read|cannot", re.I)
    tab.pick_files([("setup.exe", "application/x-msdownload", b"MZ\x90\x00" + bytes(2000))])
    expect(
        tab.by("upload-error")
        .filter(has_text="setup.exe")
        .or_(tab.by("upload-error").filter(has_text=wrong_type))
        .first
    ).to_be_visible()
    tab.drop_files([("archive.zip", "application/zip", b"PK\x05\x06" + bytes(18))])
    errors = tab.by("upload-error").filter(has_text=wrong_type)
    expect(errors).to_have_count(2)
    tab.shot("upload-wrong-type")
    # Refused before a byte is sent, saying what is accepted; the picker offers only those.
    expect(errors.filter(has_text="setup.exe").or_(errors.first).first).to_contain_text(
        "Accepted: .bash"
    )
    assert ".pdf" in tab.by("file-input").get_attribute("accept").split(",")
    # A .txt that is not text: the server says so, not "type isn't supported".
    tab.pick_files([("data.txt", "text/plain", bytes(range(256)) * 8)])
    expect(tab.by("upload-error").filter(has_text="binary data")).to_be_visible()
    for name in ("too-big.txt", "setup.exe", "archive.zip", "data.txt"):
        chip = tab.by("upload-chip").filter(has_text=name)
        if chip.count():
            expect(chip).to_have_attribute("data-state", "error")
    # Nothing refused reaches the server's list of files.
    assert tab.api("GET", "/api/files")["data"] == []
