"""Incremental detokenization: token ids in, text deltas out."""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns one token at a time into text without splitting multi-byte characters.

    Decoding each token alone breaks characters that span tokens and drops spaces that
    depend on the previous token, so each step decodes a short window and emits what it
    adds to the text already emitted (the technique vLLM and TGI use).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

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
