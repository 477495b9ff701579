"""Decode attention that gives a sequence the same bits in a batch as alone.

The batching engine left-pads the batch's KV cache. Masking the padding is exact in
arithmetic but not in floating point: a vectorised softmax or weighted sum splits the
keys across SIMD lanes by position, so padding shifts which lane adds which key and the
rounding changes. In fp32 that is ~1e-7 and rarely flips a token; in bf16 (the int4
path) it flips greedy answers. So a decode step attends row by row, each over exactly
its own keys — the very call a lone sequence makes. Prefill (one sequence, no padding)
is plain SDPA.
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
    """SDPA; with `row_lengths` (keys per row, right-aligned), one call per row, unmasked."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if row_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows = [
        sdpa_attention_forward(
            module,
            query[i : i + 1],
            key[i : i + 1, :, -n:],
            value[i : i + 1, :, -n:],
            None,
            **kwargs,
        )[0]
        for i, n in enumerate(row_lengths)
    ]
    return torch.cat(rows), None


def use_row_attention(model: Any) -> None:
    """Make `model` attend with row_attention; SDPA's masks still serve its prefill."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ROW_ATTENTION, row_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ROW_ATTENTION, sdpa_mask)
    model.set_attn_implementation(ROW_ATTENTION)
