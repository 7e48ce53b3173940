"""One delivery attempt against a real receiver: the Standard Webhooks signature (checked
with the `standardwebhooks` library), redirects not followed, the timeout, the pause
schedule, and the payload's shape."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from services.hosts import HostPolicy, parse_allow
from services.ingress.taskview import TaskStatus
from services.webhooks.delivery import attempt, session, signed_headers
from services.webhooks.payload import message_id, payload
from services.webhooks.retry import RetryPolicy
from services.webhooks.secrets import new_salt, workspace_secret
from tests.support.webhooks import Receiver

SECRET = workspace_secret(b"k" * 32, "w", "s")
LOOPBACK = HostPolicy(parse_allow(["127.0.0.1/32"]))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(secret=SECRET).start()
    yield running
    running.stop()


def test_the_secret_is_the_librarys_format_and_differs_per_workspace_and_salt() -> None:
    assert SECRET.startswith("whsec_")
    Webhook(SECRET)  # the library takes it as is
    key = b"k" * 32
    others = {workspace_secret(key, "w", "t"), workspace_secret(key, "v", "s"),
              workspace_secret(b"j" * 32, "w", "s")}  # fmt: skip
    assert SECRET not in others and len(others) == 3
    assert workspace_secret(key, "w", "s") == SECRET, "derived again, the same"
    assert new_salt() != new_salt()


def test_a_signature_verifies_with_the_library_and_with_nothing_else() -> None:
    body = b'{"type": "task.completed"}'
    headers = signed_headers(SECRET, "msg_t_completed", body, datetime.now(UTC))
    assert Webhook(SECRET).verify(body, headers) == {"type": "task.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(workspace_secret(b"k" * 32, "w", "other")).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


async def test_an_attempt_is_signed_and_carries_the_message_id(receiver: Receiver) -> None:
    body = payload("completed", TaskStatus("t1", "w", "completed", 200, "out"), datetime.now(UTC))
    async with session(LOOPBACK) as http:
        outcome = await attempt(http, LOOPBACK, receiver.url(), "msg_t1_completed", body, SECRET)
    assert outcome.delivered and outcome.status_code == 200 and outcome.latency_ms > 0
    (got,) = receiver.deliveries
    assert got.verified and got.body == body
    assert got.headers["webhook-id"] == "msg_t1_completed"
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["user-agent"].startswith("ngpu-webhooks/")


async def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.redirect.add("/hook")
    async with session(LOOPBACK) as http:
        outcome = await attempt(http, LOOPBACK, receiver.url(), "m", b"{}", SECRET)
    assert (outcome.status_code, outcome.delivered, outcome.refused) == (302, False, False)
    assert "redirects are not followed" in outcome.error
    assert receiver.at("/elsewhere") == [] and len(receiver.at("/hook")) == 1


@pytest.fixture
async def hanging() -> AsyncIterator[str]:
    released = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", never)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    released.set()
    await runner.cleanup()


async def test_an_attempt_gives_up_at_its_timeout(hanging: str) -> None:
    async with session(LOOPBACK) as http:
        outcome = await attempt(http, LOOPBACK, hanging, "m", b"{}", SECRET, timeout_s=0.3)
    assert outcome.status_code == 0 and outcome.error == "no answer within 0.3s"
    assert not outcome.refused


async def test_no_listener_is_a_failed_attempt_not_a_refusal() -> None:
    async with session(LOOPBACK) as http:
        outcome = await attempt(http, LOOPBACK, "http://127.0.0.1:9/h", "m", b"{}", SECRET)
    assert outcome.status_code == 0 and outcome.error and not outcome.refused


def test_payload_is_the_query_task_answer_in_the_standard_shape() -> None:
    at = datetime(2024, 4, 15, 14, 30, 12, 120000, tzinfo=UTC)
    failed = TaskStatus("t", "w", "failed", code="timeout", reason="the container did not answer")
    document = orjson.loads(payload("completed", failed, at))
    assert document == {
        "type": "task.completed", "timestamp": "2024-04-15T14:30:12.120000Z",
        "data": {"result_code": 504, "msg": "the container did not answer", "taskID": "t",
                 "data": ""},
    }  # fmt: skip
    assert message_id("t", "start") == "msg_t_start"


@given(attempt_no=st.integers(1, 80), draw=st.randoms(use_true_random=False))
def test_pauses_grow_with_jitter_within_their_cap(attempt_no: int, draw: random.Random) -> None:
    policy = RetryPolicy(base_s=5, max_s=3600, window_s=86_400)
    ceiling = min(3600, 5 * 2 ** (attempt_no - 1))
    assert ceiling / 2 <= policy.pause_after(attempt_no, draw) <= ceiling


def test_the_window_ends_the_retries() -> None:
    policy = RetryPolicy(base_s=5, max_s=3600, window_s=86_400)
    rng = random.Random(1)
    elapsed, attempts = 0.0, 1
    while (pause := policy.next_pause(attempts, elapsed, rng)) is not None:
        elapsed += pause
        attempts += 1
    assert elapsed <= 86_400 and 86_400 - elapsed <= 3600
    assert 20 <= attempts <= 60, "about a day of hourly retries after the first minutes"
