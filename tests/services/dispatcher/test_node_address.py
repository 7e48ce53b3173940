"""The dispatcher checks the node's address before each call (`services.hosts`)."""

from __future__ import annotations

import aiohttp
import pytest

from events import TaskCompleted, TaskDispatched, TaskFailed
from services.dispatcher import CallPolicy, call_node
from services.hosts import HostPolicy
from tests.services.sampleapp.helpers import free_port, sampleapp


def _dispatch(node_ip: str, port: int, attempt: int = 1) -> TaskDispatched:
    return TaskDispatched(
        task_id="20240411_13_36_11_9221240001", workspace_id="w", attempt=attempt,
        node_id="node-a", node_ip=node_ip, node_address="0x" + "a" * 40,
        deployment_id="dep", host_port=port, param_url="/img2img",
        request_body='{"prompt": "a cat"}', timeout_s=10.0, gpu_type="RTX4090", gpu_count=1,
    )  # fmt: skip


@pytest.mark.parametrize("node_ip", ["localhost", "127.0.0.1", "169.254.169.254", "10.0.0.1"])
async def test_a_refused_address_is_not_called_and_the_attempt_is_retryable(
    node_ip: str,
) -> None:
    policy = CallPolicy(max_attempts=3, hosts=HostPolicy())
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, _dispatch(node_ip, free_port()), policy)
        last = await call_node(client, _dispatch(node_ip, free_port(), attempt=3), policy)
    assert isinstance(outcome, TaskFailed) and outcome.code == "node_address_refused"
    assert outcome.retryable  # another node may take the task
    assert node_ip in outcome.reason
    assert isinstance(last, TaskFailed) and not last.retryable  # attempts are bounded


async def test_localhost_is_called_when_loopback_is_allowed() -> None:
    with sampleapp(env={"NGPU_NODE_ID": "node-a"}) as (_, url):
        port = int(url.rsplit(":", 1)[1])
        allowed = CallPolicy(hosts=HostPolicy(allow_loopback=True))
        refused = CallPolicy(hosts=HostPolicy())
        async with aiohttp.ClientSession() as client:
            ok = await call_node(client, _dispatch("localhost", port), allowed)
            no = await call_node(client, _dispatch("localhost", port), refused)
    assert isinstance(ok, TaskCompleted) and ok.status_code == 200
    assert isinstance(no, TaskFailed) and no.code == "node_address_refused"
