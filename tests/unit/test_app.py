"""The application factory with a stand-in loader: health while loading, failing, auth."""

import threading

import pytest

from model_api.app import create_app
from model_api.runtime import ModelRuntime
from model_api.settings import Settings

SETTINGS = Settings(model_path="/nowhere", model_name="m", models_dir=None)


def app_with_loader(loader, **settings):
    settings = Settings(**{**SETTINGS.__dict__, **settings})
    runtime = ModelRuntime(settings, loader=loader)
    return create_app(settings, runtime), runtime


def test_health_is_503_while_loading_and_chat_says_so():
    release = threading.Event()

    def slow_loader(_settings):
        release.wait(5)
        raise RuntimeError("stopped by the test")

    app, runtime = app_with_loader(slow_loader)
    client = app.test_client()
    reply = client.get("/health")
    assert reply.status_code == 503
    assert reply.json["status"] == "loading"
    chat = client.post(
        "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    models = client.get("/v1/models")
    assert models.status_code == 503
    assert models.headers["Retry-After"] == "5"
    assert models.json["error"]["code"] == "model_not_ready"
    assert chat.status_code == 503
    release.set()
    runtime.wait(5)


def test_a_model_that_fails_to_load_is_reported():
    def broken(_settings):
        raise FileNotFoundError("no weights here")

    app, runtime = app_with_loader(broken)
    runtime.wait(5)
    reply = app.test_client().get("/health")
    assert reply.status_code == 503
    assert reply.json["status"] == "failed"
    assert "no weights here" in reply.json["error"]


@pytest.mark.parametrize("path", ["/v1/models", "/tokenize", "/v1/nothing"])
def test_every_route_but_health_needs_the_key(path):
    app, runtime = app_with_loader(lambda _s: (_ for _ in ()).throw(RuntimeError()), api_key="k")
    runtime.wait(5)
    client = app.test_client()
    assert client.get("/health").status_code == 503  # no key needed, just not loaded
    reply = client.get(path)
    assert reply.status_code == 401
    assert reply.json["error"]["code"] == "invalid_api_key"
    wrong = client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
