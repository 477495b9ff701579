"""Split extracted text into overlapping chunks of about N tokens for FTS5 retrieval.

The app service has no tokenizer, so sizes are estimated at ~4 characters per token; the
chat code counts real tokens with the model API's `/tokenize` before it sends anything.
"""

from __future__ import annotations

import math
import re

CHARS_PER_TOKEN = 4
# Fraction of a chunk repeated at the start of the next, so a sentence cut at a boundary
# is still found whole in one of the two.
OVERLAP_FRACTION = 0.1

# Break points, best first: a paragraph, a line, a sentence end, any whitespace.
_BREAKS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n\s*"),
    re.compile(r"(?<=[.!?;:。！？])[\"')\]]*\s+"),
    re.compile(r"\s+"),
)


def estimate_tokens(text: str) -> int:
    """A rough token count: ~4 characters per token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def chunk_text(text: str, chunk_tokens: int, overlap_tokens: int | None = None) -> list[str]:
    """`text` → chunks of at most ~`chunk_tokens` tokens, cut at the best boundary available.

    Consecutive chunks share about `overlap_tokens` (default 10%) of text. Chunks are
    stripped; whitespace-only text gives no chunks.
    """
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be at least 1")
    max_chars = chunk_tokens * CHARS_PER_TOKEN
    if overlap_tokens is None:
        overlap_tokens = int(chunk_tokens * OVERLAP_FRACTION)
    overlap_chars = min(max(overlap_tokens, 0) * CHARS_PER_TOKEN, max_chars // 2)

    chunks: list[str] = []
    start = _skip_space(text, 0)
    while start < len(text):
        if len(text) - start <= max_chars:
            end = len(text)
        else:
            end = start + _break_offset(text[start : start + max_chars])
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        start = _next_start(text, start, end, overlap_chars)
    return chunks


def _break_offset(window: str) -> int:
    """Where to cut `window` (a full-size chunk): the end of the best break point found
    in its second half, or its end when there is none."""
    half = len(window) // 2
    for pattern in _BREAKS:
        last = None
        for match in pattern.finditer(window, half):
            last = match
        if last is not None:
            # Cut before the break's whitespace: the next chunk starts after it.
            return last.start() if last.start() > half else last.end()
    return len(window)


def _next_start(text: str, start: int, end: int, overlap_chars: int) -> int:
    """The next chunk's start: `overlap_chars` back from `end`, moved forward to a word
    start so the overlap never begins mid-word; always past `start`."""
    if overlap_chars <= 0:
        return _skip_space(text, end)
    back = max(end - overlap_chars, start + 1)
    if back > 0 and not text[back - 1].isspace():
        space = re.compile(r"\s+").search(text, back, end)
        back = space.end() if space else end
    return _skip_space(text, back)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
