"""Where a webhook may go: the URL's form, its host's addresses at submission, and at each
attempt, through the resolver that makes the connection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.hosts import HostPolicy, Resolver, parse_allow
from services.webhooks.delivery import attempt, session
from services.webhooks.secrets import workspace_secret
from services.webhooks.targets import MAX_URL_CHARS, TargetError, parse, refusal
from tests.support.webhooks import Receiver

SECRET = workspace_secret(b"k" * 32, "w", "s")
NOTHING_ALLOWED = HostPolicy()
LOOPBACK_ALLOWED = HostPolicy(parse_allow(["127.0.0.1/32"]))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "1 to 2048"),
        ("https://example.com/" + "a" * MAX_URL_CHARS, "1 to 2048"),
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("/relative/path", "http or https"),
        ("example.com/hook", "http or https"),
        ("https:///no-host", "must name a host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\r\nX-Injected: 1", "control characters"),
        ("https://example.com\\@evil.com/", "backslashes"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:0/", "port 0"),
        ("https://[::1/", "not a valid URL"),
    ],
)  # fmt: skip
def test_a_url_of_the_wrong_form_is_refused(url: str, why: str) -> None:
    with pytest.raises(TargetError, match=why):
        parse(url)


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://example.com/hook?x=1", "example.com", 443),
        ("http://Example.COM:8080/", "example.com", 8080),
        ("http://[2001:db8::1]/h", "2001:db8::1", 80),
        ("https://93.184.215.14/h", "93.184.215.14", 443),
    ],
)  # fmt: skip
def test_a_url_of_the_right_form_names_its_host_and_port(url: str, host: str, port: int) -> None:
    target = parse(url)
    assert (target.url, target.host, target.port) == (url, host, port)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.5/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
    ],
)  # fmt: skip
async def test_an_address_that_is_not_global_is_refused_for_good(url: str, kind: str) -> None:
    found = await refusal(parse(url), NOTHING_ALLOWED)
    assert found is not None
    reason, permanent = found
    assert kind in reason and "NGPU_WEBHOOK_HOST_ALLOW" in reason and permanent


async def test_the_allow_list_admits_what_it_names_only() -> None:
    assert await refusal(parse("http://127.0.0.1:9/"), LOOPBACK_ALLOWED) is None
    assert await refusal(parse("http://127.0.0.2:9/"), LOOPBACK_ALLOWED) is not None
    assert await refusal(parse("http://93.184.215.14/"), NOTHING_ALLOWED) is None


def resolves(*addresses: str) -> Resolver:
    async def resolver(name: str) -> list[str]:
        return list(addresses)

    return resolver


async def test_a_name_is_checked_by_every_address_it_resolves_to() -> None:
    target = parse("https://hooks.example/x")
    assert await refusal(target, NOTHING_ALLOWED, resolves("93.184.215.14")) is None
    mixed = resolves("93.184.215.14", "169.254.169.254")
    reason, permanent = await refusal(target, NOTHING_ALLOWED, mixed) or ("", False)
    assert "resolves to 169.254.169.254" in reason and permanent
    reason, permanent = await refusal(target, NOTHING_ALLOWED, resolves()) or ("", True)
    assert "does not resolve" in reason and not permanent, "a name may resolve later"
    # The system resolver: localhost is loopback.
    reason, _ = await refusal(parse("http://localhost/"), NOTHING_ALLOWED) or ("", False)
    assert "localhost resolves to" in reason and "loopback" in reason


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(secret=SECRET).start()
    yield running
    running.stop()


async def test_an_attempt_checks_the_address_it_connects_to(receiver: Receiver) -> None:
    # `localhost` passes no check before the attempt (it is a name): the resolver that
    # makes the connection refuses it, and nothing reaches the receiver.
    url = receiver.url(host="localhost")
    async with session(NOTHING_ALLOWED) as http:
        outcome = await attempt(http, NOTHING_ALLOWED, url, "msg_1", b"{}", SECRET)
    assert outcome.refused and outcome.status_code == 0
    assert "localhost resolves to" in outcome.error and "loopback" in outcome.error
    assert receiver.deliveries == []
    allowing = HostPolicy(parse_allow(["127.0.0.0/8", "::1/128"]))
    async with session(allowing) as http:
        outcome = await attempt(http, allowing, url, "msg_1", b"{}", SECRET)
    assert outcome.delivered and outcome.status_code == 200
    assert len(receiver.deliveries) == 1 and receiver.deliveries[0].verified


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data",
                                 "http://127.0.0.1:9/x"])  # fmt: skip
async def test_an_attempt_to_a_refused_address_sends_nothing(url: str) -> None:
    async with session(NOTHING_ALLOWED) as http:
        outcome = await attempt(http, NOTHING_ALLOWED, url, "msg_1", b"{}", SECRET)
    assert outcome.refused and "refused" in outcome.error
