import pytest
import torch

from model_api.embedded_model import find_embedded_gguf
from model_api.loading import ModelLoadError, pretrained_source, resolve_device, resolve_dtype


def test_auto_device_and_dtype_on_a_cpu_machine():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_cuda_without_a_gpu_is_refused_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match="DEVICE=cuda"):
        resolve_device("cuda")


def test_model_path_forms(tmp_path):
    assert pretrained_source(str(tmp_path)) == (str(tmp_path), {})
    gguf = find_embedded_gguf()
    assert pretrained_source(str(gguf)) == (str(gguf.parent), {"gguf_file": gguf.name})
    assert pretrained_source("HuggingFaceTB/SmolLM2-135M-Instruct")[1] == {}
    with pytest.raises(ModelLoadError, match="make install"):
        pretrained_source(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        pretrained_source(str(tmp_path / "missing.gguf"))


def test_a_relative_path_into_an_existing_folder_is_local_not_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="make install"):
        pretrained_source("models/typo")
