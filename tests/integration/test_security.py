"""The security review's findings on the real servers: login CSRF, login and password
throttling (atomic, per account and address, trusted proxies only), deep JSON, no-store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app_service.login_limits import ACCOUNT_ALLOWANCE, ADDRESS_ALLOWANCE
from tests.integration.conftest import API_KEY, MODEL, PASSWORD, register
from tests.servers import RunningServer, start_app_service

ATTEMPTS = 3  # LOGIN_ATTEMPTS of the throttled servers below
WRONG = "not the password"
UNROUTABLE = "http://127.0.0.1:9"  # the throttling tests never reach a model API


def start_throttled(tmp_dir, **env: str) -> RunningServer:
    server = start_app_service(tmp_dir, UNROUTABLE, LOGIN_ATTEMPTS=str(ATTEMPTS), **env)
    try:
        server.wait_healthy("/api/health")
    except Exception:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Few login attempts; the default TRUSTED_PROXIES (loopback) lets tests say X-Real-IP."""
    server = start_throttled(tmp_path_factory.mktemp("throttled"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Trusts only a proxy that is not us: forwarded addresses from us are ignored."""
    server = start_throttled(tmp_path_factory.mktemp("untrusting"), TRUSTED_PROXIES="192.0.2.1")
    yield server
    server.stop()


def login(server: RunningServer, username: str, password: str, address: str) -> requests.Response:
    return requests.post(
        server.url + "/api/auth/login",
        json={"username": username, "password": password},
        headers={"X-Real-IP": address},
        timeout=60,
    )


def unique() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


# ---- login throttling ------------------------------------------------------------------------


def test_parallel_guesses_do_not_get_past_the_limit(throttled) -> None:
    user = register(throttled.url)
    with ThreadPoolExecutor(12) as pool:
        replies = list(
            pool.map(lambda _: login(throttled, user.username, WRONG, "198.51.100.1"), range(12))
        )
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [401] * ATTEMPTS + [429] * (12 - ATTEMPTS), statuses


def test_a_guesser_elsewhere_does_not_lock_the_owner_out(throttled) -> None:
    user = register(throttled.url)
    for _ in range(ATTEMPTS):
        assert login(throttled, user.username, WRONG, "203.0.113.7").status_code == 401
    locked = login(throttled, user.username, PASSWORD, "203.0.113.7")
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert locked.json()["error"]["code"] == "too_many_login_attempts"
    assert login(throttled, user.username, PASSWORD, "198.51.100.20").status_code == 200


def test_guesses_from_many_addresses_meet_the_account_ceiling(throttled) -> None:
    user = register(throttled.url)
    ceiling = ATTEMPTS * ACCOUNT_ALLOWANCE
    for i in range(ceiling):
        address = f"203.0.113.{100 + i // ATTEMPTS}"  # each address stays within its own limit
        assert login(throttled, user.username, WRONG, address).status_code == 401, i
    assert login(throttled, user.username, PASSWORD, "198.51.100.99").status_code == 429


def test_one_address_guessing_many_accounts_meets_the_address_limit(throttled) -> None:
    for i in range(ATTEMPTS * ADDRESS_ALLOWANCE):
        assert login(throttled, unique(), WRONG, "192.0.2.55").status_code == 401, i
    user = register(throttled.url)
    assert login(throttled, user.username, PASSWORD, "192.0.2.55").status_code == 429
    assert login(throttled, user.username, PASSWORD, "192.0.2.56").status_code == 200


def test_a_client_cannot_claim_other_addresses_past_an_untrusted_peer(untrusting) -> None:
    # Every guess claims a new X-Real-IP; the peer is not a trusted proxy, so all of them
    # count against the peer's own address.
    for i in range(ATTEMPTS * ADDRESS_ALLOWANCE):
        assert login(untrusting, unique(), WRONG, f"198.51.100.{i + 1}").status_code == 401, i
    assert login(untrusting, unique(), WRONG, "198.51.100.250").status_code == 429


def test_password_change_guesses_are_limited(throttled) -> None:
    user = register(throttled.url)
    url = throttled.url + "/api/auth/password"
    change = {"current_password": WRONG, "new_password": "new password 1"}
    for _ in range(ATTEMPTS):
        assert user.post(url, json=change).status_code == 403
    limited = user.post(url, json={**change, "current_password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert user.get(throttled.url + "/api/auth/me").status_code == 200


# ---- login CSRF and caching, on the shared app service -----------------------------------------


def test_a_cross_site_form_cannot_log_a_victim_in(app_server) -> None:
    attacker = register(app_server.url)
    form_body = f'{{"username": "{attacker.username}", "password": "{PASSWORD}"}}'
    reply = requests.post(
        app_server.url + "/api/auth/login",
        data=form_body,
        headers={"Content-Type": "text/plain"},
        timeout=30,
    )
    assert reply.status_code == 415 and "Set-Cookie" not in reply.headers
    assert reply.json()["error"]["code"] == "unsupported_media_type"
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        reply = requests.post(
            app_server.url + "/api/auth/login",
            json={"username": attacker.username, "password": PASSWORD},
            headers=headers,
            timeout=30,
        )
        assert reply.status_code == 403 and "Set-Cookie" not in reply.headers
        assert reply.json()["error"]["code"] == "cross_site_request"
    same_site = requests.post(
        app_server.url + "/api/auth/login",
        json={"username": attacker.username, "password": PASSWORD},
        headers={"Origin": app_server.url, "Sec-Fetch-Site": "same-origin"},
        timeout=30,
    )
    assert same_site.status_code == 200


def test_api_answers_say_no_store(app_server) -> None:
    for reply in (
        requests.get(app_server.url + "/api/health", timeout=30),
        requests.get(app_server.url + "/api/auth/me", timeout=30),
        requests.get(app_server.url + "/api/nowhere", timeout=30),
    ):
        assert reply.headers["Cache-Control"] == "no-store", reply.url


# ---- deeply nested JSON ------------------------------------------------------------------------


DEEP = {
    "arrays": b"[" * 50_000 + b"]" * 50_000,
    "objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
}


@pytest.mark.parametrize("raw", DEEP.values(), ids=DEEP.keys())
def test_deep_json_is_a_400_on_every_edge_and_the_servers_keep_answering(
    app_server, model_api, raw
) -> None:
    user = register(app_server.url)
    key = user.post(app_server.url + "/api/keys", json={"name": "deep"}).json()["key"]
    json_type = {"Content-Type": "application/json"}
    edges = [
        (user, app_server.url + "/api/conversations", json_type),
        (requests, app_server.url + "/api/auth/login", json_type),
        (
            requests,
            app_server.url + "/v1/chat/completions",
            {**json_type, "Authorization": f"Bearer {key}"},
        ),
        (
            requests,
            model_api.url + "/v1/chat/completions",
            {**json_type, "Authorization": f"Bearer {API_KEY}"},
        ),
    ]
    for client, url, headers in edges:
        reply = client.post(url, data=raw, headers=headers, timeout=60)
        assert reply.status_code == 400, (url, reply.text[:300])
        assert reply.json()["error"]["code"] == "invalid_json", url
    assert requests.get(app_server.url + "/api/health", timeout=30).status_code == 200
    assert requests.get(model_api.url + "/health", timeout=30).status_code == 200
    answer = requests.post(
        app_server.url + "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
