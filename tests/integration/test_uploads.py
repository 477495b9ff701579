"""Uploads against the real app service under gunicorn: every kind, every bad upload,
isolation between users, per-user limits, and a server that keeps answering after each
error."""

from __future__ import annotations

import http.client
import json
import select
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.conftest import app_service_with, register
from tests.servers import RunningServer
from tests.upload_samples import make_docx, make_docx_bomb, make_pdf

MiB = 1024 * 1024
LIMIT = 20 * MiB  # the test server runs with the default MAX_UPLOAD_MB
MAX_IN_PROGRESS = 2  # and the default USER_MAX_EXTRACTIONS


@pytest.fixture
def user(new_user: Callable[[], requests.Session]) -> requests.Session:
    return new_user()


def data_dir(server: RunningServer) -> Path:
    return server.log_path.parent / "data"


def upload(
    server: RunningServer, session: requests.Session, name: str, data: bytes | str
) -> requests.Response:
    body = data.encode() if isinstance(data, str) else data
    return session.post(
        server.url + "/api/files",
        files={"file": (name, body, "application/octet-stream")},
        timeout=60,
    )


def chunk_count(server: RunningServer, file_id: str) -> int:
    conn = sqlite3.connect(f"file:{data_dir(server) / 'chatstack.db'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM chunks WHERE file_id = ?", (file_id,)).fetchone()[
            0
        ]
    finally:
        conn.close()


def assert_still_answers(server: RunningServer, session: requests.Session) -> None:
    assert requests.get(server.url + "/api/health", timeout=5).status_code == 200
    assert session.get(server.url + "/api/files", timeout=5).status_code == 200


def assert_error(reply: requests.Response, status: int, code: str | None = None) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


# ---- the good path ---------------------------------------------------------------------------


def test_upload_each_kind_then_list_get_and_delete(app_server, user):
    samples = [
        ("notes.txt", "The launch code is PLUMBUS-7.\n" * 3, "text", "PLUMBUS"),
        ("readme.md", "# Title\n\nMarkdown body about grues.\n", "markdown", "grues"),
        ("paper.pdf", make_pdf(["The zorkmid is the currency of Zork."]), "pdf", "zorkmid"),
        ("letter.docx", make_docx(["Dear reader, the frobozz is ready."]), "docx", "frobozz"),
    ]
    created = []
    for name, data, kind, _word in samples:
        reply = upload(app_server, user, name, data)
        assert reply.status_code == 201, reply.text
        meta = reply.json()
        assert set(meta) == {"id", "name", "kind", "size", "created_at", "chunk_count", "chars"}
        assert meta["name"] == name
        assert meta["kind"] == kind
        assert meta["size"] == len(data.encode() if isinstance(data, str) else data)
        assert meta["chunk_count"] >= 1
        assert meta["chars"] > 10
        assert reply.headers["Location"] == f"/api/files/{meta['id']}"
        assert chunk_count(app_server, meta["id"]) == meta["chunk_count"]
        stored = data_dir(app_server) / "uploads" / meta["id"]
        assert stored.read_bytes() == (data.encode() if isinstance(data, str) else data)
        created.append(meta)

    listing = user.get(app_server.url + "/api/files", timeout=5).json()
    assert listing["object"] == "list"
    assert [f["id"] for f in listing["data"]] == [m["id"] for m in reversed(created)]

    pdf = created[2]
    assert user.get(f"{app_server.url}/api/files/{pdf['id']}", timeout=5).json() == pdf

    reply = user.delete(f"{app_server.url}/api/files/{pdf['id']}", timeout=5)
    assert reply.status_code == 204
    assert not (data_dir(app_server) / "uploads" / pdf["id"]).exists()
    assert chunk_count(app_server, pdf["id"]) == 0
    assert_error(
        user.get(f"{app_server.url}/api/files/{pdf['id']}", timeout=5), 404, "file_not_found"
    )
    assert_error(user.delete(f"{app_server.url}/api/files/{pdf['id']}", timeout=5), 404)
    remaining = [f["id"] for f in user.get(app_server.url + "/api/files", timeout=5).json()["data"]]
    assert pdf["id"] not in remaining
    assert len(remaining) == 3


def test_hostile_names_are_sanitized_and_never_used_on_disk(app_server, user):
    uploads = data_dir(app_server) / "uploads"
    cases = {
        "../../etc/passwd.txt": "passwd.txt",
        # Sent raw, as browsers do; werkzeug reads "\w" in the quoted header as "w".
        "..\\..\\windows\\win.ini.txt": "windowswin.ini.txt",
        "C:\\\\Users\\\\me\\\\notes.txt": "notes.txt",
        "<script>alert(1)</script>.txt": "script>.txt",
        '<img src=x onerror="alert(1)">.md': '<img src=x onerror="alert(1)">.md',
    }
    for raw, clean in cases.items():
        reply = upload(app_server, user, raw, "harmless text")
        assert reply.status_code == 201, reply.text
        meta = reply.json()
        assert meta["name"] == clean, (raw, meta["name"])
        assert "/" not in meta["name"] and "\\" not in meta["name"]
        assert (uploads / meta["id"]).is_file()
    assert not (data_dir(app_server).parent / "etc").exists()
    on_disk = sorted(p.name for p in uploads.iterdir())
    listed = sorted(
        f["id"] for f in user.get(app_server.url + "/api/files", timeout=5).json()["data"]
    )
    # Only ids: no client name and no leftover partial file; (other tests' files are there too)
    assert set(listed) <= set(on_disk)
    assert all(name.startswith("file_") and len(name) == 37 for name in on_disk), on_disk


# ---- bad uploads -----------------------------------------------------------------------------


def test_an_upload_over_the_limit_is_413(app_server, user):
    # One byte over: the body fits the request limit, so the app's own check answers.
    error = assert_error(
        upload(app_server, user, "big.txt", b"a" * (LIMIT + 1)), 413, "file_too_large"
    )
    assert "20 MiB" in error["message"]
    assert_still_answers(app_server, user)


def test_a_request_far_over_the_limit_is_413(app_server, user):
    try:
        reply = upload(app_server, user, "huge.txt", b"a" * (21 * MiB))
    except requests.ConnectionError:
        pytest.fail("the server dropped the connection instead of answering 413")
    assert_error(reply, 413)
    assert_still_answers(app_server, user)


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        ("program.exe", b"MZ\x90\x00", "unsupported_file_type", "'.exe'"),
        ("photo.png", b"\x89PNG\r\n", "unsupported_file_type", "'.png'"),
        ("noextension", b"text", "unsupported_file_type", "no extension"),
        ("fake.pdf", b"just some text, not a PDF", "file_content_mismatch", "not a PDF"),
        ("fake.docx", b"not a zip at all", "file_content_mismatch", "not a Word document"),
        ("latin1.txt", "caf\u00e9".encode("latin-1"), "file_content_mismatch", "UTF-8"),
        ("binary.py", b"print(1)\x00\x00", "file_content_mismatch", "binary"),
    ],
)
def test_wrong_types_are_415(app_server, user, name, data, code, says):
    error = assert_error(upload(app_server, user, name, data), 415, code)
    assert says in error["message"]
    assert error["param"] == "file"
    assert_still_answers(app_server, user)


@pytest.mark.parametrize(
    ("name", "data", "code", "says"),
    [
        (
            "locked.pdf",
            make_pdf(["top secret"], password="hunter2"),
            "unreadable_file",
            "encrypted",
        ),
        ("blank.txt", " \n\n\t ", "empty_file", "no text"),
        ("blank.pdf", make_pdf([""]), "empty_file", "no text"),
        ("bomb.docx", make_docx_bomb(inflated_mb=30), "unreadable_file", "zip bomb"),
        ("broken.pdf", b"%PDF-1.7\n\x00\x01 broken", "unreadable_file", "could not be read"),
    ],
)
def test_unreadable_files_are_422(app_server, user, name, data, code, says):
    error = assert_error(upload(app_server, user, name, data), 422, code)
    assert says in error["message"]
    assert_still_answers(app_server, user)


def test_a_missing_file_field_is_400(app_server, user):
    reply = user.post(app_server.url + "/api/files", files={"other": ("a.txt", b"x")}, timeout=5)
    assert assert_error(reply, 400, "missing_required_parameter")["param"] == "file"
    assert_error(user.post(app_server.url + "/api/files", json={"file": "x"}, timeout=5), 400)
    assert_still_answers(app_server, user)


def test_failed_uploads_leave_nothing_behind(app_server, user):
    before = set((data_dir(app_server) / "uploads").iterdir())
    count = len(user.get(app_server.url + "/api/files", timeout=5).json()["data"])
    assert upload(app_server, user, "locked.pdf", make_pdf(["x"], password="pw")).status_code == 422
    assert upload(app_server, user, "fake.pdf", b"nope").status_code == 415
    assert set((data_dir(app_server) / "uploads").iterdir()) == before
    assert len(user.get(app_server.url + "/api/files", timeout=5).json()["data"]) == count


# ---- isolation -------------------------------------------------------------------------------


def test_files_need_a_login(app_server):
    anonymous = requests.Session()
    assert_error(upload(app_server, anonymous, "a.txt", "hi"), 401, "not_authenticated")
    assert_error(anonymous.get(app_server.url + "/api/files", timeout=5), 401)


def test_another_user_gets_404_exactly_like_a_missing_id(app_server, new_user):
    alice, bob = new_user(), new_user()
    meta = upload(app_server, alice, "private.txt", "Alice's private notes").json()
    url = f"{app_server.url}/api/files/{meta['id']}"
    missing = f"{app_server.url}/api/files/file_{'0' * 32}"

    for method in ("get", "delete"):
        foreign = getattr(bob, method)(url, timeout=5)
        absent = getattr(bob, method)(missing, timeout=5)
        assert foreign.status_code == absent.status_code == 404
        assert foreign.json()["error"]["code"] == absent.json()["error"]["code"] == "file_not_found"
    assert meta["id"] not in [
        f["id"] for f in bob.get(app_server.url + "/api/files", timeout=5).json()["data"]
    ]
    # Bob's delete did nothing: Alice still has her file.
    assert alice.get(url, timeout=5).status_code == 200
    assert (data_dir(app_server) / "uploads" / meta["id"]).is_file()
    assert_error(bob.get(f"{app_server.url}/api/files/..%2F..%2Fetc", timeout=5), 404)


# ---- per-user limits -------------------------------------------------------------------------


class HeldUpload:
    """An upload whose body stops after its multipart head until `finish()`: the server
    has started on it (and holds one of the user's upload slots) but cannot end it."""

    def __init__(self, server: RunningServer, session: requests.Session, name: str) -> None:
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        self.rest = f"Held upload {name}.\r\n--{boundary}--\r\n".encode()
        url = urlsplit(server.url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.conn.putrequest("POST", "/api/files", skip_accept_encoding=True)
        for header, value in session.headers.items():
            self.conn.putheader(header, value)
        self.conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in session.cookies.items()))
        self.conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        self.conn.putheader("Content-Length", str(len(head) + len(self.rest)))
        self.conn.endheaders(head)

    def answered(self) -> bool:
        """Whether the server has answered already: it refused the upload on arrival."""
        return bool(select.select([self.conn.sock], [], [], 0)[0])

    def finish(self) -> tuple[int, dict]:
        self.conn.send(self.rest)
        reply = self.conn.getresponse()
        return reply.status, json.loads(reply.read())

    def close(self) -> None:
        self.conn.close()


def hold_uploads(
    server: RunningServer, session: requests.Session, count: int
) -> tuple[list[HeldUpload], requests.Response]:
    """`count` uploads in progress, and the 429 of one more (a probe).

    A probe is a `.exe`: it holds a slot only until its type is refused (415). Until the
    held uploads have reached the server, probes get 415; one that arrived while a probe
    held a slot was refused and is sent again.
    """
    held = [HeldUpload(server, session, f"held{i}.txt") for i in range(count)]
    deadline = time.monotonic() + 30
    while True:
        for i, one in enumerate(held):
            if one.answered():
                one.close()
                held[i] = HeldUpload(server, session, f"held{i}.txt")
        probe = upload(server, session, "probe.exe", b"MZ")
        if probe.status_code == 429 and not any(one.answered() for one in held):
            return held, probe
        assert probe.status_code == 415, probe.text
        assert time.monotonic() < deadline, "the held uploads never held their slots"
        time.sleep(0.05)


def test_uploads_beyond_the_per_user_limit_are_429_until_one_finishes(app_server, new_user):
    user, other = new_user(), new_user()
    held, probe = hold_uploads(app_server, user, MAX_IN_PROGRESS)
    try:
        error = assert_error(probe, 429, "too_many_uploads")
        assert f"{MAX_IN_PROGRESS} uploads in progress" in error["message"]
        assert error["param"] == "file"
        refused = upload(app_server, user, "again.txt", "still refused")
        assert_error(refused, 429, "too_many_uploads")
        assert int(refused.headers["Retry-After"]) >= 1
        # Only this user is held back.
        assert upload(app_server, other, "other.txt", "another user's file").status_code == 201
        assert_still_answers(app_server, user)

        for one in held:
            status, meta = one.finish()
            assert status == 201, meta
            assert meta["name"].startswith("held")
    finally:
        for one in held:
            one.close()
    names = [f["name"] for f in user.get(app_server.url + "/api/files", timeout=5).json()["data"]]
    assert {f"held{i}.txt" for i in range(MAX_IN_PROGRESS)} <= set(names)
    assert "again.txt" not in names
    assert upload(app_server, user, "after.txt", "uploads work again").status_code == 201


QUOTA_MB = 1


@pytest.fixture(scope="module")
def quota_server(
    tmp_path_factory: pytest.TempPathFactory, model_api: RunningServer
) -> Iterator[RunningServer]:
    yield from app_service_with(
        tmp_path_factory, model_api, "app_service_quota", USER_STORAGE_MB=str(QUOTA_MB)
    )


def text_of(size: int) -> str:
    return ("All work and no play makes a dull upload.\n" * (size // 42 + 1))[:size]


def test_the_storage_quota_refuses_what_does_not_fit_and_a_delete_frees_room(quota_server):
    alice, bob = register(quota_server.url), register(quota_server.url)
    first = upload(quota_server, alice, "first.txt", text_of(600 * 1024))
    assert first.status_code == 201, first.text
    uploads_before = set((data_dir(quota_server) / "uploads").iterdir())

    error = assert_error(
        upload(quota_server, alice, "second.txt", text_of(600 * 1024)), 413, "quota_exceeded"
    )
    assert "using 0.6 MiB of your 1 MiB" in error["message"]
    assert error["param"] == "file"
    assert set((data_dir(quota_server) / "uploads").iterdir()) == uploads_before
    assert_still_answers(quota_server, alice)

    # What still fits is taken; another user has a quota of their own.
    assert upload(quota_server, alice, "small.txt", text_of(300 * 1024)).status_code == 201
    assert upload(quota_server, bob, "bobs.txt", text_of(600 * 1024)).status_code == 201

    file_id = first.json()["id"]
    assert alice.delete(f"{quota_server.url}/api/files/{file_id}", timeout=5).status_code == 204
    again = upload(quota_server, alice, "second.txt", text_of(600 * 1024))
    assert again.status_code == 201, again.text
