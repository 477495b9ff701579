"""Decode attention that gives a sequence the same bits in a batch as alone.

The batching engine left-pads the batch's KV cache. Masking the padding is exact in
arithmetic but not in floating point: a vectorised softmax or weighted sum splits the
keys across SIMD lanes by position, so padding shifts which lane adds which key and the
rounding changes. In fp32 that is ~1e-7 and rarely flips a token; in bf16 (the int4
path) it flips greedy answers. So a decode step attends row by row, each over exactly
its own keys — the very call a lone sequence makes. Prefill (one sequence, no padding)
is plain SDPA.

A one-token query attends with two small matmuls in fp32 rather than SDPA's flash
kernel: per row that kernel's set-up costs more than the arithmetic (~60 µs against
~40 µs a row and layer here).

chatstack's own Llama decoder keeps its KV in rows that start at column 0 and attends for
the whole batch at once instead (decode_attention.py).
"""

from __future__ import annotations

from typing import Any

import torch

ROW_ATTENTION = "chatstack_rows"


def row_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    row_lengths: list[int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA; with `row_lengths` (keys per row, right-aligned), one row at a time, unmasked."""
    if row_lengths is None:
        # Imported here, not at the top: transformers takes seconds to import and the
        # server answers /health while it loads. Only prefill reaches this line.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
    rows = [
        _attend_one_token(query[i], key[i, :, -n:], value[i, :, -n:], scaling)
        for i, n in enumerate(row_lengths)
    ]
    return torch.stack(rows), None


def _attend_one_token(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float
) -> torch.Tensor:
    """query [heads, 1, dim], key/value [kv_heads, n, dim] → [1, heads, dim].

    Query heads are grouped by the KV head they share (head h reads KV head
    h // (heads / kv_heads), as repeat_kv lays them out), so no KV copy is made.
    """
    heads, kv_heads, dim = query.shape[0], key.shape[0], query.shape[-1]
    # In fp32: bf16 matmuls this small are slower here, and fp32 is the more exact.
    grouped = query.reshape(kv_heads, heads // kv_heads, dim).float()
    scores = torch.bmm(grouped, key.float().transpose(1, 2)).mul_(scaling)
    out = torch.bmm(scores.softmax(dim=-1), value.float())
    return out.reshape(1, heads, dim).to(query.dtype)


def use_row_attention(model: Any) -> None:
    """Make `model` attend with row_attention; SDPA's masks still serve its prefill.

    Raises ValueError for a model whose attention is more than softmax(q·k)·v (a sliding
    window, logit soft-capping): row_attention would silently ignore that.
    """
    config = model.config
    for extra in ("sliding_window", "attn_logit_softcapping"):
        if getattr(config, extra, None):
            raise ValueError(f"the model's attention has {extra}; row attention cannot")
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ROW_ATTENTION, row_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ROW_ATTENTION, sdpa_mask)
    model.set_attn_implementation(ROW_ATTENTION)
