"""Loading a tokenizer and a causal LM onto the right device, logging time and memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model_api.quantization import quantize_int4
from model_api.settings import Settings

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model named by the settings cannot be loaded; the message says how to fix it."""


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    device: torch.device
    dtype: torch.dtype
    max_model_len: int
    vocab_size: int
    eos_token_ids: frozenset[int]
    quantization: str = "none"  # "int4" when the linears run 4-bit (model_api/quantization.py)
    decoder: Any = None  # a LlamaDecoder when chatstack's own forward runs the model

    @property
    def config(self) -> Any:
        return (self.decoder or self.model).config

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def resolve_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("DEVICE=cuda but PyTorch sees no CUDA GPU; use DEVICE=auto or cpu")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting != "auto":
        return getattr(torch, setting)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def wants_int4(settings: Settings, device: torch.device) -> bool:
    """Whether to try int4 linears: a CPU-only kernel that computes in bfloat16."""
    if settings.quantization == "none":
        return False
    if device.type != "cpu":
        if settings.quantization == "int4":
            raise ModelLoadError("QUANTIZATION=int4 runs on the CPU only; use auto or none")
        return False
    if settings.dtype in ("float32", "float16"):
        if settings.quantization == "int4":
            raise ModelLoadError(
                f"QUANTIZATION=int4 computes in bfloat16, not DTYPE={settings.dtype}; "
                "set DTYPE=auto or bfloat16"
            )
        return False  # an explicit dtype outranks QUANTIZATION=auto
    return True


def rss_mb() -> float:
    """This process's resident memory, from /proc (no extra dependency)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0.0
    return pages * resource.getpagesize() / 2**20


@contextmanager
def logged_step(name: str, device: torch.device) -> Iterator[None]:
    """Log how long a loading step took and how much memory it added."""
    start, rss_before = time.perf_counter(), rss_mb()
    gpu_before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    yield
    gpu = ""
    if device.type == "cuda":
        gpu = f", GPU +{(torch.cuda.memory_allocated(device) - gpu_before) / 2**20:.0f} MB"
    log.info(
        "%s: %.1f s, RSS +%.0f MB (now %.0f MB)%s",
        name,
        time.perf_counter() - start,
        rss_mb() - rss_before,
        rss_mb(),
        gpu,
    )


def pretrained_source(model_path: str) -> tuple[str, dict[str, str]]:
    """Where from_pretrained should look: a folder, a .gguf file's folder, or a hub id."""
    path = Path(model_path)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"MODEL_PATH names a GGUF file that does not exist: {path}")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        return str(path), {}
    # A path whose folder exists here is a local path with a typo, not a hub id.
    looks_local = (
        path.is_absolute()
        or model_path.startswith(".")
        or (str(path.parent) != "." and path.parent.is_dir())
    )
    if looks_local:
        raise ModelLoadError(
            f"MODEL_PATH {model_path} does not exist; run `make install` to convert the "
            "embedded model, or point MODEL_PATH at a model folder, a .gguf file or a hub id"
        )
    return model_path, {}  # a Hugging Face hub id, for machines with internet access


def load_model(settings: Settings) -> LoadedModel:
    """Tokenizer first, then weights; eval mode on the chosen device and dtype; then
    chatstack's own decoder for a Llama-family model on a CPU, transformers' otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    try_int4 = wants_int4(settings, device)
    source, extra = pretrained_source(settings.model_path)
    log.info("loading %s on %s as %s", settings.model_path, device, dtype)
    with logged_step("tokenizer", device):
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        count_added_tokens_as_control(tokenizer)
    with logged_step("weights", device):
        # int4 codes are found from the checkpoint's exact values, so load those in fp32.
        load_dtype = torch.float32 if try_int4 else dtype
        model = AutoModelForCausalLM.from_pretrained(source, dtype=load_dtype, **extra)
        model.to(device)
        model.eval()
    max_len = model_len(settings, model.config)
    eos_ids = eos_token_ids(model, tokenizer)
    loaded = LoadedModel(
        tokenizer=tokenizer,
        model=model,
        device=device,
        dtype=dtype,
        max_model_len=max_len,
        vocab_size=int(model.config.vocab_size),
        eos_token_ids=eos_ids,
    )
    reason = decoder_unsupported(settings, model, device)
    if reason is None:
        with logged_step("decoder", device):
            use_own_decoder(loaded, settings, try_int4)
            del model  # the decoder holds its own copies of the weights
            release_memory()
        log.info(
            "decoder: chatstack's own Llama forward, %s linears, output projection %s",
            loaded.quantization,
            "int8" if loaded.quantization == "int4" else str(loaded.dtype).removeprefix("torch."),
        )
        return loaded
    log.info("decoder: transformers' forward (%s)", reason)
    if try_int4:
        with logged_step("int4 linears", device):
            swapped = quantize_int4(model, force=settings.quantization == "int4")
        if swapped:
            loaded.quantization, loaded.dtype = "int4", torch.bfloat16
            log.info("int4: %d linears run 4-bit, the rest of the model in bfloat16", swapped)
        else:
            log.info("int4: the weights are not 4-bit; QUANTIZATION=int4 would cut them")
        model.to(loaded.dtype)
    return loaded


def model_len(settings: Settings, config: Any) -> int:
    """MAX_MODEL_LEN, or the model's trained length; never more than that."""
    trained_len = int(getattr(config, "max_position_embeddings", 2048))
    max_len = settings.max_model_len or trained_len
    if max_len > trained_len:
        log.warning(
            "MAX_MODEL_LEN %d exceeds the model's %d; using %d", max_len, trained_len, trained_len
        )
        max_len = trained_len
    return int(max_len)


def decoder_unsupported(settings: Settings, model: Any, device: torch.device) -> str | None:
    """Why the model keeps transformers' forward; None when chatstack's decoder runs it."""
    if settings.decoder == "transformers":
        return "DECODER=transformers"
    from model_api.llama_decoder import unsupported_reason

    return unsupported_reason(model, device)


def use_own_decoder(loaded: LoadedModel, settings: Settings, try_int4: bool) -> None:
    """Replace the transformers model by a LlamaDecoder of the same weights, checked for
    row invariance on this CPU."""
    from model_api.llama_decoder import LlamaDecoder

    force = settings.quantization == "int4"
    decoder = LlamaDecoder(
        loaded.model, int4=force if try_int4 else None, max_len=loaded.max_model_len
    )
    if try_int4 and decoder.quantization == "none":
        log.info("int4: the weights are not 4-bit; QUANTIZATION=int4 would cut them")
    if settings.engine == "batching":
        decoder.calibrate(
            max_batch=settings.max_batch_size,
            max_prefill_rows=2 * settings.prefill_chunk_tokens,
            max_len=loaded.max_model_len,
        )
    loaded.decoder, loaded.model = decoder, None
    loaded.quantization, loaded.dtype = decoder.quantization, decoder.dtype


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim):
    the fp32 weights freed after quantization otherwise stay resident."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: it keeps what it keeps
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def count_added_tokens_as_control(tokenizer: Any) -> None:
    """Every added token, not only those the chat template writes, is encoded as text when
    it appears inside a message (serving.py's chat prompts).

    transformers otherwise sanitizes the special tokens and the added tokens found in the
    template's text: an added token the template never writes (a tool or FIM marker)
    would still reach the model as itself. Whitespace tokens stay out: templates write
    them as ordinary text, and content must encode as it always did. A model that lists
    its own `chat_control_tokens` keeps them.
    """
    if getattr(tokenizer, "chat_control_tokens", None) is None:
        added = tokenizer.added_tokens_decoder.values()
        tokenizer.chat_control_tokens = [t.content for t in added if not t.content.isspace()]


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every id that ends a turn: the generation config's and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)
