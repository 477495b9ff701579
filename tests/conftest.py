"""Fixtures every suite shares: one real model API (gunicorn, the embedded model) per run,
used by the integration tests and the browser tests alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RunningServer, serving, start_model_api

API_KEY = "test-model-api-key"
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def model_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_model_api(
        tmp_path_factory.mktemp("model_api"), MODEL_API_KEY=API_KEY, MODEL_API_MAX_BODY_MB="1"
    )
    yield from serving(server)
