"""Streaming, end to end: real control plane processes (on the embedded log, and on Kafka
with the scheduler and two dispatchers in processes of their own, the output crossing the
output topic), a real node agent (its proxy over TLS) and the sample app's `/stream`,
which holds its events on gates the test opens on the container itself: a chunk the
client holds while the gate is shut was relayed before the container produced the rest.
Every wait is a hang guard, never a timing assertion."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.cluster import Cluster, cluster_env, wait_for

GUARD_S = 30
SSE = {"Accept": "text/event-stream"}


@dataclass
class Setup:
    cluster: Cluster
    workspace_id: str
    container: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.workspace_id}"}

    def url(self, path: str) -> str:
        return f"{self.cluster.url}{path}"

    def open_gate(self, name: str) -> None:
        httpx.post(f"{self.container}/gates?open={name}", timeout=10).raise_for_status()

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.url(path), headers={**self.auth, **headers}, timeout=60)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None) -> Iterator[Setup]:
    cluster = Cluster(tmp_path_factory.mktemp("streaming"), cluster_env(kafka_bootstrap))
    try:
        cluster.start_control_plane()
        cluster.start_node("gpu")
        created, container = cluster.one_replica_workspace("gpu", name="streams", timeout_s=60)
        yield Setup(cluster, str(created["workspace_id"]), container)
    finally:
        cluster.stop()


def _events(text: str) -> list[str]:
    return [part for part in text.split("\n\n") if part]


def test_a_streamed_sync_call_reaches_the_client_before_the_container_ends(setup: Setup) -> None:
    gate = uuid.uuid4().hex
    body = {"data": {"n": 3, "gate": gate}}
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", setup.url("/user/stream"), json=body, headers={**setup.auth, **SSE}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        task_id = response.headers["X-NGPU-Task-ID"]
        received = b""
        chunks = response.iter_raw()
        while b"\n\n" not in received:
            received += next(chunks)
        # The container holds its second event until the gate opens: what arrived so far
        # was relayed while the container was still producing.
        assert _events(received.decode()) == [f'data: {{"i": 0, "task_id": "{task_id}"}}']
        setup.open_gate(gate)
        received += b"".join(chunks)
    full = received.decode()
    assert _events(full) == [f'data: {{"i": {i}, "task_id": "{task_id}"}}' for i in range(3)]
    assert full.endswith("\n\n")  # nothing appended after the container's bytes
    queried = setup.get(f"/user/queryTask?taskID={task_id}").json()
    assert queried == {"result_code": 200, "msg": "success", "taskID": task_id, "data": full}
    detail = wait_for(
        lambda: (r := setup.get(f"/user/getDetailed?taskID={task_id}")).is_success
        and r.json()["taskInfo"]["state"] == 3 and r.json()["taskInfo"],
        GUARD_S, "the streamed task's detail",
    )  # fmt: skip
    assert detail["response"] == full
    assert len(detail) == 20  # getDetailed is unchanged


def test_a_client_that_does_not_ask_for_a_stream_gets_the_json_answer(setup: Setup) -> None:
    answer = httpx.post(setup.url("/user/stream"), json={"data": {"n": 2}}, headers=setup.auth,
                        timeout=60)  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    task_id = answer.headers["X-NGPU-Task-ID"]
    events = "".join(f'data: {{"i": {i}, "task_id": "{task_id}"}}\n\n' for i in range(2))
    assert answer.content == orjson.dumps({"result_code": 200, "msg": "success", "data": events})


def test_a_streamed_call_that_fails_before_its_first_byte_answers_the_json_error(
    setup: Setup,
) -> None:
    answer = httpx.post(setup.url("/user/fail"), json={"data": ""}, timeout=60,
                        headers={**setup.auth, **SSE})  # fmt: skip
    assert answer.status_code == 502, answer.text
    task_id = answer.headers["X-NGPU-Task-ID"]
    assert answer.json()["result_code"] == 502 and answer.json()["taskID"] == task_id


def _read_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind, data = "", ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and kind:
            yield kind, orjson.loads(data)
            kind, data = "", ""


def _submit(setup: Setup, data: dict[str, Any], query: str = "") -> str:
    accepted = httpx.post(setup.url(f"/user/schedulingTask?paramUrl=stream{query}"),
                          json={"data": data}, headers=setup.auth, timeout=60)  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["taskID"])


def test_stream_task_follows_an_async_task_s_states_output_and_end(setup: Setup) -> None:
    start, gate = uuid.uuid4().hex, uuid.uuid4().hex
    task_id = _submit(setup, {"n": 3, "start_gate": start, "gate": gate}, "&stream=true")
    output = b""
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "GET", setup.url(f"/user/streamTask&taskID={task_id}"), headers=setup.auth
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _read_events(response.iter_lines())
        kind, data = next(events)
        assert kind == "state" and data["taskID"] == task_id
        assert data["state"] in ("queued", "running")
        while kind == "state":
            if data["state"] == "running":
                setup.open_gate(start)  # the stream is on: let the container begin
            kind, data = next(events)
            if kind == "state":
                assert data["state"] == "running"
        assert kind == "output" and data["seq"] == 0
        assert data["content_type"] == "text/event-stream"
        output += base64.b64decode(data["data"])
        setup.open_gate(gate)  # the first chunk is here before the container went on
        for kind, data in events:
            if kind == "end":
                break
            assert kind == "output"
            output += base64.b64decode(data["data"])
    expected = "".join(f'data: {{"i": {i}, "task_id": "{task_id}"}}\n\n' for i in range(3))
    assert output.decode() == expected
    assert data == setup.get(f"/user/queryTask?taskID={task_id}").json()
    assert data["data"] == expected


def test_stream_task_of_a_task_without_stream_has_its_states_and_end_only(setup: Setup) -> None:
    start = uuid.uuid4().hex
    task_id = _submit(setup, {"n": 2, "start_gate": start})
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "GET", setup.url(f"/user/streamTask?taskID={task_id}"), headers=setup.auth
        ) as response,
    ):
        seen = []
        for kind, data in _read_events(response.iter_lines()):
            seen.append(kind)
            if kind == "state" and data["state"] == "running":
                setup.open_gate(start)
            if kind == "end":
                break
    assert seen[-1] == "end" and set(seen[:-1]) == {"state"}
    assert data["result_code"] == 200 and data["data"].count("data: ") == 2
    # An ended task answers its end at once.
    again = setup.get(f"/user/streamTask?taskID={task_id}")
    assert list(_read_events(iter(again.text.split("\n")))) == [("end", data)]


def test_stream_task_of_another_workspace_s_task_is_404(setup: Setup) -> None:
    task_id = _submit(setup, {"n": 1})
    other = httpx.post(setup.url("/v1/workspaces"), headers=setup.cluster.admin(), timeout=30,
                       json={"name": "other", "image": "x", "command": "true",
                             "gpu": {"type": "A100", "count": 1}, "ports": [9000]})  # fmt: skip
    stranger = {"Authorization": f"Bearer {other.json()['workspace_id']}"}
    for path in (f"/user/streamTask?taskID={task_id}", "/user/streamTask?taskID=20240411_1"):
        refused = httpx.get(setup.url(path), headers=stranger, timeout=30)
        assert refused.status_code == 404, refused.text
        assert refused.json()["result_code"] == 404
    refused = httpx.post(setup.url("/user/schedulingTask?paramUrl=stream&stream=yes"),
                         json={"data": {}}, headers=setup.auth, timeout=30)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["msg"].startswith("stream:")
