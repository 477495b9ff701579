"""Start-up checks that a kernel gives a row the same bits whatever else is in its batch.

A batched greedy answer equals the lone one only if every operation on a sequence's numbers
ignores the other rows of its batch. For matrix multiplies and reductions that is a property
of the kernels on this CPU, not of the code: oneDNN and MKL choose blocking (and for a few
rows a different algorithm) by the matrix's shape. Measured here: MKL's fp32 GEMM gives other
bits for 1-3, 5-7 and 9-11 rows than for 4, 8 or 12+, oneDNN's bf16 GEMM the same bits for
every row count, and padded attention the same bits once its width is whole blocks. So the
decoder checks each kernel once at start, on the shapes it will run, and pads rows to the
smallest multiple that makes it invariant, or falls back to what is exact by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from model_api.decode_attention import AttentionFunction, DecodeRows

log = logging.getLogger(__name__)

QUANTA = (1, 2, 4, 8, 16)  # row-count multiples tried, smallest first
OFFSETS = (0, 1, 5, 13)  # where a sequence's rows may start inside a batch

RowFunction = Callable[[torch.Tensor], torch.Tensor]


def pad_rows(x: torch.Tensor, quantum: int) -> torch.Tensor:
    """`x` with zero rows appended up to a multiple of `quantum`."""
    missing = -x.shape[0] % quantum
    if not missing:
        return x
    return torch.cat([x, x.new_zeros((missing, *x.shape[1:]))])


def run_padded(fn: RowFunction, x: torch.Tensor, quantum: int | None) -> torch.Tensor:
    """fn over rows padded to `quantum`; None: one row at a time (exact by construction)."""
    rows = x.shape[0]
    if quantum is None:
        return torch.cat([fn(x[i : i + 1]) for i in range(rows)])
    if quantum == 1:
        return fn(x)
    return fn(pad_rows(x, quantum))[:rows]


def row_sizes(max_rows: int) -> list[int]:
    """Batch sizes worth trying up to max_rows: every small one, then a spread."""
    sizes = set(range(1, min(max_rows, 17) + 1))
    size = 16
    while size < max_rows:
        sizes.update({size - 1, size, size + 1})
        size = size * 3 // 2
    sizes.add(max_rows)
    return sorted(s for s in sizes if s <= max_rows)


def row_quantum(
    fn: RowFunction, in_features: int, max_rows: int, dtype: torch.dtype, device: torch.device
) -> int | None:
    """The smallest q in QUANTA for which a sequence's rows, padded to a multiple of q alone,
    get the bits they get at any offset of a padded batch of up to `max_rows`; None if none.

    Tried on random rows: a check, not a proof, over the sizes row_sizes gives.
    """
    generator = torch.Generator(device="cpu").manual_seed(0)
    total = max_rows + max(OFFSETS) + max(QUANTA)
    x = torch.randn(total, in_features, generator=generator).to(device=device, dtype=dtype)
    for quantum in QUANTA:
        batch = total - total % quantum
        reference = fn(x[:batch])
        if all(
            torch.equal(run_padded(fn, x[o : o + m], quantum), reference[o : o + m])
            for m in row_sizes(max_rows)
            for o in OFFSETS
            if o + m <= batch
        ):
            return quantum
    return None


def attention_is_row_invariant(
    attend: AttentionFunction,
    heads: int,
    kv_heads: int,
    head_dim: int,
    max_rows: int,
    max_len: int,
    dtype: torch.dtype,
    device: torch.device,
    trials: int = 12,
) -> bool:
    """Whether `attend` gives every row of a batch the bits it gets alone, for random
    lengths up to `max_len` and batches of up to `max_rows` (rows stored as kv_slots does)."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    rows = min(max_rows, 8)
    capacity = max_len + 64

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    keys = rand(rows, kv_heads, capacity, head_dim)
    values = rand(rows, kv_heads, capacity, head_dim)
    query = rand(rows, heads, head_dim).float()  # the decoder's queries are float32
    scale = head_dim**-0.5
    for trial in range(trials):
        longest = max_len if trial % 2 else min(max_len, 300)
        lengths = torch.randint(1, longest + 1, (rows,), generator=generator).tolist()
        together = attend(query, keys, values, DecodeRows.of(lengths, kv_heads, device), scale)
        for r in range(rows):
            alone = attend(
                query[r : r + 1],
                keys[r : r + 1],
                values[r : r + 1],
                DecodeRows.of(lengths[r : r + 1], kv_heads, device),
                scale,
            )
            if not torch.equal(alone[0], together[r]):
                return False
    return True
