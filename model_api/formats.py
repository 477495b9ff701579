"""OpenAI's response shapes for chat and text completions, streamed and whole."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def usage_dict(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> dict[str, Any]:
    """OpenAI's usage object; `prompt_tokens_details.cached_tokens` are the prompt tokens the
    prefix cache gave (as OpenAI and vLLM report them)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


@dataclass
class ChatFormat:
    """chat.completion and chat.completion.chunk objects for one response."""

    model: str
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def first_chunk(self) -> dict[str, Any] | None:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def text_chunk(self, text: str) -> dict[str, Any]:
        return self._chunk({"content": text}, None)

    def final_chunk(self, finish_reason: str) -> dict[str, Any]:
        return self._chunk({}, finish_reason)

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }

    def whole(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
        }


@dataclass
class CompletionFormat:
    """text_completion objects (streamed chunks share the object name, as OpenAI's do)."""

    model: str
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _object(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}

    def first_chunk(self) -> dict[str, Any] | None:
        return None  # text completions have no role chunk

    def text_chunk(self, text: str) -> dict[str, Any]:
        return self._with_null_usage(self._object([self._choice(text, None)]))

    def final_chunk(self, finish_reason: str) -> dict[str, Any]:
        return self._with_null_usage(self._object([self._choice("", finish_reason)]))

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {**self._object([]), "usage": usage}

    def whole(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        return {**self._object([self._choice(text, finish_reason)]), "usage": usage}

    def _with_null_usage(self, chunk: dict[str, Any]) -> dict[str, Any]:
        if self.include_usage:
            chunk["usage"] = None
        return chunk


OutputFormat = ChatFormat | CompletionFormat
