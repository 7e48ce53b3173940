"""`Idempotency-Key` end to end: real control plane processes (on the embedded log, and on
Kafka with two ingress processes, the scheduler and the dispatchers each in their own),
a real node agent and the sample app, which counts the calls it gets per task
(`/calls`). Repeats go to the other ingress where there is one; the last test restarts
the control plane, so the key is known only to the scheduler's restored state.

Every wait is a hang guard of 30 s."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, free_port, wait_for

GUARD_S = 30


@dataclass
class Setup:
    cluster: Cluster
    workspace_id: str
    container: str

    @property
    def urls(self) -> list[str]:
        more = self.cluster.more_ingress_ports
        return [self.cluster.url, *(f"http://127.0.0.1:{port}" for port in more)]

    def post(self, path: str, key: str, *, via: int = 0, data: Any = None) -> httpx.Response:
        """POST to the `via`-th ingress (modulo how many there are)."""
        url = self.urls[via % len(self.urls)]
        headers = {"Authorization": f"Bearer {self.workspace_id}", "Idempotency-Key": key}
        return httpx.post(f"{url}{path}", json={"data": data or {"prompt": key}},
                          headers=headers, timeout=60)  # fmt: skip

    def submit(self, key: str, *, via: int = 0, data: Any = None) -> httpx.Response:
        return self.post("/user/schedulingTask?paramUrl=img2img", key, via=via, data=data)

    def all_calls(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.container}/calls", timeout=10).json()["calls"])

    def calls(self, task_id: str) -> int:
        return self.all_calls().get(task_id, 0)

    def query(self, task_id: str) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {self.workspace_id}"}
        url = f"{self.cluster.url}/user/queryTask?taskID={task_id}"
        answer = httpx.get(url, headers=auth, timeout=30)
        return dict(answer.json())

    def repeats_of(self, task_id: str) -> list[str]:
        """The tasks the scheduler ended as repeats of `task_id`."""
        return [e["data"]["task_id"] for e in self.cluster.events()
                if e["type"] == "IdempotencyChecked"
                and e["data"]["original_task_id"] == task_id != e["data"]["task_id"]]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None) -> Iterator[Setup]:
    cluster = Cluster(tmp_path_factory.mktemp("idempotency"), cluster_env(kafka_bootstrap))
    if cluster.on_kafka:
        cluster.more_ingress_ports = [free_port()]
    try:
        cluster.start_control_plane()
        cluster.start_node("gpu")
        created, container = cluster.one_replica_workspace("gpu", name="keys", concurrency=4)
        yield Setup(cluster, str(created["workspace_id"]), container)
    finally:
        cluster.stop()


def _new_key() -> str:
    return f"order-{uuid.uuid4().hex}"


def test_an_async_repeat_answers_the_first_taskid_and_the_container_is_called_once(
    setup: Setup,
) -> None:
    key = _new_key()
    first = setup.submit(key)
    assert first.status_code == 202, first.text
    task_id = first.json()["taskID"]
    wait_for(lambda: setup.query(task_id)["result_code"] == 200, GUARD_S, "the task to end")
    again = setup.submit(key, via=1)
    assert again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["X-NGPU-Task-ID"] == task_id
    assert setup.calls(task_id) == 1
    # Another request under the same key: 422, naming the header and the first task.
    other = setup.submit(key, via=1, data={"prompt": "something else"})
    assert other.status_code == 422, other.text
    assert other.json()["result_code"] == 422
    assert other.json()["msg"].startswith("Idempotency-Key:") and task_id in other.json()["msg"]
    malformed = setup.submit("has a space")
    assert malformed.status_code == 400 and "Idempotency-Key" in malformed.json()["msg"]


def test_concurrent_first_submissions_of_a_key_make_one_task(setup: Setup) -> None:
    key = _new_key()
    answers: list[httpx.Response] = []

    def submit(via: int) -> None:
        answers.append(setup.submit(key, via=via))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD_S)
    assert len(answers) == 6 and all(a.status_code == 202 for a in answers), answers
    (task_id,) = {a.json()["taskID"] for a in answers}
    wait_for(lambda: setup.query(task_id)["result_code"] == 200, GUARD_S, "the task to end")
    assert setup.calls(task_id) == 1
    # Those that raced the first were submitted, and the scheduler ended them unrun.
    for repeat in setup.repeats_of(task_id):
        assert setup.calls(repeat) == 0
        assert setup.query(repeat)["result_code"] == 410


def test_a_sync_repeat_waits_for_the_first_task_and_answers_its_outcome(setup: Setup) -> None:
    key = _new_key()
    answers: list[httpx.Response] = []

    def call(via: int) -> None:
        answers.append(setup.post("/user/sleep?ms=1500", key, via=via, data={"ms": 1500}))

    before = setup.all_calls()
    first = threading.Thread(target=call, args=(0,))
    first.start()
    wait_for(lambda: setup.all_calls().keys() - before.keys(), GUARD_S, "the first call to run")
    second = threading.Thread(target=call, args=(1,))
    second.start()
    first.join(GUARD_S)
    second.join(GUARD_S)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    (task_id,) = {a.headers["X-NGPU-Task-ID"] for a in answers}
    assert answers[0].json() == answers[1].json()
    assert setup.calls(task_id) == 1
    # Later, once it has ended, a repeat answers its outcome at once.
    third = setup.post("/user/sleep?ms=1500", key, via=1, data={"ms": 1500})
    assert third.status_code == 200 and third.headers["X-NGPU-Task-ID"] == task_id
    assert third.json() == answers[0].json()
    assert setup.calls(task_id) == 1


def test_a_key_holds_across_a_restart_of_the_control_plane(setup: Setup) -> None:
    """Last in this module: it restarts every process but the node agent's."""
    key, sync_key = _new_key(), _new_key()
    first = setup.submit(key)
    task_id = first.json()["taskID"]
    wait_for(lambda: setup.query(task_id)["result_code"] == 200, GUARD_S, "the task to end")
    sync_first = setup.post("/user/img2img", sync_key)
    assert sync_first.status_code == 200, sync_first.text
    agents = setup.cluster.agents
    setup.cluster.processes = [p for p in setup.cluster.processes if p not in agents.values()]
    setup.cluster.stop()
    setup.cluster.start_control_plane()
    setup.cluster.processes += agents.values()
    again = setup.submit(key, via=1)
    assert again.status_code == 202, again.text
    assert again.json()["taskID"] == task_id
    # No ingress knew the key: the scheduler did, from its restored state.
    assert len(setup.repeats_of(task_id)) >= 1
    other = setup.submit(key, data={"prompt": "another"})
    assert other.status_code == 422, other.text
    assert setup.calls(task_id) == 1
    # A sync repeat, decided by the scheduler too, answers the ended task's outcome.
    sync_again = setup.post("/user/img2img", sync_key, via=1)
    assert sync_again.status_code == 200, sync_again.text
    assert sync_again.json() == sync_first.json()
    sync_id = sync_first.headers["X-NGPU-Task-ID"]
    assert sync_again.headers["X-NGPU-Task-ID"] == sync_id and setup.calls(sync_id) == 1
