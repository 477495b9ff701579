"""Incremental detokenization: token ids in, text deltas out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Prompt tokens decoded ahead of the first generated one, as vLLM does (its
# INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET): enough for any token's text to depend on
# what precedes it.
PROMPT_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Turns one token at a time into text without splitting multi-byte characters.

    Decoding each token alone breaks characters that span tokens and drops spaces that
    depend on the previous token, so each step decodes a short window and emits what it
    adds to the text already emitted (the technique vLLM and TGI use).

    The window starts on the prompt's last tokens: the first generated token is decoded
    after them, not alone, so what it adds to the prompt's text is exactly its delta.
    Otherwise a SentencePiece tokenizer drops the space that starts a sequence, and the
    continuation of a partial answer (continue_final_message) would lose the space at
    the seam.
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prompt_ids[max(0, len(prompt_ids) - PROMPT_CONTEXT_TOKENS) :])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        text = self._decode(self.ids[self.prefix_offset :])
        # An incomplete UTF-8 sequence decodes to U+FFFD: wait for the next token.
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return text[len(prefix) :]
        return ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True) if ids else ""
