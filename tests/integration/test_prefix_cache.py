"""The prefix cache on the real model under gunicorn: a prompt seen before is answered from
its cached blocks with the answer it gets cold, the next turn of a conversation reuses the
turn before it, and the official client reads `prompt_tokens_details.cached_tokens`."""

from __future__ import annotations

import json
import uuid

import openai
import requests

from tests.integration.conftest import MODEL
from tests.servers import RunningServer

BLOCK = 256  # PREFILL_CHUNK_TOKENS, the longest chunk
# Chunks end where messages end once they hold 32 tokens (model_api/prompt_chunks.py): what
# a prompt seen before computes again is its last chunk, the short question and the
# assistant's header (with the document's last <32 tokens at worst), never up to a block.
TAIL = 64

DOCUMENT = " ".join(
    f"Note {i}: the {colour} lamp in room {i} was fixed on day {i * 3 % 29 + 1}."
    for i, colour in enumerate(["red", "green", "blue", "amber", "white"] * 9)
)


def conversation(nonce: str) -> list[dict[str, str]]:
    """A long prompt no other test has sent: the nonce comes first."""
    return [
        {"role": "system", "content": f"Session {nonce}. Answer from the notes."},
        {"role": "user", "content": DOCUMENT},
        {"role": "user", "content": "Which lamp was fixed in room 7?"},
    ]


def ask(client: openai.OpenAI, messages: list[dict[str, str]], **sampling):
    reply = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=24, **sampling
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    return reply.choices[0].message.content, usage.prompt_tokens, usage.prompt_tokens_details


def test_a_prompt_seen_before_gets_the_answer_it_gets_cold(client: openai.OpenAI) -> None:
    messages = conversation(uuid.uuid4().hex)
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 7}):
        messages[0]["content"] += " ."  # a new prompt for each sampling: cold first
        cold, prompt_tokens, details = ask(client, messages, **sampling)
        assert prompt_tokens > 2 * BLOCK and details.cached_tokens == 0
        warm, _, details = ask(client, messages, **sampling)
        assert prompt_tokens - TAIL <= details.cached_tokens < prompt_tokens
        assert warm == cold


def test_the_next_turn_reuses_the_turn_before(
    client: openai.OpenAI, model_api: RunningServer, http: requests.Session
) -> None:
    messages = conversation(uuid.uuid4().hex)
    answer, first_prompt, _ = ask(client, messages, temperature=0)
    follow_up = [
        *messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And in room 8?"},
    ]
    _, _, details = ask(client, follow_up, temperature=0)
    # Everything before the first question's chunk: only it, the answer and the new
    # question are computed.
    assert first_prompt - TAIL <= details.cached_tokens < first_prompt
    metrics = http.get(model_api.url + "/metrics", timeout=10).text
    values = {
        line.split()[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("chatstack_model_pr")
    }
    assert values["chatstack_model_prompt_cached_tokens_total"] >= details.cached_tokens
    assert values["chatstack_model_prefix_cache_tokens"] >= first_prompt - TAIL


def test_a_streamed_answer_reports_its_cached_tokens(
    model_api: RunningServer, http: requests.Session
) -> None:
    messages = conversation(uuid.uuid4().hex)
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for expect_cached in (False, True):
        with http.post(model_api.url + "/v1/chat/completions", json=body, stream=True) as r:
            assert r.status_code == 200
            lines = [ln for ln in r.iter_lines() if ln.startswith(b"data: {")]
        usage = json.loads(lines[-1][6:])["usage"]
        assert (usage["prompt_tokens_details"]["cached_tokens"] > 0) is expect_cached
