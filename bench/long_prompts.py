"""Long prompts for the prefill levels, built in code (nothing downloaded): varied English
sentences from a seeded generator, cut to a token count the model API's /tokenize checks.

Every prompt opens with a nonce in its system message, so no server's cache can have seen
it (only the chat template's first tokens, `<|im_start|>system`, are shared), and each
seed gives different sentences, so prompts also differ after the nonce.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

SUBJECTS = (
    "The old lighthouse keeper",
    "A young engineer from the valley",
    "The baker on the corner",
    "Our neighbour's daughter",
    "A travelling musician",
    "The harbour master",
    "A quiet librarian",
    "The village doctor",
    "Two students of geology",
    "The captain of the ferry",
    "A farmer named Elsa",
    "The clockmaker's apprentice",
)
VERBS = (
    "repaired",
    "painted",
    "described in a letter",
    "measured",
    "carried",
    "photographed",
    "sold",
    "studied",
    "rebuilt",
    "counted",
    "drew a map of",
    "wrote a song about",
)
OBJECTS = (
    "the wooden bridge over the river",
    "a basket of green apples",
    "the broken compass",
    "three copper lanterns",
    "the northern road",
    "an old printing press",
    "the garden behind the school",
    "a boat with a red sail",
    "the stones of the ruined tower",
    "a pile of dusty maps",
    "the bells of the church",
    "a crate of salted fish",
)
CIRCUMSTANCES = (
    "before sunrise",
    "while the rain fell on the hills",
    "during the long winter",
    "after the market had closed",
    "on the first day of spring",
    "with great care",
    "for the festival in August",
    "because nobody else would",
    "in less than an hour",
    "as the tide came in",
    "despite the cold wind",
    "without saying a word",
)
SENTENCES_PER_PARAGRAPH = 6


def sentences(seed: int, count: int) -> list[str]:
    """`count` sentences, the same for the same seed."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"{rng.choice(CIRCUMSTANCES)}."
        for _ in range(count)
    ]


def paragraphs(seed: int, count: int) -> str:
    """`count` sentences of `seed` in paragraphs."""
    found = sentences(seed, count)
    return "\n\n".join(
        " ".join(found[start : start + SENTENCES_PER_PARAGRAPH])
        for start in range(0, len(found), SENTENCES_PER_PARAGRAPH)
    )


T = TypeVar("T")


def fit_to_tokens(
    build: Callable[[int], T], count_tokens: Callable[[T], int], target: int
) -> tuple[T, int]:
    """The largest `build(n)` (n sentences) whose token count is at most `target`, with
    that count: a binary search over n, one count per step (~13 for 4,000 tokens).
    ValueError if even `build(0)` is over `target`."""
    low, low_tokens = 0, count_tokens(build(0))
    if low_tokens > target:
        raise ValueError(f"the prompt without text is already {low_tokens} tokens (> {target})")
    high = target + 1  # every sentence is at least one token: n = target + 1 is over
    while high - low > 1:
        middle = (low + high) // 2
        tokens = count_tokens(build(middle))
        if tokens <= target:
            low, low_tokens = middle, tokens
        else:
            high = middle
    return build(low), low_tokens


def nonce() -> str:
    return secrets.token_hex(8)


def long_prompt_messages(tag: str, seed: int, sentence_count: int) -> list[dict]:
    """A cold prefill: a system message opening with `tag`, then one user message asking
    for a summary of `sentence_count` sentences."""
    return [
        {"role": "system", "content": f"Request {tag}. You are a helpful assistant."},
        {
            "role": "user",
            "content": "Summarise these notes in one sentence.\n\n"
            + paragraphs(seed, sentence_count),
        },
    ]


QUESTION = "Who is mentioned most often in the document? Answer in one sentence."
FOLLOW_UP = "And what did they do? Answer briefly."


@dataclass(frozen=True)
class Document:
    """A document conversation: the first request's messages and the follow-up's."""

    tag: str
    text: str

    def system(self) -> dict:
        return {
            "role": "system",
            "content": f"Document {self.tag}. Answer questions about the user's document.",
        }

    def first(self) -> list[dict]:
        """[system, user(document), user(question)]."""
        return [
            self.system(),
            {"role": "user", "content": "Here is a document.\n\n" + self.text},
            {"role": "user", "content": QUESTION},
        ]

    def follow_up(self, answer: str) -> list[dict]:
        """The first request's messages, its answer, a second question: its prompt starts
        with the first request's prompt, token for token."""
        return [
            *self.first(),
            {"role": "assistant", "content": answer},
            {"role": "user", "content": FOLLOW_UP},
        ]


def document(tag: str, seed: int, sentence_count: int) -> Document:
    return Document(tag, paragraphs(seed, sentence_count))
