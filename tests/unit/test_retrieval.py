"""Retrieval for the chat code: file sizes, text prefixes, BM25 chunks, safe FTS5 queries,
isolation."""

import pytest

from app_service import db
from app_service.retrieval import (
    Chunk,
    FileInfo,
    best_chunks,
    file_text,
    files_for_user,
    fts_query,
)
from chatstack.errors import APIError


@pytest.fixture
def conn(tmp_path):
    db.migrate(tmp_path / "t.db")
    connection = db.connect(tmp_path / "t.db")
    for user in ("alice", "bob"):
        connection.execute(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (?, ?, 'x', 0)",
            (user, user),
        )
    yield connection
    connection.close()


def add_file(conn, user_id, file_id, name, chunks):
    conn.execute(
        "INSERT INTO files (id, user_id, name, kind, size, sha256, text, chunk_count, created_at)"
        " VALUES (?, ?, ?, 'text', 1, 'h', ?, ?, 0)",
        (file_id, user_id, name, "\n\n".join(chunks), len(chunks)),
    )
    for ordinal, text in enumerate(chunks):
        conn.execute(
            "INSERT INTO chunks (text, file_id, ordinal) VALUES (?, ?, ?)", (text, file_id, ordinal)
        )


@pytest.fixture
def library(conn):
    add_file(
        conn,
        "alice",
        "f_fruit",
        "fruit.txt",
        [
            "Apples grow on trees in the orchard.",
            "Bananas are yellow and grow in bunches.",
            "The kiwi is a fuzzy brown fruit; kiwi kiwi.",
        ],
    )
    add_file(conn, "alice", "f_cars", "cars.md", ["Engines burn fuel.", "Tyres wear out."])
    add_file(conn, "bob", "f_bob", "bob.txt", ["Bob's secret kiwi recipe."])
    return conn


# ---- the query -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("kiwi", '"kiwi"'),
        ("What is the KIWI?", '"kiwi"'),
        ('kiwi AND "banana" NOT apple*', '"kiwi" OR "banana" OR "not" OR "apple"'),
        ("NEAR(kiwi banana, 2)", '"near" OR "kiwi" OR "banana" OR "2"'),
        ("text:kiwi ^start -minus +plus", '"text" OR "kiwi" OR "start" OR "minus" OR "plus"'),
        ("snake_case and kiwi kiwi", '"snake" OR "case" OR "kiwi"'),
        ("café naïve 東京", '"café" OR "naïve" OR "東京"'),
        ("what is it", '"what" OR "is" OR "it"'),
    ],
)
def test_fts_query_quotes_words_and_drops_syntax(text, query):
    assert fts_query(text) == query


@pytest.mark.parametrize("text", ["", "   ", "?!", '"" () * : ^ - + _', "\x00\n\t"])
def test_fts_query_without_words_is_none(text):
    assert fts_query(text) is None


def test_fts_query_is_bounded():
    assert fts_query(" ".join(f"w{i}" for i in range(1000))).count(" OR ") == 63


# ---- files and their texts ------------------------------------------------------------------


def test_files_for_user_in_the_given_order_with_lengths_not_texts(library):
    files = files_for_user(library, "alice", ["f_cars", "f_fruit", "f_cars"])
    assert [f.id for f in files] == ["f_cars", "f_fruit"]
    assert files[0] == FileInfo("f_cars", "cars.md", len("Engines burn fuel.\n\nTyres wear out."))
    assert files_for_user(library, "alice", []) == []


def test_files_for_user_counts_characters_not_bytes(conn):
    add_file(conn, "alice", "f_utf8", "ü.txt", ["café 東京"])
    assert files_for_user(conn, "alice", ["f_utf8"])[0].chars == 7


def test_file_text_reads_only_the_prefix_asked_for(library):
    whole = "Engines burn fuel.\n\nTyres wear out."
    assert file_text(library, "alice", "f_cars", 7) == "Engines"
    assert file_text(library, "alice", "f_cars", 10_000) == whole
    assert file_text(library, "alice", "f_cars", 0) == ""


@pytest.mark.parametrize("file_id", ["f_bob", "nope"])
def test_file_text_404s_on_missing_or_foreign_ids(library, file_id):
    with pytest.raises(APIError) as caught:
        file_text(library, "alice", file_id, 100)
    assert (caught.value.status, caught.value.code) == (404, "file_not_found")


@pytest.mark.parametrize("ids", [["f_bob"], ["f_fruit", "f_bob"], ["nope"], ["f_fruit", "nope"]])
def test_files_for_user_404s_on_missing_or_foreign_ids(library, ids):
    with pytest.raises(APIError) as caught:
        files_for_user(library, "alice", ids)
    assert caught.value.status == 404
    assert caught.value.param == "file_ids"
    assert caught.value.code == "file_not_found"


# ---- chunks ----------------------------------------------------------------------------------


def test_best_chunks_rank_by_bm25_higher_is_better(library):
    chunks = best_chunks(library, "alice", ["f_fruit", "f_cars"], "Tell me about the kiwi", 5)
    assert [(c.file_id, c.ordinal) for c in chunks] == [("f_fruit", 2)]
    assert chunks[0].file_name == "fruit.txt"
    assert chunks[0].score > 0

    several = best_chunks(library, "alice", ["f_fruit", "f_cars"], "kiwi grow fuel", 5)
    assert {(c.file_id, c.ordinal) for c in several} == {
        ("f_fruit", 0),
        ("f_fruit", 1),
        ("f_fruit", 2),
        ("f_cars", 0),
    }
    scores = [c.score for c in several]
    assert scores == sorted(scores, reverse=True)
    assert isinstance(several[0], Chunk)


def test_best_chunks_respect_the_limit_and_the_file_list(library):
    assert len(best_chunks(library, "alice", ["f_fruit"], "grow kiwi", 2)) == 2
    assert best_chunks(library, "alice", ["f_cars"], "kiwi engines", 5)[0].file_id == "f_cars"
    assert all(c.file_id == "f_cars" for c in best_chunks(library, "alice", ["f_cars"], "kiwi", 5))
    assert best_chunks(library, "alice", ["f_fruit"], "kiwi", 0) == []
    assert best_chunks(library, "alice", [], "kiwi", 5) == []


def test_best_chunks_never_reach_another_users_file(library):
    with pytest.raises(APIError) as caught:
        best_chunks(library, "alice", ["f_fruit", "f_bob"], "secret recipe", 5)
    assert caught.value.status == 404
    assert caught.value.code == "file_not_found"
    # Bob's chunk matches "secret", but is not among Alice's files.
    assert all(
        c.file_id == "f_fruit" for c in best_chunks(library, "alice", ["f_fruit"], "secret kiwi", 5)
    )


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'kiwi"',
        "kiwi AND",
        "OR OR OR",
        "NOT",
        "NEAR(",
        "*",
        "kiwi*",
        "(kiwi",
        "col:kiwi",
        "{kiwi banana}",
        "^kiwi",
        "kiwi + - banana",
        "'; DROP TABLE files; --",
        "\x00kiwi",
        "a" * 10_000,
    ],
)
def test_hostile_queries_never_raise(library, query):
    chunks = best_chunks(library, "alice", ["f_fruit", "f_cars"], query, 3)
    assert 0 < len(chunks) <= 3


def test_no_usable_words_fall_back_to_opening_chunks_round_robin(library):
    chunks = best_chunks(library, "alice", ["f_cars", "f_fruit"], "?? !!", 3)
    assert [(c.file_id, c.ordinal) for c in chunks] == [
        ("f_cars", 0),
        ("f_fruit", 0),
        ("f_cars", 1),
    ]
    assert all(c.score == 0.0 for c in chunks)


def test_words_that_match_nothing_fall_back_too(library):
    chunks = best_chunks(library, "alice", ["f_fruit"], "xylophone", 2)
    assert [(c.file_id, c.ordinal) for c in chunks] == [("f_fruit", 0), ("f_fruit", 1)]
