"""Prompt building within the token budget, with a counter that counts characters."""

import pytest

from app_service.context import HistoryTurn, TokenCounter, build_context
from app_service.retrieval import Chunk, FileText
from chatstack.errors import APIError


def char_counter(max_model_len: int = 1000) -> TokenCounter:
    """One token per character plus 4 per message: easy to reason about."""

    def tokenize(body):
        if "messages" in body:
            count = sum(len(m["content"]) + 4 for m in body["messages"])
        else:
            count = len(body["prompt"])
        return {"count": count, "max_model_len": max_model_len}

    return TokenCounter(tokenize, "m")


def build(counter=None, **kw):
    args = dict(
        system_prompt="",
        user_text="question?",
        history=[],
        files=[],
        find_chunks=lambda q, n: [],
        max_tokens=100,
    )
    args.update(kw)
    return build_context(counter or char_counter(), **args)


def test_just_the_question():
    ctx = build()
    assert ctx.messages == [{"role": "user", "content": "question?"}]
    assert ctx.sources == []


def test_system_prompt_comes_first():
    ctx = build(system_prompt="Be brief.")
    assert ctx.messages[0] == {"role": "system", "content": "Be brief."}


def test_recent_history_that_fits_is_kept_oldest_dropped():
    history = [
        HistoryTurn("user", "a" * 300),
        HistoryTurn("assistant", "b" * 300),
        HistoryTurn("user", "c" * 200),
        HistoryTurn("assistant", "d" * 200),
    ]
    ctx = build(history=history)
    contents = [m["content"][0] for m in ctx.messages]
    assert contents == ["c", "d", "q"]
    assert ctx.prompt_tokens <= 1000 - 100


def test_history_never_starts_with_an_assistant_turn():
    history = [HistoryTurn("user", "a" * 800), HistoryTurn("assistant", "b" * 100)]
    ctx = build(history=history)
    assert [m["role"] for m in ctx.messages] == ["user"]


def test_a_small_file_is_included_whole_and_cited():
    files = [FileText("f1", "notes.txt", "The code word is PINEAPPLE.")]
    ctx = build(files=files)
    system = ctx.messages[0]["content"]
    assert "### notes.txt" in system and "PINEAPPLE" in system
    assert ctx.sources == [{"file_id": "f1", "file_name": "notes.txt", "ordinal": None}]


def test_a_big_file_contributes_its_best_chunks_in_rank_order():
    files = [FileText("f1", "big.txt", "x" * 5000)]
    chunks = [
        Chunk("f1", "big.txt", 7, "relevant " * 20, 2.0),
        Chunk("f1", "big.txt", 2, "y" * 2000, 1.5),  # too big to fit: skipped
        Chunk("f1", "big.txt", 3, "also relevant", 1.0),
    ]
    ctx = build(files=files, find_chunks=lambda q, n: chunks)
    assert [s["ordinal"] for s in ctx.sources] == [7, 3]
    system = ctx.messages[0]["content"]
    assert system.index("(part 8)") < system.index("(part 4)")
    assert ctx.prompt_tokens <= 900


def test_files_take_precedence_over_history():
    files = [FileText("f1", "doc.txt", "d" * 500)]
    history = [HistoryTurn("user", "h" * 300), HistoryTurn("assistant", "i" * 10)]
    ctx = build(files=files, history=history)
    assert ctx.sources and len(ctx.messages) == 2  # system (with file) + question only


def test_a_message_that_cannot_fit_is_refused_clearly():
    with pytest.raises(APIError) as caught:
        build(user_text="z" * 950)
    assert caught.value.code == "context_length_exceeded"
    assert "1000" in caught.value.message


def test_without_tokenize_the_counter_estimates():
    def missing(body):
        raise APIError(404, "no /tokenize here")

    counter = TokenCounter(missing, "m")
    assert counter.text("abcdef") == 2 + 8
    assert counter.exact is False
    assert build(counter).messages[-1]["content"] == "question?"
