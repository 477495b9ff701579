"""Continuous (iteration-level) batching: every running sequence decodes in one forward.

One thread owns the model, as in the sequential engine. Each iteration it prefills
waiting prompts (alone, in chunks, within a token budget), merges each finished
prefill into the running batch, and decodes one token for every running sequence.
The batch's KV cache is left-padded: sequence i holds the last `length_i` columns,
an attention mask hides the padding and explicit position ids keep each sequence's
positions its own, so a sequence's tokens do not depend on its neighbours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from model_api.attention import use_row_attention
from model_api.engine import GenerationHandle, GenerationThread, SequenceOutput
from model_api.loading import LoadedModel
from model_api.sampling import Sampler

if TYPE_CHECKING:
    from transformers import DynamicCache

log = logging.getLogger(__name__)


@dataclass
class _Sequence:
    """One request inside the engine: its sampler, its output and where its prefill is."""

    handle: GenerationHandle
    output: SequenceOutput
    sampler: Sampler
    cache: DynamicCache | None = None  # its own cache while prefilling, then None
    prefilled: int = 0
    length: int = 0  # tokens in the KV cache
    next_token: int = 0  # sampled, not yet fed to the model
    logits: torch.Tensor | None = field(default=None, repr=False)


class BatchingEngine(GenerationThread):
    """Generates for up to `max_batch_size` requests at once, one forward per step."""

    def __init__(
        self,
        loaded: LoadedModel,
        max_batch_size: int = 8,
        max_waiting: int = 64,
        prefill_chunk_tokens: int = 256,
        kv_cache_mb: int = 1024,
    ) -> None:
        super().__init__(capacity=max_batch_size + max_waiting)
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.kv_bytes_per_token = kv_bytes_per_token(loaded.model.config, loaded.dtype)
        self.kv_cache_tokens = kv_cache_mb * 2**20 // self.kv_bytes_per_token
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.prefilling: list[_Sequence] = []
        self.running: list[_Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [batch, cache length], 1 where a token is
        self.rows_attend_alone = _try_row_attention(loaded.model)

    # ---- read by /health and /metrics ---------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sequences generating (or prefilling), queued, in the decode batch; KV cache use.

        Read without the lock: /health and /metrics must answer at once while the engine
        is busiest, and a count a step old is as good there.
        """
        running, batch = len(self.prefilling) + len(self.running), len(self.running)
        return {
            "running": running,
            "waiting": len(self._waiting),
            "batch_size": batch,
            "kv_cache_tokens": self._cache_tokens(),
            "kv_cache_capacity_tokens": self.kv_cache_tokens,
        }

    def _cache_tokens(self) -> int:
        """Token slots the KV caches hold now: the padded batch plus each prefill's own."""
        mask = self.mask
        batch = mask.shape[0] * mask.shape[1] if mask is not None else 0
        return batch + sum(s.prefilled for s in self.prefilling)

    def _cache_fits(self, prompt_len: int) -> bool:
        """Whether one more sequence keeps the padded batch within KV_CACHE_MB.

        Every row is as wide as the widest, so the batch costs rows x width slots. A lone
        request always runs (MAX_MODEL_LEN bounds it); the batch may outgrow the budget
        as it decodes, by the tokens its requests still generate.
        """
        active = self.prefilling + self.running
        if not active:
            return True
        width = max([len(s.handle.prompt_ids) for s in active] + [prompt_len])
        if self.mask is not None:
            width = max(width, self.mask.shape[1])
        return (len(active) + 1) * (width + 1) <= self.kv_cache_tokens

    # ---- the generation thread -------------------------------------------------------

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        with torch.inference_mode():
            while True:
                self._admit()
                self._drop_cancelled()
                self._prefill_step()
                if self.running:
                    try:
                        self._decode_step()
                    except Exception as exc:  # the engine must outlive any one batch
                        log.exception("batched decode failed")
                        self._fail_running(f"Generation failed: {type(exc).__name__}: {exc}")

    def _admit(self) -> None:
        """Move waiting requests into prefill while the batch has room; block when idle."""
        with self._lock:
            while not (self._waiting or self.running or self.prefilling):
                self._wakeup.wait()
            while self._waiting and len(self.running) + len(self.prefilling) < self.max_batch_size:
                if not self._cache_fits(len(self._waiting[0].prompt_ids)):
                    break  # it waits until finished sequences free their rows
                handle = self._waiting.popleft()
                if handle.cancelled:
                    handle.done.set()
                    continue
                output = SequenceOutput(handle, self.loaded.tokenizer, self.loaded.eos_token_ids)
                sampler = Sampler(handle.params, self.loaded.vocab_size, self.loaded.device)
                self.prefilling.append(_Sequence(handle, output, sampler))

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self.prefilling if s.handle.cancelled]:
            self.prefilling.remove(seq)
            seq.handle.done.set()
            log.info("generation cancelled while prefilling", extra=seq.handle.log_extra)
        gone = [i for i, s in enumerate(self.running) if s.handle.cancelled]
        if gone:
            for i in gone:
                seq = self.running[i]
                log.info(
                    "generation cancelled after %d tokens",
                    seq.output.completion_tokens,
                    extra=seq.handle.log_extra,
                )
                seq.handle.done.set()
            self._remove_rows(gone)

    def _prefill_step(self) -> None:
        """Prefill one chunk for as many prompts as a chunk's worth of tokens allows.

        A prompt is always cut at the same places (every PREFILL_CHUNK_TOKENS), whatever
        else is waiting: the cut changes the arithmetic, and a prompt must give the same
        answer in a batch as alone. The budget only decides who goes this step.
        """
        budget = self.prefill_chunk_tokens
        for seq in list(self.prefilling):
            if budget <= 0:
                break
            try:
                budget -= self._prefill_chunk(seq)
            except Exception as exc:  # one bad prompt fails one request, not the engine
                log.exception("prefill failed", extra=seq.handle.log_extra)
                self.prefilling.remove(seq)
                seq.output.fail(f"Generation failed: {type(exc).__name__}: {exc}")
                continue
            if seq.prefilled == len(seq.handle.prompt_ids):
                self.prefilling.remove(seq)
                self._start_decoding(seq)

    def _prefill_chunk(self, seq: _Sequence) -> int:
        prompt = seq.handle.prompt_ids
        chunk = prompt[seq.prefilled : seq.prefilled + self.prefill_chunk_tokens]
        if seq.cache is None:
            # Imported here: transformers takes seconds to import, and the server must
            # answer /health while the model loads.
            from transformers import DynamicCache

            seq.cache = DynamicCache(config=self.loaded.model.config)
        ids = torch.tensor([chunk], dtype=torch.long, device=self.loaded.device)
        # logits_to_keep=1: only the last position's logits are ever needed.
        out = self.loaded.model(input_ids=ids, cache=seq.cache, use_cache=True, logits_to_keep=1)
        seq.prefilled += len(chunk)
        seq.logits = out.logits[0, -1]
        return len(chunk)

    def _start_decoding(self, seq: _Sequence) -> None:
        """Sample the first token from the prefill; join the batch unless already done."""
        assert seq.logits is not None and seq.cache is not None
        token = seq.sampler.next_token(seq.logits.float())
        seq.logits = None
        if seq.output.push_token(token):
            seq.cache = None
            return
        seq.next_token, seq.length = token, len(seq.handle.prompt_ids)
        self._merge(seq)

    # ---- the batch's KV cache --------------------------------------------------------

    def _merge(self, seq: _Sequence) -> None:
        """Add a prefilled sequence as the batch's last row, left-padding whichever is shorter."""
        assert seq.cache is not None
        new_cache, seq.cache = seq.cache, None
        device = self.loaded.device
        if not self.running:
            self.cache = new_cache
            self.mask = torch.ones((1, seq.length), dtype=torch.long, device=device)
            self.running.append(seq)
            return
        assert self.cache is not None and self.mask is not None
        width = max(self.mask.shape[1], seq.length)
        for old, new in zip(self.cache.layers, new_cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
        new_mask = torch.ones((1, seq.length), dtype=torch.long, device=device)
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(new_mask, width)])
        self.running.append(seq)

    def _remove_rows(self, rows: list[int]) -> None:
        """Drop finished rows and the padding columns no remaining row needs."""
        drop = set(rows)
        self.running = [s for i, s in enumerate(self.running) if i not in drop]
        if not self.running:
            self.cache, self.mask = None, None
            return
        assert self.cache is not None and self.mask is not None
        device = self.loaded.device
        keep = torch.tensor([i for i in range(self.mask.shape[0]) if i not in drop], device=device)
        start = self.mask.shape[1] - max(s.length for s in self.running)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, keep)[:, :, start:]
            layer.values = layer.values.index_select(0, keep)[:, :, start:]
        self.mask = self.mask.index_select(0, keep)[:, start:]

    def _decode_step(self) -> None:
        assert self.mask is not None
        device = self.loaded.device
        ids = torch.tensor([[s.next_token] for s in self.running], device=device)
        # Position = tokens already cached for that row, whatever padding precedes them.
        positions = torch.tensor([[s.length] for s in self.running], device=device)
        mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        if self.rows_attend_alone:
            # Keys per row, this step's included: row_attention attends over exactly those,
            # so the model need not build a padding mask it would not read.
            attend = {"row_lengths": [s.length + 1 for s in self.running]}
        else:
            attend = {"attention_mask": mask}
        out = self.loaded.model(
            input_ids=ids,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
            **attend,
        )
        self.cache, self.mask = out.cache, mask
        logits = out.logits[:, -1].float()
        finished = []
        for i, seq in enumerate(self.running):
            seq.length += 1
            seq.next_token = seq.sampler.next_token(logits[i])
            if seq.output.push_token(seq.next_token):
                finished.append(i)
        if finished:
            self._remove_rows(finished)

    def _fail_running(self, message: str) -> None:
        for seq in self.running:
            seq.output.fail(message)
        self.running, self.cache, self.mask = [], None, None


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Keys and values of one token across all layers, from the model's shape."""
    heads = int(getattr(config, "num_attention_heads", 1))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
    layers = int(getattr(config, "num_hidden_layers", 1))
    return 2 * layers * kv_heads * int(head_dim) * torch.empty((), dtype=dtype).element_size()


def _try_row_attention(model: object) -> bool:
    """Switch the model to row_attention; a model that cannot take it keeps its own."""
    try:
        use_row_attention(model)
    except (ValueError, AttributeError) as exc:
        log.warning("batched answers may differ from lone ones in the last bits: %s", exc)
        return False
    return True


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros before `tensor` along its sequence dimension (-2 for KV, -1 for a mask)."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
