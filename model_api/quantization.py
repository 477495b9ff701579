"""Weight-only int4 linears for CPU decoding, exact for weights that are already 4-bit.

On a CPU a decode step is bound by reading the weights from memory (a profile puts
~87% of it in matrix multiplies), so the bytes per weight set the speed: fp32 reads 4,
bf16 2, int4 half a byte. The embedded model ships as a Q4_1 GGUF: every group of 32
weights is `min + q * step` with q in 0..15. Such weights are found again exactly from
their fp32 values and run with PyTorch's int4 CPU kernel (bf16 activations), which gives
the same model ~2.5x faster than fp32. A model whose weights are not 4-bit is only
quantized (lossily, min/max per group) when QUANTIZATION=int4 asks for it.
"""

from __future__ import annotations

import logging

import torch

from model_api import amx_kernels
from model_api.amx_kernels import PackedBF16, PackedInt4, PackedInt8

log = logging.getLogger(__name__)

GROUP_SIZE = 32  # the kernel's group along the input dimension, and Q4_0/Q4_1's block
LEVELS = 15  # a 4-bit code is 0..15
# How far (in steps) a weight may sit from its grid point and still count as on it:
# fp32 rounding of `min + q * step` is ~1e-7 of a step; anything else is ~0.5.
ON_GRID_TOLERANCE = 1e-3
# CPU flags of a bf16 matrix unit (AVX512-BF16, AMX). Without one, oneDNN emulates a bf16
# GEMM in fp32 with conversions: ~10x slower than fp32 at a prompt's 256 rows on an AVX2
# EPYC (26 ms against 2.8 ms for a 1536x576 weight), so prompts there run fp32.
BF16_MATMUL_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16_matmul(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 matrices natively (True when it cannot be read: the
    bf16 path is correct everywhere, only slower)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return True
    return not flags or any(flag in flags.split() for flag in BF16_MATMUL_FLAGS)


def prefill_dtype() -> torch.dtype:
    """The dtype of an Int4Linear's dense prompt copy on this CPU (see BF16_MATMUL_FLAGS)."""
    return torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32


class Int4Linear(torch.nn.Module):
    """A bias-free linear whose weight is packed 4-bit codes with a scale and zero per group."""

    def __init__(
        self,
        codes: torch.Tensor,
        scales: torch.Tensor,
        lows: torch.Tensor,
        dense_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        out_features, in_features = codes.shape
        self.in_features, self.out_features = in_features, out_features
        # chatstack's kernel where it runs (amx_kernels.py: one pass over the weights for
        # all of a step's rows, float32 out), else PyTorch's (row by row, bf16 out).
        self.kernel = (
            PackedInt4(codes, scales, lows)
            if amx_kernels.library() is not None and PackedInt4.fits(codes, scales, lows)
            else None
        )
        if self.kernel is None:
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
            self.register_buffer("packed", packed)
            # The kernel computes (q - 8) * scale + zero, so zero = min + 8 * step.
            zeros = lows + 8 * scales
            pairs = torch.stack([scales, zeros], dim=-1).transpose(0, 1).contiguous()
            self.register_buffer("scales_and_zeros", pairs.to(torch.bfloat16))
        # The int4 kernels are made for a decode step's few rows: for a prompt's hundreds a
        # dense GEMM is ~2x faster (AMX), or the int4 kernel ~2x slower than fp32 (AVX2).
        # Prefill uses this copy in `dense_dtype` (prefill_dtype(): half the fp32 model's
        # bytes again, or all of them); which path a token takes depends only on whether it
        # is in a prompt, so a sequence's arithmetic never depends on its batch. Where
        # chatstack's kernels run, the bf16 copy is multiplied by chatstack's GEMM
        # (amx_kernels.PackedBF16), whose rows are independent: several prompts batch.
        grouped = codes.float().reshape(out_features, -1, GROUP_SIZE)
        dense = (lows.unsqueeze(-1) + grouped * scales.unsqueeze(-1)).reshape(out_features, -1)
        self.dense_dtype = dense_dtype
        self.prompt_kernel = (
            PackedBF16(dense)
            if self.kernel is not None and dense_dtype == torch.bfloat16 and PackedBF16.fits(dense)
            else None
        )
        if self.prompt_kernel is None:
            self.register_buffer("dense", dense.to(dense_dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and x.shape[1] > 1:  # [batch, prompt tokens, features]: a prefill
            return self.prefill(x).to(self.dense_dtype)  # chatstack's GEMM gives float32
        rows = x.reshape(-1, self.in_features)
        out = self.decode(rows).to(torch.bfloat16)  # what a bf16 model's next module takes
        return out.reshape(*x.shape[:-1], self.out_features)

    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        """[rows, in] → [rows, out] with an int4 kernel: chatstack's (the rows quantized to
        int8 per group of 32, float32 out) or PyTorch's (bf16 rows, bf16 out)."""
        if self.kernel is not None:
            return self.kernel.mm(rows)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            rows.to(torch.bfloat16), self.packed, GROUP_SIZE, self.scales_and_zeros
        )

    def prefill(self, rows: torch.Tensor) -> torch.Tensor:
        """Prompt tokens [..., in] through the dense copy (float32 out from chatstack's GEMM,
        `dense_dtype` from PyTorch's)."""
        if self.prompt_kernel is not None:
            flat = self.prompt_kernel.mm(rows.reshape(-1, self.in_features))
            return flat.reshape(*rows.shape[:-1], self.out_features)
        return torch.nn.functional.linear(rows.to(self.dense.dtype), self.dense)

    def extra_repr(self) -> str:
        kernel = "chatstack" if self.kernel is not None else "torch"
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 ({kernel})"


class Int8Linear(torch.nn.Module):
    """A bias-free linear with one int8 code per weight and one scale per output row.

    For the output projection (tied to the embeddings, 8-bit in the embedded model's
    GGUF): 4 bits there would change which token wins, bf16 reads twice the bytes. The
    same codes serve as the embedding table (`embed`), so a tied model holds them once.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        codes = (weight / scales.unsqueeze(1)).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales.to(torch.bfloat16))
        self.register_buffer("exact_scales", scales)
        # chatstack's kernel where it runs (one pass over the codes for all of a step's
        # rows, float32 out); PyTorch's reads them again for every row.
        usable = amx_kernels.library() is not None and PackedInt8.fits(codes)
        self.kernel = PackedInt8(codes, scales) if usable else None

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            return self.kernel.mm(rows)
        return torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16), self.codes, self.scales)

    decode = prefill = forward

    def refine_near_max(self, rows: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """`logits` (float, from forward) with those within bf16's rounding of each row's
        maximum recomputed in float32, in place.

        The kernel writes bf16, whose steps near a logit of 25 are 0.125: the top two tokens
        of a confident answer often come out equal, and greedy decoding would then choose
        between them by rounding, not by the model. Each candidate is one dot product, the
        same whatever else is in the batch.
        """
        top = logits.amax(dim=-1, keepdim=True)
        near = logits >= top - top.abs() * 2**-7
        tied = (near.sum(dim=-1) > 1).nonzero().flatten()  # a lone top has nothing to tie with
        if tied.numel():
            local, column = near[tied].nonzero(as_tuple=True)
            row = tied[local]
            dots = (rows[row].float() * self.codes[column].float()).sum(dim=-1)
            logits[row, column] = dots * self.exact_scales[column]
        return logits

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of the weight for token ids, in bf16 (an embedding lookup)."""
        return self.codes[ids].to(torch.bfloat16) * self.scales[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def four_bit_codes(
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(codes, step, min) per group when every group is `min + q * step`; else None.

    A group whose codes do not span 0..15 has a span of n steps for some n < 15; trying
    n = 15, 14, ..., 1 finds a step that puts every weight of the group on the grid.
    """
    groups, lows, span = _groups(weight)
    steps = torch.zeros_like(span)
    found = torch.zeros(span.shape, dtype=torch.bool)
    for n in range(LEVELS, 0, -1):
        todo = ~found
        if not todo.any():
            break
        step = span[todo] / n
        k = (groups[todo] - lows[todo].unsqueeze(-1)) / step.clamp(min=1e-30).unsqueeze(-1)
        on_grid = ((k - k.round()).abs() <= ON_GRID_TOLERANCE).all(dim=-1) | (step == 0)
        index = todo.nonzero(as_tuple=True)
        hit = tuple(i[on_grid] for i in index)
        steps[hit] = step[on_grid]
        found[hit] = True
    if not found.all():
        return None
    return _codes(groups, lows, steps), steps, lows


def min_max_codes(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lossy 4-bit codes: each group's range cut into 15 steps (what QUANTIZATION=int4 forces)."""
    groups, lows, span = _groups(weight)
    steps = span / LEVELS
    return _codes(groups, lows, steps), steps, lows


def _groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out_features, in_features = weight.shape
    groups = weight.detach().float().reshape(out_features, in_features // GROUP_SIZE, GROUP_SIZE)
    lows, highs = groups.amin(dim=-1), groups.amax(dim=-1)
    return groups, lows, highs - lows


def _codes(groups: torch.Tensor, lows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    safe = torch.where(steps == 0, torch.ones_like(steps), steps)
    codes = ((groups - lows.unsqueeze(-1)) / safe.unsqueeze(-1)).round().clamp(0, LEVELS)
    # uint8: a whole model's codes are held at once while QUANTIZATION=auto decides.
    return codes.to(torch.uint8).reshape(groups.shape[0], -1)


Swap = tuple[torch.nn.Module, str, torch.nn.Linear]


def quantizable_linears(model: torch.nn.Module) -> list[Swap]:
    """(parent, attribute, linear) for each bias-free linear the kernel can take.

    The output projection is left alone: it is tied to the embeddings (8-bit in the
    embedded model), and 4 bits there would change which token wins.
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if (
                isinstance(child, torch.nn.Linear)
                and child is not output
                and child.bias is None
                and child.in_features % GROUP_SIZE == 0
            ):
                found.append((parent, name, child))
    return found


def int4_linears(
    weights: list[torch.Tensor], force: bool, dense_dtype: torch.dtype = torch.bfloat16
) -> list[Int4Linear] | None:
    """An Int4Linear per weight (its prompt copy in `dense_dtype`), or None when some
    weight is not 4-bit and not `force`.

    Without `force` nothing is built unless every weight is already 4-bit (lossless);
    with it, weights that are not are cut to 4 bits (lossy, logged).
    """
    exact = [four_bit_codes(weight) for weight in weights]
    lossy = sum(codes is None for codes in exact)
    if not weights or (lossy and not force):
        return None
    if lossy:
        log.warning("int4: %d of %d linears were not 4-bit and lost precision", lossy, len(weights))
    return [
        Int4Linear(*(codes or min_max_codes(weight)), dense_dtype=dense_dtype)
        for weight, codes in zip(weights, exact, strict=True)
    ]


def quantize_int4(model: torch.nn.Module, force: bool) -> int:
    """Swap each quantizable linear for an Int4Linear (see int4_linears); how many were
    swapped. The rest of the model must then run in bf16, the kernel's activation type."""
    linears = quantizable_linears(model)
    built = int4_linears([linear.weight for _, _, linear in linears], force)
    if built is None:
        return 0
    for (parent, name, _), int4 in zip(linears, built, strict=True):
        setattr(parent, name, int4)
    return len(linears)
