"""chatstack's own forward for Llama-family checkpoints on a CPU (LlamaForCausalLM).

transformers' forward pays a Python call per module and per hook, builds masks and
position embeddings per call, and grows its KV cache by concatenation. This one reads the
same weights into a few tensors and runs the layers as a short loop of torch ops:

- q, k and v are one linear, gate and up another (int4 with a dense prefill copy, as
  quantization.py builds them, or dense in the model's dtype);
- the output projection is int8 (its codes are the embedding table of a tied model);
- keys and values go straight into the rows of a pre-allocated cache (kv_slots.py), and a
  decode step attends for the whole batch at once over each row's own length
  (attention.decode_attention);
- the prompts of several sequences run as one forward (their rows side by side), each
  attending over its own row.

Whether a row's bits depend on its batch is measured once at start (`calibrate`,
invariance.py); where a kernel is not row-invariant the rows are padded or the work split
so that each sequence's arithmetic is the one it gets alone. Any other model, and every
GPU, keeps transformers' forward (transformers_runner.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from model_api.attention import decode_attention, decode_attention_by_row
from model_api.invariance import attention_is_row_invariant, row_quantum, run_padded
from model_api.kv_slots import KVSlots
from model_api.quantization import GROUP_SIZE, Int8Linear, int4_linears

log = logging.getLogger(__name__)

# rope types whose frequencies are fixed at load; "dynamic" and "longrope" change them
# with the sequence's length, which this decoder does not follow.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")


class RowLinear(Protocol):
    """A linear over rows `[n, in] → [n, out]`, with a decode and a prefill kernel."""

    decode_quantum: int | None
    prefill_quantum: int | None

    def decode(self, rows: torch.Tensor) -> torch.Tensor: ...
    def prefill(self, rows: torch.Tensor) -> torch.Tensor: ...


class DenseLinear:
    """A bias-free linear kept in the model's dtype."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype) -> None:
        self.weight = weight.detach().to(dtype).contiguous()
        self.out_features, self.in_features = self.weight.shape

    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        return F.linear(rows, self.weight)

    prefill = decode

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids]


@dataclass
class _Layer:
    attn_norm: torch.Tensor
    qkv: Any  # RowLinear
    out: Any
    mlp_norm: torch.Tensor
    gate_up: Any
    down: Any


def unsupported_reason(model: Any, device: torch.device) -> str | None:
    """Why this decoder cannot run `model` on `device`; None when it can."""
    config = model.config
    if device.type != "cpu":
        return f"it runs on a CPU only, not {device.type}"
    if getattr(config, "model_type", None) != "llama":
        return f"model_type is {getattr(config, 'model_type', None)!r}, not 'llama'"
    checks = {
        "attention or MLP biases": getattr(config, "attention_bias", False)
        or getattr(config, "mlp_bias", False),
        f"hidden_act {getattr(config, 'hidden_act', None)!r}": config.hidden_act != "silu",
        "pretraining_tp > 1": getattr(config, "pretraining_tp", 1) != 1,
        "a sliding window": bool(getattr(config, "sliding_window", None)),
    }
    for what, present in checks.items():
        if present:
            return f"the model has {what}"
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in STATIC_ROPE:
        return f"rope_type {rope!r} changes with the sequence length"
    if config.hidden_size % GROUP_SIZE or config.intermediate_size % GROUP_SIZE:
        return "its widths are not multiples of 32"
    return None


class LlamaDecoder:
    """The forward of one Llama-family model: decode steps and batched prefills on KVSlots."""

    def __init__(self, model: Any, int4: bool | None, max_len: int) -> None:
        """Read `model`'s weights (fp32 when int4 is tried, so 4-bit codes are exact).

        int4: None never, False when every weight is exactly 4-bit, True forced (lossy).
        """
        config = self.config = model.config
        self.generation_config = model.generation_config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads or self.heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.eps = float(config.rms_norm_eps)
        self.scaling = self.head_dim**-0.5
        self.device = next(model.parameters()).device
        inner = model.model
        blocks = list(inner.layers)
        weights = []
        for block in blocks:
            attn, mlp = block.self_attn, block.mlp
            weights.append(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            weights.append(attn.o_proj.weight)
            weights.append(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
            weights.append(mlp.down_proj.weight)
        linears = None if int4 is None else int4_linears(weights, force=bool(int4))
        self.quantization = "int4" if linears is not None else "none"
        self.dtype = torch.bfloat16 if linears is not None else inner.embed_tokens.weight.dtype
        if linears is None:
            linears = [DenseLinear(w, self.dtype) for w in weights]
        del weights

        def norm(weight: torch.Tensor) -> torch.Tensor:
            return weight.detach().to(self.dtype).clone()

        self.layers = [
            _Layer(
                norm(block.input_layernorm.weight),
                linears[4 * i],
                linears[4 * i + 1],
                norm(block.post_attention_layernorm.weight),
                linears[4 * i + 2],
                linears[4 * i + 3],
            )
            for i, block in enumerate(blocks)
        ]
        self.final_norm = norm(inner.norm.weight)
        self.intermediate = int(config.intermediate_size)
        head_weight = model.get_output_embeddings().weight
        tied = head_weight is inner.embed_tokens.weight
        if self.quantization == "int4":
            self.head: Any = Int8Linear(head_weight)
            self.embedding: Any = self.head if tied else Int8Linear(inner.embed_tokens.weight)
        else:
            self.head = DenseLinear(head_weight, self.dtype)
            self.embedding = (
                self.head if tied else DenseLinear(inner.embed_tokens.weight, self.dtype)
            )
        self.cos, self.sin = _rope_tables(inner.rotary_emb, max_len, self.dtype, self.device)
        self.attend = decode_attention
        self.split_prefill = False  # set by calibrate: each sequence's prompt in its own forward
        self.norm_quanta: tuple[int | None, int | None] = (1, 1)  # decode, prefill
        for linear in self._linears():
            linear.decode_quantum = linear.prefill_quantum = 1

    def _linears(self) -> list[Any]:
        unique = {
            id(x): x
            for layer in self.layers
            for x in (layer.qkv, layer.out, layer.gate_up, layer.down)
        }
        unique[id(self.head)] = self.head
        return list(unique.values())

    # ---- start-up checks ------------------------------------------------------------

    def calibrate(self, max_batch: int, max_prefill_rows: int, max_len: int) -> None:
        """Measure which kernels give a row the same bits in any batch (invariance.py), and
        pad or split where they do not. Logs what it found."""
        probe = functools.partial(row_quantum, dtype=self.dtype, device=self.device)
        found: dict[tuple[Any, ...], tuple[int | None, int | None]] = {}
        for linear in self._linears():
            # Prompts reach the output projection one row per sequence, not per token.
            prefill_rows = max_batch if linear is self.head else max_prefill_rows
            shape = (type(linear), linear.in_features, linear.out_features, prefill_rows)
            if shape not in found:
                found[shape] = (
                    probe(linear.decode, linear.in_features, max_batch),
                    probe(linear.prefill, linear.in_features, prefill_rows),
                )
            linear.decode_quantum, linear.prefill_quantum = found[shape]
        hidden = self.config.hidden_size
        self.norm_quanta = (
            probe(self._norm_probe, hidden, max_batch),
            probe(self._norm_probe, hidden, max_prefill_rows),
        )
        prefill = [q for _, q in found.values()] + [self.norm_quanta[1]]
        self.split_prefill = any(q is None for q in prefill)
        if self.split_prefill:  # alone, a prompt's rows depend on nothing else
            for linear in self._linears():
                linear.prefill_quantum = 1
            self.norm_quanta = (self.norm_quanta[0], 1)
        if not attention_is_row_invariant(
            decode_attention,
            self.heads,
            self.kv_heads,
            self.head_dim,
            max_batch,
            max_len,
            self.dtype,
            self.device,
        ):
            self.attend = decode_attention_by_row
        log.info(
            "decoder: rows padded to multiples of %s (decode) and %s (prompts); prompts %s; "
            "decode attention %s",
            "/".join(sorted({str(q) for q, _ in found.values()} | {str(self.norm_quanta[0])})),
            "/".join(sorted({str(q) for q in prefill})),
            "one forward each" if self.split_prefill else "batched",
            "by row" if self.attend is decode_attention_by_row else "batched",
        )

    def _norm_probe(self, rows: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(rows, (rows.shape[-1],), self.final_norm, self.eps)

    # ---- forward --------------------------------------------------------------------

    def decode(
        self, kv: KVSlots, tokens: list[int], rows: list[int], positions: list[int]
    ) -> torch.Tensor:
        """One token per sequence (its row, at its position) → float logits [n, vocab]."""
        device = self.device
        pos = torch.tensor(positions, device=device)
        row_index = torch.tensor(rows, device=device)
        used = kv.rows_in_use
        scatter = None if rows == list(range(used)) else row_index
        if scatter is None:
            lengths = pos + 1
        else:  # rows not decoding (prefilling) attend with length 0, and are dropped
            lengths = torch.zeros(used, dtype=torch.long, device=device)
            lengths[row_index] = pos + 1
        # Where each row's k and v go in a layer's flattened [2 * rows * kv_heads * capacity]
        # columns: one index_copy_ writes both.
        heads = torch.arange(self.kv_heads, device=device)
        columns = (row_index.unsqueeze(1) * self.kv_heads + heads) * kv.capacity + pos.unsqueeze(1)
        columns = torch.cat(
            [columns.flatten(), columns.flatten() + kv.max_rows * self.kv_heads * kv.capacity]
        )

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache = kv.layer(index)
            flat = cache.view(-1, self.head_dim)
            flat.index_copy_(
                0, columns, torch.cat([k.reshape(-1, self.head_dim), v.reshape(-1, self.head_dim)])
            )
            keys, values = cache[0], cache[1]
            if scatter is None:
                out = self.attend(q, keys, values, lengths, self.scaling)
            else:
                full = q.new_zeros((used, *q.shape[1:]))
                full[scatter] = q
                out = self.attend(full, keys, values, lengths, self.scaling)[scatter]
            return out.reshape(q.shape[0], -1)

        x = self.embedding.embed(torch.tensor(tokens, device=device))
        x = self._layers(x, self.cos[pos], self.sin[pos], attend, decode=True)
        return self._logits(x, decode=True)

    def prefill(self, kv: KVSlots, segments: list[tuple[int, int, list[int]]]) -> torch.Tensor:
        """Prompt chunks `(row, start, ids)` → float logits [segments, vocab] of each chunk's
        last token; each chunk's keys and values go to columns start.. of its row."""
        if self.split_prefill and len(segments) > 1:
            return torch.cat([self.prefill(kv, [segment]) for segment in segments])
        device = self.device
        ids = torch.tensor([t for _, _, chunk in segments for t in chunk], device=device)
        pos = torch.cat([torch.arange(s, s + len(c), device=device) for _, s, c in segments])
        bounds, end = [], 0  # (row, start, first, past) of each chunk's tokens in the batch
        for row, start, chunk in segments:
            bounds.append((row, start, end, end + len(chunk)))
            end += len(chunk)

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache = kv.layer(index)
            parts = []
            for row, start, first, past in bounds:
                stop = start + past - first
                cache[0, row, :, start:stop] = k[first:past].transpose(0, 1)
                cache[1, row, :, start:stop] = v[first:past].transpose(0, 1)
                parts.append(
                    self._prompt_attention(
                        q[first:past], cache[0, row, :, :stop], cache[1, row, :, :stop], start
                    )
                )
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        x = self.embedding.embed(ids)
        x = self._layers(x, self.cos[pos], self.sin[pos], attend, decode=False)
        last = torch.tensor([past - 1 for _, _, _, past in bounds], device=device)
        return self._logits(x[last], decode=False)

    # ---- pieces -----------------------------------------------------------------------

    def _layers(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        decode: bool,
    ) -> torch.Tensor:
        """The decoder layers over rows x [n, hidden]; `attend(layer, q, k, v)` stores the
        layer's k and v and returns the attention's output [n, heads * dim]."""
        for index, layer in enumerate(self.layers):
            h = self._norm(x, layer.attn_norm, decode)
            q, k, v = self._qkv(self._linear(layer.qkv, h, decode), cos, sin)
            x = x + self._linear(layer.out, attend(index, q, k, v), decode)
            gate_up = self._linear(layer.gate_up, self._norm(x, layer.mlp_norm, decode), decode)
            act = F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :]
            x = x + self._linear(layer.down, act, decode)
        return x

    def _linear(self, linear: Any, rows: torch.Tensor, decode: bool) -> torch.Tensor:
        if decode:
            return run_padded(linear.decode, rows, linear.decode_quantum)
        return run_padded(linear.prefill, rows, linear.prefill_quantum)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor, decode: bool) -> torch.Tensor:
        def norm(rows: torch.Tensor) -> torch.Tensor:
            return F.rms_norm(rows, (rows.shape[-1],), weight, self.eps)

        return run_padded(norm, x, self.norm_quanta[0 if decode else 1])

    def _qkv(
        self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split a fused projection into q [n, heads, dim], k and v [n, kv_heads, dim], with
        rotary positions applied to q and k in one go (transformers' rotate_half form)."""
        n, half = qkv.shape[0], self.head_dim // 2
        rotated = self.heads + self.kv_heads
        qk = qkv[:, : rotated * self.head_dim].view(n, rotated, 2, half)
        first, second = qk[:, :, 0], qk[:, :, 1]
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        out = torch.empty_like(qk)
        torch.sub(first * c, second * s, out=out[:, :, 0])
        torch.add(second * c, first * s, out=out[:, :, 1])
        out = out.view(n, rotated, self.head_dim)
        v = qkv[:, rotated * self.head_dim :].view(n, self.kv_heads, self.head_dim)
        return out[:, : self.heads], out[:, self.heads :], v

    def _prompt_attention(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int
    ) -> torch.Tensor:
        """A chunk's queries [n, heads, dim] over its row's keys [kv_heads, start + n, dim]:
        causal, with the `start` keys before the chunk visible to every query."""
        n = q.shape[0]
        mask = None
        if start:
            columns = torch.arange(start + n, device=q.device)
            mask = columns <= start + torch.arange(n, device=q.device).unsqueeze(1)
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            keys.unsqueeze(0),
            values.unsqueeze(0),
            attn_mask=mask,
            is_causal=not start,
            scale=self.scaling,
            enable_gqa=True,
        )
        return out[0].transpose(0, 1).reshape(n, -1)

    def _logits(self, x: torch.Tensor, decode: bool) -> torch.Tensor:
        h = self._norm(x, self.final_norm, decode)
        return self._linear(self.head, h, decode).float()


def _rope_tables(
    rotary: Any, max_len: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [max_len, head_dim / 2] as transformers' rotary module computes them
    (fp32 frequencies, its attention scaling, then the model's dtype)."""
    inv_freq = rotary.inv_freq.to(device=device, dtype=torch.float32)
    scaling = float(getattr(rotary, "attention_scaling", 1.0))
    freqs = torch.arange(max_len, device=device, dtype=torch.float32).unsqueeze(1) * inv_freq
    return (freqs.cos() * scaling).to(dtype), (freqs.sin() * scaling).to(dtype)
