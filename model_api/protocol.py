"""OpenAI request models, validated at the edge: wrong types and ranges become 400s.

Fields follow OpenAI's order. Fields OpenAI has but this server does not implement are
declared so that a non-default value is refused by name, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatstack.errors import APIError
from chatstack.validation import parse_body

__all__ = ["parse_body"]  # re-exported: routes parse with the shared helper


class StrictModel(BaseModel):
    # strict: "0.5" is not a number and "true" is not a boolean, as with OpenAI.
    model_config = ConfigDict(extra="forbid", strict=True)


# vLLM's prompt-end flags are not OpenAI's: they stay strict booleans, null refused.
NOT_NULLABLE = frozenset({"add_generation_prompt", "continue_final_message"})


class NullMeansDefault(StrictModel):
    """A request body: an explicit `null` for an optional OpenAI field means its default, as
    OpenAI types them nullable (`"n": null`, `"stream": null`, `"frequency_penalty": null` —
    which LangChain, LiteLLM and the openai SDKs send); a required field stays required."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        optional = {
            name
            for name, field in cls.model_fields.items()
            if not field.is_required() and name not in NOT_NULLABLE
        }
        return {k: v for k, v in data.items() if not (v is None and k in optional)}


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(StrictModel):
    include_usage: bool = False


class ResponseFormat(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


StopField = str | list[str] | None

# vLLM's words, so that a client sees the same refusal from either server.
BOTH_PROMPT_ENDS = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."


class PromptEndFields(StrictModel):
    """vLLM's two extras that decide how the rendered chat ends (OpenAI clients send them
    in `extra_body`): open a new assistant turn, or leave the final assistant message open
    so that the model continues it."""

    add_generation_prompt: bool = True
    continue_final_message: bool = False

    def check_prompt_end(self, messages: list[ChatMessage] | None) -> None:
        """Refuse what vLLM refuses, and a continuation with no assistant text to continue."""
        if self.continue_final_message and self.add_generation_prompt:
            # add_generation_prompt defaults to true: a continuation must turn it off.
            raise APIError(
                400, BOTH_PROMPT_ENDS, param="add_generation_prompt", code="invalid_value"
            )
        if not self.continue_final_message:
            return
        if messages is None:
            raise APIError(
                400,
                "continue_final_message continues the final message of `messages`; "
                "it cannot be used with `prompt`.",
                param="continue_final_message",
                code="invalid_value",
            )
        last = len(messages) - 1
        if messages[last].role != "assistant":
            raise APIError(
                400,
                "continue_final_message needs the last message to be the assistant's partial "
                f"answer, but messages[{last}] has role '{messages[last].role}'.",
                param="messages",
                code="invalid_value",
            )
        if not messages[last].text():
            raise APIError(
                400,
                "continue_final_message needs text to continue, but the final assistant "
                f"message (messages[{last}]) is empty.",
                param="messages",
                code="invalid_value",
            )


class SamplingFields(NullMeansDefault):
    """Fields that /v1/chat/completions and /v1/completions share."""

    model: str
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int = Field(1, ge=1, le=128)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)
    stop: StopField = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4:
            raise APIError(400, "stop: at most 4 stop sequences are allowed", param="stop")
        if any(not s for s in stops):
            raise APIError(400, "stop: stop sequences must not be empty", param="stop")
        return tuple(stops)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def check_supported(self) -> None:
        """Refuse, by name, OpenAI features this server does not implement."""
        if self.n != 1:
            unsupported("n", "only n=1 is supported")
        if self.logit_bias:
            unsupported("logit_bias", "logit_bias is not supported")
        if self.stream_options is not None and not self.stream:
            raise APIError(
                400, "stream_options is only allowed when stream is true", param="stream_options"
            )


class ChatCompletionRequest(SamplingFields, PromptEndFields):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs:
            unsupported("logprobs", "logprobs are not supported")
        if self.top_logprobs is not None:
            unsupported("top_logprobs", "logprobs are not supported")
        for name in ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call"):
            if getattr(self, name) is not None:
                unsupported(name, "tool and function calling are not supported")
        if self.response_format is not None and self.response_format.type != "text":
            unsupported("response_format", "only response_format type 'text' is supported")


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = Field(None, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    max_tokens: int | None = Field(16, ge=1)
    suffix: str | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.best_of not in (None, 1):
            unsupported("best_of", "best_of is not supported")
        if self.echo:
            unsupported("echo", "echo is not supported")
        if self.logprobs is not None:
            unsupported("logprobs", "logprobs are not supported")
        if self.suffix:
            unsupported("suffix", "suffix is not supported")

    def single_prompt(self) -> str | list[int]:
        """The one prompt this request holds (a batch of prompts is refused by name)."""
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                unsupported("prompt", "only one prompt per request is supported")
            prompt = prompt[0]
        if not prompt:
            raise APIError(400, "prompt must not be empty", param="prompt")
        return prompt


class TokenizeRequest(PromptEndFields):
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)


def unsupported(param: str, message: str) -> None:
    raise APIError(400, message, param=param, code="unsupported_parameter")
