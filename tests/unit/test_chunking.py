"""Chunking: sizes, boundaries, overlap, and that no text is lost."""

import itertools
import re

import pytest

from app_service.chunking import CHARS_PER_TOKEN, chunk_text, estimate_tokens


def words_of(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def test_short_text_is_one_stripped_chunk():
    assert chunk_text("  hello world \n", 100) == ["hello world"]


def test_blank_text_has_no_chunks():
    assert chunk_text("", 100) == []
    assert chunk_text(" \n\t \n", 100) == []


def test_estimate_tokens_is_about_four_chars_each():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


def test_chunks_stay_within_the_size_and_cover_every_word():
    text = " ".join(f"word{i}." if i % 7 == 0 else f"word{i}" for i in range(3000))
    chunks = chunk_text(text, 50)
    assert len(chunks) > 10
    assert all(len(c) <= 50 * CHARS_PER_TOKEN for c in chunks)
    seen = set()
    for chunk in chunks:
        seen.update(words_of(chunk))
    assert seen == set(words_of(text))
    # No chunk starts or ends in the middle of a word.
    all_words = set(words_of(text))
    for chunk in chunks:
        assert words_of(chunk)[0] in all_words
        assert words_of(chunk)[-1] in all_words


def test_paragraph_boundaries_are_preferred():
    paragraphs = [f"Paragraph {i} " + "lorem ipsum dolor. " * 8 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    chunks = chunk_text(text, 100, overlap_tokens=0)
    # Every chunk ends where a paragraph ends.
    assert all(c.endswith("dolor.") for c in chunks)
    assert all(c.startswith("Paragraph") for c in chunks)


def test_sentence_boundaries_are_used_when_there_are_no_paragraphs():
    text = " ".join(f"Sentence number {i} says something." for i in range(200))
    chunks = chunk_text(text, 40, overlap_tokens=0)
    assert len(chunks) > 5
    assert all(c.endswith("something.") for c in chunks[:-1])
    assert all(c.startswith("Sentence") for c in chunks)


def test_consecutive_chunks_overlap():
    text = " ".join(f"w{i}" for i in range(2000))
    chunks = chunk_text(text, 50, overlap_tokens=10)
    for before, after in itertools.pairwise(chunks):
        shared = set(words_of(before)) & set(words_of(after))
        assert shared, (before[-60:], after[:60])
        # …but only a little: about 10 tokens of 50.
        assert len(" ".join(sorted(shared))) < 20 * CHARS_PER_TOKEN


def test_no_overlap_means_disjoint_chunks_in_order():
    text = " ".join(f"w{i}" for i in range(2000))
    chunks = chunk_text(text, 50, overlap_tokens=0)
    assert words_of(" ".join(chunks)) == words_of(text)


def test_text_without_any_whitespace_is_cut_hard_and_kept_whole():
    text = "x" * 1000
    chunks = chunk_text(text, 25, overlap_tokens=0)
    assert [len(c) for c in chunks] == [100] * 10
    assert "".join(chunks) == text
    # With overlap there is no word start to move to: still progresses and ends.
    overlapped = chunk_text(text, 25)
    assert overlapped[0] == "x" * 100
    assert sum(len(c) for c in overlapped) >= 1000


def test_zero_tokens_is_refused():
    with pytest.raises(ValueError):
        chunk_text("abc", 0)
