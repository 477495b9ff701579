"""The batching engine on a tiny random Llama, with either runner: batched greedy tokens
equal lone ones, and a full queue refuses with EngineBusy."""

from __future__ import annotations

import time

import pytest
import torch

from chatstack.envsettings import SettingsError
from model_api.batching import BatchingEngine, kv_bytes_per_token
from model_api.engine import Delta, EngineBusy, Finished
from model_api.loading import LoadedModel
from model_api.runners import pad_left
from model_api.sampling import SamplingParams
from model_api.settings import Settings
from tests.unit.tiny_models import tiny_llama


@pytest.fixture(
    scope="module",
    params=[
        ("none", "transformers"),
        ("int4", "transformers"),
        ("none", "decoder"),
        ("int4", "decoder"),
    ],
    ids=lambda p: "-".join(p),
)
def loaded(request: pytest.FixtureRequest) -> LoadedModel:
    """The same tiny model in fp32 and with int4 linears in bf16 (the CPU default), run by
    transformers' forward and by chatstack's own decoder."""
    return tiny_llama(*request.param)


def settled_stats(engine: BatchingEngine) -> dict[str, int]:
    """stats() once the engine has freed what its last answer held: the Finished event
    reaches the reader a moment before the engine's thread frees the sequence's KV."""
    deadline = time.monotonic() + 5
    while (stats := engine.stats())["running"] or stats["kv_cache_tokens"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    return stats


def text_of(handle) -> str:
    parts = []
    for event in handle.stream(30):
        assert event is not None, "the engine went quiet"
        if isinstance(event, Delta):
            parts.append(event.text)
        else:
            assert isinstance(event, Finished), event
            return "".join(parts)
    raise AssertionError("no Finished event")


PROMPTS = [[1, 2, 3], [5] * 17, [7, 8, 9, 10, 11, 12, 13], [4] * 40]


def test_batched_greedy_equals_alone(loaded: LoadedModel) -> None:
    engine = BatchingEngine(loaded, max_batch_size=8, max_waiting=8, prefill_chunk_tokens=16)
    engine.start()
    greedy = [SamplingParams(max_tokens=n, temperature=0) for n in (12, 5, 20, 9)]
    alone = [text_of(engine.submit(p, g)) for p, g in zip(PROMPTS, greedy, strict=True)]
    handles = [engine.submit(p, g) for p, g in zip(PROMPTS, greedy, strict=True)]
    assert [text_of(h) for h in handles] == alone
    stats = settled_stats(engine)
    assert (stats["running"], stats["waiting"], stats["batch_size"]) == (0, 0, 0)
    assert stats["kv_cache_tokens"] == 0


def test_seeded_sample_is_reproducible_in_a_batch(loaded: LoadedModel) -> None:
    engine = BatchingEngine(loaded, max_batch_size=4, max_waiting=4)
    engine.start()
    seeded = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=42)
    alone = text_of(engine.submit(PROMPTS[0], seeded))
    noise = engine.submit(PROMPTS[1], SamplingParams(max_tokens=15, temperature=1.0))
    assert text_of(engine.submit(PROMPTS[0], seeded)) == alone
    text_of(noise)


def test_full_queue_refuses_and_cancelled_waiters_free_places(loaded: LoadedModel) -> None:
    engine = BatchingEngine(loaded, max_batch_size=1, max_waiting=1)  # not started: all wait
    params = SamplingParams(max_tokens=2, temperature=0)
    first = engine.submit([1], params)
    engine.submit([1], params)
    with pytest.raises(EngineBusy):
        engine.submit([1], params)
    first.cancel()
    engine.submit([1], params)


def test_pad_left_pads_the_sequence_dimension() -> None:
    keys = torch.ones(1, 2, 3, 4)
    assert pad_left(keys, 5).shape == (1, 2, 5, 4)
    assert pad_left(keys, 5)[:, :, :2].abs().sum() == 0
    assert pad_left(torch.ones(2, 3, dtype=torch.long), 4).tolist() == [[0, 1, 1, 1]] * 2


def test_engine_settings_are_read_from_the_environment() -> None:
    env = {"ENGINE": "batching", "MAX_BATCH_SIZE": "4", "MAX_WAITING": "3"}
    settings = Settings.from_env({**env, "PREFILL_CHUNK_TOKENS": "64"})
    assert (settings.engine, settings.max_batch_size, settings.max_waiting) == ("batching", 4, 3)
    assert settings.prefill_chunk_tokens == 64
    assert Settings.from_env({}).engine == "batching"
    defaults = Settings.from_env({})
    assert (defaults.decoder, defaults.torch_threads) == ("auto", 0)
    chosen = Settings.from_env({"DECODER": "transformers", "TORCH_THREADS": "1"})
    assert (chosen.decoder, chosen.torch_threads) == ("transformers", 1)
    with pytest.raises(SettingsError, match="DECODER"):
        Settings.from_env({"DECODER": "fast"})


def test_kv_bytes_per_token_follow_the_model_shape() -> None:
    from transformers import LlamaConfig

    smollm2 = LlamaConfig(
        hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30
    )
    assert kv_bytes_per_token(smollm2, torch.bfloat16) == 2 * 30 * 3 * 64 * 2
    assert kv_bytes_per_token(smollm2, torch.float32) == 2 * 30 * 3 * 64 * 4


def test_a_full_kv_cache_makes_requests_wait_not_fail(loaded: LoadedModel) -> None:
    engine = BatchingEngine(loaded, max_batch_size=4, max_waiting=4, kv_cache_mb=16)
    engine.kv_cache_tokens = 60  # room for one 40-token prompt's row, not two
    active: list[int] = []
    admit = engine._admit

    def admit_and_count() -> None:  # how many sequences the engine holds after each admit
        admit()
        active.append(len(engine.running) + len(engine.prefilling))

    engine._admit = admit_and_count  # type: ignore[method-assign]
    engine.start()
    greedy = SamplingParams(max_tokens=6, temperature=0)
    alone = text_of(engine.submit(PROMPTS[3], greedy))
    handles = [engine.submit(PROMPTS[3], greedy) for _ in range(3)]
    assert [text_of(h) for h in handles] == [alone] * 3
    assert max(active) == 1  # the others waited instead of joining
    assert settled_stats(engine)["kv_cache_tokens"] == 0


def test_engine_log_lines_carry_the_request_id(loaded: LoadedModel, caplog) -> None:
    from chatstack.logs import set_request_id

    engine = BatchingEngine(loaded, max_batch_size=2, max_waiting=2)
    engine.start()
    set_request_id("turn-7.1")  # what the request thread holds when it submits
    handle = engine.submit(PROMPTS[0], SamplingParams(max_tokens=200, temperature=0))
    set_request_id(None)
    with caplog.at_level("INFO", logger="model_api.batching"):
        next(handle.stream(30))  # generating
        handle.cancel()
        assert handle.done.wait(30)
    cancelled = [r for r in caplog.records if "cancelled" in r.getMessage()]
    assert cancelled and cancelled[0].request_id == "turn-7.1"
