"""The prefix cache: keys and values of prompt blocks kept after their sequence ends, so a
later prompt that starts with the same tokens (the same system prompt, document and history,
the next turn of a conversation) copies them instead of computing them again.

A block is one prefill chunk (PREFILL_CHUNK_TOKENS tokens) at a chunk boundary of its
prompt. Only chunks are cached, never decoded tokens, and a prompt always resumes at a
chunk boundary: the engine cuts a prompt at the same places with or without the cache, so a
cached block holds exactly the bits the prompt's own prefill would write, and the answer is
the one it gets without the cache (tests/unit/test_prefix_cache.py checks it).

Blocks form chains: a block's key is its parent block and its own tokens, so a block is
found only after the same tokens from the prompt's start. The tokens themselves are the key
(compared, not just hashed), so two prompts never share a block by a hash collision. Memory
is bounded by PREFIX_CACHE_MB; the least recently used block goes first, and because a
chain is touched from its last block back to its first, a block is always evicted before
its parent (a chain's blocks are never orphaned).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

ROOT = 0  # the parent of a prompt's first block

# block(start, stop) → that block's keys and values, [layers, 2, kv_heads, tokens, dim]
ReadBlock = Callable[[int, int], torch.Tensor]


@dataclass(eq=False)
class _Block:
    id: int
    key: tuple[int, tuple[int, ...]]  # (parent id, tokens)
    kv: torch.Tensor = field(repr=False)


class PrefixCache:
    """Prompt blocks of `block_tokens` tokens, at most `budget_bytes` of them."""

    def __init__(self, block_tokens: int, budget_bytes: int, bytes_per_token: int) -> None:
        self.block_tokens = block_tokens
        block_bytes = block_tokens * bytes_per_token
        self.max_blocks = budget_bytes // block_bytes if block_bytes else 0
        self._by_key: dict[tuple[int, tuple[int, ...]], _Block] = {}
        self._lru: OrderedDict[int, _Block] = OrderedDict()  # least recently used first
        self._next_id = ROOT + 1
        self.hit_tokens = 0  # prompt tokens served from the cache, since start
        self.evicted_blocks = 0

    @property
    def enabled(self) -> bool:
        return self.max_blocks > 0

    @property
    def blocks(self) -> int:
        return len(self._lru)

    @property
    def tokens(self) -> int:
        return len(self._lru) * self.block_tokens

    def reusable(self, prompt_len: int) -> int:
        """The most tokens of a prompt the cache may give: whole blocks, and never the
        prompt's last token (its logits start the answer, so it is always computed)."""
        return (prompt_len - 1) // self.block_tokens * self.block_tokens if prompt_len else 0

    def match(self, prompt: list[int]) -> list[torch.Tensor]:
        """The cached blocks that begin `prompt`, in order (each [layers, 2, kv_heads,
        block_tokens, dim]); they become the most recently used."""
        chain = list(self._walk(prompt, self.reusable(len(prompt))))
        self._touch(chain)
        self.hit_tokens += len(chain) * self.block_tokens
        return [block.kv for block in chain]

    def store(self, prompt: list[int], end: int, read: ReadBlock) -> None:
        """Keep the blocks of `prompt[:end]` (`end` a multiple of block_tokens) that are not
        cached, reading each one's keys and values with `read(start, stop)`."""
        if not self.enabled or end % self.block_tokens:
            return
        size, parent, chain = self.block_tokens, ROOT, []
        for start in range(0, end, size):
            key = (parent, tuple(prompt[start : start + size]))
            block = self._by_key.get(key)
            if block is None:
                block = _Block(self._next_id, key, read(start, start + size).clone())
                self._next_id += 1
                self._by_key[key] = block
                self._lru[block.id] = block
            chain.append(block)
            parent = block.id
        self._touch(chain)
        self._evict()

    # ---- inside ---------------------------------------------------------------------------

    def _walk(self, prompt: list[int], limit: int):
        size, parent = self.block_tokens, ROOT
        for start in range(0, limit, size):
            block = self._by_key.get((parent, tuple(prompt[start : start + size])))
            if block is None:
                return
            yield block
            parent = block.id

    def _touch(self, chain: list[_Block]) -> None:
        # Last block first: a parent ends up more recent than any of its children.
        for block in reversed(chain):
            self._lru.move_to_end(block.id)

    def _evict(self) -> None:
        while len(self._lru) > self.max_blocks:
            _, block = self._lru.popitem(last=False)
            del self._by_key[block.key]
            self.evicted_blocks += 1
