"""Files to import (app_service/importer.py), shared by the unit, integration and browser
tests: a ChatGPT data export in its published shape, with branches, and hostile files."""

from __future__ import annotations

import json
from typing import Any


def _node(
    key: str,
    parent: str | None,
    children: list[str],
    role: str | None = None,
    text: str | None = None,
    t: float = 0.0,
    **message: Any,
) -> dict[str, Any]:
    body = None
    if role is not None:
        content = message.pop("content", {"content_type": "text", "parts": [text]})
        body = {
            "id": key,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": t,
            "update_time": None,
            "content": content,
            "status": "finished_successfully",
            "end_turn": True,
            "weight": 1.0,
            "metadata": message.pop("metadata", {}),
            "recipient": message.pop("recipient", "all"),
        }
    return {"id": key, "message": body, "parent": parent, "children": children}


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations as ChatGPT's `conversations.json` has them.

    The first: a hidden system message, a question edited once (two versions, each answered),
    the Porto answer regenerated once, and a tool call (a browsing step) before an answer;
    the branch shown (`current_node`) is the second Porto answer. The second: an image
    attached beside text, custom instructions and a reasoning step, which are left out.
    """
    trip = {
        "title": "Weekend trip",
        "create_time": 1_700_000_000.0,
        "update_time": 1_700_000_900.0,
        "current_node": "a-porto-2",
        "conversation_id": "c-trip",
        "mapping": {
            "root": _node("root", None, ["sys"]),
            "sys": _node(
                "sys",
                "root",
                ["q-lisbon", "q-porto"],
                "system",
                "",
                1,
                metadata={"is_visually_hidden_from_conversation": True},
            ),
            "q-lisbon": _node(
                "q-lisbon", "sys", ["a-lisbon"], "user", "Plan a weekend in Lisbon", 2
            ),
            "a-lisbon": _node(
                "a-lisbon", "q-lisbon", ["q-trams"], "assistant", "Day 1: Alfama.", 3
            ),
            "q-trams": _node("q-trams", "a-lisbon", ["call"], "user", "Which tram goes there?", 4),
            "call": _node(
                "call",
                "q-trams",
                ["tool-out"],
                "assistant",
                None,
                5,
                recipient="browser",
                content={"content_type": "code", "language": "unknown", "text": "search('tram')"},
            ),
            "tool-out": _node(
                "tool-out",
                "call",
                ["a-trams"],
                "tool",
                None,
                6,
                content={"content_type": "tether_browsing_display", "result": "…", "summary": ""},
            ),
            "a-trams": _node("a-trams", "tool-out", [], "assistant", "Tram 28 goes to Alfama.", 7),
            "q-porto": _node(
                "q-porto", "sys", ["a-porto-1", "a-porto-2"], "user", "Plan a weekend in Porto", 8
            ),
            "a-porto-1": _node("a-porto-1", "q-porto", [], "assistant", "Day 1: Ribeira.", 9),
            "a-porto-2": _node(
                "a-porto-2",
                "q-porto",
                [],
                "assistant",
                "Start at Livraria Lello.",
                10,
                metadata={"model_slug": "gpt-4o"},
            ),
        },
    }
    picture = {
        "title": "What is this?",
        "create_time": 1_700_001_000.0,
        "update_time": 1_700_001_100.0,
        "current_node": "a",
        "mapping": {
            "root": _node("root", None, ["ctx"]),
            "ctx": _node(
                "ctx",
                "root",
                ["q"],
                "user",
                None,
                1,
                content={"content_type": "user_editable_context", "user_profile": "I like math"},
            ),
            "q": _node(
                "q",
                "ctx",
                ["think"],
                "user",
                None,
                2,
                content={
                    "content_type": "multimodal_text",
                    "parts": [
                        {"content_type": "image_asset_pointer", "asset_pointer": "file-x"},
                        "What plant is this?",
                    ],
                },
            ),
            "think": _node(
                "think",
                "q",
                ["a"],
                "assistant",
                None,
                3,
                content={"content_type": "thoughts", "thoughts": [{"summary": "Looking"}]},
            ),
            "a": _node("a", "think", [], "assistant", "It looks like a fern: $E = mc^2$ aside.", 4),
        },
    }
    return [trip, picture]


def chatgpt_export_bytes() -> bytes:
    return json.dumps(chatgpt_export()).encode()


def hostile_imports() -> list[tuple[str, bytes]]:
    """(what, file) pairs each of which must import nothing."""
    good = chatgpt_export()
    cycle = json.loads(json.dumps(good))
    cycle[1]["mapping"]["root"]["parent"] = "a"  # root → … → a → root: no root at all
    orphan = json.loads(json.dumps(good))
    orphan[1]["mapping"]["q"]["parent"] = "nowhere"
    wrong_type = json.loads(json.dumps(good))
    wrong_type[0]["mapping"]["q-lisbon"]["message"]["author"] = "user"
    chatstack_loop = {
        "title": "loop",
        "messages": [
            {"id": "a", "parent_id": "b", "role": "user", "content": "x"},
            {"id": "b", "parent_id": "a", "role": "assistant", "content": "y"},
        ],
    }
    bad_role = {
        "title": "x",
        "messages": [{"id": "a", "parent_id": None, "role": "system", "content": "x"}],
    }
    deep = "[" * 100 + "]" * 100
    return [
        ("not JSON", b"{not json"),
        ("too deep", deep.encode()),
        ("empty list", b"[]"),
        ("a number", b"42"),
        ("neither format", json.dumps([{"title": "x"}]).encode()),
        ("a cycle", json.dumps(cycle).encode()),
        ("an unknown parent", json.dumps(orphan).encode()),
        ("a wrong type", json.dumps(wrong_type).encode()),
        ("a chatstack loop", json.dumps(chatstack_loop).encode()),
        ("a system message", json.dumps(bad_role).encode()),
        # The first conversation is fine: it must not be imported either.
        ("one bad among good", json.dumps([good[0], {"mapping": "no"}]).encode()),
    ]
