"""The OpenAI operations on one loaded model, independent of Flask.

Requests arrive validated (protocol.py); this module turns them into token ids and
sampling parameters, hands them to the engine, and shapes what comes back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from jinja2 import TemplateError

from chatstack.errors import APIError
from chatstack.sse import DONE, KEEPALIVE, sse_data
from model_api.engine import (
    Delta,
    Engine,
    EngineBusy,
    Event,
    Failed,
    Finished,
    GenerationHandle,
)
from model_api.formats import ChatFormat, CompletionFormat, OutputFormat, usage_dict
from model_api.loading import LoadedModel
from model_api.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    SamplingFields,
    TokenizeRequest,
)
from model_api.sampling import SamplingParams
from model_api.settings import Settings

# What a served model can be asked for (an extra field of /v1/models that the official
# clients ignore): a program can check before it sends a request this server would refuse.
CAPABILITIES = {
    "chat": True,
    "completions": True,
    "embeddings": False,
    "tools": False,
    "structured_output": False,
    "logprobs": False,
}


class ModelService:
    """Chat, completions, tokenize and the model list for one model behind one engine."""

    def __init__(self, settings: Settings, loaded: LoadedModel, engine: Engine) -> None:
        self.settings = settings
        self.loaded = loaded
        self.engine = engine
        self.created = int(time.time())

    # ---- requests → engine -------------------------------------------------------------

    def start_chat(self, req: ChatCompletionRequest) -> tuple[GenerationHandle, ChatFormat]:
        self._check(req)
        req.check_prompt_end(req.messages)
        prompt_ids = self.chat_prompt_ids(
            req.messages, req.add_generation_prompt, req.continue_final_message
        )
        params = self._sampling_params(req, prompt_ids, req.token_limit(), "messages")
        fmt = ChatFormat(model=self.settings.model_name, include_usage=req.include_usage())
        return self._submit(prompt_ids, params), fmt

    def start_completion(self, req: CompletionRequest) -> tuple[GenerationHandle, CompletionFormat]:
        self._check(req)
        prompt = req.single_prompt()
        prompt_ids = self.text_prompt_ids(prompt) if isinstance(prompt, str) else prompt
        if any(not 0 <= t < self.loaded.vocab_size for t in prompt_ids):
            raise APIError(400, "prompt holds token ids outside the vocabulary", param="prompt")
        params = self._sampling_params(req, prompt_ids, req.max_tokens, "prompt")
        fmt = CompletionFormat(model=self.settings.model_name, include_usage=req.include_usage())
        return self._submit(prompt_ids, params), fmt

    def tokenize(self, req: TokenizeRequest) -> dict[str, Any]:
        self._check_model(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise APIError(400, "Give exactly one of 'prompt' and 'messages'.", param="prompt")
        req.check_prompt_end(req.messages)
        if req.messages is not None:
            ids = self.chat_prompt_ids(
                req.messages, req.add_generation_prompt, req.continue_final_message
            )
        else:
            ids = self.text_prompt_ids(req.prompt or "")
        return {"count": len(ids), "max_model_len": self.loaded.max_model_len, "tokens": ids}

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.settings.model_name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "chatstack",
                    "max_model_len": self.loaded.max_model_len,
                    "capabilities": CAPABILITIES,
                }
            ],
        }

    def _submit(self, prompt_ids: list[int], params: SamplingParams) -> GenerationHandle:
        try:
            return self.engine.submit(prompt_ids, params)
        except EngineBusy as exc:
            raise APIError(
                429,
                f"The server is busy ({exc}); retry in a few seconds.",
                code="server_busy",
                headers={"Retry-After": "2"},
            ) from exc

    # ---- prompts ---------------------------------------------------------------------

    def chat_prompt_ids(
        self,
        messages: list[ChatMessage],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> list[int]:
        """The templated prompt; with continue_final_message the final (assistant) message
        is left open, without its end of turn, so that the model continues it."""
        if not self.loaded.has_chat_template:
            raise APIError(
                400,
                "This model has no chat template, so it cannot be used for chat; "
                "use /v1/completions with a plain prompt instead.",
                param="messages",
                code="chat_template_missing",
            )
        turns = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in messages
        ]
        # Control tokens are the template's alone: written inside a message (by a user, or
        # in an uploaded document) they are encoded as plain text, so content cannot forge
        # a turn. Content without them encodes exactly as the rendered text always did.
        try:
            ids = self.loaded.tokenizer.apply_chat_template(
                turns,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=continue_final_message,
                tokenize=True,
                sanitize_control_tokens=True,
                return_dict=False,
            )
        except (ValueError, TemplateError) as exc:
            if not continue_final_message:
                raise
            raise continue_unsupported(exc) from None
        return list(ids)

    def text_prompt_ids(self, text: str) -> list[int]:
        """A raw prompt is the caller's own template: its control tokens are parsed."""
        return list(self.loaded.tokenizer(text).input_ids)

    # ---- checks ----------------------------------------------------------------------

    def _check(self, req: SamplingFields) -> None:
        self._check_model(req.model)
        req.check_supported()

    def _check_model(self, model: str) -> None:
        if model != self.settings.model_name:
            raise APIError(
                404,
                f"The model '{model}' does not exist. This server serves "
                f"'{self.settings.model_name}'.",
                param="model",
                code="model_not_found",
            )

    def _sampling_params(
        self, req: SamplingFields, prompt_ids: list[int], max_tokens: int | None, prompt_param: str
    ) -> SamplingParams:
        limit = self.loaded.max_model_len
        room = limit - len(prompt_ids)
        if room <= 0 or (max_tokens is not None and max_tokens > room):
            asked = len(prompt_ids) + (max_tokens or 0)
            raise APIError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you "
                f"requested {asked} tokens ({len(prompt_ids)} in the {prompt_param}, "
                f"{max_tokens or 0} in the completion). Please reduce the length of the "
                f"{prompt_param} or completion.",
                param=prompt_param,
                code="context_length_exceeded",
            )
        return SamplingParams(
            max_tokens=max_tokens or room,  # unset: whatever the context leaves, as vLLM does
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed,
            stop=req.stop_sequences(),
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )


def continue_unsupported(exc: Exception) -> APIError:
    """The template cannot leave the final message open: transformers found that it does
    not write the message's text as it is (it trims, rewrites or drops it), or the
    template itself refused the conversation."""
    # transformers' message goes on to quote the whole rendered chat: its first sentence.
    reason = re.split(r"(?<=[.!?])\s", str(exc).strip(), maxsplit=1)[0][:300]
    return APIError(
        400,
        "This model's chat template cannot continue the final assistant message "
        f"(continue_final_message): {reason or type(exc).__name__}",
        param="messages",
        code="continue_unsupported",
    )


# ---- engine events → responses ---------------------------------------------------------


class GenerationObserver(Protocol):
    """What the request thread tells about its generation (model_api/metrics.py counts it)."""

    def seen(self, event: Event) -> None: ...
    def close(self) -> None: ...


class Unobserved:
    """An observer that does nothing: for callers that count nothing."""

    def seen(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


def stream_sse(
    handle: GenerationHandle,
    fmt: OutputFormat,
    keepalive: float,
    observer: GenerationObserver | None = None,
) -> Iterator[str]:
    """SSE events for one generation; closing the generator cancels the generation."""
    observer = observer or Unobserved()
    try:
        first = fmt.first_chunk()
        if first is not None:
            yield sse_data(first)
        for event in handle.stream(keepalive):
            if event is None:
                yield KEEPALIVE  # also how a vanished client is noticed while queued
                continue
            observer.seen(event)
            if isinstance(event, Delta):
                yield sse_data(fmt.text_chunk(event.text))
            elif isinstance(event, Finished):
                yield sse_data(fmt.final_chunk(event.reason))
                if fmt.include_usage:
                    usage = usage_dict(
                        event.prompt_tokens, event.completion_tokens, event.cached_tokens
                    )
                    yield sse_data(fmt.usage_chunk(usage))
            elif isinstance(event, Failed):
                yield sse_data(APIError(500, event.message, code="generation_failed").body())
        yield DONE
    finally:
        handle.cancel()
        observer.close()


def collect_response(
    handle: GenerationHandle,
    fmt: OutputFormat,
    client_gone: Callable[[], bool],
    poll_seconds: float = 0.5,
    observer: GenerationObserver | None = None,
) -> dict[str, Any]:
    """The whole response; stops generating if the client disconnects while waiting."""
    observer = observer or Unobserved()
    parts: list[str] = []
    next_check = time.monotonic() + poll_seconds
    try:
        for event in handle.stream(poll_seconds):
            if time.monotonic() >= next_check:
                if client_gone():
                    raise APIError(499, "Client closed the connection.")
                next_check = time.monotonic() + poll_seconds
            if event is not None:
                observer.seen(event)
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Finished):
                usage = usage_dict(
                    event.prompt_tokens, event.completion_tokens, event.cached_tokens
                )
                return fmt.whole("".join(parts), event.reason, usage)
            elif isinstance(event, Failed):
                raise APIError(500, event.message, code="generation_failed")
        raise APIError(500, "The generation ended without a result.")
    finally:
        handle.cancel()
        observer.close()
