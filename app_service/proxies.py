"""Who the client is: the TCP peer, or what a trusted proxy (nginx) says it forwarded for.

X-Real-IP and X-Forwarded-For are headers anyone can send; they are believed only when the
peer is in TRUSTED_PROXIES. X-Forwarded-For is read from the right (each proxy appends the
peer it saw), skipping trusted hops: the first address that is not a proxy of ours is the
client, and whatever a client wrote further left is never reached.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _address(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def is_trusted(address: Address, trusted: tuple[str, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(trusted))


def client_address(peer: str | None, headers: Mapping[str, str], trusted: tuple[str, ...]) -> str:
    """The client's address, as text; "unknown" without a peer (a test client)."""
    current = _address(peer or "")
    if current is None:
        return peer or "unknown"
    forwarded = headers.get("X-Forwarded-For") or headers.get("X-Real-IP") or ""
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    while hops and is_trusted(current, trusted):
        hop = _address(hops.pop())
        if hop is None:  # garbage from further out: the last good hop is all we know
            break
        current = hop
    return str(current)
