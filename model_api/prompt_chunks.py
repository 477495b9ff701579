"""Where a prompt is cut into prefill chunks, from its tokens alone.

A chunk ends after PREFILL_CHUNK_TOKENS tokens, or earlier, right before a token of the
chat template's own (`<|im_start|>`, `<|im_end|>`, …) once the chunk holds at least
MIN_CHUNK_TOKENS: chunks then end where messages end. Two reasons:

- The prefix cache keeps whole chunks (prefix_cache.py). The next turn of a conversation
  is the last prompt, its answer and a question; with cuts at message ends, everything up
  to the last prompt's question is whole chunks and only the answer and the new question
  are prefilled again (cut every 256 tokens, on average 128 tokens of the last prompt were
  recomputed too, each attending over the whole document).
- The cuts are a function of the tokens before them, so a prompt resumed from the cache
  at a chunk end is cut where it is cut without the cache: every chunk gets the same bits,
  and the answer is the same (a cut changes the arithmetic).

MIN_CHUNK_TOKENS keeps short messages together: each chunk of one prompt is its own
forward, one after the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

MIN_CHUNK_TOKENS = 32


@dataclass(frozen=True)
class ChunkPlan:
    """Cuts prompts into chunks of at most `max_tokens`, at `boundary_ids` when it can."""

    max_tokens: int
    boundary_ids: frozenset[int] = frozenset()
    min_tokens: int = MIN_CHUNK_TOKENS

    def next_end(self, prompt: Sequence[int], start: int) -> int:
        """The end of the chunk that starts at `start` (a chunk end, or 0)."""
        stop = min(start + self.max_tokens, len(prompt))
        if self.boundary_ids:
            # Never before half a chunk: PREFILL_CHUNK_TOKENS may be set below min_tokens.
            least = min(self.min_tokens, self.max_tokens // 2)
            for index in range(start + least, stop):
                if prompt[index] in self.boundary_ids:
                    return index
        return stop

    def whole_chunks(self, prompt: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
        """(start, end) of each chunk of `prompt` that ends at or before `limit` where a
        longer prompt with the same start would end it too (not merely where this prompt
        stops): the chunks the prefix cache may keep and give."""
        start = 0
        while start < limit:
            end = self.next_end(prompt, start)
            whole = end - start == self.max_tokens or end < len(prompt)
            if end > limit or not whole:
                return
            yield start, end
            start = end


def template_token_ids(tokenizer: Any) -> frozenset[int]:
    """The special and added tokens the chat template writes around messages (the ids a
    rendered three-message conversation holds that are not text); none without a
    template."""
    if not getattr(tokenizer, "chat_template", None):
        return frozenset()
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that wants other roles: chunks are cut by length only
        return frozenset()
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    control = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    return frozenset(i for i in ids if i in control)
