"""Where a webhook may be sent: checked like a node's host (`services.hosts`), since a
customer's URL must not aim the gateway at its own network.

A target is an absolute `http` or `https` URL of at most `MAX_URL_CHARS` characters, with
a host, no user info and no fragment. Its host may not be loopback, link-local (where
cloud metadata services live: 169.254.169.254), private, multicast, reserved or otherwise
not global unless `NGPU_WEBHOOK_HOST_ALLOW` lists it (loopback is never allowed by
default: the control plane's own services listen there). An IP is checked as written; a
DNS name by every address it resolves to, at submission (`refusal`) and again when each
attempt connects (`CheckedResolver`: the addresses checked are the addresses the
connection uses, so a name re-pointed between the check and the call gains nothing).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from events.errors import NgpuError
from services.hosts import HostPolicy, Resolver, parse_allow, system_resolver

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")
_HINT = " (NGPU_WEBHOOK_HOST_ALLOW lists the ranges the operator allows)"


class TargetError(NgpuError):
    """A webhook URL that may not be used; the message says why."""


class TargetRefused(OSError):
    """Raised by `CheckedResolver` for a name that resolves to a refused address: the
    connection is not made (aiohttp reports it as a `ClientConnectorDNSError`)."""


def policy_from_settings(webhook_host_allow: Iterable[str]) -> HostPolicy:
    """The webhook host policy: loopback only where the operator's CIDRs allow it."""
    return HostPolicy(parse_allow(webhook_host_allow), allow_loopback=False)


@dataclass(frozen=True, slots=True)
class Target:
    """A URL that passed `parse`: `host` without brackets, `port` explicit or the scheme's."""

    url: str
    host: str
    port: int

    @property
    def literal_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse(url: str) -> Target:
    """`url` if it may be a webhook target by its form (the host's addresses are checked
    by `refusal`); else `TargetError`."""
    if not url or len(url) > MAX_URL_CHARS:
        raise TargetError(f"must be an http or https URL of 1 to {MAX_URL_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise TargetError("must not hold spaces, control characters or backslashes")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise TargetError("must be an absolute http or https URL")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise TargetError("must not carry a user name or password (the signature authenticates)")
    if parts.fragment or url.endswith("#"):
        raise TargetError("must not carry a fragment")
    if port == 0:
        raise TargetError("must not name port 0")
    default = 443 if parts.scheme.lower() == "https" else 80
    return Target(url, host, port or default)


async def refusal(
    target: Target, policy: HostPolicy, resolver: Resolver = system_resolver
) -> tuple[str, bool] | None:
    """Why `target`'s host may not be called, and whether that is for good (a refused
    address) rather than for now (a name that does not resolve); None when it may."""
    if target.literal_ip:
        kind = policy.refused_kind(target.host)
        return (f"{target.host} is {kind}{_HINT}", True) if kind else None
    try:
        addresses = await resolver(target.host)
    except (OSError, UnicodeError) as exc:
        return f"{target.host} does not resolve: {exc}", False
    if not addresses:
        return f"{target.host} does not resolve", False
    for address in addresses:
        kind = policy.refused_kind(address)
        if kind is not None:
            return f"{target.host} resolves to {address}, which is {kind}{_HINT}", True
    return None


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing (`TargetRefused`) a name any address of which the
    policy refuses. aiohttp resolves only names: IP literals are checked by `refusal`
    before the attempt."""

    def __init__(self, policy: HostPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:  # made here: inside the running loop
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            kind = self.policy.refused_kind(result["host"])
            if kind is not None:
                name = host.rstrip(".")
                raise TargetRefused(f"{name} resolves to {result['host']}, which is {kind}{_HINT}")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
