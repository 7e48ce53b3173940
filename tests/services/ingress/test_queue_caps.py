"""The queue's byte caps: the task view's count of the request bodies of tasks not ended,
the check that weighs a submission against the caps, and the NGPU API answering 429 and
publishing nothing for a submission over a cap (an in-process ingress on the embedded log,
no scheduler: tasks stay queued until the test ends them as the scheduler would)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    Event,
    TaskCancelled,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    topics,
)
from services.bus import EmbeddedBus, decode_record, publish_events
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.errors import QueueFull
from services.ingress.store import TaskStore
from services.ingress.submission import check_queue_bytes
from services.ingress.taskfollower import TaskFollower
from services.ingress.taskview import TaskView, body_bytes
from services.settings import Settings

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _event(kind: str, task_id: str, workspace_id: str = "w", body: str = "") -> Event:
    match kind:
        case "submit":
            return TaskSubmitted(
                task_id=task_id, seq=1, workspace_id=workspace_id, userkey="k",
                btc_address="", mode="async", method="m", request_url="/", param_url="/",
                param_port=8080, user_ip="127.0.0.1", request_body=body, gpu_type="RTX4090",
                gpu_count=1, timeout_s=5,
            )  # fmt: skip
        case "dispatch":
            return TaskDispatched(task_id, workspace_id, 1, "n", "h", "a", "d", 9000)
        case "retry":
            return TaskRetried(task_id, workspace_id, 1, ("n",), "refused")
        case "complete":
            return TaskCompleted(task_id, workspace_id, 1, "n", "h", "a", 200, "", T0, T0,
                                 "RTX4090", 1)  # fmt: skip
        case "fail-retryable":
            return TaskFailed(task_id, workspace_id, 1, "n", "refused", "refused", True)
        case "fail":
            return TaskFailed(task_id, workspace_id, 1, "n", "http", "HTTP 500", False)
        case "cancel":
            return TaskCancelled(task_id, workspace_id, "workspace deleted")
        case "expire":
            return TaskExpired(task_id, workspace_id, 300.0)
    raise AssertionError(kind)


KINDS = ["submit", "dispatch", "retry", "complete", "fail-retryable", "fail", "cancel", "expire"]
Step = tuple[str, str, str, str]
"""(kind, task id, workspace id, body)."""


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("submit", "a", "w", "xxxx")], {"w": 4}),
        ([("submit", "a", "w", "é€")], {"w": 5}),  # UTF-8 bytes, not characters
        ([("submit", "a", "w", "")], {}),
        ([("submit", "a", "w", "xxxx"), ("dispatch", "a", "w", "")], {"w": 4}),
        ([("submit", "a", "w", "xxxx"), ("dispatch", "a", "w", ""), ("retry", "a", "w", "")],
         {"w": 4}),
        ([("submit", "a", "w", "xxxx"), ("fail-retryable", "a", "w", "")], {"w": 4}),
        ([("submit", "a", "w", "xxxx"), ("submit", "a", "w", "xxxxxxxx")], {"w": 4}),
        ([("submit", "a", "w", "xxxx"), ("complete", "a", "w", "")], {}),
        ([("submit", "a", "w", "xxxx"), ("dispatch", "a", "w", ""), ("fail", "a", "w", "")], {}),
        ([("submit", "a", "w", "xxxx"), ("cancel", "a", "w", "")], {}),
        ([("submit", "a", "w", "xxxx"), ("expire", "a", "w", "")], {}),
        ([("submit", "a", "w", "xxxx"), ("complete", "a", "w", ""), ("submit", "a", "w", "xx")],
         {}),  # a late copy of an ended task's submission holds nothing
        ([("complete", "a", "w", ""), ("dispatch", "b", "w", "")], {}),  # unknown tasks
        ([("submit", "a", "w", "xxxx"), ("submit", "b", "v", "xxx"), ("submit", "c", "w", "x")],
         {"w": 5, "v": 3}),
        ([("submit", "a", "w", "xxxx"), ("submit", "b", "w", "xxx"), ("expire", "a", "w", "")],
         {"w": 3}),
    ],
)  # fmt: skip
def test_tasks_hold_their_body_bytes_until_they_end(
    steps: list[Step], expected: dict[str, int]
) -> None:
    view = TaskView()
    for kind, task_id, workspace_id, body in steps:
        view.apply(_event(kind, task_id, workspace_id, body), T0)
    assert {w: view.queued_bytes(w) for w in "wv" if view.queued_bytes(w)} == expected
    assert view.queued_bytes() == sum(expected.values())


def test_forgotten_tasks_release_their_bytes() -> None:
    view = TaskView(capacity=2)
    for n in range(4):
        view.apply(_event("submit", f"t{n}", body="x" * (n + 1)), T0)
    assert view.queued_bytes("w") == view.queued_bytes() == 3 + 4


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(KINDS), st.sampled_from(["t0", "t1", "t2", "t3", "t4"]),
                  st.sampled_from("wv"), st.text(max_size=6)),
        max_size=60,
    ),
    st.integers(1, 6),
)  # fmt: skip
def test_queued_bytes_are_the_bodies_of_the_tasks_not_ended(
    steps: list[Step], capacity: int
) -> None:
    view = TaskView(capacity=capacity)
    submitted: dict[str, str] = {}
    """The body a task entered the view with (only a submission makes a task not ended)."""
    for kind, task_id, workspace_id, body in steps:
        if view.get(task_id) is None:
            submitted.pop(task_id, None)
            if kind == "submit":
                submitted[task_id] = body
        view.apply(_event(kind, task_id, workspace_id, body), T0)
        expected = {"w": 0, "v": 0}
        for task, text in submitted.items():
            status = view.get(task)
            if status is not None and not status.ended:
                expected[status.workspace_id] += len(text.encode())
        assert {w: view.queued_bytes(w) for w in "wv"} == expected
        assert view.queued_bytes() == sum(expected.values())


@pytest.mark.parametrize(
    ("text", "size"), [("", 0), ("abc", 3), ("é", 2), ("€", 3), ("😀", 4), ("a\x00b", 3)]
)
def test_body_bytes_are_utf8_bytes(text: str, size: int) -> None:
    assert body_bytes(text) == size


# -- the check before publishing ---------------------------------------------------------

CAPS = Settings(max_body_bytes=1024, queue_max_bytes_per_workspace=2048, queue_max_bytes=3072)


@pytest.mark.parametrize(
    ("held", "publishing", "workspace_id", "size", "refused_by"),
    [
        ({}, {}, "w", 2048, None),
        ({}, {}, "w", 2049, "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE"),
        ({"w": 2000}, {}, "w", 48, None),
        ({"w": 2000}, {}, "w", 49, "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE"),
        ({"w": 2000}, {}, "v", 1000, None),
        ({"w": 1000}, {"w": 1000}, "w", 49, "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE"),
        ({"w": 2000}, {}, "v", 1073, "NGPU_QUEUE_MAX_BYTES"),
        ({"w": 2000}, {"v": 1000}, "v", 73, "NGPU_QUEUE_MAX_BYTES"),
        ({"w": 2000}, {"v": 1000}, "v", 72, None),
    ],
)
def test_a_submission_over_a_cap_is_refused_naming_it(
    tmp_path: Path,
    held: dict[str, int],
    publishing: dict[str, int],
    workspace_id: str,
    size: int,
    refused_by: str | None,
) -> None:
    tasks = TaskFollower(EmbeddedBus(tmp_path / "bus.sqlite3"))
    for n, (holder, nbytes) in enumerate(held.items()):
        tasks.view.apply(_event("submit", f"t{n}", holder, "x" * nbytes), T0)
    with contextlib.ExitStack() as stack:
        for holder, nbytes in publishing.items():
            stack.enter_context(tasks.publishing(holder, nbytes))
        if refused_by is None:
            check_queue_bytes(CAPS, tasks, workspace_id, size)
        else:
            with pytest.raises(QueueFull) as refused:
                check_queue_bytes(CAPS, tasks, workspace_id, size)
            assert f"({refused_by}," in refused.value.message
            assert refused.value.status == 429
    assert tasks.queued_bytes() == sum(held.values())  # what was publishing is released


# -- the NGPU API --------------------------------------------------------------------------

ADMIN = "admin-secret-token"
KB = "x" * 1000
"""A body of 1000 bytes: the per-workspace cap holds 3 of them, the total cap 5."""


@dataclass
class Ingress:
    bus: EmbeddedBus
    tasks: TaskFollower
    http: httpx.AsyncClient

    async def workspace(self, name: str) -> dict[str, str]:
        body = {"name": name, "image": "x", "command": "true",
                "gpu": {"type": "A100", "count": 1}, "ports": [9000]}  # fmt: skip
        created = await self.http.post("/v1/workspaces", json=body,
                                       headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        assert created.status_code == 201, created.text
        return {"Authorization": f"Bearer {created.json()['workspace_id']}"}

    async def submit(self, auth: dict[str, str], data: str = KB) -> httpx.Response:
        return await self.http.post("/user/schedulingTask?paramUrl=run", json={"data": data},
                                    headers=auth)  # fmt: skip

    async def submitted(self) -> list[TaskSubmitted]:
        """Every `TaskSubmitted` in the log."""
        return [
            event
            async for r in self.bus.replay([topics.TASKS])
            if isinstance(event := decode_record(r).event, TaskSubmitted)
        ]

    async def end(self, task_id: str, workspace_id: str) -> None:
        """Expire a task as the scheduler would, and wait for this ingress to see it."""
        await publish_events(self.bus, [TaskExpired(task_id, workspace_id, 1.0)])
        for _ in range(200):
            status = self.tasks.status(task_id)
            if status is not None and status.ended:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"the ingress never saw {task_id} end")


@pytest.fixture
async def ingress(tmp_path: Path) -> AsyncIterator[Ingress]:
    # A sync call let through by mistake would wait for a scheduler there is not: 1 s.
    config = Settings(data_dir=tmp_path, max_body_bytes=1024, sync_wait_max_s=1,
                      queue_max_bytes_per_workspace=3000, queue_max_bytes=5000)  # fmt: skip
    bus = EmbeddedBus(config.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    tasks = TaskFollower(bus)
    await tasks.start()
    # The routes that submit never read the projections: a store over no ClickHouse.
    context = IngressContext(config, bus, follower, ADMIN, "join", tasks=tasks,
                             store=TaskStore(None, "unused"))  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield Ingress(bus, tasks, http)
    server.should_exit = True
    await serving
    await tasks.close()
    await follower.close()
    await bus.close()


async def test_a_workspace_over_its_cap_gets_429_and_publishes_nothing(ingress: Ingress) -> None:
    alpha, beta = await ingress.workspace("alpha"), await ingress.workspace("beta")
    accepted = [await ingress.submit(alpha) for _ in range(3)]
    assert [a.status_code for a in accepted] == [202, 202, 202]

    for refused in (
        await ingress.submit(alpha),
        await ingress.http.post("/user/echo", json={"data": KB}, headers=alpha),  # sync
    ):
        assert refused.status_code == 429, refused.text
        answer = refused.json()
        assert answer["result_code"] == 429
        assert "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE" in answer["msg"]
        assert "X-NGPU-Task-ID" not in refused.headers
    assert len(await ingress.submitted()) == 3

    # Another workspace still gets through, up to the total cap (5 bodies in all).
    assert [(await ingress.submit(beta)).status_code for _ in range(2)] == [202, 202]
    over_total = await ingress.submit(beta)
    assert over_total.status_code == 429
    assert "(NGPU_QUEUE_MAX_BYTES," in over_total.json()["msg"]
    assert len(await ingress.submitted()) == 5

    # The cap frees as the workspace's tasks end.
    first = accepted[0].json()["taskID"]
    await ingress.end(first, alpha["Authorization"].removeprefix("Bearer "))
    again = await ingress.submit(alpha)
    assert again.status_code == 202, again.text
    assert (await ingress.submit(alpha)).status_code == 429
    assert len(await ingress.submitted()) == 6


async def test_concurrent_submissions_cannot_all_pass_the_same_check(ingress: Ingress) -> None:
    alpha = await ingress.workspace("alpha")
    answers = await asyncio.gather(*(ingress.submit(alpha) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [202] * 3 + [429] * 9
    assert len(await ingress.submitted()) == 3
    assert ingress.tasks.queued_bytes() == 3000
