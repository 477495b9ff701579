"""The prefix cache: keys and values of prompt blocks kept after their sequence ends, so a
later prompt that starts with the same tokens (the same system prompt, document and history,
the next turn of a conversation) copies them instead of computing them again.

A block is one whole prefill chunk of a prompt (prompt_chunks.py: up to
PREFILL_CHUNK_TOKENS, ending where a message ends). Only chunks are cached, never decoded
tokens, and a prompt resumes at a chunk end: the engine cuts a prompt at the same places
with or without the cache, so a cached block holds exactly the bits the prompt's own
prefill would write, and the answer is the one it gets without the cache
(tests/unit/test_prefix_cache.py checks it).

Blocks form chains: a block's key is its parent block and its own tokens, so a block is
found only after the same tokens from the prompt's start. The tokens themselves are the key
(compared, not just hashed), so two prompts never share a block by a hash collision. Memory
is bounded by PREFIX_CACHE_MB; the least recently used block goes first, and because a
chain is touched from its last block back to its first, a block is always evicted before
its parent (a chain's blocks are never orphaned).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from model_api.prompt_chunks import ChunkPlan

ROOT = 0  # the parent of a prompt's first block

# block(start, stop) → that block's keys and values, [layers, 2, kv_heads, tokens, dim]
ReadBlock = Callable[[int, int], torch.Tensor]


@dataclass(eq=False)
class _Block:
    id: int
    key: tuple[int, tuple[int, ...]]  # (parent id, tokens)
    kv: torch.Tensor = field(repr=False)

    @property
    def tokens(self) -> int:
        return len(self.key[1])


class PrefixCache:
    """Whole chunks of prompts as `plan` cuts them, at most `budget_bytes` of them."""

    def __init__(self, plan: ChunkPlan, budget_bytes: int, bytes_per_token: int) -> None:
        self.plan = plan
        self.max_tokens = budget_bytes // bytes_per_token if bytes_per_token else 0
        self._by_key: dict[tuple[int, tuple[int, ...]], _Block] = {}
        self._lru: OrderedDict[int, _Block] = OrderedDict()  # least recently used first
        self._next_id = ROOT + 1
        self.tokens = 0  # held now
        self.hit_tokens = 0  # prompt tokens served from the cache, since start
        self.evicted_blocks = 0

    @property
    def enabled(self) -> bool:
        return self.max_tokens >= self.plan.max_tokens

    @property
    def blocks(self) -> int:
        return len(self._lru)

    def match(self, prompt: list[int]) -> list[torch.Tensor]:
        """The cached blocks that begin `prompt`, in order (each [layers, 2, kv_heads,
        tokens, dim]); they become the most recently used. Never the prompt's last token:
        its logits start the answer, so it is always computed."""
        chain = []
        for _, _, block in self._walk(prompt, len(prompt) - 1):
            if block is None:
                break
            chain.append(block)
        self._touch(chain)
        self.hit_tokens += sum(block.tokens for block in chain)
        return [block.kv for block in chain]

    def store(self, prompt: list[int], end: int, read: ReadBlock) -> None:
        """Keep the whole chunks of `prompt[:end]` that are not cached, reading each one's
        keys and values with `read(start, stop)`."""
        if not self.enabled:
            return
        chain, parent = [], ROOT
        for start, stop, block in self._walk(prompt, end):
            if block is None:
                key = (parent, tuple(prompt[start:stop]))
                block = _Block(self._next_id, key, read(start, stop).clone())
                self._next_id += 1
                self._by_key[key] = block
                self._lru[block.id] = block
                self.tokens += block.tokens
            chain.append(block)
            parent = block.id
        self._touch(chain)
        self._evict()

    # ---- inside ---------------------------------------------------------------------------

    def _walk(self, prompt: list[int], limit: int) -> Iterator[tuple[int, int, _Block | None]]:
        """(start, stop, cached block) of each whole chunk up to `limit`; the block is None
        for the first missing one and each after it (a block is found only after its
        parent)."""
        parent: int | None = ROOT
        for start, stop in self.plan.whole_chunks(prompt, limit):
            block = None
            if parent is not None:
                block = self._by_key.get((parent, tuple(prompt[start:stop])))
            parent = block.id if block is not None else None
            yield start, stop, block

    def _touch(self, chain: list[_Block]) -> None:
        # Last block first: a parent ends up more recent than any of its children.
        for block in reversed(chain):
            self._lru.move_to_end(block.id)

    def _evict(self) -> None:
        while self.tokens > self.max_tokens:
            _, block = self._lru.popitem(last=False)
            del self._by_key[block.key]
            self.tokens -= block.tokens
            self.evicted_blocks += 1
