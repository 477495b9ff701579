"""Decode attention for chatstack's own decoder: one query token per row, the batch at once.

Each sequence's keys sit in its own KV row from column 0 (kv_slots.py), so a batch pads
after a row's keys, never before: the padding gets weight exactly 0 and only ever adds exact
zeros, and the width is rounded up to whole ATTENTION_BLOCKs, alone as in a batch, so a row
is not cut into SIMD lanes differently either. Whether the kernels then give each row the
bits it gets alone is checked at start (invariance.py); `decode_attention_by_row` is exact by
construction and the fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from model_api import amx_kernels
from model_api.attention import _attend_one_token

ATTENTION_BLOCK = 32  # width step: a divisor of kv_slots.GROWTH_TOKENS
# What chatstack's kernel takes (amx_kernels.cpp: kMaxGroup, its accumulators).
NATIVE_MAX_HEAD_DIM, NATIVE_MAX_GROUP = 128, 8


@dataclass(frozen=True)
class DecodeRows:
    """Which keys each row of a decode step attends over; made once per step."""

    lengths: list[int]  # keys per row; 0 for a row that is not decoding (its output is junk)
    counts: torch.Tensor  # the same as int64, for chatstack's kernel
    width: int  # the longest, rounded up to ATTENTION_BLOCK
    visible: torch.Tensor  # [rows, 1, 1, width] bool: column < the row's length
    padding: torch.Tensor  # [rows * kv_heads, 1, width]: 0 where visible, -inf after

    @classmethod
    def of(cls, lengths: list[int], kv_heads: int, device: torch.device) -> DecodeRows:
        width = -(-max(lengths) // ATTENTION_BLOCK) * ATTENTION_BLOCK
        counts = torch.tensor(lengths, device=device)
        visible = torch.arange(width, device=device) < counts.unsqueeze(-1)
        padding = torch.zeros(visible.shape, device=device).masked_fill_(~visible, float("-inf"))
        padding = padding.repeat_interleave(kv_heads, dim=0).unsqueeze(1)
        return cls(lengths, counts, width, visible[:, None, None, :], padding)


# attend(query, keys, values, rows, scale) → [rows, heads, dim]
AttentionFunction = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, DecodeRows, float], torch.Tensor
]


def decode_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rows: DecodeRows, scale: float
) -> torch.Tensor:
    """query [rows, heads, dim] (float32); keys/values [≥ rows, kv_heads, capacity, dim],
    finite everywhere → [rows, heads, dim] in the values' dtype: in float32, scores and their
    padding in one baddbmm, a softmax, a bmm (query heads grouped by the KV head they share,
    so no KV copy beyond the float32 one).

    Measured against SDPA's fused kernel (which reads bf16 as it is): 4-5x faster for one
    query token (B=16, 160 keys: 0.20 against 0.95 ms a layer), and SDPA lets a NaN in a
    masked key through.
    """
    n, heads, dim = query.shape
    kv_heads, width = keys.shape[1], rows.width
    k = keys[:n, :, :width].float().view(n * kv_heads, width, dim)
    v = values[:n, :, :width].float().view(n * kv_heads, width, dim)
    grouped = query.reshape(n * kv_heads, heads // kv_heads, dim)
    scores = torch.baddbmm(rows.padding, grouped, k.transpose(1, 2), alpha=scale)
    out = torch.bmm(scores.softmax(dim=-1), v)
    return out.view(n, heads, dim).to(values.dtype)


def decode_attention_blocked(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rows: DecodeRows, scale: float
) -> torch.Tensor:
    """decode_attention with the weighted sum of values cut into ATTENTION_BLOCKs of keys.

    Where a GEMM's blocking over its inner dimension follows that dimension's length (an
    Intel Xeon with AMX: 26 of 64 rows of a batch came out with other bits than alone),
    the weights·values product of decode_attention depends on the batch's widest row.
    Here it is one small product per block of 32 keys, summed over the blocks; the
    padding's blocks add exact zeros, so a row gets the bits it gets alone whatever the
    width (the start-up check says whether it does on this CPU). Rows go through in
    groups whose float32 keys and values fit GROUP_BYTES, so that long rows are converted
    and read while they are still in cache (at 16 rows of 4,000 keys one group took 4x
    as long as row by row), and a group's width is its own widest row's.
    """
    heads, dim = query.shape[1:]
    kv_heads = keys.shape[1]
    out = query.new_empty(query.shape, dtype=values.dtype)
    start = 0
    for stop, width in _groups(rows.lengths, kv_heads * dim * 8):
        if width:
            k = keys[start:stop, :, :width].float().view(-1, width, dim)
            v = values[start:stop, :, :width].float()
            v = v.view(-1, width // ATTENTION_BLOCK, ATTENTION_BLOCK, dim)
            grouped = query[start:stop].reshape(-1, heads // kv_heads, dim)
            padding = rows.padding[start * kv_heads : stop * kv_heads, :, :width]
            scores = torch.baddbmm(padding, grouped, k.transpose(1, 2), alpha=scale)
            weights = scores.softmax(dim=-1).view(scores.shape[0], -1, v.shape[1], ATTENTION_BLOCK)
            parts = torch.matmul(weights.transpose(1, 2), v)  # [., blocks, group, dim]
            out[start:stop] = parts.sum(dim=1).view(stop - start, heads, dim)
        start = stop
    return out


GROUP_BYTES = 8 * 2**20  # float32 keys and values of one group of rows (measured: 1-8 MB alike)


def _groups(lengths: list[int], bytes_per_key: int) -> list[tuple[int, int]]:
    """Consecutive groups of rows as (stop, width): each within GROUP_BYTES at its width
    (at least one row), width a whole number of ATTENTION_BLOCKs (0: no row decodes)."""
    groups, width, count = [], 0, 0
    for index, length in enumerate(lengths):
        padded = -(-length // ATTENTION_BLOCK) * ATTENTION_BLOCK
        wider = max(width, padded)
        if count and (count + 1) * wider * bytes_per_key > GROUP_BYTES:
            groups.append((index, width))
            wider, count = padded, 0
        width, count = wider, count + 1
    groups.append((len(lengths), width))
    return groups


def decode_attention_native(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rows: DecodeRows, scale: float
) -> torch.Tensor:
    """chatstack's kernel (amx_kernels.cpp, where it is built): the same arithmetic as
    decode_attention, in float32 from the bf16 keys and values as they lie, without first
    converting the batch's keys and values to float32 in memory (at 32 rows that copy was a
    third of a decode step), one (row, KV head) at a time. Float32 out."""
    lib = amx_kernels.library()
    assert lib is not None
    n, heads, dim = query.shape
    assert keys.dtype == torch.bfloat16 and keys.stride(2) == dim and keys.stride(3) == 1
    query = query if query.stride(2) == 1 and query.stride(1) == dim else query.contiguous()
    out = torch.empty((n, heads, dim))
    lib.chatstack_decode_attention(
        query.data_ptr(),
        query.stride(0),
        keys.data_ptr(),
        values.data_ptr(),
        keys.stride(0),
        keys.stride(1),
        rows.counts.data_ptr(),
        n,
        heads,
        keys.shape[1],
        dim,
        scale,
        out.data_ptr(),
    )
    return out


def decode_attention_by_row(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, rows: DecodeRows, scale: float
) -> torch.Tensor:
    """One row at a time over exactly its keys: exact by construction."""
    out = query.new_empty(query.shape, dtype=values.dtype)
    for r, n in enumerate(rows.lengths):
        if n:
            one = query[r].unsqueeze(1).to(values.dtype)  # [heads, 1, dim]
            out[r] = _attend_one_token(one, keys[r, :, :n], values[r, :, :n], scale)[0]
    return out


def batched(dtype: torch.dtype, head_dim: int, group: int) -> tuple[AttentionFunction, ...]:
    """Batched ones for keys and values in `dtype`, heads `head_dim` wide, `group` query
    heads per KV head; the faster first: the decoder uses the first that is row-invariant."""
    native = (
        dtype == torch.bfloat16
        and head_dim % 32 == 0
        and head_dim <= NATIVE_MAX_HEAD_DIM
        and group <= NATIVE_MAX_GROUP
        and amx_kernels.library() is not None
    )
    return (decode_attention_native,) * native + (decode_attention, decode_attention_blocked)
