"""The prefix cache: blocks found only after the same tokens, evicted leaf first within
the budget, and an answer with the cache equal to the answer without it."""

from __future__ import annotations

import pytest
import torch

from model_api.batching import BatchingEngine
from model_api.engine import Finished
from model_api.loading import LoadedModel
from model_api.prefix_cache import PrefixCache
from model_api.sampling import SamplingParams
from tests.unit.test_batching import text_of
from tests.unit.tiny_models import tiny_llama

BLOCK = 4


def kv_of(prompt: list[int]):
    """A stand-in for a row's keys and values: block (start, stop) → its token ids."""
    return lambda start, stop: torch.tensor(prompt[start:stop], dtype=torch.float32)


def cache(blocks: int = 100) -> PrefixCache:
    return PrefixCache(BLOCK, budget_bytes=blocks * BLOCK, bytes_per_token=1)


def test_a_block_is_found_only_after_the_same_tokens() -> None:
    c = cache()
    prompt = list(range(13))
    c.store(prompt, 12, kv_of(prompt))
    assert c.blocks == 3
    found = c.match(prompt)
    assert [b.tolist() for b in found] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    # The same second block after another first block is not the same block.
    other = [9, 9, 9, 9, 4, 5, 6, 7, 8]
    assert c.match(other) == []
    # A prompt that diverges inside a block gets the blocks before it.
    assert len(c.match([0, 1, 2, 3, 4, 5, 6, 99, 8])) == 1


def test_the_last_token_is_never_given() -> None:
    c = cache()
    prompt = list(range(8))
    c.store(prompt, 8, kv_of(prompt))
    assert c.reusable(8) == 4 and c.reusable(9) == 8 and c.reusable(0) == 0
    assert len(c.match(prompt)) == 1  # the block holding the last token is computed again
    assert len(c.match([*prompt, 50])) == 2
    assert c.hit_tokens == 12


def test_partial_ends_are_not_stored() -> None:
    c = cache()
    c.store(list(range(7)), 7, kv_of(list(range(7))))
    assert c.blocks == 0


def test_least_recently_used_goes_first_leaf_before_parent() -> None:
    c = cache(blocks=3)
    a = [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 0]
    c.store(a, 12, kv_of(a))
    b = [1, 1, 1, 1, 5, 5, 5, 5, 0]  # shares a's first block
    c.store(b, 8, kv_of(b))  # 4 blocks over a budget of 3: a's last block goes
    assert c.blocks == 3 and c.evicted_blocks == 1
    assert len(c.match(a)) == 2 and len(c.match(b)) == 2
    c.store([7] * 9, 8, kv_of([7] * 9))  # two more: the two least recent leaves go
    assert c.blocks == 3
    # a's and b's second blocks went; their shared first block, used last, stays.
    assert (len(c.match(a)), len(c.match(b)), len(c.match([7] * 9))) == (1, 1, 2)


def test_a_zero_budget_disables_it() -> None:
    c = PrefixCache(BLOCK, budget_bytes=0, bytes_per_token=1)
    assert not c.enabled
    c.store(list(range(9)), 8, kv_of(list(range(9))))
    assert c.blocks == 0


@pytest.fixture(scope="module", params=["none", "int4"])
def loaded(request: pytest.FixtureRequest) -> LoadedModel:
    return tiny_llama(request.param, "decoder")


def answer(engine: BatchingEngine, prompt: list[int], n: int = 12) -> tuple[str, Finished]:
    handle = engine.submit(prompt, SamplingParams(max_tokens=n, temperature=0))
    events = list(handle.stream(30))
    assert None not in events and isinstance(events[-1], Finished), events
    return "".join(e.text for e in events[:-1]), events[-1]


def engine_with(loaded: LoadedModel, prefix_cache_mb: int) -> BatchingEngine:
    engine = BatchingEngine(
        loaded,
        max_batch_size=4,
        max_waiting=8,
        prefill_chunk_tokens=16,
        prefix_cache_mb=prefix_cache_mb,
    )
    engine.start()
    return engine


def test_greedy_answers_with_the_cache_equal_answers_without(loaded: LoadedModel) -> None:
    cached, plain = engine_with(loaded, 1), engine_with(loaded, 0)
    turn1 = [(i * 7) % 60 + 1 for i in range(40)]
    turn2 = [*turn1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # the next turn starts with the first
    for prompt, hit in ((turn1, 0), (turn1, 32), (turn2, 32), (turn2, 48)):
        text, finished = answer(cached, prompt)
        assert (text, finished.cached_tokens) == (answer(plain, prompt)[0], hit)
    # In a batch, beside prompts that share some of its blocks, still the same answers.
    prompts = [turn2, turn1, [*turn1[:20], 1, 2, 3], [5] * 33]
    handles = [cached.submit(p, SamplingParams(max_tokens=9, temperature=0)) for p in prompts]
    assert [text_of(h) for h in handles] == [answer(plain, p, 9)[0] for p in prompts]
    assert cached.stats()["prefix_cache_tokens"] > 0
    assert "prefix_cache_tokens" not in engine_with(tiny_llama("none"), 1).stats()
