"""Continuous (iteration-level) batching: every running sequence decodes in one forward.

One thread owns the model, as in the sequential engine. Each iteration it prefills
waiting prompts (in chunks, within a token budget: several prompts in one forward where
the runner can), moves each finished prefill into the decode batch, and decodes one token
for every running sequence. The runner (runners.py) keeps each sequence's KV and
positions its own, so a sequence's tokens do not depend on its neighbours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from model_api.engine import GenerationHandle, GenerationThread, SequenceOutput
from model_api.loading import LoadedModel
from model_api.prefix_cache import PrefixCache
from model_api.prompt_chunks import ChunkPlan
from model_api.runners import make_runner
from model_api.sampling import Sampler

log = logging.getLogger(__name__)


@dataclass(eq=False)  # compared and hashed by identity: the runner keys its KV by it
class _Sequence:
    """One request inside the engine: its sampler, its output and where its prefill is."""

    handle: GenerationHandle
    output: SequenceOutput
    sampler: Sampler
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
        prefix_cache_mb: int = 0,
        boundary_ids: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(capacity=max_batch_size + max_waiting)
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.kv_bytes_per_token = kv_bytes_per_token(loaded.config, loaded.dtype)
        self.kv_cache_tokens = kv_cache_mb * 2**20 // self.kv_bytes_per_token
        self.prefill_chunk_tokens = prefill_chunk_tokens
        # boundary_ids: the chat template's tokens, where chunks may end early (prompt_chunks.py).
        self.chunks = ChunkPlan(prefill_chunk_tokens, boundary_ids)
        self.prefilling: list[_Sequence] = []
        self.running: list[_Sequence] = []
        # Blocks are prefill chunks: a prompt resumes from the cache at a chunk end, so it
        # is cut where it is cut without the cache and gets the same bits.
        prefix_cache = PrefixCache(self.chunks, prefix_cache_mb * 2**20, self.kv_bytes_per_token)
        self.runner = make_runner(
            loaded, max_rows=max_batch_size, batched=True, prefix_cache=prefix_cache
        )

    # ---- read by /health and /metrics ---------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Sequences generating (or prefilling), queued, in the decode batch; KV cache use.

        Read without the lock: /health and /metrics must answer at once while the engine
        is busiest, and a count a step old is as good there.
        """
        running, batch = len(self.prefilling) + len(self.running), len(self.running)
        stats = {
            "running": running,
            "waiting": len(self._waiting),
            "batch_size": batch,
            "kv_cache_tokens": self.runner.held_tokens(),
            "kv_cache_capacity_tokens": self.kv_cache_tokens,
        }
        cache = self.runner.prefix_cache
        if cache is not None:  # only chatstack's own decoder has one
            stats["prefix_cache_tokens"] = cache.tokens
            stats["prefix_cache_capacity_tokens"] = cache.max_tokens
        return stats

    def _cache_fits(self, prompt_len: int) -> bool:
        """Whether one more sequence keeps the batch within KV_CACHE_MB.

        Every row is as wide as the widest, so the batch costs rows x width slots. A lone
        request always runs (MAX_MODEL_LEN bounds it); the batch may outgrow the budget
        as it decodes, by the tokens its requests still generate.
        """
        active = self.prefilling + self.running
        if not active:
            return True
        width = max(
            [len(s.handle.prompt_ids) for s in active]
            + [s.length for s in self.running]
            + [prompt_len]
        )
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
                seq = _Sequence(handle, output, sampler)
                seq.prefilled = output.cached_tokens = self.runner.open(seq, handle.prompt_ids)
                self.prefilling.append(seq)

    def _drop_cancelled(self) -> None:
        for seq in [s for s in self.prefilling if s.handle.cancelled]:
            self.prefilling.remove(seq)
            self.runner.close([seq])
            seq.handle.done.set()
            log.info("generation cancelled while prefilling", extra=seq.handle.log_extra)
        gone = [s for s in self.running if s.handle.cancelled]
        for seq in gone:
            log.info(
                "generation cancelled after %d tokens",
                seq.output.completion_tokens,
                extra=seq.handle.log_extra,
            )
            seq.handle.done.set()
        if gone:
            self._remove(gone)

    def _prefill_step(self) -> None:
        """Prefill one chunk for as many prompts as a chunk's worth of tokens allows.

        A prompt is always cut at the same places (self.chunks: from its tokens alone),
        whatever else is waiting: the cut changes the arithmetic, and a prompt must give
        the same answer in a batch as alone. The budget only decides who goes this step. Where the
        runner batches prefills the chosen chunks run as one forward, else one each (so a
        prompt that fails fails alone).
        """
        budget, chosen = self.prefill_chunk_tokens, []
        for seq in self.prefilling:
            if budget <= 0:
                break
            prompt = seq.handle.prompt_ids
            chunk = prompt[seq.prefilled : self.chunks.next_end(prompt, seq.prefilled)]
            chosen.append((seq, chunk))
            budget -= len(chunk)
        groups = [chosen] if self.runner.batches_prefills else [[c] for c in chosen]
        for group in groups:
            if group:
                self._prefill(group)

    def _prefill(self, chunks: list[tuple[_Sequence, list[int]]]) -> None:
        try:
            logits = self.runner.prefill(chunks)  # type: ignore[arg-type]
        except Exception as exc:  # a bad prompt fails its forward's requests, not the engine
            for seq, _ in chunks:
                log.exception("prefill failed", extra=seq.handle.log_extra)
                self.prefilling.remove(seq)
                self.runner.close([seq])
                seq.output.fail(f"Generation failed: {type(exc).__name__}: {exc}")
            return
        for (seq, chunk), row in zip(chunks, logits, strict=True):
            seq.prefilled += len(chunk)
            if seq.prefilled == len(seq.handle.prompt_ids):
                self.prefilling.remove(seq)
                seq.logits = row
                self._start_decoding(seq)

    def _start_decoding(self, seq: _Sequence) -> None:
        """Sample the first token from the prefill; join the batch unless already done."""
        assert seq.logits is not None
        token = seq.sampler.next_token(seq.logits)
        seq.logits = None
        if seq.output.push_token(token):
            self.runner.close([seq])
            return
        seq.next_token, seq.length = token, len(seq.handle.prompt_ids)
        self.running.append(seq)

    def _decode_step(self) -> None:
        logits = self.runner.decode(self.running, [s.next_token for s in self.running])
        finished = []
        for i, seq in enumerate(self.running):
            seq.length += 1
            seq.next_token = seq.sampler.next_token(logits[i])
            if seq.output.push_token(seq.next_token):
                finished.append(seq)
        if finished:
            self._remove(finished)

    def _remove(self, done: list[_Sequence]) -> None:
        self.runner.close(done)
        gone = set(map(id, done))
        self.running = [s for s in self.running if id(s) not in gone]

    def _fail_running(self, message: str) -> None:
        for seq in self.running:
            seq.output.fail(message)
        self.runner.close(self.running)
        self.running = []


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Keys and values of one token across all layers, from the model's shape."""
    heads = int(getattr(config, "num_attention_heads", 1))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
    layers = int(getattr(config, "num_hidden_layers", 1))
    return 2 * layers * kv_heads * int(head_dim) * torch.empty((), dtype=dtype).element_size()
