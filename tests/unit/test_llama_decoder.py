"""chatstack's own Llama decoder: the logits of transformers' forward, on KV rows that
grow, shrink and stay packed; the start-up checks of row invariance."""

from __future__ import annotations

import pytest
import torch

from model_api import amx_kernels, llama_decoder
from model_api.decode_attention import (
    DecodeRows,
    batched,
    decode_attention,
    decode_attention_by_row,
    decode_attention_native,
)
from model_api.invariance import attention_is_row_invariant, row_quantum, run_padded
from model_api.kv_slots import GROWTH_TOKENS, KVSlots
from model_api.llama_decoder import LlamaDecoder, unsupported_reason
from tests.unit.tiny_models import MAX_LEN, NO_AMX_KERNELS, tiny_transformers_llama

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return tiny_transformers_llama()


def slots(decoder: LlamaDecoder, rows: int = 4) -> KVSlots:
    layers = len(decoder.layers)
    return KVSlots(layers, decoder.kv_heads, decoder.head_dim, rows, decoder.dtype, CPU)


@torch.inference_mode()
def test_fp32_decoder_gives_transformers_logits(model) -> None:
    decoder = LlamaDecoder(model, int4=None, max_len=MAX_LEN)
    prompt = [3, 14, 15, 9, 2, 6, 5, 35, 8, 9, 7, 9, 3]
    kv = slots(decoder)
    kv.open("a", len(prompt))
    # The prompt in two chunks (the second attends over the first), then two decode steps.
    first = decoder.prefill(kv, [(kv.row("a"), 0, prompt[:8])])
    kv.advance("a", 8)
    second = decoder.prefill(kv, [(kv.row("a"), 8, prompt[8:])])
    kv.advance("a", len(prompt) - 8)
    steps = []
    for token in (4, 11):
        steps.append(decoder.decode(kv, [token], [kv.row("a")], [kv.length("a")]))
        kv.advance("a", 1)
    expected = model(torch.tensor([[*prompt, 4, 11]])).logits[0].float()
    torch.testing.assert_close(first[0], expected[7], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(second[0], expected[len(prompt) - 1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(steps[0][0], expected[len(prompt)], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(steps[1][0], expected[len(prompt) + 1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dense", [torch.bfloat16, torch.float32])
@torch.inference_mode()
def test_prompts_prefilled_together_get_their_lone_bits(model, monkeypatch, dense) -> None:
    # Both prompt copies an int4 model may get: bf16 (a CPU with AMX) and fp32 (AVX2).
    monkeypatch.setattr(llama_decoder, "prefill_dtype", lambda: dense)
    decoder = LlamaDecoder(model, int4=True, max_len=MAX_LEN)
    assert decoder.prefill_dtype == dense and decoder.dtype == torch.bfloat16
    decoder.calibrate(max_batch=4, max_prefill_rows=64, max_len=MAX_LEN)
    prompts = {"a": [1, 2, 3], "b": list(range(5, 30)), "c": [9] * 11}
    alone = {}
    for key, ids in prompts.items():
        kv = slots(decoder)
        kv.open(key, len(ids))
        alone[key] = decoder.prefill(kv, [(0, 0, ids)])[0]
    kv = slots(decoder)
    for key, ids in prompts.items():
        kv.open(key, len(ids))
    together = decoder.prefill(kv, [(kv.row(k), 0, ids) for k, ids in prompts.items()])
    for i, key in enumerate(prompts):
        assert torch.equal(together[i], alone[key])


def test_kv_rows_stay_packed_and_keep_their_columns_through_growth() -> None:
    kv = KVSlots(layers=2, kv_heads=1, head_dim=2, max_rows=3, dtype=torch.float32, device=CPU)
    for key, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        kv.open(key, 10)
        keys, values = kv.layer(1)[0], kv.layer(1)[1]
        keys[kv.row(key), :, :10] = value
        values[kv.row(key), :, :10] = -value
        kv.advance(key, 10)
    assert kv.capacity == GROWTH_TOKENS and kv.held_tokens == 3 * GROWTH_TOKENS
    kv.close("a")  # "c" moves down into row 0
    assert (kv.rows_in_use, kv.row("c"), kv.row("b")) == (2, 0, 1)
    kv.reserve(GROWTH_TOKENS + 1)
    assert kv.capacity == 2 * GROWTH_TOKENS
    keys, values = kv.layer(1)
    assert keys[0, :, :10].eq(3).all() and values[1, :, :10].eq(-2).all()
    assert keys[:2, :, 10:].eq(0).all() and values[:2, :, 10:].eq(0).all()  # unwritten: zeros
    kv.close("b")
    assert kv.capacity == GROWTH_TOKENS  # the long rows ended: memory goes back
    kv.close("c")
    assert kv.data is None and kv.held_tokens == 0


def test_a_seeded_row_is_zeroed_only_past_what_its_caller_writes() -> None:
    kv = KVSlots(layers=1, kv_heads=1, head_dim=2, max_rows=2, dtype=torch.float32, device=CPU)
    kv.open("a", 10)
    kv.data.fill_(float("nan"))  # stands for what torch.empty or an earlier row may leave
    kv.open("b", 10, seeded=4)  # the caller copies 4 cached columns in
    row = kv.data[:, :, kv.row("b")]
    assert row[..., 4:, :].eq(0).all()  # attention reads past a row's length: never NaN
    assert row[..., :4, :].isnan().all()  # not zeroed: the caller overwrites them at once


def test_row_quantum_finds_row_wise_and_batch_dependent_functions() -> None:
    assert row_quantum(lambda x: x * 2, 8, 16, torch.float32, CPU) == 1
    # A function that mixes rows is invariant under no padding at all.
    assert row_quantum(lambda x: x - x.mean(0), 8, 16, torch.float32, CPU) is None
    rows = torch.randn(5, 8)
    assert torch.equal(run_padded(lambda x: x + 1, rows, None), rows + 1)
    assert torch.equal(run_padded(lambda x: x + 1, rows, 4), rows + 1)


def test_attention_check_tells_exact_from_padding_dependent() -> None:
    shape = {"heads": 4, "kv_heads": 2, "head_dim": 8, "max_rows": 4, "max_len": 100}
    on_cpu = {"dtype": torch.float32, "device": CPU}
    assert attention_is_row_invariant(decode_attention_by_row, **shape, **on_cpu)

    def shifted(query, keys, values, rows, scale):  # a row's result sees the batch
        return decode_attention(query, keys, values, rows, scale) + max(rows.lengths)

    assert not attention_is_row_invariant(shifted, **shape, **on_cpu)


@pytest.mark.parametrize("attend", batched(torch.bfloat16, head_dim=32, group=2))
def test_batched_decode_attention_matches_attention_by_row(attend) -> None:
    torch.manual_seed(3)
    query = torch.randn(3, 4, 32)
    keys, values = torch.randn(3, 2, 64, 32), torch.randn(3, 2, 64, 32)
    rows = DecodeRows.of([5, 40, 17], 2, CPU)
    if attend is decode_attention_native:  # it reads the decoder's bf16 cache only
        keys, values = keys.bfloat16(), values.bfloat16()
    together = attend(query, keys, values, rows, 32**-0.5)
    # the reference in float32 throughout, from the same key and value numbers
    by_row = decode_attention_by_row(query, keys.float(), values.float(), rows, 32**-0.5)
    torch.testing.assert_close(together, by_row)


@torch.inference_mode()
def test_the_fused_amx_decode_step_gives_each_row_its_lone_bits() -> None:
    """chatstack's kernels take a whole decode step's attention (rotary, the KV write and
    attention in one call per layer): a sequence's logits are the same alone and beside
    others, and close to the unfused step's."""
    if amx_kernels.library() is None:
        pytest.skip(NO_AMX_KERNELS)
    decoder = LlamaDecoder(tiny_transformers_llama(kernel_shaped=True), int4=False, max_len=MAX_LEN)
    decoder.calibrate(max_batch=4, max_prefill_rows=64, max_len=MAX_LEN)
    assert decoder.quantization == "int4" and decoder.fused_attention
    prompts = {"a": [1, 2, 3], "b": list(range(5, 40)), "c": [9] * 11}

    def run(keys: list[str], fused: bool) -> dict[str, list[torch.Tensor]]:
        decoder.fused_attention = fused
        kv, logits = slots(decoder), {key: [] for key in keys}
        for key in keys:
            kv.open(key, len(prompts[key]) + 4)
            decoder.prefill(kv, [(kv.row(key), 0, prompts[key])])
            kv.advance(key, len(prompts[key]))
        for token in (4, 11, 7):
            kv.reserve(max(kv.length(key) for key in keys) + 1)
            step = decoder.decode(
                kv, [token] * len(keys), [kv.row(k) for k in keys], [kv.length(k) for k in keys]
            )
            for key, row in zip(keys, step, strict=True):
                logits[key].append(row)
                kv.advance(key, 1)
        return logits

    together = run(list(prompts), fused=True)
    unfused = run(list(prompts), fused=False)
    for key in prompts:
        alone = run([key], fused=True)[key]
        for a, t, u in zip(alone, together[key], unfused[key], strict=True):
            assert torch.equal(a, t)
            torch.testing.assert_close(t, u, atol=2e-2, rtol=2e-2)


def test_only_llama_on_a_cpu_takes_the_decoder(model) -> None:
    assert unsupported_reason(model, CPU) is None
    assert "CPU only" in (unsupported_reason(model, torch.device("cuda")) or "")
    model.config.model_type = "mistral"
    try:
        assert "not 'llama'" in (unsupported_reason(model, CPU) or "")
    finally:
        model.config.model_type = "llama"
