"""The per-request ceiling on answer length for the app's users (USER_MAX_TOKENS): one rule
for WebSocket turns and /v1 requests, so no user holds a batch slot for a whole context."""

from __future__ import annotations

from typing import Any

from chatstack.errors import APIError

# The fields an OpenAI request may bound its answer with; the first present one counts.
MAX_TOKENS_FIELDS = ("max_completion_tokens", "max_tokens")


def check_max_tokens(requested: int | None, ceiling: int, param: str = "max_tokens") -> None:
    """A 400 naming the ceiling when `requested` is over it (a ceiling of 0 is none)."""
    if ceiling and requested is not None and requested > ceiling:
        raise APIError(
            400,
            f"'{param}' is {requested}, above this server's limit of {ceiling} tokens per "
            "answer (USER_MAX_TOKENS).",
            param=param,
            code="max_tokens_over_limit",
        )


def bound_request(
    body: dict[str, Any], ceiling: int, fields: tuple[str, ...] = MAX_TOKENS_FIELDS
) -> dict[str, Any]:
    """An OpenAI request body within the ceiling: refused when it asks for more, given the
    ceiling as the last of `fields` when it names no bound (the engine would allow the
    context). `fields`: how the endpoint bounds its answer (Responses: max_output_tokens);
    none for one that generates nothing (embeddings)."""
    if not ceiling or not fields:
        return body
    named = [name for name in fields if body.get(name) is not None]
    for name in named:
        value = body[name]
        if isinstance(value, int) and not isinstance(value, bool):
            check_max_tokens(value, ceiling, name)
    if named:
        return body  # a malformed value is the model API's to refuse, by its own rules
    return {**body, fields[-1]: ceiling}
