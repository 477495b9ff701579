"""A conversation's messages as a tree: every message has a parent (None for the first), and
the conversation remembers its active leaf. Editing a question or regenerating an answer adds
a sibling; nothing is replaced. What the user sees, and what the model is sent, is the path
from the root to the active leaf.

Pure functions over a conversation's rows (anything with `id`, `parent_id` and `seq`, oldest
first): a conversation is small enough to load whole, and a tree walked in Python is easier
to read and to test than recursive SQL. A child is always newer (higher `seq`) than its
parent, so the newest message under any message is a leaf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row", bound=Mapping[str, Any])


def children(rows: Iterable[Row]) -> dict[str | None, list[Row]]:
    """Each parent id (None: the roots) → its children, oldest first."""
    tree: dict[str | None, list[Row]] = {}
    for row in sorted(rows, key=lambda r: r["seq"]):
        tree.setdefault(row["parent_id"], []).append(row)
    return tree


def path_to(rows: Sequence[Row], leaf_id: str | None) -> list[Row]:
    """The messages from the root down to `leaf_id`, inclusive; [] for None or an unknown id."""
    by_id = {row["id"]: row for row in rows}
    path: list[Row] = []
    node = by_id.get(leaf_id) if leaf_id is not None else None
    while node is not None and len(path) <= len(by_id):  # a cycle (a corrupt row) ends it
        path.append(node)
        parent = node["parent_id"]
        node = by_id.get(parent) if parent is not None else None
    path.reverse()
    return path


def subtree(rows: Sequence[Row], root_id: str) -> list[Row]:
    """`root_id` and everything below it, oldest first."""
    tree = children(rows)
    found = [row for row in rows if row["id"] == root_id]
    i = 0
    while i < len(found):
        found += tree.get(found[i]["id"], [])
        i += 1
    return sorted(found, key=lambda r: r["seq"])


def newest_leaf(rows: Sequence[Row], under: str | None = None) -> Row | None:
    """The most recent message at or below `under` (None: in the whole conversation) — a leaf,
    since children are newer than their parents. Switching to a branch opens its newest
    continuation."""
    candidates = list(rows) if under is None else subtree(rows, under)
    return max(candidates, key=lambda r: r["seq"], default=None)


def branch_leaf(rows: Sequence[Row], under: str) -> Row | None:
    """Where switching to the branch at `under` (a sibling from `‹ 2/3 ›`) lands: below the
    message there that was the active leaf last (`shown_seq`), so a choice made deeper down
    is still there when the user comes back; its newest continuation when none was shown."""
    shown = [r for r in subtree(rows, under) if _shown_seq(r) is not None]
    if shown:
        return newest_leaf(rows, max(shown, key=lambda r: _shown_seq(r) or 0)["id"])
    return newest_leaf(rows, under)


def _shown_seq(row: Row) -> int | None:
    # `in row` would search a sqlite3.Row's values, not its names: keys() is meant.
    return row["shown_seq"] if "shown_seq" in row.keys() else None  # noqa: SIM118


def active_path(rows: Sequence[Row], active_leaf_id: str | None) -> list[Row]:
    """The branch shown and sent to the model. A leaf id that is gone (or was never set, as for
    a conversation from before trees) falls back to the newest message."""
    path = path_to(rows, active_leaf_id)
    if path:
        return path
    leaf = newest_leaf(rows)
    return path_to(rows, leaf["id"]) if leaf is not None else []


def sibling_ids(rows: Sequence[Row], message: Mapping[str, Any]) -> list[str]:
    """The ids of the message and its siblings (same parent), oldest first: `‹ 2/3 ›`."""
    return [row["id"] for row in children(rows).get(message["parent_id"], [])]
