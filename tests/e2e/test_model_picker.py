"""The chat header's model picker, against two real model APIs: the embedded model and a
second one serving it under another name. The picker appears because the upstreams serve
more than one model, the choice is the conversation's (remembered across a reload), and
each answer says which model wrote it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.stack import Site, running_site
from tests.e2e.ui import Tab, unique_name
from tests.integration.conftest import API_KEY, MODEL
from tests.servers import RunningServer, serving, start_model_api

TWIN = "SmolLM2-twin"


@pytest.fixture(scope="module")
def twin_model_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_model_api(
        tmp_path_factory.mktemp("twin"), MODEL_API_KEY=API_KEY, MODEL_NAME=TWIN
    )
    yield from serving(server)


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, model_api, twin_model_api, web_root: Path
) -> Iterator[Site]:
    """This module's own stack: one app service in front of both model APIs."""
    urls = f"{model_api.url},{twin_model_api.url}"
    with running_site(tmp_path_factory.mktemp("e2e-models"), urls, web_root) as running:
        yield running


def choose(tab: Tab, model: str) -> None:
    tab.by("model-picker").select_option(model)
    expect(tab.by("model-picker")).to_have_value(model)


def test_the_picker_chooses_each_chats_model_and_answers_say_who_wrote_them(tab: Tab) -> None:
    tab.open_signed_out()
    tab.sign_up(unique_name("models"))
    picker = tab.by("model-picker")
    expect(picker.locator("option")).to_have_text(["Default model", MODEL, TWIN])

    # Chosen before the chat exists: the chat is made with it.
    choose(tab, TWIN)
    answer = tab.ask("Say hello.")
    expect(answer.get_by_test_id("message-details")).to_contain_text(TWIN)
    conversation_id = tab.selected_conversation_id()
    assert tab.api("GET", f"/api/conversations/{conversation_id}")["model"] == TWIN

    # Changed between turns: the next answer comes from the other model, the first keeps
    # its name, and the choice is remembered by the server.
    choose(tab, MODEL)
    tab.ask("And goodbye.")
    details = tab.answers().get_by_test_id("message-details")
    expect(details.nth(0)).to_contain_text(TWIN)
    expect(details.nth(1)).to_contain_text(MODEL)
    expect(details.nth(1)).not_to_contain_text(TWIN)
    tab.page.reload()
    expect(tab.by("model-picker")).to_have_value(MODEL)

    # A new chat starts on the default again; the old one keeps its model.
    tab.new_chat()
    expect(tab.by("model-picker")).to_have_value("")
    tab.page.locator(f'[data-testid="conversation-item"][data-id="{conversation_id}"]').click()
    expect(tab.by("model-picker")).to_have_value(MODEL)
    assert re.fullmatch(r"conv_[0-9a-f]+", conversation_id)
