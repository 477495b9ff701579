"""Building the prompt for a chat turn within the model's context window.

Order of priority: the system prompt and the user's new message always; then the attached
files (whole when they fit, else their best chunks for the question); then as much recent
history as the remaining budget allows. Tokens are counted with the model API's own
tokenizer and chat template (/tokenize), falling back to an estimate for engines without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app_service.retrieval import Chunk, FileText
from chatstack.errors import APIError

# What one message adds to a prompt beyond its text (role markers, separators).
MESSAGE_OVERHEAD_TOKENS = 8
FALLBACK_CONTEXT_TOKENS = 4096
DOCUMENTS_PREAMBLE = (
    "Answer using the documents below when they are relevant, and name the file you used."
)


class TokenCounter:
    """Counts tokens through the upstream's /tokenize; estimates if it has none."""

    def __init__(self, tokenize: Callable[[dict[str, Any]], dict[str, Any]], model: str) -> None:
        self.tokenize = tokenize
        self.model = model
        self.exact = True
        self.max_model_len = FALLBACK_CONTEXT_TOKENS

    def messages(self, messages: list[dict[str, str]]) -> int:
        return self._count({"model": self.model, "messages": messages}, messages)

    def text(self, text: str) -> int:
        return self._count({"model": self.model, "prompt": text}, [{"content": text}])

    def _count(self, body: dict[str, Any], messages: list[dict[str, str]]) -> int:
        if self.exact:
            try:
                reply = self.tokenize(body)
                self.max_model_len = int(reply.get("max_model_len") or self.max_model_len)
                return int(reply["count"])
            except (APIError, KeyError, TypeError, ValueError):
                self.exact = False  # an engine without /tokenize: estimate from here on
        chars = sum(len(m.get("content", "")) for m in messages)
        return chars // 3 + MESSAGE_OVERHEAD_TOKENS * len(messages)


@dataclass
class Context:
    messages: list[dict[str, str]]
    sources: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0


@dataclass(frozen=True)
class HistoryTurn:
    role: str
    content: str


def build_context(
    counter: TokenCounter,
    *,
    system_prompt: str,
    user_text: str,
    history: Sequence[HistoryTurn],
    files: Sequence[FileText],
    find_chunks: Callable[[str, int], list[Chunk]],
    max_tokens: int,
) -> Context:
    """The messages to send: everything essential, then files, then recent history."""
    base = _assemble(system_prompt, "", [], user_text)
    base_tokens = counter.messages(base)  # also learns max_model_len
    budget = counter.max_model_len - max_tokens
    if base_tokens > budget:
        raise APIError(
            400,
            f"Your message and system prompt take {base_tokens} tokens, but only {budget} fit "
            f"in the model's context of {counter.max_model_len} after reserving {max_tokens} "
            "for the answer. Shorten the message or lower max tokens.",
            code="context_length_exceeded",
        )
    room = budget - base_tokens
    documents, sources, used = _documents(counter, files, find_chunks, user_text, room)
    room -= used
    kept = _recent_history(counter, history, room)
    messages = _assemble(system_prompt, documents, kept, user_text)
    total = counter.messages(messages)
    while total > budget and kept:  # estimates were short: drop the oldest turns
        kept = kept[1:]
        messages = _assemble(system_prompt, documents, kept, user_text)
        total = counter.messages(messages)
    return Context(messages=messages, sources=sources, prompt_tokens=total)


def _assemble(
    system_prompt: str, documents: str, history: Sequence[HistoryTurn], user_text: str
) -> list[dict[str, str]]:
    system = "\n\n".join(part for part in (system_prompt.strip(), documents) if part)
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": turn.role, "content": turn.content} for turn in history]
    messages.append({"role": "user", "content": user_text})
    return messages


def _documents(
    counter: TokenCounter,
    files: Sequence[FileText],
    find_chunks: Callable[[str, int], list[Chunk]],
    question: str,
    room: int,
) -> tuple[str, list[dict[str, Any]], int]:
    """Whole files while they fit (smallest first), then the best chunks of the rest."""
    if not files or room <= 0:
        return "", [], 0
    sections: list[str] = []
    sources: list[dict[str, Any]] = []
    used = counter.text(DOCUMENTS_PREAMBLE)
    chunked: list[str] = []
    for file in sorted(files, key=lambda f: len(f.text)):
        section = f"### {file.name}\n{file.text.strip()}"
        cost = counter.text(section) + 2
        if used + cost <= room:
            sections.append(section)
            sources.append({"file_id": file.id, "file_name": file.name, "ordinal": None})
            used += cost
        else:
            chunked.append(file.id)
    if chunked:
        for chunk in find_chunks(question, 40):
            if chunk.file_id not in chunked:
                continue
            section = f"### {chunk.file_name} (part {chunk.ordinal + 1})\n{chunk.text.strip()}"
            cost = counter.text(section) + 2
            if used + cost > room:
                continue  # a shorter, lower-ranked chunk may still fit
            sections.append(section)
            sources.append(
                {"file_id": chunk.file_id, "file_name": chunk.file_name, "ordinal": chunk.ordinal}
            )
            used += cost
    if not sections:
        return "", [], 0
    return "\n\n".join([DOCUMENTS_PREAMBLE, *sections]), sources, used


def _recent_history(
    counter: TokenCounter, history: Sequence[HistoryTurn], room: int
) -> list[HistoryTurn]:
    kept: list[HistoryTurn] = []
    for turn in reversed(history):
        cost = counter.text(turn.content) + MESSAGE_OVERHEAD_TOKENS
        if cost > room:
            break
        kept.insert(0, turn)
        room -= cost
    # A history that starts with the assistant reads oddly to a model: start at a user turn.
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept
