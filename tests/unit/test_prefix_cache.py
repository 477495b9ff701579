"""The prefix cache: blocks found only after the same tokens, evicted leaf first within
the budget, and an answer with the cache equal to the answer without it."""

from __future__ import annotations

import pytest
import torch

from model_api.batching import BatchingEngine
from model_api.engine import Finished
from model_api.loading import LoadedModel
from model_api.prefix_cache import PrefixCache
from model_api.prompt_chunks import ChunkPlan, template_token_ids
from model_api.sampling import SamplingParams
from tests.unit.test_batching import text_of
from tests.unit.tiny_models import tiny_llama

BLOCK = 4


def kv_of(prompt: list[int]):
    """A stand-in for a row's keys and values: block (start, stop) → its token ids."""
    return lambda start, stop: torch.tensor(prompt[start:stop], dtype=torch.float32)


def cache(blocks: int = 100, plan: ChunkPlan | None = None) -> PrefixCache:
    return PrefixCache(plan or ChunkPlan(BLOCK), budget_bytes=blocks * BLOCK, bytes_per_token=1)


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
    assert c.match([]) == [] and len(c.match(prompt[:5])) == 1
    assert len(c.match(prompt)) == 1  # the block holding the last token is computed again
    assert len(c.match([*prompt, 50])) == 2
    assert c.hit_tokens == 16


def test_partial_ends_are_not_stored() -> None:
    c = cache()
    c.store(list(range(7)), 7, kv_of(list(range(7))))
    assert (c.blocks, c.tokens) == (1, 4)  # 4..7 is cut where this prompt stops, not whole


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
    c = PrefixCache(ChunkPlan(BLOCK), budget_bytes=0, bytes_per_token=1)
    assert not c.enabled
    c.store(list(range(9)), 8, kv_of(list(range(9))))
    assert c.blocks == 0


START, END = 90, 91  # a chat template's tokens, in the tests below


def chunk_ends(plan: ChunkPlan, prompt: list[int]) -> list[int]:
    ends, start = [], 0
    while start < len(prompt):
        start = plan.next_end(prompt, start)
        ends.append(start)
    return ends


def test_chunks_end_before_a_template_token_once_long_enough() -> None:
    plan = ChunkPlan(8, frozenset({START, END}), min_tokens=3)
    #         0      1  2  3    4      5  6  7  8  9  10 11 12 13  14   15     16 17
    prompt = [START, 1, 2, END, START, 3, 4, 5, 6, 7, 8, 9, 1, 2, END, START, 5, 6]
    assert chunk_ends(plan, prompt) == [3, 11, 14, 18]
    # Whole chunks are those a longer prompt with the same start ends at the same place.
    assert list(plan.whole_chunks(prompt, 18)) == [(0, 3), (3, 11), (11, 14), (14, 18)][:3]
    assert list(plan.whole_chunks(prompt, 13)) == [(0, 3), (3, 11)]
    assert chunk_ends(ChunkPlan(8), prompt) == [8, 16, 18]  # no template: by length only


def test_the_next_turn_reuses_everything_before_the_last_question() -> None:
    plan = ChunkPlan(8, frozenset({START, END}), min_tokens=3)
    c = cache(plan=plan)
    document = [START, *range(1, 19), END]
    question = [START, 40, 41, 42, 43, END, START, 50]  # a question, then the answer's start
    turn1 = document + question
    c.store(turn1, len(turn1), kv_of(turn1))
    # The document's chunks and the question's (ended by its END) are kept; only the last
    # chunk, the answer's start, ends where the prompt does.
    turn2 = [*turn1, 60, 61, 62, END, START, 70, 71, END, START, 50]
    found = c.match(turn2)
    assert sum(len(b) for b in found) == len(document) + 5
    assert [b.tolist() for b in found][-1] == [END, START, 40, 41, 42, 43]


def test_the_budget_counts_tokens_of_blocks_of_any_length() -> None:
    plan = ChunkPlan(4, frozenset({START}), min_tokens=1)
    c = cache(blocks=2, plan=plan)  # 8 tokens
    prompt = [1, START, 2, 3, 4, 5, START, 6, 7]  # chunks of 1, 4, 1, then the last
    c.store(prompt, len(prompt), kv_of(prompt))
    assert (c.blocks, c.tokens, c.evicted_blocks) == (3, 6, 0)
    other = [9, 9, 9, 9, 8]
    c.store(other, len(other), kv_of(other))  # 10 tokens: the least recent leaves go
    assert (c.tokens, c.evicted_blocks) == (5, 2)
    assert len(c.match(prompt)) == 1 and len(c.match(other)) == 1


def test_the_template_tokens_of_the_embedded_model() -> None:
    from transformers import AutoTokenizer

    from model_api.settings import Settings

    tokenizer = AutoTokenizer.from_pretrained(Settings.from_env({}).embedded_model_dir)
    ids = template_token_ids(tokenizer)
    assert sorted(tokenizer.convert_ids_to_tokens(sorted(ids))) == ["<|im_end|>", "<|im_start|>"]
    tokenizer.chat_template = None
    assert template_token_ids(tokenizer) == frozenset()  # then chunks are cut by length only


@pytest.fixture(scope="module", params=["none", "int4"])
def loaded(request: pytest.FixtureRequest) -> LoadedModel:
    return tiny_llama(request.param, "decoder")


def answer(engine: BatchingEngine, prompt: list[int], n: int = 12) -> tuple[str, Finished]:
    handle = engine.submit(prompt, SamplingParams(max_tokens=n, temperature=0))
    events = list(handle.stream(30))
    assert None not in events and isinstance(events[-1], Finished), events
    return "".join(e.text for e in events[:-1]), events[-1]


def engine_with(
    loaded: LoadedModel, prefix_cache_mb: int, boundary_ids: frozenset[int] = frozenset()
) -> BatchingEngine:
    engine = BatchingEngine(
        loaded,
        max_batch_size=4,
        max_waiting=8,
        prefill_chunk_tokens=16,
        prefix_cache_mb=prefix_cache_mb,
        boundary_ids=boundary_ids,
    )
    engine.start()
    return engine


def test_greedy_answers_with_the_cache_equal_answers_without(loaded: LoadedModel) -> None:
    cached, plain = engine_with(loaded, 1), engine_with(loaded, 0)
    check_cached_answers(cached, plain)
    assert "prefix_cache_tokens" not in engine_with(tiny_llama("none"), 1).stats()


def test_with_chunks_cut_at_template_tokens_still_the_same_answers(loaded: LoadedModel) -> None:
    # Ids 3 and 9 as a template's: chunks end early, before them, cached or not.
    marks = frozenset({3, 9})
    cached, plain = engine_with(loaded, 1, marks), engine_with(loaded, 0, marks)
    check_cached_answers(cached, plain, hits=(0, 26, 26, 40))


def check_cached_answers(
    cached: BatchingEngine, plain: BatchingEngine, hits: tuple[int, ...] = (0, 32, 32, 48)
) -> None:
    turn1 = [(i * 7) % 60 + 1 for i in range(40)]
    turn2 = [*turn1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # the next turn starts with the first
    for prompt, hit in zip((turn1, turn1, turn2, turn2), hits, strict=True):
        text, finished = answer(cached, prompt)
        assert (text, finished.cached_tokens) == (answer(plain, prompt)[0], hit)
    # In a batch, beside prompts that share some of its blocks, still the same answers.
    prompts = [turn2, turn1, [*turn1[:20], 1, 2, 3], [5] * 33]
    handles = [cached.submit(p, SamplingParams(max_tokens=9, temperature=0)) for p in prompts]
    assert [text_of(h) for h in handles] == [answer(plain, p, 9)[0] for p in prompts]
    assert cached.stats()["prefix_cache_tokens"] > 0
