"""The model API under real gunicorn, driven by the official openai client."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.integration.conftest import MODEL
from tests.servers import RunningServer

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def chat(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=kwargs.pop("messages", QUESTION), **kwargs
    )


def joined_stream(client: openai.OpenAI, **kwargs) -> tuple[str, list]:
    chunks = list(chat(client, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    # What it can be asked for, in a field the client keeps but does not need.
    capabilities = models.data[0].model_extra["capabilities"]
    assert capabilities["chat"] and capabilities["completions"]
    assert not capabilities["tools"]  # refused by name today: said so up front
    # models.retrieve: one entry, or OpenAI's 404 that says the model is unknown.
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such-model")
    assert missing.value.body["code"] == "model_not_found"


def test_non_streamed_chat_answers(client: openai.OpenAI) -> None:
    reply = chat(client, temperature=0, max_tokens=20)
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_joined_equals_non_streamed_at_temperature_zero(client: openai.OpenAI) -> None:
    whole = chat(client, temperature=0, max_tokens=24)
    text, chunks = joined_stream(client, temperature=0, max_tokens=24)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_usage_counts_match_the_tokenizer(client: openai.OpenAI, http, model_api) -> None:
    counted = http.post(
        model_api.url + "/tokenize", json={"model": MODEL, "messages": QUESTION}
    ).json()
    reply = chat(client, temperature=0, max_tokens=5)
    assert reply.usage.prompt_tokens == counted["count"] == len(counted["tokens"])
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_stream_reports_usage_when_asked(client: openai.OpenAI) -> None:
    _, chunks = joined_stream(
        client, temperature=0, max_tokens=4, stream_options={"include_usage": True}
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_max_tokens_and_max_completion_tokens_end_with_length(client: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        reply = chat(client, temperature=0, **limit)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage.completion_tokens == 3


def test_stop_sequence_ends_the_answer_and_is_not_emitted(client: openai.OpenAI) -> None:
    full = chat(client, temperature=0, max_tokens=20).choices[0].message.content
    assert " is Paris" in full
    stop = " Pa"  # a stop that ends mid-token (" Paris" is one token)
    expected = full[: full.index(stop)]
    whole = chat(client, temperature=0, max_tokens=20, stop=[stop, "never-appears"])
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == "stop"
    streamed, chunks = joined_stream(client, temperature=0, max_tokens=20, stop=stop)
    assert streamed == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        reply = chat(client, temperature=1.0, top_p=0.95, seed=seed, max_tokens=16)
        return reply.choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert any(sample(seed) != first for seed in (1, 2, 3))


def test_penalties_are_applied(client: openai.OpenAI) -> None:
    def count(**penalties) -> str:
        reply = client.completions.create(
            model=MODEL, prompt="1, 2, 3, 4,", temperature=0, max_tokens=12, **penalties
        )
        return reply.choices[0].text

    plain = count()
    assert plain.startswith(" 5, 6,")
    # Every number repeats ", ": penalising repeats must change the greedy path.
    assert count(frequency_penalty=2.0) != plain


def test_text_parts_and_system_messages_are_accepted(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
    ]
    reply = chat(client, messages=messages, temperature=0, max_tokens=8, user="alice")
    assert reply.choices[0].message.content


def test_text_completion_streamed_and_whole_agree(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    whole = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=6)
    assert whole.object == "text_completion"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 6
    chunks = list(
        client.completions.create(
            model=MODEL, prompt=prompt, temperature=0, max_tokens=6, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_tokenize_counts_a_prompt(http: requests.Session, model_api: RunningServer) -> None:
    body = http.post(model_api.url + "/tokenize", json={"model": MODEL, "prompt": "Hello world"})
    assert body.status_code == 200
    data = body.json()
    assert data["count"] == len(data["tokens"]) >= 2
    assert data["max_model_len"] == 8192


def test_health_needs_no_key_and_reports_the_engine(model_api: RunningServer) -> None:
    health = requests.get(model_api.url + "/health").json()
    assert health["status"] == "ok"
    assert health["device"] == "cpu"
    assert {"running", "waiting"} <= health.keys()


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_wrong_or_missing_key_is_refused(model_api: RunningServer, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = requests.get(model_api.url + "/v1/models", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=model_api.url + "/v1", api_key=key or "x", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
