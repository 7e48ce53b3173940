"""The caller's IP: the TCP peer, or — when the peer is a trusted proxy — the nearest
address in `X-Forwarded-For` that is not itself a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError for anything else."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """Walk `X-Forwarded-For` from the right while the hop is trusted; the first hop that
    is not (and parses as an IP) is the client. An untrusted peer's header is ignored."""
    if not forwarded_for or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def rate_key(ip: str) -> str:
    """The key a per-client rate limit counts `ip` under: an IPv4 address itself, an IPv6
    address's /64 (what one host or subscriber is given, so a single client cannot
    mint fresh keys by the 2**64); anything else as it is."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def served_over_https(
    scheme: str, peer: str, forwarded_proto: str | None, proxies: tuple[Network, ...]
) -> bool:
    """Whether the caller reached us over HTTPS: our own TLS, or a trusted proxy's that
    says so in `X-Forwarded-Proto` (an untrusted peer's header is ignored)."""
    if scheme == "https":
        return True
    nearest = (forwarded_proto or "").split(",")[-1].strip().lower()
    return nearest == "https" and _trusted(peer, proxies)
