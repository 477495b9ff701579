"""chatstack's own forward for Llama-family checkpoints on a CPU (LlamaForCausalLM).

transformers' forward pays a Python call per module and per hook, builds masks and
position embeddings per call, and grows its KV cache by concatenation. This one reads the
same weights into a few tensors and runs the layers as a short loop of torch ops:

- q, k and v are one linear, gate and up another (int4 with a dense prefill copy, as
  quantization.py builds them, or dense in the model's dtype; on AMX, chatstack's own int4
  kernel, amx_kernels.py, which takes and gives float32 rows);
- the output projection is int8 (its codes are the embedding table of a tied model);
- q and k rows are stored with each rotary pair side by side, so rotary positions are one
  complex multiply;
- keys and values go straight into the rows of a pre-allocated cache (kv_slots.py), and a
  decode step attends for the whole batch at once over each row's own length
  (decode_attention.py);
- the prompts of several sequences run as one forward (their rows side by side), each
  attending over its own row.

Whether a row's bits depend on its batch is measured once at start (`calibrate`,
invariance.py); where a kernel is not row-invariant the rows are padded or the work split
so that each sequence's arithmetic is the one it gets alone. Any other model, and every
GPU, keeps transformers' forward (runners.TransformersRunner).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from model_api import amx_kernels
from model_api.decode_attention import (
    DecodeRows,
    batched,
    decode_attention_by_row,
    decode_attention_native,
)
from model_api.invariance import attention_is_row_invariant, row_quantum, run_padded
from model_api.kv_slots import KVSlots
from model_api.quantization import (
    GROUP_SIZE,
    Int4Linear,
    Int8Linear,
    int4_linears,
    prefill_dtype,
)

log = logging.getLogger(__name__)

# rope types whose frequencies are fixed at load; "dynamic" and "longrope" change them
# with the sequence's length, which this decoder does not follow.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")
INT4_MM = torch.ops.aten._weight_int4pack_mm_for_cpu.default

RowFunction = Callable[[torch.Tensor], torch.Tensor]
# add(rows, x): a linear of rows added into the residual stream x, in place.
AddFunction = Callable[[torch.Tensor, torch.Tensor], object]
# A layer's steps, bound once: norm + qkv, out added, norm + gate_up, down added.
LayerSteps = tuple[RowFunction, AddFunction, RowFunction, AddFunction]
# attend(layer, rotated q and k [n, heads + kv_heads, dim], v [n, kv_heads * dim]) stores the
# layer's k and v and returns the attention's output [n, heads * dim].
# With freqs None, attend(layer, the q/k/v projection, None) rotates q and k itself.
Attend = Callable[[int, torch.Tensor, torch.Tensor | None], torch.Tensor]


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
        self.hidden, self.intermediate = int(config.hidden_size), int(config.intermediate_size)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.device = next(model.parameters()).device
        inner = model.model
        blocks = list(inner.layers)
        weights = []
        for block in blocks:
            attn, mlp = block.self_attn, block.mlp
            q = _pairs_side_by_side(attn.q_proj.weight, self.head_dim)
            k = _pairs_side_by_side(attn.k_proj.weight, self.head_dim)
            weights.append(torch.cat([q, k, attn.v_proj.weight]))
            weights.append(attn.o_proj.weight)
            weights.append(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
            weights.append(mlp.down_proj.weight)
        linears = (
            None
            if int4 is None
            else int4_linears(weights, force=bool(int4), dense_dtype=prefill_dtype())
        )
        self.quantization = "int4" if linears is not None else "none"
        self.dtype = torch.bfloat16 if linears is not None else inner.embed_tokens.weight.dtype
        # What a prompt's rows enter its linears in: an int4 model's dense copy may be fp32
        # (quantization.prefill_dtype); the KV cache stays in self.dtype either way.
        self.prefill_dtype = linears[0].dense_dtype if self.quantization == "int4" else self.dtype
        # What a decode step's rows enter its linears in: chatstack's int4 kernel takes the
        # float32 rows as they are (it quantizes them itself, per group of 32).
        self.decode_dtype = (
            torch.float32
            if linears is not None and all(linear.kernel is not None for linear in linears)
            else self.dtype
        )
        if linears is None:
            linears = [DenseLinear(w, self.dtype) for w in weights]
        del weights

        def norm(weight: torch.Tensor) -> torch.Tensor:  # the residual stream is float32
            return weight.detach().float().clone()

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
        self.freqs = _rotary_table(inner.rotary_emb, max_len, self.device)
        self.attend = batched(self.dtype, self.head_dim, self.heads // self.kv_heads)[0]
        self.fused_attention = False  # set by calibrate
        self.split_prefill = False  # set by calibrate: each sequence's prompt in its own forward
        self.norm_quanta: tuple[int | None, int | None] = (1, 1)  # decode, prefill
        for linear in self._linears():
            linear.decode_quantum = linear.prefill_quantum = 1
        self._bind()

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
        probe = functools.partial(row_quantum, device=self.device)
        found: dict[tuple[Any, ...], tuple[int | None, int | None]] = {}
        for linear in self._linears():
            # Prompts reach the output projection one row per sequence, not per token.
            prefill_rows = max_batch if linear is self.head else max_prefill_rows
            shape = (type(linear), linear.in_features, linear.out_features, prefill_rows)
            if shape not in found:
                found[shape] = (
                    probe(linear.decode, linear.in_features, max_batch, self.decode_dtype),
                    probe(linear.prefill, linear.in_features, prefill_rows, self.prefill_dtype),
                )
            linear.decode_quantum, linear.prefill_quantum = found[shape]
        norm = self._norm_step(self.final_norm, 1, self.dtype)
        self.norm_quanta = (  # of the float32 residual stream
            row_quantum(norm, self.hidden, max_batch, torch.float32, self.device),
            row_quantum(norm, self.hidden, max_prefill_rows, torch.float32, self.device),
        )
        prefill = [q for _, q in found.values()] + [self.norm_quanta[1]]
        self.split_prefill = any(q is None for q in prefill)
        if self.split_prefill:  # alone, a prompt's rows depend on nothing else
            for linear in self._linears():
                linear.prefill_quantum = 1
            self.norm_quanta = (self.norm_quanta[0], 1)
        shape = (self.heads, self.kv_heads, self.head_dim, max_batch, max_len)
        self.attend = next(
            (
                attend
                for attend in batched(self.dtype, self.head_dim, self.heads // self.kv_heads)
                if attention_is_row_invariant(attend, *shape, self.dtype, self.device)
            ),
            decode_attention_by_row,
        )
        # chatstack's kernel then takes a layer's attention whole, from the projection on
        # (its int4 kernels give the float32 rows it reads).
        self.fused_attention = (
            self.attend is decode_attention_native and self.decode_dtype == torch.float32
        )
        self._bind()
        log.info(
            "decoder: rows padded to multiples of %s (decode) and %s (prompts); prompts %s; "
            "decode attention: %s",
            "/".join(sorted({str(q) for q, _ in found.values()} | {str(self.norm_quanta[0])})),
            "/".join(sorted({str(q) for q in prefill})),
            "one forward each" if self.split_prefill else "batched",
            self.attend.__name__,
        )

    def _bind(self) -> None:
        """Each layer's steps as plain callables, for decode and for prefill: a decode step
        runs ~20 of them per layer, and a Python frame less each is a few percent."""

        def steps(decode: bool) -> list[LayerSteps]:
            quantum = self.norm_quanta[0 if decode else 1]
            dtype = self.decode_dtype if decode else self.prefill_dtype

            def normed(weight: torch.Tensor, linear: Any) -> RowFunction:
                norm = self._norm_step(weight, quantum, dtype)
                return _normed_step(norm, linear, weight, self.eps, decode)

            return [
                (
                    normed(layer.attn_norm, layer.qkv),
                    _added_step(layer.out, decode),
                    normed(layer.mlp_norm, layer.gate_up),
                    _added_step(layer.down, decode),
                )
                for layer in self.layers
            ]

        self._decode_steps, self._prefill_steps = steps(True), steps(False)
        self._final = {
            decode: (
                # The output projection takes every row in self.dtype (int8's kernel is bf16).
                self._norm_step(self.final_norm, self.norm_quanta[0 if decode else 1], self.dtype),
                _row_step(self.head, decode),
            )
            for decode in (True, False)
        }

    def _norm_step(
        self, weight: torch.Tensor, quantum: int | None, dtype: torch.dtype
    ) -> RowFunction:
        """RMSNorm of the float32 residual stream, in float32, cast to the linears' `dtype`."""
        shape, eps = (self.hidden,), self.eps

        def norm(rows: torch.Tensor) -> torch.Tensor:
            return F.rms_norm(rows, shape, weight, eps).to(dtype)

        return norm if quantum == 1 else functools.partial(run_padded, norm, quantum=quantum)

    # ---- forward --------------------------------------------------------------------

    def decode(
        self, kv: KVSlots, tokens: list[int], rows: list[int], positions: list[int]
    ) -> torch.Tensor:
        """One token per sequence (its row, at its position) → float logits [n, vocab]."""
        device, heads, kv_heads, dim = self.device, self.heads, self.kv_heads, self.head_dim
        n, used, data = len(rows), kv.rows_in_use, kv.data
        assert data is not None
        pos = torch.tensor(positions, device=device)
        row_index = torch.tensor(rows, device=device)
        if self.fused_attention:
            attend_fused = self._fused_attend(data, row_index, pos)
            x = self.embedding.embed(torch.tensor(tokens, device=device)).float()
            return self._logits(self._layers(x, None, attend_fused, self._decode_steps), True)
        scatter = None if rows == list(range(used)) else row_index
        if scatter is None:
            batch = DecodeRows.of([p + 1 for p in positions], kv_heads, device)
        else:  # rows not decoding (prefilling) attend with length 0, and are dropped
            lengths = [0] * used
            for r, p in zip(rows, positions, strict=True):
                lengths[r] = p + 1
            batch = DecodeRows.of(lengths, kv_heads, device)
        # Where token b's k and v heads go in a layer's block viewed as [-1, dim]:
        # ((kv * rows + row) * kv_heads + head) * capacity + position.
        kind = torch.arange(2, device=device).repeat_interleave(kv_heads)
        head = torch.arange(kv_heads, device=device).repeat(2)
        columns = ((kind * kv.max_rows + row_index.unsqueeze(1)) * kv_heads + head) * kv.capacity
        columns = (columns + pos.unsqueeze(1)).flatten()

        def attend(index: int, rotated: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            block = data[index]
            new = torch.cat([rotated[:, heads:], v.view(n, kv_heads, dim).float()], dim=1)
            block.view(-1, dim).index_copy_(0, columns, new.view(-1, dim).to(block.dtype))
            q = rotated[:, :heads]
            if scatter is not None:
                full = q.new_zeros((used, heads, dim))
                full[scatter] = q
                return self.attend(full, block[0], block[1], batch, self.scale)[scatter].view(n, -1)
            return self.attend(q, block[0], block[1], batch, self.scale).reshape(n, -1)

        x = self.embedding.embed(torch.tensor(tokens, device=device)).float()
        x = self._layers(x, self.freqs[pos].unsqueeze(1), attend, self._decode_steps)
        return self._logits(x, decode=True)

    def _fused_attend(
        self, data: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor
    ) -> Attend:
        """attend(layer, projected q/k/v, None) in one call of chatstack's kernel: rotary
        positions, the new keys and values stored, attention (amx_kernels.cpp)."""
        lib = amx_kernels.library()
        assert lib is not None
        n, heads, dim = len(rows), self.heads, self.head_dim
        rotation = torch.view_as_real(self.freqs[positions]).contiguous()
        size = data.element_size()
        base, layer_bytes, values_offset = (
            data.data_ptr(),
            data.stride(0) * size,
            data.stride(1) * size,
        )
        strides = (data.stride(2), data.stride(3))
        shape = (heads, self.kv_heads, dim, self.scale)
        call = lib.chatstack_decode_attend

        def attend(index: int, projected: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
            out = torch.empty((n, heads * dim))
            keys = base + index * layer_bytes
            call(
                projected.data_ptr(),
                n,
                rotation.data_ptr(),
                rows.data_ptr(),
                positions.data_ptr(),
                keys,
                keys + values_offset,
                *strides,
                *shape,
                out.data_ptr(),
            )
            return out

        return attend

    def prefill(self, kv: KVSlots, segments: list[tuple[int, int, list[int]]]) -> torch.Tensor:
        """Prompt chunks `(row, start, ids)` → float logits [segments, vocab] of each chunk's
        last token; each chunk's keys and values go to columns start.. of its row."""
        if self.split_prefill and len(segments) > 1:
            return torch.cat([self.prefill(kv, [segment]) for segment in segments])
        device, heads, kv_heads, dim = self.device, self.heads, self.kv_heads, self.head_dim
        data = kv.data
        assert data is not None
        ids = torch.tensor([t for _, _, chunk in segments for t in chunk], device=device)
        pos = torch.cat([torch.arange(s, s + len(c), device=device) for _, s, c in segments])
        bounds, end = [], 0  # (row, start, first, past) of each chunk's tokens in the batch
        for row, start, chunk in segments:
            bounds.append((row, start, end, end + len(chunk)))
            end += len(chunk)
        # Each chunk's mask, the same in every layer: made once per forward.
        masks = [self._prompt_mask(start, len(chunk)) for _, start, chunk in segments]

        def attend(index: int, rotated: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            block = data[index]
            parts = []
            for (row, start, first, past), mask in zip(bounds, masks, strict=True):
                stop = start + past - first
                block[0, row, :, start:stop] = (
                    rotated[first:past, heads:].transpose(0, 1).to(v.dtype)
                )
                block[1, row, :, start:stop] = v[first:past].view(-1, kv_heads, dim).transpose(0, 1)
                keys, values = block[0, row, :, :stop], block[1, row, :, :stop]
                q = rotated[first:past, :heads].to(block.dtype)
                parts.append(self._prompt_attention(q, keys, values, mask))
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        x = self.embedding.embed(ids).float()
        x = self._layers(x, self.freqs[pos].unsqueeze(1), attend, self._prefill_steps)
        last = torch.tensor([past - 1 for _, _, _, past in bounds], device=device)
        return self._logits(x[last], decode=False)

    # ---- pieces -----------------------------------------------------------------------

    def _layers(
        self, x: torch.Tensor, freqs: torch.Tensor | None, attend: Attend, steps: list[LayerSteps]
    ) -> torch.Tensor:
        """The decoder layers over rows x [n, hidden] (the residual stream, float32: the
        linears take it in their dtype), rotary frequencies [n, 1, dim / 2]."""
        rotated_width = (self.heads + self.kv_heads) * self.head_dim
        intermediate = self.intermediate
        for index, (qkv, out, gate_up, down) in enumerate(steps):
            projected = qkv(x)
            if freqs is None:  # the attention rotates q and k itself (chatstack's kernel)
                out(attend(index, projected, None), x)
            else:
                rotated = self._rotate(projected[:, :rotated_width], freqs)
                out(attend(index, rotated, projected[:, rotated_width:]), x)
            both = gate_up(x)
            down(F.silu(both[:, :intermediate]) * both[:, intermediate:], x)
        return x

    def _rotate(self, qk: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """Rotary positions on q and k [n, (heads + kv_heads) * dim], whose rows hold each
        rotary pair side by side: one complex multiply → [n, heads + kv_heads, dim] float32."""
        n = qk.shape[0]
        pairs = torch.view_as_complex(qk.float().view(n, -1, self.head_dim // 2, 2))
        return torch.view_as_real(pairs * freqs).view(n, -1, self.head_dim)

    def _prompt_mask(self, start: int, n: int) -> torch.Tensor | None:
        """What a chunk of n queries at `start` may see, as an additive mask over its
        stacked query heads [group × n, start + n] (0 or -inf); None for a first chunk
        (plain causal). Float, so the attention kernel need not convert it per layer."""
        if not start:
            return None
        device = self.device
        columns = torch.arange(start + n, device=device)
        hidden = columns > start + torch.arange(n, device=device).unsqueeze(1)
        mask = torch.zeros(hidden.shape, device=device).masked_fill_(hidden, float("-inf"))
        return mask.to(self.dtype).repeat(self.heads // self.kv_heads, 1)

    def _prompt_attention(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """A chunk's queries [n, heads, dim] over its row's keys [kv_heads, start + n, dim]:
        causal, with the `start` keys before the chunk visible to every query (`mask`).

        After the first chunk the query heads that share a kv head are stacked into one
        block of group × n rows (one attention per kv head instead of `group`: ~1.3x faster
        for a follow-up question's ~100 rows over 7k cached keys). A prompt's chunks are
        cut the same with or without the prefix cache, so each chunk still gets the bits
        it gets cold.
        """
        n, dim = q.shape[0], self.head_dim
        query = q.transpose(0, 1)  # [heads, n, dim]
        if mask is None:  # a first chunk: causal over its own keys
            how: dict[str, Any] = {"is_causal": True, "enable_gqa": True}
        else:
            query = query.reshape(self.kv_heads, -1, dim)  # [kv_heads, group × n, dim]
            how = {"attn_mask": mask}
        out = F.scaled_dot_product_attention(
            query.unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0), scale=self.scale, **how
        )[0]
        return out.reshape(self.heads, n, dim).transpose(0, 1).reshape(n, -1)

    def _logits(self, x: torch.Tensor, decode: bool) -> torch.Tensor:
        norm, head = self._final[decode]
        h = norm(x)
        logits = head(h).float()
        if isinstance(self.head, Int8Linear):
            logits = self.head.refine_near_max(h, logits)
        return logits


def _kernel(linear: Any, decode: bool) -> Any:
    """chatstack's AMX kernel of an int4 linear for a decode step's rows or a prompt's, if it
    runs one (amx_kernels.py: it fuses the norm before it and the residual add after, each
    row on its own)."""
    if not isinstance(linear, Int4Linear):
        return None
    if decode:
        return linear.kernel if linear.decode_quantum == 1 else None
    return linear.prompt_kernel if linear.prefill_quantum == 1 else None


def _normed_step(
    norm: RowFunction, linear: Any, weight: torch.Tensor, eps: float, decode: bool
) -> RowFunction:
    """rows → linear(RMSNorm(rows)): in the kernel where it can, else two steps."""
    kernel = _kernel(linear, decode)
    if kernel is not None:
        return functools.partial(kernel.mm, norm=(weight, eps))
    step = _row_step(linear, decode)
    return lambda rows: step(norm(rows))


def _added_step(linear: Any, decode: bool) -> AddFunction:
    """(rows, x) → x += linear(rows): in the kernel where it can."""
    kernel = _kernel(linear, decode)
    if kernel is not None:
        return lambda rows, x: kernel.mm(rows, into=x)
    step = _row_step(linear, decode)
    return lambda rows, x: x.add_(step(rows))


def _row_step(linear: Any, decode: bool) -> RowFunction:
    """`linear`'s decode or prefill kernel over rows, padded to its quantum; for int4 at
    quantum 1, PyTorch's kernel itself (chatstack's are bound by _normed_step and
    _added_step). It takes bf16 rows only: chatstack's kernels and attention give float32."""
    quantum = linear.decode_quantum if decode else linear.prefill_quantum
    if decode and quantum == 1 and isinstance(linear, Int4Linear):
        packed, scales = linear.packed, linear.scales_and_zeros
        return lambda rows: INT4_MM(rows.to(torch.bfloat16), packed, GROUP_SIZE, scales)
    kernel = linear.decode if decode else linear.prefill
    return kernel if quantum == 1 else functools.partial(run_padded, kernel, quantum=quantum)


def _pairs_side_by_side(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """q or k projection rows reordered within each head from transformers' halves
    (rotary pairs i and i + dim/2) to pairs side by side (2i, 2i + 1). q·k is unchanged:
    q and k are reordered alike."""
    half = head_dim // 2
    order = torch.arange(head_dim).view(2, half).t().flatten()
    out_features, in_features = weight.shape
    heads = out_features // head_dim
    return weight.detach().view(heads, head_dim, in_features)[:, order].reshape(out_features, -1)


def _rotary_table(rotary: Any, max_len: int, device: torch.device) -> torch.Tensor:
    """The rotation of each position and pair [max_len, dim / 2] as complex64: transformers'
    frequencies (inv_freq, in fp32) and attention scaling."""
    inv_freq = rotary.inv_freq.to(device=device, dtype=torch.float32)
    scaling = float(getattr(rotary, "attention_scaling", 1.0))
    angles = torch.arange(max_len, device=device, dtype=torch.float32).unsqueeze(1) * inv_freq
    return torch.polar(torch.full_like(angles, scaling), angles)
