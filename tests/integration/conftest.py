"""Real servers shared by the integration tests: the model API (gunicorn, embedded model)
and the app service (gunicorn) in front of it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import openai
import pytest
import requests

from tests.conftest import API_KEY, MODEL  # noqa: F401 - re-exported for the tests
from tests.servers import RunningServer, serving, start_app_service, start_model_api

PASSWORD = "correct horse battery"


@pytest.fixture
def client(model_api: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=model_api.url + "/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture
def http(model_api: RunningServer) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    return session


@pytest.fixture(scope="session", params=["batching", "sequential"])
def float32_model_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A float32 model API with each engine, for tests that compare tokens exactly: in bf16
    (int4 included) a prompt's prefill and the decode steps that generated it round
    differently, so a greedy near tie may flip, on one CPU and not another."""
    engine = request.param
    server = start_model_api(
        tmp_path_factory.mktemp(f"float32_{engine}_api"),
        MODEL_API_KEY=API_KEY,
        ENGINE=engine,
        QUANTIZATION="none",
        DTYPE="float32",
    )
    yield from serving(server)


@pytest.fixture(scope="session")
def app_server(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> Iterator[RunningServer]:
    yield from app_service_with(tmp_path_factory, model_api, "app_service")


def app_service_with(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer, name: str, **env: str
) -> Iterator[RunningServer]:
    """An app service of a module's own, with `env` on top of the shared one's settings:
    `yield from` it in a module-scoped fixture."""
    server = start_app_service(
        tmp_path_factory.mktemp(name),
        model_api.url,
        # No model-written titles unless a module asks (test_titles.py): the tests that count
        # the model API's requests, or wait for it to be idle after a turn, see only the
        # turns' own.
        **{"MODEL_API_KEY": API_KEY, "UPSTREAM_HEALTH_SECONDS": "1", "AUTO_TITLES": "false", **env},
    )
    try:
        server.wait_healthy("/api/health")
        yield server
    finally:
        server.stop()


def register(app_url: str, username: str | None = None) -> requests.Session:
    """A new user, registered and logged in; the session carries its cookie."""
    session = requests.Session()
    name = username or f"user_{uuid.uuid4().hex[:10]}"
    reply = session.post(
        app_url + "/api/auth/register", json={"username": name, "password": PASSWORD}
    )
    assert reply.status_code == 201, reply.text
    session.username = name  # type: ignore[attr-defined]
    return session


@pytest.fixture
def new_user(app_server: RunningServer) -> Callable[[], requests.Session]:
    return lambda: register(app_server.url)
