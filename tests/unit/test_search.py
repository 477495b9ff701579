"""Search in message text (app_service/search.py): user-scoped FTS5 over what was said, with
snippets and highlight offsets; a person's words are never FTS5 syntax."""

from __future__ import annotations

import pytest

from app_service import conversation_store as store
from app_service import db
from app_service.search import fts_query, highlighted, search_messages


def conversation(conn, user: str, title: str, *texts: str) -> str:
    with db.transaction(conn):
        cid = store.create_conversation(conn, user, {"title": title})
    parent = None
    for n, text in enumerate(texts):
        role = "user" if n % 2 == 0 else "assistant"
        parent = store.add_message(conn, cid, role, text, "complete", parent_id=parent)
    return cid


def found(conn, user: str, query: str) -> dict:
    return {c["id"]: c["match"] for c in store.search_conversations(conn, user, query)}


def test_a_word_said_only_in_an_answer_finds_its_conversation_with_a_snippet(conn) -> None:
    cid = conversation(conn, "u", "Fruit", "Name a fruit.", "A kumquat is a small citrus fruit.")
    conversation(conn, "u", "Other", "Hello", "Hi there.")
    hits = found(conn, "u", "kumquat")
    assert list(hits) == [cid]
    match = hits[cid]
    assert match["role"] == "assistant"
    assert match["snippet"] == "A kumquat is a small citrus fruit."
    [[start, end]] = match["highlights"]
    assert match["snippet"][start:end] == "kumquat"
    # The message the hit names is that answer.
    assert store.get_message(conn, match["message_id"])["content"].startswith("A kumquat")


def test_titles_still_match_and_the_last_word_matches_as_a_prefix(conn) -> None:
    by_title = conversation(conn, "u", "Trip to Lisbon", "Plan it.", "Sure.")
    by_text = conversation(conn, "u", "Untitled", "Tell me about Lisbon trams.", "Tram 28.")
    hits = found(conn, "u", "lisbo")
    assert set(hits) == {by_title, by_text}
    assert hits[by_title] is None  # the title alone matched
    assert hits[by_text]["snippet"].startswith("Tell me about Lisbon")
    assert set(found(conn, "u", "lisbon trams")) == {by_text}  # every word must match


def test_another_users_messages_are_never_found(conn) -> None:
    conversation(conn, "other", "Secret", "The password is swordfish.", "Noted.")
    assert found(conn, "u", "swordfish") == {}
    assert search_messages(conn, "u", "swordfish") == {}
    assert len(found(conn, "other", "swordfish")) == 1


@pytest.mark.parametrize(
    "query",
    ['"', 'a" OR "b', "NEAR(x y)", "content:x", "*", "AND", "x AND", "^x", "(", "\ue000x\ue001"],
)
def test_hostile_queries_are_words_not_syntax(conn, query: str) -> None:
    conversation(conn, "u", "T", "x and y near content", "ok")
    store.search_conversations(conn, "u", query)  # no sqlite3.OperationalError


def test_the_query_quotes_each_word_and_prefixes_the_last() -> None:
    assert fts_query('say "hi" NEAR(') == '"say" "hi" "NEAR"*'
    assert fts_query("  ,;  ") is None
    assert fts_query("café") == '"café"*'


def test_highlight_offsets_survive_unbalanced_marks() -> None:
    assert highlighted("a \ue000b\ue001 c") == ("a b c", [[2, 3]])
    assert highlighted("\ue001a \ue000b") == ("a b", [])


def test_an_answer_is_found_once_it_ends_and_not_after_it_is_deleted(conn) -> None:
    cid = conversation(conn, "u", "T", "Question")
    question = store.active_path(conn, store.get_conversation(conn, "u", cid))[-1]["id"]
    answer = store.add_message(conn, cid, "assistant", "", "streaming", parent_id=question)
    store.save_partial(conn, answer, "zebras are striped")
    assert found(conn, "u", "zebras") == {}  # still streaming: not indexed yet
    store.finish_message(conn, answer, content="zebras are striped horses", status="complete")
    assert found(conn, "u", "zebras")[cid]["message_id"] == answer
    store.reopen_message(conn, answer)  # a continue: out of the index until it ends again
    store.finish_message(
        conn, answer, content="zebras are striped horses, mostly", status="stopped"
    )
    assert found(conn, "u", "mostly")[cid]["message_id"] == answer
    assert found(conn, "u", "striped")[cid]["message_id"] == answer
    store.delete_branch(conn, "u", cid, answer)
    assert found(conn, "u", "zebras") == {}
    with db.transaction(conn):
        store.delete_conversation(conn, "u", cid)
    assert found(conn, "u", "question") == {}
    # The index agrees with the messages it was built from (raises SQLITE_CORRUPT if not).
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_existing_messages_are_indexed_by_the_migration(tmp_path) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path)
    for number, script in enumerate(db.MIGRATIONS[:3], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES ('u', 'u', 'h', 0)"
    )
    conn.execute(
        "INSERT INTO conversations (id, user_id, title, created_at, updated_at) "
        "VALUES ('c', 'u', 't', 0, 0)"
    )
    for seq, (text, status) in enumerate([("old walrus", "complete"), ("half", "streaming")], 1):
        conn.execute(
            "INSERT INTO messages (id, conversation_id, seq, role, content, status, created_at) "
            "VALUES (?, 'c', ?, 'user', ?, ?, 0)",
            (f"m{seq}", seq, text, status),
        )
    conn.close()
    db.migrate(path)
    conn = db.connect(path)
    assert list(found(conn, "u", "walrus")) == ["c"]
    store.recover_interrupted(conn)  # the half answer ends (failed) and is indexed then
    assert list(found(conn, "u", "half")) == ["c"]
    conn.close()
