"""The server's frame models (app_service/frames.py) against the browser's types
(web/src/api/types.ts): the same frame types, the same fields, optional where optional."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app_service import frames

TYPES_TS = Path(__file__).resolve().parents[2] / "web" / "src" / "api" / "types.ts"


def _strip_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    return re.sub(r"//[^\n]*", "", source)


def _top_level_fields(body: str) -> dict[str, bool]:
    """{field: optional} of an object type's body (the text between its outer braces)."""
    fields: dict[str, bool] = {}
    depth = 0
    for match in re.finditer(r"[{}]|(\w+)(\??):", body):
        token = match.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        elif depth == 0:
            fields[match.group(1)] = match.group(2) == "?"
    return fields


def _objects(union: str) -> list[str]:
    """The bodies of the `{ … }` members of a union, outer braces removed."""
    bodies, depth, start = [], 0, 0
    for i, char in enumerate(union):
        if char == "{":
            if depth == 0:
                start = i + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                bodies.append(union[start:i])
    return bodies


def ts_union(name: str) -> dict[str, dict[str, bool]]:
    source = _strip_comments(TYPES_TS.read_text())
    match = re.search(rf"export type {name} =(.*?);\s*\n(?:\n|export)", source, flags=re.S)
    assert match, f"{name} not found in {TYPES_TS}"
    members = {}
    for body in _objects(match.group(1)):
        fields = _top_level_fields(body)
        kind = re.search(r"\btype:\s*'(\w+)'", body)
        assert kind, f"a member of {name} without a literal type: {body}"
        members[kind.group(1)] = fields
    return members


def ts_interface(name: str) -> dict[str, bool]:
    source = _strip_comments(TYPES_TS.read_text())
    match = re.search(rf"export interface {name}(?: extends (\w+))? \{{", source)
    assert match, f"interface {name} not found"
    start = match.end()
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    fields = _top_level_fields(source[start : i - 1])
    if match.group(1):
        fields = {**ts_interface(match.group(1)), **fields}
    return fields


def model_fields(model: type) -> dict[str, bool]:
    optional = getattr(model, "OPTIONAL", frozenset())
    return {name: name in optional for name in model.model_fields}


SERVER = {model.model_fields["type"].default: model for model in frames.SERVER_FRAMES}


def test_the_same_server_frame_types_on_both_sides() -> None:
    assert set(ts_union("ServerFrame")) == set(SERVER)


@pytest.mark.parametrize("kind", sorted(SERVER))
def test_each_server_frame_has_the_same_fields(kind: str) -> None:
    assert ts_union("ServerFrame")[kind] == model_fields(SERVER[kind])


@pytest.mark.parametrize(
    ("interface", "model"),
    [
        ("Message", frames.Message),
        ("Conversation", frames.Conversation),
        ("Source", frames.Source),
        ("Attachment", frames.Attachment),
    ],
)
def test_the_objects_inside_frames_match(interface: str, model: type) -> None:
    assert set(ts_interface(interface)) == set(model.model_fields)


def test_every_client_frame_the_browser_sends_is_one_the_server_reads() -> None:
    browser = ts_union("ClientFrame")
    assert set(browser) <= set(frames.CLIENT_FRAMES)
    for kind, fields in browser.items():
        assert set(fields) <= set(frames.CLIENT_FRAMES[kind].model_fields), kind


def test_optional_fields_are_left_out_when_unset() -> None:
    frame = frames.Error(conversation_id=None, error="x", code=None).wire()
    assert "request_id" not in frame and "discarded_message_id" not in frame
    assert frame["message"] is None  # always sent, null included
