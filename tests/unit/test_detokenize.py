"""Incremental detokenization with the embedded model's real tokenizer."""

import pytest
from transformers import AutoTokenizer

from model_api.detokenize import IncrementalDetokenizer
from model_api.settings import Settings


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(Settings.from_env({}).embedded_model_dir)


@pytest.mark.parametrize(
    "text",
    ["Hello, world!  Two spaces.", "Café naïve — “quotes” 日本語 and 🙂 emoji", "line\n\n  indent"],
)
def test_deltas_join_to_the_full_decode(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids]
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert all("\ufffd" not in d for d in deltas)


def test_special_tokens_are_not_emitted(tokenizer):
    detok = IncrementalDetokenizer(tokenizer)
    assert detok.push(tokenizer.convert_tokens_to_ids("<|im_end|>")) == ""
