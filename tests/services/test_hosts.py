"""`services.hosts`: which node addresses the dispatcher may call."""

from __future__ import annotations

import pytest

from services.hosts import HostPolicy, host_refusal, is_loopback_host

STRICT = HostPolicy()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),  # AWS, GCP, Azure metadata
        ("169.254.170.2", "link-local"),  # ECS task metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "private"),  # AWS IPv6 metadata
        ("100.100.100.200", "not globally routable"),  # Alibaba metadata, CGNAT range
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_each_range_is_refused_and_global_addresses_pass(address: str, kind: str | None) -> None:
    refused = STRICT.refused_kind(address)
    assert (refused or "").startswith(kind or "") and (refused is None) == (kind is None)


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "192.168.1.1", False),
        (["192.168.1.7"], "192.168.1.7", True),
        (["192.168.1.7"], "192.168.1.8", False),
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["169.254.169.254/32"], "169.254.169.254", True),
        (["fd00::/8"], "fd00:ec2::254", True),
        ([], "10.1.2.3", False),
    ],
)
def test_the_allow_list_admits_its_ranges_only(
    allow: list[str], address: str, allowed: bool
) -> None:
    policy = HostPolicy.from_settings(allow, "0.0.0.0")
    assert (policy.refused_kind(address) is None) is allowed


@pytest.mark.parametrize(
    ("bind", "loopback_allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("gateway.example", False),
    ],
)
def test_loopback_is_allowed_only_when_the_control_plane_listens_on_it(
    bind: str, loopback_allowed: bool
) -> None:
    policy = HostPolicy.from_settings([], bind)
    assert is_loopback_host(bind) is loopback_allowed
    assert (policy.refused_kind("127.0.0.1") is None) is loopback_allowed
    # Loopback is all the bind address opens: private and metadata stay refused.
    assert policy.refused_kind("10.0.0.1") == "private"
    assert (policy.refused_kind("169.254.169.254") or "").startswith("link-local")


def _resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(name: str) -> list[str]:
        if name not in answers:
            raise OSError(f"unknown name {name}")
        return answers[name]

    return resolve


@pytest.mark.parametrize(
    ("name", "answers", "refused"),
    [
        ("gpu.example", ["203.0.113.7"], "private"),  # documentation range: not global
        ("gpu.example", ["8.8.8.8"], None),
        ("gpu.example", ["8.8.8.8", "2606:4700::1111"], None),
        ("gpu.example", ["8.8.8.8", "169.254.169.254"], "169.254.169.254"),  # any address
        ("gpu.example", ["10.0.0.9"], "private"),
        ("gpu.example", [], "does not resolve"),
        ("other.example", ["8.8.8.8"], "does not resolve"),
    ],
)
async def test_a_name_is_checked_by_every_address_it_resolves_to(
    name: str, answers: list[str], refused: str | None
) -> None:
    reason = await host_refusal(name, STRICT, _resolver({"gpu.example": answers}))
    assert (reason is None) == (refused is None)
    if refused is not None:
        assert refused in (reason or "") and name in (reason or "")


async def test_a_name_rebound_after_registration_is_refused_at_the_next_check() -> None:
    answers = {"gpu.example": ["8.8.8.8"]}
    resolver = _resolver(answers)
    assert await host_refusal("gpu.example", STRICT, resolver) is None
    answers["gpu.example"] = ["169.254.169.254"]  # the provider re-points its name
    assert "link-local" in (await host_refusal("gpu.example", STRICT, resolver) or "")


async def test_localhost_is_resolved_by_the_system_resolver() -> None:
    assert "loopback" in (await host_refusal("localhost", STRICT) or "")
    assert await host_refusal("localhost", HostPolicy(allow_loopback=True)) is None
