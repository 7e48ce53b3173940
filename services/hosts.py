"""Which addresses the dispatcher may call on a node's behalf.

A node provider is a stranger: the `host` it registers must not aim the dispatcher (and
the customers' request bodies it carries) at the control plane's own network. Loopback,
link-local (where cloud metadata services live: 169.254.169.254, fe80::/10), multicast,
unspecified, reserved, private and any other non-global address are refused unless an
operator's CIDR in `NGPU_NODE_HOST_ALLOW` covers it; loopback is allowed by default
only when the control plane itself listens on loopback (`NGPU_HOST`: the local demo and
test clusters). A DNS name is checked by what it resolves to, every address of it, at
registration and again before each call (a name can be re-pointed after it was checked).

Used by the ingress (`POST /v1/nodes/register`) and the dispatcher (before `call_node`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]
"""Resolves a DNS name to the addresses a connection may go to (an empty list, or an
`OSError`, when it does not resolve)."""


def parse_allow(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; raises ValueError for anything else."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def is_loopback_host(host: str) -> bool:
    """Whether a bind address (`NGPU_HOST`) is a loopback address (or `localhost`)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _kind(ip: IPAddress) -> str | None:
    """The refused class `ip` belongs to, or None for a global unicast address."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata lives here)", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


_HINT = " (NGPU_NODE_HOST_ALLOW lists the ranges the operator allows)"


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """`allow`: CIDRs always allowed; `allow_loopback`: loopback allowed too."""

    allow: tuple[Network, ...] = ()
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, node_host_allow: Iterable[str], bind_host: str) -> HostPolicy:
        return cls(parse_allow(node_host_allow), is_loopback_host(bind_host))

    def refused_kind(self, address: str) -> str | None:
        """The refused class of the IP `address` ("loopback", "private", ...), or None
        when it may be called. Raises ValueError when `address` is not an IP."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allow):
            return None
        kind = _kind(ip)
        if kind == "loopback" and self.allow_loopback:
            return None
        return kind


async def system_resolver(name: str) -> list[str]:
    """The addresses `name` resolves to, through the system resolver (off the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def host_refusal(
    host: str, policy: HostPolicy, resolver: Resolver = system_resolver
) -> str | None:
    """Why `host` (an IP or a DNS name) may not be called, or None when it may. A name
    is refused when it does not resolve, or when any address it resolves to is refused
    (the connection may go to any of them)."""
    try:
        kind = policy.refused_kind(host)
    except ValueError:
        pass  # a DNS name
    else:
        return f"{host} is {kind}{_HINT}" if kind else None
    try:
        addresses = await resolver(host)
    except (OSError, UnicodeError) as exc:
        return f"{host} does not resolve: {exc}"
    if not addresses:
        return f"{host} does not resolve"
    for address in addresses:
        kind = policy.refused_kind(address)
        if kind is not None:
            return f"{host} resolves to {address}, which is {kind}{_HINT}"
    return None
