"""Cancels, per-task deadlines and priority, and `Prefer: wait=N`, end to end: real
control plane processes (on the embedded log, and on Kafka with the scheduler and two
dispatchers in processes of their own), a real node agent (its authenticating proxy over
TLS) and the sample app. The workspace has one replica with one slot, so a task held by
the sample app's `/hold` keeps every other task queued; the container itself says what it
saw (`/holds`: a hold's caller that hung up is "closed").

Each hold lasts a minute unless it is cut off, and every wait below is a hang guard of
20 s: a cancel that waited out the call fails the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, wait_for

GUARD_S = 20
HOLD = "hold?ms=60000"


@dataclass
class Setup:
    cluster: Cluster
    workspace_id: str
    container: str
    """The sample app's own URL on loopback, for what it saw (`/holds`, `/calls`)."""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.workspace_id}"}

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("json", {"data": ""})
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return httpx.post(f"{self.cluster.url}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.cluster.url}{path}", headers=self.auth, timeout=60)

    def submit(self, param_url: str = HOLD, query: str = "") -> str:
        accepted = self.post(f"/user/schedulingTask?paramUrl={param_url}{query}")
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["taskID"])

    def cancel(self, task_id: str) -> httpx.Response:
        return self.post(f"/user/cancelTask?taskID={task_id}", json=None)

    def query(self, task_id: str) -> dict[str, Any]:
        return dict(self.get(f"/user/queryTask?taskID={task_id}").json())

    def holds(self) -> dict[str, str]:
        holds: dict[str, str] = httpx.get(f"{self.container}/holds", timeout=10).json()["holds"]
        return holds

    def hold_of(self, task_id: str, state: str) -> None:
        wait_for(lambda: self.holds().get(task_id) == state, GUARD_S, f"{task_id} {state}")

    def events_of(self, task_id: str) -> list[str]:
        return [e["type"] for e in self.cluster.events() if e["key"] == task_id]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None) -> Iterator[Setup]:
    env = cluster_env(kafka_bootstrap, NGPU_TASK_TTL_S="120")
    cluster = Cluster(tmp_path_factory.mktemp("cancel"), env)
    try:
        cluster.start_control_plane()
        cluster.start_node("gpu")
        created, container = cluster.one_replica_workspace(
            "gpu", name="one", timeout_s=60, max_priority=5
        )
        assert created["max_priority"] == 5
        yield Setup(cluster, str(created["workspace_id"]), container)
    finally:
        cluster.stop()


def _cancelled(setup: Setup, task_id: str) -> None:
    answer = setup.cancel(task_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result_code": 200, "msg": "the task was cancelled",
                             "taskID": task_id}  # fmt: skip


def test_a_cancel_of_a_running_task_frees_the_replica_s_slot_at_once(setup: Setup) -> None:
    running = setup.submit()
    setup.hold_of(running, "holding")
    queued = setup.submit()
    assert setup.query(queued)["msg"] == "the task is queued"  # the one slot is taken
    _cancelled(setup, running)
    # The container sees its connection closed (through the dispatcher and the node's
    # proxy), and the next queued task starts on the slot it held.
    setup.hold_of(running, "closed")
    setup.hold_of(queued, "holding")
    assert setup.query(running)["result_code"] == 410
    kinds = setup.events_of(running)
    assert "TaskCancelRequested" in kinds and kinds.count("TaskCancelled") == 1
    assert "TaskCompleted" not in kinds and "TaskFailed" not in kinds
    _cancelled(setup, queued)
    setup.hold_of(queued, "closed")


def test_a_queued_task_is_cancelled_at_once_and_never_called(setup: Setup) -> None:
    running = setup.submit()
    setup.hold_of(running, "holding")
    queued = setup.submit()
    _cancelled(setup, queued)
    assert setup.query(queued)["result_code"] == 410
    assert "TaskDispatched" not in setup.events_of(queued)
    assert setup.holds()[running] == "holding"
    detail = wait_for(
        lambda: (r := setup.get(f"/user/getDetailed?taskID={queued}")).is_success
        and r.json()["taskInfo"]["state"] == 5 and r.json()["taskInfo"],
        GUARD_S, "the cancelled task's detail",
    )  # fmt: skip
    assert len(detail) == 20  # the contract's fields, no more
    _cancelled(setup, running)
    setup.hold_of(running, "closed")
    assert queued not in httpx.get(f"{setup.container}/calls", timeout=10).json()["calls"]


def test_an_ended_task_is_409_with_its_state_and_others_are_404(setup: Setup) -> None:
    done = setup.submit("img2img")
    wait_for(lambda: setup.query(done)["result_code"] == 200, GUARD_S, "the task to end")
    for path in (f"/user/cancelTask?taskID={done}", f"/user/cancelTask&taskID={done}"):
        refused = setup.post(path, json=None)
        assert refused.status_code == 409, refused.text
        assert refused.json() == {"result_code": 409, "msg": "the task has already ended: "
                                  "completed", "taskID": done, "state": 3}  # fmt: skip
    other = httpx.post(f"{setup.cluster.url}/v1/workspaces", headers=setup.cluster.admin(),
                       json={"name": "other", "image": "x", "command": "true",
                             "gpu": {"type": "A100", "count": 1}, "ports": [9000]})  # fmt: skip
    stranger = {"Authorization": f"Bearer {other.json()['workspace_id']}"}
    for task_id, headers in ((done, stranger), ("20240411_13_36_11_922124", setup.auth)):
        unknown = httpx.post(f"{setup.cluster.url}/user/cancelTask?taskID={task_id}",
                             headers=headers, timeout=30)  # fmt: skip
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["result_code"] == 404


def _sync_call(setup: Setup, answers: list[httpx.Response], **headers: str) -> threading.Thread:
    def call() -> None:
        answers.append(setup.post("/user/hold", json={"data": {"ms": 60000}}, headers=headers))

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _new_hold(setup: Setup, before: dict[str, str]) -> str:
    def found() -> str | None:
        held = [t for t, state in setup.holds().items() if state == "holding" and t not in before]
        return held[0] if held else None

    return wait_for(found, GUARD_S, "the sync call to reach the container")


def test_a_sync_caller_whose_task_is_cancelled_gets_410(setup: Setup) -> None:
    answers: list[httpx.Response] = []
    before = setup.holds()
    thread = _sync_call(setup, answers)
    task_id = _new_hold(setup, before)
    _cancelled(setup, task_id)
    thread.join(GUARD_S)
    (answer,) = answers
    assert answer.status_code == 410, answer.text
    assert answer.json()["result_code"] == 410 and answer.json()["taskID"] == task_id
    assert answer.headers["X-NGPU-Task-ID"] == task_id
    setup.hold_of(task_id, "closed")


def test_a_sync_call_past_its_preferred_wait_answers_202_and_goes_on(setup: Setup) -> None:
    refused = setup.post("/user/hold", headers={"Prefer": "wait=soon"})
    assert refused.status_code == 400 and refused.json()["msg"].startswith("Prefer:")
    answer = setup.post("/user/hold", json={"data": {"ms": 60000}}, headers={"Prefer": "wait=1"})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["result_code"] == 100 and set(body) == {"result_code", "msg", "taskID"}
    assert answer.headers["X-NGPU-Task-ID"] == body["taskID"]
    setup.hold_of(body["taskID"], "holding")  # it goes on
    assert setup.query(body["taskID"])["result_code"] == 100
    _cancelled(setup, body["taskID"])


def test_a_higher_priority_is_placed_first(setup: Setup) -> None:
    refused = setup.post(f"/user/schedulingTask?paramUrl={HOLD}&priority=6")
    assert refused.status_code == 400 and refused.json()["msg"].startswith("priority:")
    running = setup.submit()
    setup.hold_of(running, "holding")
    low = setup.submit(query="&priority=0")
    high = setup.submit(query="&priority=5")
    _cancelled(setup, running)
    setup.hold_of(high, "holding")
    assert setup.query(low)["msg"] == "the task is queued"
    _cancelled(setup, high)
    setup.hold_of(low, "holding")
    _cancelled(setup, low)


def test_a_task_s_own_ttl_and_timeout_are_kept(setup: Setup) -> None:
    for query, field in (("&ttl_s=121", "ttl_s"), ("&timeout_s=61", "timeout_s")):
        refused = setup.post(f"/user/schedulingTask?paramUrl=img2img{query}")
        assert refused.status_code == 400 and refused.json()["msg"].startswith(f"{field}:")
    running = setup.submit()
    setup.hold_of(running, "holding")
    waiting = setup.submit("img2img", "&ttl_s=1")
    expired = wait_for(lambda: (q := setup.query(waiting))["result_code"] != 100 and q,
                       GUARD_S, "the task to expire")  # fmt: skip
    assert expired["result_code"] == 503, expired
    _cancelled(setup, running)
    timed_out = setup.post("/user/hold?timeout_s=1", json={"data": {"ms": 60000}})
    assert timed_out.status_code == 504, timed_out.text
    assert "within 1s" in timed_out.json()["msg"]
