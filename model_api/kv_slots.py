"""A pre-allocated KV cache of rows: each sequence owns one row from its first prompt token.

One tensor holds every layer's keys and values, `[layers, 2, rows, kv_heads, capacity,
head_dim]` (a layer's keys and values are one contiguous block, written with one copy). A
sequence writes its token at position p to column p of its row, so nothing is padded or
shifted as the batch changes, and a decode step attends over each row's first
`length` columns. Rows are as wide as the widest sequence needs (`capacity`, a multiple of
GROWTH_TOKENS); the tensor grows, and shrinks again, when the longest sequence asks for it,
and holds only the rows in use in physical memory (a row is touched when it is taken).

Open rows stay packed at the bottom (a closed row's hole is filled by moving the top row
down), so a batch reads `[:rows_in_use]` as a view. Seeding a row from a stored prefix (a
prefix cache) is a copy into its first columns and a `length` set ahead.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch

GROWTH_TOKENS = 256  # capacity steps: a multiple of the attention's block (decode_attention.py)


@dataclass
class _Row:
    index: int
    length: int = 0  # columns written


class KVSlots:
    """Rows of keys and values for up to `max_rows` sequences, keyed by the caller's key."""

    def __init__(
        self,
        layers: int,
        kv_heads: int,
        head_dim: int,
        max_rows: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.shape = (layers, kv_heads, head_dim)
        self.max_rows = max_rows
        self.dtype, self.device = dtype, device
        self.capacity = 0
        self.data: torch.Tensor | None = None  # [layers, 2, max_rows, kv_heads, capacity, dim]
        self._rows: dict[Hashable, _Row] = {}
        self._by_index: list[Hashable | None] = [None] * max_rows

    # ---- bookkeeping ------------------------------------------------------------------

    def __contains__(self, key: Hashable) -> bool:
        return key in self._rows

    def row(self, key: Hashable) -> int:
        return self._rows[key].index

    def length(self, key: Hashable) -> int:
        return self._rows[key].length

    @property
    def rows_in_use(self) -> int:
        """Rows [0, rows_in_use) hold the open sequences (packed)."""
        return len(self._rows)

    @property
    def held_tokens(self) -> int:
        """Token columns the open rows hold: rows in use × capacity."""
        return len(self._rows) * self.capacity

    def bytes_per_token(self) -> int:
        layers, kv_heads, dim = self.shape
        return 2 * layers * kv_heads * dim * torch.empty((), dtype=self.dtype).element_size()

    # ---- rows -------------------------------------------------------------------------

    def open(self, key: Hashable, tokens: int, seeded: int = 0) -> None:
        """Take the lowest free row for `key`, wide enough for `tokens` columns; the caller
        writes its first `seeded` columns at once (a prefix cache's blocks)."""
        if key in self._rows:
            raise ValueError("this sequence already has a row")
        if len(self._rows) == self.max_rows:
            raise RuntimeError(f"all {self.max_rows} KV rows are taken")
        index = len(self._rows)  # packed: the lowest free row is the next one
        self._rows[key] = _Row(index)
        self._by_index[index] = key
        self.reserve(tokens)
        assert self.data is not None
        # Attention reads a row's columns past its length and gives them weight exactly 0;
        # a NaN left there (torch.empty, or an earlier sequence) would still poison the
        # sum, so a taken row starts from zeros (past what the caller writes: zeroing a
        # 6k-token row is ~60 ms on a CPU, most of a cached follow-up's first token).
        self.data[:, :, index, :, seeded:].zero_()

    def close(self, key: Hashable) -> None:
        """Free `key`'s row; the top row moves into it so the open rows stay packed."""
        row = self._rows.pop(key)
        top = len(self._rows)  # the index of the highest row still in use, after the pop
        self._by_index[row.index] = None
        if row.index != top:
            moved_key = self._by_index[top]
            assert moved_key is not None and self.data is not None
            moved = self._rows[moved_key]
            n = moved.length
            # Only the written columns move; the rest of the row becomes zeros.
            self.data[:, :, row.index, :, :n].copy_(self.data[:, :, top, :, :n])
            self.data[:, :, row.index, :, n:].zero_()
            moved.index = row.index
            self._by_index[row.index], self._by_index[top] = moved_key, None
        if not self._rows:
            self._resize(0)
        else:
            needed = max(r.length for r in self._rows.values())
            if _round_up(needed + 1) * 2 <= self.capacity:
                self._resize(_round_up(needed + 1))  # a long sequence ended: give memory back

    def close_all(self) -> None:
        self._rows.clear()
        self._by_index = [None] * self.max_rows
        self._resize(0)

    def advance(self, key: Hashable, tokens: int) -> None:
        """`tokens` more columns of `key`'s row are written."""
        self._rows[key].length += tokens

    def reserve(self, tokens: int) -> None:
        """Make every row at least `tokens` columns wide."""
        if tokens > self.capacity:
            self._resize(_round_up(tokens))

    def _resize(self, capacity: int) -> None:
        if capacity == self.capacity:
            return
        old, old_capacity = self.data, self.capacity
        self.capacity = capacity
        if capacity == 0:
            self.data = None
            return
        layers, kv_heads, dim = self.shape
        # torch.empty: pages of rows never used are never touched, so never resident.
        self.data = torch.empty(
            (layers, 2, self.max_rows, kv_heads, capacity, dim),
            dtype=self.dtype,
            device=self.device,
        )
        used = len(self._rows)
        if used and old is not None:
            keep = min(old_capacity, capacity)
            self.data[:, :, :used, :, :keep].copy_(old[:, :, :used, :, :keep])
            if capacity > keep:
                self.data[:, :, :used, :, keep:].zero_()

    # ---- views for the model ------------------------------------------------------------

    def layer(self, index: int) -> torch.Tensor:
        """One layer's keys ([0]) and values ([1]): `[2, max_rows, kv_heads, capacity, dim]`."""
        assert self.data is not None
        return self.data[index]


def _round_up(tokens: int) -> int:
    return -(-tokens // GROWTH_TOKENS) * GROWTH_TOKENS
