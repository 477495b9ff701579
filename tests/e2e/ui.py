"""One browser tab on the site, with the actions the tests repeat, all by test id
(tests/e2e/SELECTORS.md)."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.e2e.browser import ConsoleWatch
from tests.e2e.stack import Site
from tests.integration.conftest import PASSWORD

# CPU generation on a shared two-core machine: an answer of 40 tokens can take a while.
ANSWER_TIMEOUT_MS = 180_000
FINISHED = re.compile(r"^(complete|stopped|failed)$")

# Records (data-status, text length) of the last assistant message at every DOM change,
# so a test can see an answer stream rather than only its end state.
_TRACE_ANSWER = """() => {
  window.__answerTrace = [];
  const record = () => {
    const answers = document.querySelectorAll('[data-testid="message"][data-role="assistant"]');
    const last = answers[answers.length - 1];
    if (!last) return;
    // The text as received, not as rendered: Markdown may hide what it has just parsed
    // (a closing `**`), so the rendered length can dip while the text only grows.
    const entry = [last.getAttribute('data-status'), Number(last.getAttribute('data-chars') || 0)];
    const trace = window.__answerTrace;
    const prev = trace[trace.length - 1];
    if (!prev || prev[0] !== entry[0] || prev[1] !== entry[1]) trace.push(entry);
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ['data-status', 'data-chars'],
  });
  record();
}"""

_DATA_TRANSFER = """([files]) => {
  const transfer = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  return transfer;
}"""


def unique_name(prefix: str = "e2e") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class Tab:
    """A page in its own browser context, its console watched."""

    def __init__(self, page: Page, console: ConsoleWatch, site: Site, screenshots: Path):
        self.page = page
        self.console = console
        self.site = site
        self._screenshots = screenshots

    def by(self, test_id: str) -> Locator:
        return self.page.get_by_test_id(test_id)

    def shot(self, name: str) -> Path:
        path = self._screenshots / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path

    # ---- accounts ------------------------------------------------------------------------

    def open_signed_out(self) -> None:
        """The first screen of a visitor; its check of the session answers 401."""
        self.console.expect_http_error(401, "/api/auth/me")
        self.page.goto("/")
        expect(self.by("auth-form")).to_be_visible()

    def choose_auth_mode(self, create_account: bool) -> None:
        """Flip the form with auth-toggle until its submit button says what we want."""
        wants = re.compile(r"create|sign up|register", re.I)
        for _ in range(2):
            says_create = bool(wants.search(self.by("auth-submit").inner_text()))
            if says_create == create_account:
                return
            self.by("auth-toggle").click()
        raise AssertionError("auth-toggle did not switch between sign in and create account")

    def submit_credentials(self, username: str, password: str = PASSWORD) -> None:
        self.by("auth-username").fill(username)
        self.by("auth-password").fill(password)
        self.by("auth-submit").click()

    def sign_up(self, username: str, password: str = PASSWORD) -> None:
        self.choose_auth_mode(create_account=True)
        self.submit_credentials(username, password)
        expect(self.by("composer")).to_be_visible()

    def log_in(self, username: str, password: str = PASSWORD) -> None:
        self.choose_auth_mode(create_account=False)
        self.submit_credentials(username, password)
        expect(self.by("composer")).to_be_visible()

    def signed_in(self) -> str:
        """A new account, signed up through the form: the start of every test whose
        subject is not signing up. Returns the username."""
        username = unique_name()
        self.open_signed_out()
        self.sign_up(username)
        return username

    def api(self, method: str, path: str, **data) -> dict:
        """A REST call with this tab's session cookie."""
        reply = self.page.context.request.fetch(path, method=method, data=data or None)
        assert reply.ok, f"{method} {path}: {reply.status} {reply.text()}"
        return reply.json() if reply.status != 204 else {}

    # ---- chatting ------------------------------------------------------------------------

    def answers(self) -> Locator:
        return self.page.locator('[data-testid="message"][data-role="assistant"]')

    def user_messages(self) -> Locator:
        return self.page.locator('[data-testid="message"][data-role="user"]')

    def last_answer(self) -> Locator:
        return self.answers().last

    def trace_answers(self) -> None:
        self.page.evaluate(_TRACE_ANSWER)

    def answer_trace(self) -> list[tuple[str, int]]:
        return [tuple(entry) for entry in self.page.evaluate("window.__answerTrace")]

    def new_chat(self, tap: bool = False) -> str:
        """Start a new conversation and wait until the sidebar shows it selected, as a
        person would before typing. Returns its id."""
        button = self.by("new-chat")
        button.tap() if tap else button.click()
        selected = self.page.locator('[data-testid="conversation-item"][aria-current="page"]')
        expect(selected).to_have_text("New chat")
        expect(self.page.locator('[data-testid="message"]')).to_have_count(0)
        return self.selected_conversation_id()

    def send(self, text: str) -> None:
        self.by("composer-input").fill(text)
        self.by("composer-input").press("Enter")

    def wait_answer(self, status: str = "complete") -> Locator:
        answer = self.last_answer()
        expect(answer).to_have_attribute("data-status", FINISHED, timeout=ANSWER_TIMEOUT_MS)
        expect(answer).to_have_attribute("data-status", status)
        return answer

    def ask(self, text: str) -> Locator:
        """Send and wait for the whole answer; returns the answer."""
        count = self.answers().count()
        self.send(text)
        expect(self.answers()).to_have_count(count + 1)
        return self.wait_answer()

    def selected_conversation_id(self) -> str:
        selected = self.page.locator('[data-testid="conversation-item"][aria-current="page"]')
        expect(selected).to_have_count(1)
        conversation_id = selected.get_attribute("data-id")
        assert conversation_id and conversation_id.startswith("conv_"), conversation_id
        return conversation_id

    # ---- files ---------------------------------------------------------------------------

    def drop_files(self, files: list[tuple[str, str, bytes]]) -> None:
        """Drop (name, MIME type, content) files on the drop zone, as a drag from the
        desktop does: dragenter, dragover, drop, with a DataTransfer holding real Files."""
        payload = [[name, mime, base64.b64encode(data).decode()] for name, mime, data in files]
        transfer = self.page.evaluate_handle(_DATA_TRANSFER, [payload])
        zone = self.by("drop-zone")
        for event in ("dragenter", "dragover", "drop"):
            zone.dispatch_event(event, {"dataTransfer": transfer})

    def pick_files(self, files: list[tuple[str, str, bytes]]) -> None:
        """Choose files through the hidden file input, as the attach button's picker does."""
        self.by("file-input").set_input_files(
            [{"name": name, "mimeType": mime, "buffer": data} for name, mime, data in files]
        )

    # ---- more tabs of one session ----------------------------------------------------------

    def same_session_tab(self) -> Tab:
        """Another page in this tab's browser context: the same session cookie, as a second
        tab of the same browser. Its console is watched; the caller checks `console.errors`."""
        page = self.page.context.new_page()
        console = ConsoleWatch()
        console.attach(page)
        return Tab(page, console, self.site, self._screenshots)

    def answer_chars(self, message_id: str) -> int:
        """The received text length (data-chars) of the message with that id; -1 if absent."""
        return self.page.evaluate(_ANSWER_CHARS, message_id)

    def wait_chars_above(
        self, message_id: str, chars: int, timeout: float = ANSWER_TIMEOUT_MS
    ) -> int:
        """Wait until the message with that id has received more than `chars` characters."""
        self.page.wait_for_function(
            f"([id, n]) => ({_ANSWER_CHARS})(id) > n", arg=[message_id, chars], timeout=timeout
        )
        return self.answer_chars(message_id)


_ANSWER_CHARS = """(id) => {
  const el = document.querySelector(`[data-testid="message"][data-id="${id}"]`);
  return el ? Number(el.getAttribute('data-chars') || 0) : -1;
}"""
