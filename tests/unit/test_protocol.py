import json

import pytest

from chatstack.errors import APIError
from model_api.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    TokenizeRequest,
    parse_body,
)

MODEL = "m"


def parse_chat(**fields):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse_body(json.dumps(body).encode(), ChatCompletionRequest)


def error_of(fn, *args, **kwargs) -> APIError:
    with pytest.raises(APIError) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_a_minimal_chat_request_parses_with_openai_defaults():
    req = parse_chat()
    assert req.temperature is None and req.top_p is None
    assert req.n == 1 and req.stream is False
    assert req.stop_sequences() == ()


def test_null_means_the_default_for_every_optional_field():
    # What LangChain, LiteLLM and the openai SDKs send for fields OpenAI types as nullable.
    nulls = ("frequency_penalty", "presence_penalty", "n", "logprobs", "stream", "seed", "stop")
    req = parse_chat(**dict.fromkeys(nulls), max_tokens=None, temperature=None, user=None)
    assert (req.n, req.stream, req.logprobs, req.frequency_penalty) == (1, False, False, 0.0)
    completion = parse_body(
        json.dumps({"model": MODEL, "prompt": "x", "max_tokens": None, "echo": None}).encode(),
        CompletionRequest,
    )
    assert (completion.max_tokens, completion.echo) == (16, False)
    # A required field is still required.
    assert error_of(parse_chat, model=None).param == "model"


def test_text_parts_are_joined():
    req = parse_chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    assert req.messages[0].text() == "ab"


def test_max_completion_tokens_takes_precedence():
    assert parse_chat(max_tokens=5, max_completion_tokens=7).token_limit() == 7
    assert parse_chat(max_tokens=5).token_limit() == 5


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{", "invalid_json"), (b"null", "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
def test_unparseable_bodies_are_400(raw, code):
    err = error_of(parse_body, raw, ChatCompletionRequest)
    assert (err.status, err.code) == (400, code)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "0.5"}, "temperature"),  # strings are not numbers
        ({"stream": 1}, "stream"),
        ({"top_p": -0.1}, "top_p"),
        ({"seed": 1.5}, "seed"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x", "extra": 1}]}, "messages[0].extra"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_fields_name_their_param(fields, param):
    err = error_of(parse_chat, **fields)
    assert err.status == 400
    assert err.param == param
    assert err.error_type == "invalid_request_error"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": []}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_unsupported_features_are_refused_by_name(fields, param):
    err = error_of(parse_chat(**fields).check_supported)
    assert (err.status, err.param, err.code) == (400, param, "unsupported_parameter")


def test_text_response_format_is_accepted():
    parse_chat(response_format={"type": "text"}).check_supported()


def test_stop_accepts_a_string_or_up_to_four():
    assert parse_chat(stop="x").stop_sequences() == ("x",)
    assert parse_chat(stop=["a", "b", "c", "d"]).stop_sequences() == ("a", "b", "c", "d")
    assert error_of(parse_chat(stop=["a"] * 5).stop_sequences).param == "stop"
    assert error_of(parse_chat(stop=[""]).stop_sequences).param == "stop"


def test_usage_is_included_only_for_streams_that_ask():
    assert parse_chat(stream=True, stream_options={"include_usage": True}).include_usage()
    assert not parse_chat(stream=True).include_usage()


def test_completion_prompt_forms():
    def prompt_of(prompt):
        body = json.dumps({"model": MODEL, "prompt": prompt}).encode()
        return parse_body(body, CompletionRequest).single_prompt()

    assert prompt_of("abc") == "abc"
    assert prompt_of(["abc"]) == "abc"
    assert prompt_of([1, 2, 3]) == [1, 2, 3]
    assert prompt_of([[1, 2]]) == [1, 2]
    assert error_of(prompt_of, ["a", "b"]).param == "prompt"
    assert error_of(prompt_of, "").param == "prompt"


def test_completion_defaults_to_sixteen_tokens_like_openai():
    body = json.dumps({"model": MODEL, "prompt": "x"}).encode()
    assert parse_body(body, CompletionRequest).max_tokens == 16


# ---- continuing the final assistant message (vLLM's extras) ------------------------------

PARTIAL = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello, I"}]
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


def prompt_end_error(**fields) -> APIError:
    req = parse_chat(**fields)
    return error_of(req.check_prompt_end, req.messages)


def test_a_chat_opens_a_new_assistant_turn_by_default():
    req = parse_chat()
    assert (req.add_generation_prompt, req.continue_final_message) == (True, False)
    req.check_prompt_end(req.messages)


def test_a_partial_assistant_answer_may_be_continued():
    req = parse_chat(messages=PARTIAL, **CONTINUE)
    req.check_prompt_end(req.messages)
    parts = [PARTIAL[0], {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]
    req = parse_chat(messages=parts, **CONTINUE)
    req.check_prompt_end(req.messages)


@pytest.mark.parametrize(
    "fields", [{"continue_final_message": True}, CONTINUE | {"add_generation_prompt": True}]
)
def test_continuing_and_opening_a_new_turn_at_once_is_refused_as_vllm_does(fields):
    # add_generation_prompt defaults to true: a continuation has to turn it off.
    err = prompt_end_error(messages=PARTIAL, **fields)
    assert (err.status, err.param, err.code) == (400, "add_generation_prompt", "invalid_value")
    assert err.message == (
        "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
    )


@pytest.mark.parametrize(
    ("last", "words"),
    [
        ({"role": "user", "content": "go on"}, "role 'user'"),
        ({"role": "system", "content": "x"}, "role 'system'"),
        ({"role": "assistant", "content": ""}, "empty"),
        ({"role": "assistant", "content": []}, "empty"),
        ({"role": "assistant", "content": [{"type": "text", "text": ""}]}, "empty"),
    ],
)
def test_a_continuation_needs_assistant_text_last(last, words):
    err = prompt_end_error(messages=[PARTIAL[0], last], **CONTINUE)
    assert (err.status, err.param, err.code) == (400, "messages", "invalid_value")
    assert "messages[1]" in err.message and words in err.message


def test_no_generation_prompt_and_no_continuation_is_allowed_as_vllm_does():
    req = parse_chat(messages=PARTIAL, add_generation_prompt=False)
    req.check_prompt_end(req.messages)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"continue_final_message": "true"}, "continue_final_message"),
        ({"continue_final_message": 1}, "continue_final_message"),
        ({"add_generation_prompt": "false"}, "add_generation_prompt"),
        ({"add_generation_prompt": None}, "add_generation_prompt"),
    ],
)
def test_the_prompt_end_flags_are_strict_booleans(fields, param):
    err = error_of(parse_chat, messages=PARTIAL, **fields)
    assert (err.status, err.param, err.code) == (400, param, "invalid_type")


def tokenize_request(**fields) -> TokenizeRequest:
    return parse_body(json.dumps({"model": MODEL, **fields}).encode(), TokenizeRequest)


def test_tokenize_takes_the_same_flags_and_rules():
    req = tokenize_request(messages=PARTIAL, **CONTINUE)
    req.check_prompt_end(req.messages)
    both = tokenize_request(messages=PARTIAL, continue_final_message=True)
    assert error_of(both.check_prompt_end, both.messages).param == "add_generation_prompt"
    user_last = tokenize_request(messages=PARTIAL[:1], **CONTINUE)
    assert error_of(user_last.check_prompt_end, user_last.messages).param == "messages"
    assert error_of(tokenize_request, messages=PARTIAL, continue_final_message=0).param == (
        "continue_final_message"
    )


def test_a_raw_prompt_has_no_final_message_to_continue():
    req = tokenize_request(prompt="Hello", **CONTINUE)
    err = error_of(req.check_prompt_end, req.messages)
    assert (err.status, err.param) == (400, "continue_final_message")
