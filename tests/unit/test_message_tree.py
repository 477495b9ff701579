"""Conversations as trees (app_service/message_tree.py) and the store's branch operations:
switch, delete, and the path a turn is built from."""

from __future__ import annotations

import pytest

from app_service import conversation_store as store
from app_service import db, message_tree
from chatstack.errors import APIError


def node(id_: str, parent: str | None, seq: int) -> dict:
    return {"id": id_, "parent_id": parent, "seq": seq}


# q1 ─ a1 ─ q2 ─ a2
#    └ a1b          (a regenerate)
#  q2b ─ a2b        (an edit of q2, below a1)
TREE = [
    node("q1", None, 1),
    node("a1", "q1", 2),
    node("q2", "a1", 3),
    node("a2", "q2", 4),
    node("a1b", "q1", 5),
    node("q2b", "a1", 6),
    node("a2b", "q2b", 7),
]


def ids(rows: list[dict]) -> list[str]:
    return [r["id"] for r in rows]


def test_the_path_runs_from_the_root_to_the_leaf() -> None:
    assert ids(message_tree.path_to(TREE, "a2")) == ["q1", "a1", "q2", "a2"]
    assert ids(message_tree.path_to(TREE, "a2b")) == ["q1", "a1", "q2b", "a2b"]
    assert message_tree.path_to(TREE, None) == []
    assert message_tree.path_to(TREE, "gone") == []


def test_siblings_are_the_children_of_the_same_parent_oldest_first() -> None:
    assert message_tree.sibling_ids(TREE, node("q2b", "a1", 6)) == ["q2", "q2b"]
    assert message_tree.sibling_ids(TREE, node("a1", "q1", 2)) == ["a1", "a1b"]
    assert message_tree.sibling_ids(TREE, node("q1", None, 1)) == ["q1"]


def test_switching_to_a_branch_opens_its_newest_continuation() -> None:
    assert message_tree.newest_leaf(TREE, "q2")["id"] == "a2"
    assert message_tree.newest_leaf(TREE, "a1")["id"] == "a2b"
    assert message_tree.newest_leaf(TREE)["id"] == "a2b"
    assert ids(message_tree.subtree(TREE, "a1")) == ["a1", "q2", "a2", "q2b", "a2b"]


def test_a_missing_active_leaf_falls_back_to_the_newest_message() -> None:
    assert ids(message_tree.active_path(TREE, None)) == ["q1", "a1", "q2b", "a2b"]
    assert ids(message_tree.active_path(TREE, "a1b")) == ["q1", "a1b"]
    assert message_tree.active_path([], None) == []


def test_a_corrupt_cycle_ends_the_walk() -> None:
    cycle = [node("x", "y", 1), node("y", "x", 2)]
    assert len(message_tree.path_to(cycle, "x")) <= 3


# ---- the store, on a real database -------------------------------------------------------


def build(conn) -> tuple[str, dict[str, str]]:
    """TREE, stored as the turns would store it: each add makes its message the leaf."""
    with db.transaction(conn):
        cid = store.create_conversation(conn, "u", {})
    made: dict[str, str] = {}
    for row in TREE:
        role = "user" if row["id"].startswith("q") else "assistant"
        parent = made.get(row["parent_id"]) if row["parent_id"] else None
        made[row["id"]] = store.add_message(
            conn, cid, role, row["id"], "complete", parent_id=parent
        )
    return cid, made


def shown(conn, cid: str) -> list[str]:
    conversation = store.get_conversation(conn, "u", cid)
    return [m["content"] for m in store.active_path(conn, conversation)]


def test_each_added_message_becomes_the_active_leaf(conn) -> None:
    cid, _ = build(conn)
    assert shown(conn, cid) == ["q1", "a1", "q2b", "a2b"]


def test_selecting_a_branch_is_remembered(conn) -> None:
    cid, made = build(conn)
    store.select_branch(conn, "u", cid, made["q2"])
    assert shown(conn, cid) == ["q1", "a1", "q2", "a2"]
    store.select_branch(conn, "u", cid, made["a1b"])
    assert shown(conn, cid) == ["q1", "a1b"]
    with pytest.raises(APIError) as refused:
        store.select_branch(conn, "u", cid, "msg_nope")
    assert refused.value.status == 404
    with pytest.raises(APIError) as refused:
        store.select_branch(conn, "other", cid, made["q2"])
    assert refused.value.status == 404


def test_switching_back_opens_the_branch_chosen_deeper_down_last(conn) -> None:
    cid, made = build(conn)
    store.select_branch(conn, "u", cid, made["q2"])  # the older version of q2, under a1
    store.select_branch(conn, "u", cid, made["a1b"])  # away to a1's sibling
    store.select_branch(conn, "u", cid, made["a1"])  # and back: q2 again, not the newest q2b
    assert shown(conn, cid) == ["q1", "a1", "q2", "a2"]
    # A branch never shown since opens its newest continuation, as before.
    assert message_tree.branch_leaf(TREE, "a1")["id"] == "a2b"


def test_deleting_the_shown_branch_shows_its_sibling_and_keeps_the_rest(conn) -> None:
    cid, made = build(conn)
    assert store.delete_branch(conn, "u", cid, made["q2b"]) == 2
    assert shown(conn, cid) == ["q1", "a1", "q2", "a2"]
    assert len(store.messages_of(conn, cid)) == 5
    # A branch not shown goes without moving the one shown.
    assert store.delete_branch(conn, "u", cid, made["a1b"]) == 1
    assert shown(conn, cid) == ["q1", "a1", "q2", "a2"]
    # The only answer to q2: the path ends at its question.
    store.delete_branch(conn, "u", cid, made["a2"])
    assert shown(conn, cid) == ["q1", "a1", "q2"]
    store.delete_branch(conn, "u", cid, made["q1"])
    assert shown(conn, cid) == [] and store.messages_of(conn, cid) == []


def test_messages_carry_their_siblings(conn) -> None:
    cid, made = build(conn)
    out = store.message_out(conn, store.get_message(conn, made["q2b"]))
    assert out["parent_id"] == made["a1"]
    assert out["sibling_ids"] == [made["q2"], made["q2b"]]
    rows = store.messages_of(conn, cid)
    conversation = store.get_conversation(conn, "u", cid)
    path = store.path_dicts(rows, store.active_path(conn, conversation))
    assert [len(m["sibling_ids"]) for m in path] == [1, 2, 2, 1]
