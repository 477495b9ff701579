"""A tiny random Llama for the model API's unit tests, run by either runner."""

from __future__ import annotations

import torch

from model_api.llama_decoder import LlamaDecoder
from model_api.loading import LoadedModel
from model_api.quantization import quantize_int4

VOCAB = 64
MAX_LEN = 256
# Why a test of chatstack's AMX kernels is skipped: they are built and run only there, and on
# this CPU the model API runs PyTorch's kernels, whose tests run instead.
NO_AMX_KERNELS = (
    "this CPU has no Intel AMX (or there is no g++): chatstack's kernels do not run here"
)


class TokenNames:
    """A tokenizer stand-in: each id decodes to its own bracketed name."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f"<{i}>" for i in ids)


def tiny_transformers_llama(kernel_shaped: bool = False):
    """kernel_shaped: wide enough for chatstack's AMX kernels (heads of 32, widths of whole
    64-input blocks), with every linear already Q4_1 (float16 steps and lows), as the
    embedded model's are, so that QUANTIZATION=auto takes them exactly."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    width = 128 if kernel_shaped else 64  # a multiple of the int4 kernel's group of 32
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_LEN,
    )
    model = LlamaForCausalLM(config).eval()
    if kernel_shaped:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) and module is not model.lm_head:
                    module.weight.copy_(q4_1(module.weight))
    return model


def q4_1(weight: torch.Tensor) -> torch.Tensor:
    """`weight` rounded as a Q4_1 GGUF stores it: per group of 32, low + q * step with q in
    0..15 and low (the group's least weight) and step in float16."""
    groups = weight.reshape(weight.shape[0], -1, 32)
    low = groups.amin(dim=-1, keepdim=True).half().float()
    step = ((groups.amax(dim=-1, keepdim=True) - low) / 15).half().float()
    codes = ((groups - low) / step).round().clamp(0, 15)
    return (low + codes * step).reshape(weight.shape)


def tiny_llama(quantization: str, runner: str = "transformers") -> LoadedModel:
    """The tiny model in fp32 ("none") or with int4 linears in bf16 (forced: its weights
    are random), run by transformers' forward or by chatstack's decoder (calibrated)."""
    model = tiny_transformers_llama()
    loaded = LoadedModel(
        tokenizer=TokenNames(),
        model=model,
        device=torch.device("cpu"),
        dtype=torch.float32,
        max_model_len=MAX_LEN,
        vocab_size=VOCAB,
        eos_token_ids=frozenset(),
        quantization=quantization,
    )
    if runner == "decoder":
        int4 = True if quantization == "int4" else None
        decoder = LlamaDecoder(model, int4=int4, max_len=MAX_LEN)
        decoder.calibrate(max_batch=8, max_prefill_rows=64, max_len=MAX_LEN)
        loaded.model, loaded.decoder, loaded.dtype = None, decoder, decoder.dtype
    elif quantization == "int4":
        assert quantize_int4(model, force=True) > 0
        loaded.dtype = torch.bfloat16
        model.to(torch.bfloat16)
    return loaded
