"""The client's address: forwarded headers believed only from TRUSTED_PROXIES."""

from __future__ import annotations

import pytest

from app_service.proxies import client_address
from app_service.settings import Settings
from chatstack.envsettings import SettingsError

LOOPBACK = ("127.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "client"),
    [
        # Straight to the app: the peer, whatever it claims.
        ("203.0.113.5", {"X-Real-IP": "198.51.100.1"}, LOOPBACK, "203.0.113.5"),
        ("203.0.113.5", {"X-Forwarded-For": "198.51.100.1"}, LOOPBACK, "203.0.113.5"),
        # Through nginx on loopback: what nginx saw.
        ("127.0.0.1", {"X-Real-IP": "198.51.100.1"}, LOOPBACK, "198.51.100.1"),
        ("::1", {"X-Real-IP": "2001:db8::7"}, LOOPBACK, "2001:db8::7"),
        ("::ffff:127.0.0.1", {"X-Real-IP": "198.51.100.1"}, LOOPBACK, "198.51.100.1"),
        # A client's own X-Forwarded-For sits left of what nginx appended: never reached.
        (
            "127.0.0.1",
            {"X-Forwarded-For": "10.9.9.9, 198.51.100.1", "X-Real-IP": "198.51.100.1"},
            LOOPBACK,
            "198.51.100.1",
        ),
        # Two trusted hops (a load balancer, then nginx): the first untrusted one.
        (
            "127.0.0.1",
            {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.0.0.2"},
            (*LOOPBACK, "10.0.0.0/8"),
            "198.51.100.1",
        ),
        # Garbage in a header is no address: the last good hop is.
        ("127.0.0.1", {"X-Real-IP": "evil\nline"}, LOOPBACK, "127.0.0.1"),
        ("127.0.0.1", {}, LOOPBACK, "127.0.0.1"),
        # Nobody trusted.
        ("127.0.0.1", {"X-Real-IP": "198.51.100.1"}, (), "127.0.0.1"),
        (None, {"X-Real-IP": "198.51.100.1"}, LOOPBACK, "unknown"),
    ],
)
def test_client_address(peer, headers, trusted, client) -> None:
    assert client_address(peer, headers, trusted) == client


def test_trusted_proxies_default_to_loopback_and_are_validated() -> None:
    assert Settings.from_env({}).trusted_proxies == LOOPBACK
    env = {"TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12,fd00::/8"}
    assert Settings.from_env(env).trusted_proxies == ("10.0.0.1/32", "172.16.0.0/12", "fd00::/8")
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "nginx"})
