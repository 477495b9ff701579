"""ModelService's checks with a stand-in model: chat template, model name, context budget."""

from types import SimpleNamespace

import pytest
import torch

from chatstack.errors import APIError
from model_api.engine import GenerationHandle
from model_api.loading import LoadedModel
from model_api.protocol import ChatCompletionRequest, ChatMessage, TokenizeRequest
from model_api.serving import ModelService
from model_api.settings import Settings


class WordTokenizer:
    """One token per character; a template that wraps each turn."""

    chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"

    def __call__(self, text, add_special_tokens=True):
        return SimpleNamespace(input_ids=[ord(c) % 100 for c in text])

    def apply_chat_template(self, turns, tokenize, add_generation_prompt):
        text = "".join(f"<{t['role']}>{t['content']}" for t in turns)
        return text + ("<assistant>" if add_generation_prompt else "")


class RecordingEngine:
    alive = True

    def __init__(self):
        self.submitted = []

    def submit(self, prompt_ids, params):
        self.submitted.append((prompt_ids, params))
        return GenerationHandle(prompt_ids, params)

    def stats(self):
        return {"running": 0, "waiting": 0}


def service(chat_template=True, max_model_len=100):
    tokenizer = WordTokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    loaded = LoadedModel(
        tokenizer=tokenizer,
        model=None,
        device=torch.device("cpu"),
        dtype=torch.float32,
        max_model_len=max_model_len,
        vocab_size=100,
        eos_token_ids=frozenset({2}),
    )
    settings = Settings(model_path="/x", model_name="m", models_dir=None)
    return ModelService(settings, loaded, RecordingEngine())


def chat_request(content="hello", **fields):
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}], **fields}
    )


def test_chat_goes_through_the_template_and_defaults():
    svc = service()
    svc.start_chat(chat_request())
    prompt_ids, params = svc.engine.submitted[0]
    assert len(prompt_ids) == len("<user>hello<assistant>")
    assert params.temperature == 1.0 and params.top_p == 1.0
    assert params.max_tokens == 100 - len(prompt_ids)  # unset: what the context leaves


def test_developer_role_is_a_system_turn():
    svc = service()
    ids = svc.chat_prompt_ids([ChatMessage(role="developer", content="x")], False)
    assert len(ids) == len("<system>x")


def test_a_model_without_chat_template_refuses_chat_clearly():
    with pytest.raises(APIError) as caught:
        service(chat_template=False).start_chat(chat_request())
    assert caught.value.status == 400
    assert caught.value.code == "chat_template_missing"
    assert "/v1/completions" in caught.value.message


def test_prompt_plus_max_tokens_over_the_context_is_refused_with_numbers():
    with pytest.raises(APIError) as caught:
        service(max_model_len=30).start_chat(chat_request(max_tokens=20))
    err = caught.value
    assert (err.status, err.code, err.param) == (400, "context_length_exceeded", "messages")
    assert "30 tokens" in err.message and "20 in the completion" in err.message


def test_a_prompt_that_fills_the_context_is_refused_even_without_max_tokens():
    with pytest.raises(APIError):
        service(max_model_len=10).start_chat(chat_request("a long message"))


def test_unknown_model_is_404():
    with pytest.raises(APIError) as caught:
        service().start_chat(
            ChatCompletionRequest.model_validate(
                {"model": "other", "messages": [{"role": "user", "content": "x"}]}
            )
        )
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")


def test_tokenize_needs_exactly_one_input():
    svc = service()
    assert svc.tokenize(TokenizeRequest(model="m", prompt="abc"))["count"] == 3
    with pytest.raises(APIError):
        svc.tokenize(TokenizeRequest(model="m"))
