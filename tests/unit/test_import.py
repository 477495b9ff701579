"""Importing a ChatGPT export and chatstack's own JSON export: every branch kept, the branch
that was shown active, a round trip giving the same tree, hostile files importing nothing."""

from __future__ import annotations

import io
import json

import pytest

from tests.import_samples import chatgpt_export_bytes, hostile_imports
from tests.unit.test_api_keys import login
from tests.unit.test_app_metrics import app, upstream  # noqa: F401 - fixtures


def import_file(client, data: bytes, name: str = "conversations.json"):
    return client.post(
        "/api/conversations/import",
        data={"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def tree(client, cid: str) -> dict:
    return json.loads(client.get(f"/api/conversations/{cid}/export?format=json").data)


def shape(exported: dict) -> list[tuple]:
    """A tree independent of ids: each message's parent as an index, its fields."""
    index = {m["id"]: i for i, m in enumerate(exported["messages"])}
    fields = ("role", "content", "status", "attachments", "sources", "usage", "finish_reason")
    fields += ("created_at", "finished_at", "model")
    return [
        (index.get(m["parent_id"]), *(json.dumps(m[f], sort_keys=True) for f in fields))
        for m in exported["messages"]
    ] + [("active", index.get(exported["active_leaf_id"]))]


ROOMY = pytest.mark.parametrize("app", [{"max_upload_bytes": 1_000_000}], indirect=True)


@ROOMY
def test_a_chatgpt_export_keeps_its_branches_and_the_branch_shown(app) -> None:  # noqa: F811
    client = login(app, "alice")
    reply = import_file(client, chatgpt_export_bytes())
    assert reply.status_code == 201, reply.json
    trip, picture = reply.json["conversations"]
    assert trip["title"] == "Weekend trip" and picture["title"] == "What is this?"
    assert trip["created_at"] == 1_700_000_000.0

    shown = client.get(f"/api/conversations/{trip['id']}").json["messages"]
    assert [m["content"] for m in shown] == ["Plan a weekend in Porto", "Start at Livraria Lello."]
    assert len(shown[0]["sibling_ids"]) == 2  # the question was edited
    assert len(shown[1]["sibling_ids"]) == 2  # the answer regenerated
    assert (shown[0]["model"], shown[1]["model"]) == (None, "gpt-4o")  # who answered, kept
    whole = tree(client, trip["id"])["messages"]
    assert [m["content"] for m in whole] == [
        "Plan a weekend in Lisbon",
        "Plan a weekend in Porto",
        "Day 1: Alfama.",
        "Day 1: Ribeira.",
        "Start at Livraria Lello.",
        "Which tram goes there?",
        "Tram 28 goes to Alfama.",  # the tool call and its output left out, the answer kept
    ]
    by_content = {m["content"]: m for m in whole}
    assert (
        by_content["Tram 28 goes to Alfama."]["parent_id"]
        == by_content["Which tram goes there?"]["id"]
    )

    # The other version of the question, with its branch, one switch away.
    lisbon = by_content["Plan a weekend in Lisbon"]["id"]
    branch = client.put(f"/api/conversations/{trip['id']}/branch", json={"message_id": lisbon})
    assert [m["content"] for m in branch.json["messages"]][-1] == "Tram 28 goes to Alfama."

    picture_path = client.get(f"/api/conversations/{picture['id']}").json["messages"]
    assert [(m["role"], m["content"]) for m in picture_path] == [
        ("user", "What plant is this?"),
        ("assistant", "It looks like a fern: $E = mc^2$ aside."),
    ]
    # Imported messages are searchable like any.
    found = client.get("/api/conversations", query_string={"q": "livraria"}).json
    assert [c["id"] for c in found["conversations"]] == [trip["id"]]


@ROOMY
def test_chatstack_json_export_round_trips_to_the_same_tree(app) -> None:  # noqa: F811
    alice = login(app, "alice")
    trip = import_file(alice, chatgpt_export_bytes()).json["conversations"][0]
    alice.patch(
        f"/api/conversations/{trip['id']}", json={"system_prompt": "Be brief.", "temperature": 0.3}
    )
    exported = tree(alice, trip["id"])
    bob = login(app, "bob")
    reply = import_file(bob, json.dumps(exported).encode(), "trip.json")
    assert reply.status_code == 201, reply.json
    [copy] = reply.json["conversations"]
    assert copy["id"] != trip["id"]
    assert (copy["title"], copy["system_prompt"], copy["temperature"]) == (
        "Weekend trip",
        "Be brief.",
        0.3,
    )
    again = tree(bob, copy["id"])
    assert shape(again) == shape(exported)
    assert {m["id"] for m in again["messages"]}.isdisjoint({m["id"] for m in exported["messages"]})
    # And bob's copy is bob's alone.
    assert alice.get(f"/api/conversations/{copy['id']}").status_code == 404


@ROOMY
@pytest.mark.parametrize(("what", "data"), hostile_imports(), ids=[w for w, _ in hostile_imports()])
def test_a_hostile_file_imports_nothing_and_says_why(app, what: str, data: bytes) -> None:  # noqa: F811
    client = login(app, "alice")
    reply = import_file(client, data)
    assert reply.status_code == 400, (what, reply.json)
    error = reply.json["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "file", error
    assert error["code"] in ("invalid_import", "invalid_json", "json_too_deep"), error
    assert client.get("/api/conversations").json["conversations"] == []


def test_an_import_needs_a_file_and_fits_the_upload_limit(app) -> None:  # noqa: F811
    client = login(app, "alice")
    reply = client.post("/api/conversations/import", data={}, content_type="multipart/form-data")
    assert reply.status_code == 400 and reply.json["error"]["code"] == "missing_required_parameter"
    big = json.dumps([{"title": "x" * 5000, "messages": []}]).encode()  # over max_upload_bytes
    reply = import_file(client, big)
    assert reply.status_code == 413 and reply.json["error"]["code"] == "file_too_large"
    reply = client.post("/api/conversations/import", json={"title": "x", "messages": []})
    assert reply.status_code == 400  # a JSON body is not a file
    assert client.get("/api/conversations").json["conversations"] == []
