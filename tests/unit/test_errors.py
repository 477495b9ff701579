from flask import Flask

from chatstack.errors import APIError, register_error_handlers


def app_with_routes() -> Flask:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    @app.get("/limited")
    def limited():
        raise APIError(429, "slow down", code="rate_limited", headers={"Retry-After": "3"})

    return app


def test_api_error_renders_openai_shape_with_headers():
    reply = app_with_routes().test_client().get("/limited")
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "3"
    assert reply.json == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }


def test_unknown_route_and_method_are_json_not_html():
    client = app_with_routes().test_client()
    assert client.get("/nowhere").json["error"]["code"] == "not_found"
    reply = client.post("/boom")
    assert reply.status_code == 405
    assert reply.json["error"]["type"] == "invalid_request_error"
    assert "GET" in reply.headers["Allow"]


def test_unexpected_exception_is_500_without_a_traceback():
    reply = app_with_routes().test_client().get("/boom")
    assert reply.status_code == 500
    assert reply.json["error"]["type"] == "server_error"
    assert "secret" not in reply.get_data(as_text=True)
