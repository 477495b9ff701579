"""One real model API (gunicorn, embedded model) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import requests

from tests.servers import RunningServer, start_model_api

API_KEY = "test-model-api-key"
MODEL = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def model_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_model_api(
        tmp_path_factory.mktemp("model_api"), MODEL_API_KEY=API_KEY, MODEL_API_MAX_BODY_MB="1"
    )
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(model_api: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=model_api.url + "/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture
def http(model_api: RunningServer) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    return session
