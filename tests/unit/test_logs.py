"""Request ids and log lines: an id is adopted when well formed, made up otherwise, echoed,
stamped on every line written while serving; LOG_FORMAT=json gives one JSON object a line."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Flask

from chatstack.logs import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    current_request_id,
    install_request_ids,
)


@pytest.fixture
def captured() -> io.StringIO:
    """Everything logged, in JSON, through the same filter the services use."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield stream
    root.handlers[:] = old_handlers
    root.setLevel(old_level)


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    install_request_ids(app)

    @app.get("/work")
    def work() -> dict[str, str]:
        logging.getLogger("test.work").info("working", extra={"items": 3})
        return {"request_id": current_request_id()}

    return app


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_well_formed_id_is_adopted_echoed_and_on_every_line(app, captured) -> None:
    reply = app.test_client().get("/work", headers={REQUEST_ID_HEADER: "abc-123.1"})
    assert reply.json == {"request_id": "abc-123.1"}
    assert reply.headers[REQUEST_ID_HEADER] == "abc-123.1"
    logged = lines(captured)
    assert [line["request_id"] for line in logged] == ["abc-123.1", "abc-123.1"]
    work, access = logged
    assert (work["message"], work["items"], work["level"]) == ("working", 3, "info")
    assert access["logger"] == ACCESS_LOGGER
    assert (access["method"], access["path"], access["status"]) == ("GET", "/work", 200)


@pytest.mark.parametrize(
    "header", [None, "", "x" * 200, "bad id", "evil\tline", "a/b", "&lt;script&gt;"]
)
def test_a_missing_or_hostile_id_is_replaced(app, captured, header) -> None:
    headers = {REQUEST_ID_HEADER: header} if header is not None else {}
    reply = app.test_client().get("/work", headers=headers)
    rid = reply.headers[REQUEST_ID_HEADER]
    assert rid != header and len(rid) == 32 and rid.isalnum()
    assert all(line["request_id"] == rid for line in lines(captured))


def test_each_request_gets_its_own_id(app) -> None:
    client = app.test_client()
    assert client.get("/work").json != client.get("/work").json


def test_a_line_outside_a_request_says_so_and_extras_survive(captured) -> None:
    logging.getLogger("engine").info("step", extra={"request_id": "given", "batch": 4})
    logging.getLogger("engine").warning("idle")
    given, idle = lines(captured)
    assert (given["request_id"], given["batch"]) == ("given", 4)
    assert idle["request_id"] in ("-", current_request_id())


def test_text_format_names_the_request(capsys) -> None:
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    try:
        configure_logging("info", "text")
        logging.getLogger("x").info("hello")
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
    err = capsys.readouterr().err
    assert "INFO x [" in err and "]: hello" in err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_gunicorn_accepts_the_log_config(log_format) -> None:
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from chatstack.gunicorn_config import threaded_server

    config = Config()
    for key, value in threaded_server("127.0.0.1", 1, 2, "info", log_format).items():
        config.set(key, value)
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    try:
        logger = Logger(config)  # raises "Unable to configure root logger" when incomplete
        assert not logger.access_log.isEnabledFor(logging.INFO)
    finally:
        root.handlers[:] = old_handlers
        root.setLevel(old_level)
