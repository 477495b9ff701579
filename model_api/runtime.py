"""The model's life in the server: loaded in the background so /health can say 503."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable

import torch

from chatstack.errors import APIError
from model_api.batching import BatchingEngine
from model_api.engine import Engine, SequentialEngine
from model_api.loading import LoadedModel, load_model
from model_api.prompt_chunks import template_token_ids
from model_api.serving import ModelService
from model_api.settings import Settings

log = logging.getLogger(__name__)


def build_engine(settings: Settings, loaded: LoadedModel) -> Engine:
    """The engine ENGINE names, sized by its settings."""
    if settings.engine == "batching":
        return BatchingEngine(
            loaded,
            max_batch_size=settings.max_batch_size,
            max_waiting=settings.max_waiting,
            prefill_chunk_tokens=settings.prefill_chunk_tokens,
            kv_cache_mb=settings.kv_cache_mb,
            prefix_cache_mb=settings.prefix_cache_mb,
            boundary_ids=template_token_ids(loaded.tokenizer),
        )
    return SequentialEngine(loaded, max_waiting=settings.max_waiting)


class ModelRuntime:
    """Loads the model once, starts the engine, and reports whether it is ready."""

    def __init__(
        self, settings: Settings, loader: Callable[[Settings], LoadedModel] = load_model
    ) -> None:
        self.settings = settings
        self.loader = loader
        self.service: ModelService | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _load(self) -> None:
        try:
            if self.settings.torch_threads:
                torch.set_num_threads(self.settings.torch_threads)
            loaded = self.loader(self.settings)
            engine = build_engine(self.settings, loaded)
            # What loading made lives as long as the process: the collector need not walk it
            # again at every full collection (a pause of tens of ms in the middle of a step).
            gc.collect()
            gc.freeze()
            engine.start()
            self.service = ModelService(self.settings, loaded, engine)
            log.info("model %s ready", self.settings.model_name)
        except Exception as exc:  # reported by /health; the process stays up to say so
            log.exception("model failed to load")
            self.error = f"{type(exc).__name__}: {exc}"

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.service is None:
            return "loading"
        return "ok" if self.service.engine.alive else "engine stopped"

    def ready_service(self) -> ModelService:
        """The service, or a 503 that says why it cannot answer yet."""
        if self.service is not None and self.service.engine.alive:
            return self.service
        if self.error:
            message = f"The model failed to load: {self.error}"
        elif self.service is None:
            message = "The model is still loading; try again in a few seconds."
        else:
            message = "The generation engine has stopped; restart the model API."
        raise APIError(503, message, code="model_not_ready", headers={"Retry-After": "5"})
