"""int4 linears: 4-bit weights are found again exactly, others are left alone unless forced,
and a batch of rows gives each row what it gets alone, with PyTorch's kernels and (where the
CPU has AMX) chatstack's own."""

from __future__ import annotations

import pytest
import torch

from model_api import amx_kernels
from model_api.loading import ModelLoadError, wants_int4
from model_api.quantization import (
    GROUP_SIZE,
    Int4Linear,
    Int8Linear,
    cpu_has_bf16_matmul,
    four_bit_codes,
    min_max_codes,
    quantize_int4,
)
from model_api.settings import Settings
from tests.unit.tiny_models import NO_AMX_KERNELS


@pytest.fixture(params=["torch", "chatstack"])
def kernel(request, monkeypatch) -> str:
    """Which int4/int8 kernels the linears built in a test use: PyTorch's, or chatstack's
    AMX ones (skipped on a CPU without AMX)."""
    if request.param == "torch":
        monkeypatch.setattr(amx_kernels, "library", lambda: None)
    elif amx_kernels.library() is None:
        pytest.skip(NO_AMX_KERNELS)
    return request.param


def four_bit_weight(out_features: int = 16, in_features: int = 64, levels: int = 16):
    """Q4_1-style weights: per group of 32, min + q * step with fp16 min and step (and, as
    Q4_1's quantizer makes them, the group's least weight the min: code 0)."""
    torch.manual_seed(1)
    groups = in_features // GROUP_SIZE
    codes = torch.randint(0, levels, (out_features, groups, GROUP_SIZE)).float()
    codes[..., 0] = 0
    step = (torch.rand(out_features, groups, 1) * 0.05 + 0.001).half().float()
    low = (torch.randn(out_features, groups, 1) * 0.1).half().float()
    return (low + codes * step).reshape(out_features, in_features)


def dequantize(codes: torch.Tensor, steps: torch.Tensor, lows: torch.Tensor) -> torch.Tensor:
    out_features = codes.shape[0]
    grouped = codes.float().reshape(out_features, -1, GROUP_SIZE)
    return (lows.unsqueeze(-1) + grouped * steps.unsqueeze(-1)).reshape(out_features, -1)


@pytest.mark.parametrize("levels", [16, 9, 2])
def test_four_bit_weights_are_found_again_exactly(levels: int) -> None:
    weight = four_bit_weight(levels=levels)
    found = four_bit_codes(weight)
    assert found is not None
    codes, steps, lows = found
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15
    assert torch.allclose(dequantize(codes, steps, lows), weight, atol=1e-6, rtol=0)


def test_weights_that_are_not_four_bit_are_recognised() -> None:
    torch.manual_seed(2)
    assert four_bit_codes(torch.randn(8, 64)) is None
    codes = min_max_codes(torch.randn(8, 64))[0]  # forced: close, not exact
    assert int(codes.max()) == 15


def test_an_fp32_prompt_copy_is_the_dequantized_weight_exactly() -> None:
    weight = four_bit_weight()
    linear = Int4Linear(*four_bit_codes(weight), dense_dtype=torch.float32)  # type: ignore[misc]
    assert linear.dense.dtype == torch.float32
    torch.testing.assert_close(linear.dense, weight, atol=1e-6, rtol=0)
    x = torch.randn(40, weight.shape[1])
    torch.testing.assert_close(linear.prefill(x), x @ weight.t(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("flags\t\t: fpu sse2 avx2 fma f16c\n", False),  # an AVX2 EPYC
        ("flags\t\t: avx2 avx512f avx512_bf16\n", True),
        ("flags\t\t: avx2 avx512f amx_bf16 amx_tile\n", True),  # Sapphire Rapids
        ("processor\t: 0\n", True),  # no flags line (not x86): the bf16 path, correct anywhere
    ],
)
def test_bf16_matmul_is_read_from_the_cpu_flags(tmp_path, flags: str, expected: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n" + flags)
    assert cpu_has_bf16_matmul(str(cpuinfo)) is expected
    assert cpu_has_bf16_matmul(str(tmp_path / "missing")) is True


def test_int4_linear_matches_its_dequantized_weight(kernel: str) -> None:
    weight = four_bit_weight()
    codes, steps, lows = four_bit_codes(weight)  # type: ignore[misc]
    linear = Int4Linear(codes, steps, lows)
    assert (linear.kernel is not None) == (kernel == "chatstack")
    x = torch.randn(5, weight.shape[1])
    expected = x @ weight.t()
    got = linear(x.bfloat16()).float()
    assert got.shape == (5, weight.shape[0])
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_a_row_gets_the_same_bits_alone_and_in_a_batch(kernel: str) -> None:
    codes, steps, lows = four_bit_codes(four_bit_weight(out_features=48, in_features=128))  # type: ignore[misc]
    linear = Int4Linear(codes, steps, lows)
    rows = torch.randn(21, 128)  # more than one AMX tile of rows
    batched = linear.decode(rows)
    for size in (1, 2, 5, 16, 17):
        for start in (0, 3):
            assert torch.equal(
                linear.decode(rows[start : start + size]), batched[start : start + size]
            )


def rows_as_the_int4_kernel_reads_them(x: torch.Tensor) -> torch.Tensor:
    """x quantized per group of 32 as the int4 kernel does (Q8_1: round(x * 127 / max|x|)),
    back in float64: d * q."""
    groups = x.reshape(x.shape[0], -1, 32)
    top = groups.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(top > 0, 127.0 / top, torch.zeros_like(top))
    q = torch.round(groups * inverse).clamp(-127, 127)  # round half to even, as the CPU does
    return (q.double() * (top / 127.0).double()).reshape(x.shape)


def test_chatstacks_kernels_sum_exact_products() -> None:
    """Only x is rounded — to int8 per group of 32 for int4 (as llama.cpp's Q4_1 dot products
    do), to bf16 for int8: the codes, steps and lows are exact, and the float32 sums are within
    a few ulps of float64's, by either of the int4 kernel's paths (few rows, many rows)."""
    if amx_kernels.library() is None:
        pytest.skip(NO_AMX_KERNELS)
    weight = four_bit_weight(out_features=32, in_features=192)
    codes, steps, lows = four_bit_codes(weight)  # type: ignore[misc]
    packed = amx_kernels.PackedInt4(codes, steps, lows)
    for rows in (3, 20):
        x = torch.randn(rows, 192)
        exact = rows_as_the_int4_kernel_reads_them(x) @ weight.double().t()
        got = packed.mm(x)
        assert got.dtype == torch.float32
        assert (got.double() - exact).abs().max() < 1e-5 * exact.abs().max()
    head = Int8Linear(torch.randn(64, 128))
    exact = x[:, :128].bfloat16().double() @ head.codes.double().t() * head.exact_scales.double()
    got = amx_kernels.PackedInt8(head.codes, head.exact_scales).mm(x[:, :128])
    assert (got.double() - exact).abs().max() < 1e-5 * exact.abs().max()


def test_chatstacks_prompt_gemm_is_exact_and_row_invariant() -> None:
    """The bf16 GEMM for prompts: bf16 rows (RMS-normalized first when asked) times the bf16
    weight, float32 sums within a few ulps of float64's, and a row's bits the same alone and
    among other prompts' rows (what lets prompts batch)."""
    if amx_kernels.library() is None:
        pytest.skip(NO_AMX_KERNELS)
    weight = torch.randn(96, 192)
    packed = amx_kernels.PackedBF16(weight)
    assert torch.equal(packed.dense(), weight.bfloat16())
    x = torch.randn(70, 192)  # more than two tiles of rows
    got = packed.mm(x)
    exact = x.bfloat16().double() @ weight.bfloat16().double().t()
    assert (got.double() - exact).abs().max() < 1e-5 * exact.abs().max()
    for size in (1, 5, 16, 17, 33, 64):
        for start in (0, 3):
            assert torch.equal(packed.mm(x[start : start + size]), got[start : start + size])
    norm = torch.rand(192) + 0.5
    normed = torch.nn.functional.rms_norm(x, (192,), norm, 1e-5).bfloat16().double()
    got = packed.mm(x, norm=(norm, 1e-5))
    assert (got.double() - normed @ weight.bfloat16().double().t()).abs().max() < 1e-4
    residual = torch.randn(70, 96)
    total = residual.clone()
    assert packed.mm(x, into=total) is total
    assert torch.equal(total, residual + packed.mm(x))


def test_chatstacks_kernels_are_not_built_where_they_cannot_run(monkeypatch, caplog) -> None:
    monkeypatch.setattr(amx_kernels, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # Zen 4
    amx_kernels.library.cache_clear()
    try:
        with caplog.at_level("INFO"):
            assert amx_kernels.library() is None
        assert "lacks amx_tile" in caplog.text
        codes, steps, lows = four_bit_codes(four_bit_weight())  # type: ignore[misc]
        assert Int4Linear(codes, steps, lows).kernel is None
    finally:
        amx_kernels.library.cache_clear()


def tiny_model(weight_fn) -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(64, 16, bias=False), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(weight_fn())
    return model


def test_auto_quantizes_only_four_bit_models() -> None:
    four_bit = tiny_model(four_bit_weight)
    assert quantize_int4(four_bit, force=False) == 1
    assert isinstance(four_bit[0], Int4Linear)
    dense = tiny_model(lambda: torch.randn(16, 64))
    assert quantize_int4(dense, force=False) == 0
    assert isinstance(dense[0], torch.nn.Linear)
    assert quantize_int4(dense, force=True) == 1


@pytest.mark.parametrize(
    ("env", "device", "expected"),
    [
        ({}, "cpu", True),
        ({"QUANTIZATION": "none"}, "cpu", False),
        ({"DTYPE": "float32"}, "cpu", False),  # an explicit dtype outranks auto
        ({"DTYPE": "bfloat16"}, "cpu", True),
        ({}, "cuda", False),
    ],
)
def test_when_int4_is_tried(env: dict[str, str], device: str, expected: bool) -> None:
    assert wants_int4(Settings.from_env(env), torch.device(device)) is expected


@pytest.mark.parametrize(
    ("env", "device"),
    [({"QUANTIZATION": "int4"}, "cuda"), ({"QUANTIZATION": "int4", "DTYPE": "float32"}, "cpu")],
)
def test_impossible_int4_requests_are_refused_clearly(env: dict[str, str], device: str) -> None:
    with pytest.raises(ModelLoadError, match="QUANTIZATION=int4"):
        wants_int4(Settings.from_env(env), torch.device(device))


def test_int8_output_projection_is_close_and_row_invariant(kernel: str) -> None:
    torch.manual_seed(4)
    weight = torch.randn(96, 64)
    head = Int8Linear(weight)
    assert (head.kernel is not None) == (kernel == "chatstack")
    rows = torch.randn(20, 64).bfloat16()
    expected = rows.float() @ weight.t()
    got = head(rows)
    assert (got.float() - expected).abs().max() < 0.02 * expected.abs().max()
    for i in range(20):
        assert torch.equal(head(rows[i : i + 1]), got[i : i + 1])
    ids = torch.tensor([3, 0, 95])
    torch.testing.assert_close(head.embed(ids).float(), weight[ids], atol=0.02, rtol=0.01)


def test_near_ties_of_int8_logits_are_decided_in_float32() -> None:
    torch.manual_seed(5)
    base = torch.randn(64)
    weight = torch.stack([base, base * 1.001, -base])  # logits 0.1 % apart: one bf16 step
    head = Int8Linear(weight)
    rows = (base / base.norm() * 5).bfloat16().unsqueeze(0)  # a logit of ~25
    rounded = head(rows).float()
    assert rounded[0, 0] == rounded[0, 1]  # bf16 cannot tell them apart
    refined = head.refine_near_max(rows, rounded.clone())
    assert int(refined.argmax()) == 1
    assert refined[0, 2] == rounded[0, 2]  # far from the top: left as it was
