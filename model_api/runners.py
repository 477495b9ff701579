"""What the engines ask of a model: sequences that hold KV, prompt chunks, decode steps.

Two runners answer it. `LlamaRunner` drives chatstack's own decoder (llama_decoder.py) on
rows of a pre-allocated KV cache (kv_slots.py), prompts of several sequences in one forward.
`TransformersRunner` drives any transformers causal LM: each prompt in its own forward on
its own DynamicCache, then merged into a left-padded batch cache, where a decode step
attends row by row (attention.py) so that padding cannot change a row's bits.

A runner is touched by the engine's thread only. Keys are the engine's own sequence objects.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import torch

from model_api.attention import use_row_attention
from model_api.kv_slots import KVSlots
from model_api.loading import LoadedModel
from model_api.prefix_cache import PrefixCache

if TYPE_CHECKING:
    from transformers import DynamicCache

    from model_api.llama_decoder import LlamaDecoder

log = logging.getLogger(__name__)

Chunk = tuple[Hashable, list[int]]


class ModelRunner(abc.ABC):
    """Sequences opened, fed prompt chunks, then decoded a token at a time, then closed."""

    batches_prefills = False  # whether prefill() runs its chunks as one forward
    prefix_cache: PrefixCache | None = None  # where open() may find a prompt's first blocks

    @abc.abstractmethod
    def open(self, key: Hashable, prompt: list[int]) -> int:
        """A new sequence: it holds KV from now until close(). Returns how many of the
        prompt's first tokens its KV already holds (from the prefix cache): prefill the
        rest, from there."""

    @abc.abstractmethod
    def prefill(self, chunks: list[Chunk]) -> torch.Tensor:
        """Append each chunk to its sequence → float logits [chunks, vocab] of each last token."""

    @abc.abstractmethod
    def decode(self, keys: list[Hashable], tokens: list[int]) -> torch.Tensor:
        """One token for each of the decoding sequences → float logits [len(keys), vocab].

        `keys` are every sequence that has finished its prompt and is not closed, in the
        order they first came to decode.
        """

    @abc.abstractmethod
    def close(self, keys: list[Hashable]) -> None:
        """These sequences are done: free their KV."""

    @abc.abstractmethod
    def close_all(self) -> None: ...

    @abc.abstractmethod
    def held_tokens(self) -> int:
        """KV token slots held now (for /health and the KV budget)."""


def make_runner(
    loaded: LoadedModel, max_rows: int, batched: bool, prefix_cache: PrefixCache | None = None
) -> ModelRunner:
    """The decoder's runner when the model loaded one (with the prefix cache, if given),
    else transformers' (which has none)."""
    if loaded.decoder is not None:
        return LlamaRunner(loaded.decoder, max_rows, prefix_cache)
    return TransformersRunner(loaded, row_attention=batched)


class LlamaRunner(ModelRunner):
    """LlamaDecoder on KVSlots: a sequence's row is taken at open and written in place.

    With a prefix cache, open() copies the cached blocks that begin the prompt into the row,
    and every whole prefill chunk is kept in the cache once written (prefix_cache.py)."""

    def __init__(
        self, decoder: LlamaDecoder, max_rows: int, prefix_cache: PrefixCache | None = None
    ) -> None:
        self.decoder = decoder
        self.batches_prefills = not decoder.split_prefill
        layers = len(decoder.layers)
        self.kv = KVSlots(
            layers, decoder.kv_heads, decoder.head_dim, max_rows, decoder.dtype, decoder.device
        )
        self.prefix_cache = prefix_cache if prefix_cache and prefix_cache.enabled else None
        self.prompts: dict[Hashable, list[int]] = {}

    def open(self, key: Hashable, prompt: list[int]) -> int:
        kv = self.kv
        blocks = self.prefix_cache.match(prompt) if self.prefix_cache is not None else []
        seeded = sum(block.shape[3] for block in blocks)
        kv.open(key, len(prompt) + 1, seeded)
        if self.prefix_cache is None:
            return 0
        self.prompts[key] = prompt
        assert kv.data is not None
        row, start = kv.row(key), 0
        for block in blocks:
            stop = start + block.shape[3]
            kv.data[:, :, row, :, start:stop].copy_(block)
            start = stop
        kv.advance(key, start)
        return start

    def prefill(self, chunks: list[Chunk]) -> torch.Tensor:
        kv = self.kv
        kv.reserve(max(kv.length(key) + len(ids) for key, ids in chunks))
        segments = [(kv.row(key), kv.length(key), ids) for key, ids in chunks]
        logits = self.decoder.prefill(kv, segments)
        for key, ids in chunks:
            kv.advance(key, len(ids))
            if self.prefix_cache is not None:
                self._keep(key)
        return logits

    def _keep(self, key: Hashable) -> None:
        """The prompt's whole chunks written so far, into the prefix cache."""
        cache, kv = self.prefix_cache, self.kv
        assert cache is not None and kv.data is not None
        prompt, data, row = self.prompts[key], kv.data, kv.row(key)
        end = min(kv.length(key), len(prompt))
        cache.store(prompt, end, lambda start, stop: data[:, :, row, :, start:stop])

    def decode(self, keys: list[Hashable], tokens: list[int]) -> torch.Tensor:
        kv = self.kv
        positions = [kv.length(key) for key in keys]
        kv.reserve(max(positions) + 1)
        logits = self.decoder.decode(kv, tokens, [kv.row(key) for key in keys], positions)
        for key in keys:
            kv.advance(key, 1)
        return logits

    def close(self, keys: list[Hashable]) -> None:
        for key in keys:
            self.prompts.pop(key, None)
            if key in self.kv:
                self.kv.close(key)

    def close_all(self) -> None:
        self.prompts.clear()
        self.kv.close_all()

    def held_tokens(self) -> int:
        return self.kv.held_tokens


class TransformersRunner(ModelRunner):
    """Any transformers causal LM: prompts alone on their own caches, then one left-padded
    batch cache with explicit position ids, a decode step attending row by row."""

    def __init__(self, loaded: LoadedModel, row_attention: bool) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.prefilling: dict[Hashable, tuple[DynamicCache, int]] = {}  # cache, tokens in it
        self.order: list[Hashable] = []  # the batch's rows
        self.lengths: dict[Hashable, int] = {}
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [batch, cache length], 1 where a token is
        self.rows_attend_alone = row_attention and _try_row_attention(self.model)

    def open(self, key: Hashable, prompt: list[int]) -> int:
        # Imported here: transformers takes seconds to import, and the server must answer
        # /health while the model loads.
        from transformers import DynamicCache

        self.prefilling[key] = (DynamicCache(config=self.model.config), 0)
        return 0

    def prefill(self, chunks: list[Chunk]) -> torch.Tensor:
        logits = []
        for key, ids in chunks:
            cache, length = self.prefilling[key]
            tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
            # logits_to_keep=1: only the last position's logits are ever needed.
            out = self.model(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1)
            self.prefilling[key] = (cache, length + len(ids))
            logits.append(out.logits[0, -1])
        return torch.stack(logits).float()

    def decode(self, keys: list[Hashable], tokens: list[int]) -> torch.Tensor:
        for key in keys:
            if key in self.prefilling:
                self._merge(key)
        if keys != self.order:
            raise RuntimeError("decode keys differ from the batch's rows")
        assert self.mask is not None
        ids = torch.tensor([[t] for t in tokens], device=self.device)
        if len(keys) == 1 and not self.rows_attend_alone:  # a lone sequence: its plain forward
            out = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1)
        else:
            # Position = tokens already cached for that row, whatever padding precedes them.
            positions = torch.tensor([[self.lengths[k]] for k in keys], device=self.device)
            mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
            if self.rows_attend_alone:
                # Keys per row, this step's included: row_attention attends over exactly
                # those, so the model need not build a padding mask it would not read.
                attend: dict[str, Any] = {"row_lengths": [self.lengths[k] + 1 for k in keys]}
            else:
                attend = {"attention_mask": mask}
            out = self.model(
                input_ids=ids,
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
                **attend,
            )
        self.cache = out.cache
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        for key in keys:
            self.lengths[key] += 1
        return out.logits[:, -1].float()

    def close(self, keys: list[Hashable]) -> None:
        rows = []
        for key in keys:
            if self.prefilling.pop(key, None) is None and key in self.lengths:
                rows.append(self.order.index(key))
        if rows:
            self._remove_rows(rows)

    def close_all(self) -> None:
        self.prefilling.clear()
        self.order, self.lengths, self.cache, self.mask = [], {}, None, None

    def held_tokens(self) -> int:
        """The padded batch (rows × width) plus each prefill's own cache."""
        mask = self.mask
        batch = mask.shape[0] * mask.shape[1] if mask is not None else 0
        return batch + sum(length for _, length in self.prefilling.values())

    # ---- the batch's KV cache --------------------------------------------------------

    def _merge(self, key: Hashable) -> None:
        """Add a prefilled sequence as the batch's last row, left-padding whichever is shorter."""
        new_cache, length = self.prefilling.pop(key)
        self.order.append(key)
        self.lengths[key] = length
        new_mask = torch.ones((1, length), dtype=torch.long, device=self.device)
        if self.cache is None or self.mask is None:
            self.cache, self.mask = new_cache, new_mask
            return
        width = max(self.mask.shape[1], length)
        for old, new in zip(self.cache.layers, new_cache.layers, strict=True):
            old.keys = torch.cat([pad_left(old.keys, width), pad_left(new.keys, width)])
            old.values = torch.cat([pad_left(old.values, width), pad_left(new.values, width)])
        self.mask = torch.cat([pad_left(self.mask, width), pad_left(new_mask, width)])

    def _remove_rows(self, rows: list[int]) -> None:
        """Drop finished rows and the padding columns no remaining row needs."""
        drop = set(rows)
        for i in rows:
            del self.lengths[self.order[i]]
        self.order = [k for i, k in enumerate(self.order) if i not in drop]
        if not self.order:
            self.cache, self.mask = None, None
            return
        assert self.cache is not None and self.mask is not None
        keep = torch.tensor(
            [i for i in range(self.mask.shape[0]) if i not in drop], device=self.device
        )
        start = self.mask.shape[1] - max(self.lengths.values())
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, keep)[:, :, start:]
            layer.values = layer.values.index_select(0, keep)[:, :, start:]
        self.mask = self.mask.index_select(0, keep)[:, start:]


def _try_row_attention(model: object) -> bool:
    """Switch the model to row_attention; a model that cannot take it keeps its own."""
    try:
        use_row_attention(model)
    except (ValueError, AttributeError) as exc:
        log.warning("batched answers may differ from lone ones in the last bits: %s", exc)
        return False
    return True


def pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before `tensor` along its sequence dimension (-2 for KV, -1 for a mask)."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
