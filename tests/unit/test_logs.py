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
    formatter,
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


@pytest.fixture
def text_log() -> io.StringIO:
    """Everything logged, in the text format, through the same filter the services use."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("text"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    old_handlers, old_level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield stream
    root.handlers[:] = old_handlers
    root.setLevel(old_level)


FORGED = "\n2025-01-01 00:00:00,000 INFO chatstack.access [x]: POST /api/auth/login 200"


def test_text_lines_escape_control_characters_in_the_message_and_every_field(text_log) -> None:
    logging.getLogger("chatstack.test\x1b[31m").warning(
        "conversation %s\r\x00\t\x7f\x85\u2028", "conv" + FORGED, extra={"request_id": "id\nx"}
    )
    out = text_log.getvalue()
    assert out.count("\n") == 1 and len(out.splitlines()) == 1, out
    assert "conv\\n2025-01-01" in out and "\\r\\x00\\t\\x7f\\x85\\u2028" in out
    assert "[id\\nx]" in out and "chatstack.test\\x1b[31m" in out


def test_a_forged_line_in_a_request_path_stays_on_the_access_line(app, text_log) -> None:
    app.test_client().get("/work%0A2025-01-01%2000:00:00,000%20INFO%20forged")
    (line,) = text_log.getvalue().splitlines()
    assert "GET /work\\n2025-01-01" in line and " 404 " in line


def test_a_traceback_keeps_its_lines_but_cannot_start_a_line_of_its_own(text_log) -> None:
    try:
        raise ValueError("bad id" + FORGED)
    except ValueError:
        logging.getLogger("x").exception("failed")
    first, *rest = text_log.getvalue().splitlines()
    assert first.endswith(": failed")
    assert rest and all(line.startswith(" ") for line in rest), rest
    assert any("Traceback" in line for line in rest)


def test_json_lines_stay_one_line_whatever_the_message(captured) -> None:
    logging.getLogger("x").info("a\nb\u2028c\u2029d\x85e", extra={"path": "/p\n\u2028"})
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert (record["message"], record["path"]) == ("a\nb\u2028c\u2029d\x85e", "/p\n\u2028")
