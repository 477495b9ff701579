"""A conversation's model, chosen between turns (the chat header's picker): the next answer
goes to that model and names it; the ones before keep theirs."""

from __future__ import annotations

from tests.unit.test_api_keys import PASSWORD
from tests.unit.test_app_metrics import (  # noqa: F401 - fixtures
    app,
    chat_socket,
    run_turn,
    stream_with_usage,
    upstream,
)
from tests.unit.test_branches import shown


def test_each_answer_names_the_model_that_wrote_it(app, upstream) -> None:  # noqa: F811
    upstream.models = ("alpha", "beta")
    upstream.routes["/v1/chat/completions"] = stream_with_usage
    chat, _frames, cid = chat_socket(app)
    client = app.test_client()
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "first"})
    assert client.patch(f"/api/conversations/{cid}", json={"model": "beta"}).status_code == 200
    run_turn(chat, {"type": "send", "conversation_id": cid, "content": "second"})

    assert [body["model"] for body in upstream.chat_requests()] == ["alpha", "beta"]
    answers = [m for m in shown(client, cid) if m["role"] == "assistant"]
    assert [m["model"] for m in answers] == ["alpha", "beta"]
    assert all(m["model"] is None for m in shown(client, cid) if m["role"] == "user")
