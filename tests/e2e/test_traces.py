"""Traces end to end: with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a real OTLP/HTTP
receiver in the test, one sync call is one trace across the ingress, the scheduler, the
dispatcher, the container call and the completion (on the embedded log in one process,
and on Kafka across processes), carried in the events' envelopes and sent to the container
as `traceparent`. Without the variable (or with the SDK disabled), no span is exported, no
envelope carries a trace and the container gets no `traceparent`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, wait_for
from tests.support.traces import CollectedSpan, OtlpCollector

OTEL_OFF = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_SERVICE_NAME")  # fmt: skip
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP's SpanKind numbers
TASK_EVENTS = ("TaskSubmitted", "TaskDispatched", "TaskCompleted")


def _env(kafka_bootstrap: str | None, **otel: str) -> dict[str, str]:
    env = cluster_env(kafka_bootstrap, **otel)
    for name in OTEL_OFF:
        if name not in otel:
            env.pop(name, None)
    return env


def _call_headers(cluster: Cluster, workspace_id: str) -> tuple[str, dict[str, str]]:
    """A sync call of the sample app's `/headers`: its task id and what the container got."""
    answer = httpx.post(f"{cluster.url}/user/headers", json={"data": {}}, timeout=60,
                        headers={"Authorization": f"Bearer {workspace_id}"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result_code"] == 200, body
    return answer.headers["X-NGPU-Task-ID"], json.loads(body["data"])["headers"]


def _traces_of(cluster: Cluster, task_id: str) -> dict[str, Any]:
    return {e["type"]: e.get("trace") for e in cluster.events() if e["key"] == task_id}


def _access_line(cluster: Cluster, task_id: str) -> dict[str, Any] | None:
    log = cluster.data_dir / ("ingress.log" if cluster.on_kafka else "up.log")
    for raw in log.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            line = json.loads(raw)
            if line.get("logger") == "ngpu.access" and line.get("task_id") == task_id:
                return dict(line)
    return None


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as running:
        yield running


def test_one_trace_from_the_request_to_the_container_and_the_completion(
    tmp_path: Path, kafka_bootstrap: str | None, collector: OtlpCollector
) -> None:
    env = _env(kafka_bootstrap, OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
               OTEL_BSP_SCHEDULE_DELAY="100", NGPU_LOG_FORMAT="json")  # fmt: skip
    cluster = Cluster(tmp_path, env)
    try:
        cluster.start_control_plane()
        cluster.start_node("gpu")
        created, _ = cluster.one_replica_workspace("gpu")
        task_id, received = _call_headers(cluster, str(created["workspace_id"]))
        _, trace_id, client_span_id, _ = received["traceparent"].split("-")

        def whole_trace() -> list[CollectedSpan] | None:
            found = [s for s in collector.spans() if s.trace_id == trace_id]
            names = {s.name for s in found}
            wanted = {"POST /user/{path:path}", "schedule", "dispatch", "POST"}
            publishes = [s for s in found if s.name == "publish ngpu.tasks"]
            return found if wanted <= names and len(publishes) >= 2 else None

        spans = wait_for(whole_trace, 60, "the task's spans at the collector")
        traced_events = wait_for(
            lambda: (t := _traces_of(cluster, task_id)) and all(t.get(k) for k in TASK_EVENTS)
            and t,
            30, "the task's events",
        )  # fmt: skip
        access = wait_for(lambda: _access_line(cluster, task_id), 30, "the access line")
    finally:
        cluster.stop()
    assert access["trace_id"] == trace_id  # the request's log lines name its trace

    by_id = {s.span_id: s for s in spans}
    (request,) = [s for s in spans if s.name == "POST /user/{path:path}"]
    (schedule,) = [s for s in spans if s.name == "schedule"]
    (dispatch,) = [s for s in spans if s.name == "dispatch"]
    (call,) = [s for s in spans if s.name == "POST"]
    submit, complete = sorted(
        (s for s in spans if s.name == "publish ngpu.tasks"),
        key=lambda s: s.parent_span_id != request.span_id,
    )

    # ingress -> publish(TaskSubmitted) -> schedule -> dispatch -> POST (the container)
    #                                                           -> publish(TaskCompleted)
    assert request.kind == SERVER and request.parent_span_id == ""
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["ngpu.task_id"] == task_id
    assert submit.kind == PRODUCER and submit.parent_span_id == request.span_id
    assert submit.attributes["ngpu.events"] == ["TaskSubmitted"]
    assert schedule.parent_span_id == submit.span_id
    assert schedule.attributes["ngpu.task_id"] == task_id
    assert dispatch.kind == CONSUMER and dispatch.parent_span_id == schedule.span_id
    assert call.kind == CLIENT and call.parent_span_id == dispatch.span_id
    assert call.span_id == client_span_id  # the container got the client span's context
    assert call.attributes["http.response.status_code"] == 200
    assert complete.kind == PRODUCER and complete.parent_span_id == dispatch.span_id
    assert complete.attributes["ngpu.events"] == ["TaskCompleted"]
    assert all(s.parent_span_id in by_id or s is request for s in spans)

    # The envelopes carried it: each event in the context of the span that published it.
    carried = {kind: traced_events[kind]["traceparent"].split("-")[1:3] for kind in TASK_EVENTS}
    assert carried == {"TaskSubmitted": [trace_id, submit.span_id],
                       "TaskDispatched": [trace_id, schedule.span_id],
                       "TaskCompleted": [trace_id, complete.span_id]}  # fmt: skip

    assert {s.resource["service.name"] for s in spans} == {"ngpu-gateway"}
    roles = {s.name: s.resource["ngpu.roles"] for s in spans}
    if kafka_bootstrap:  # each role in its own process
        assert (roles["schedule"], roles["dispatch"]) == ("scheduler", "dispatcher")
        assert roles[request.name] == "ingress,projector"
    else:
        assert len(set(roles.values())) == 1


@pytest.mark.parametrize("how", ["unset", "OTEL_SDK_DISABLED"])
def test_without_the_variable_nothing_is_traced(
    tmp_path: Path, collector: OtlpCollector, how: str
) -> None:
    otel = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    if how == "OTEL_SDK_DISABLED":  # an endpoint, but the SDK disabled: still nothing
        otel.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_SDK_DISABLED="true")
    cluster = Cluster(tmp_path, _env(None, **otel))
    try:
        cluster.start_control_plane()
        cluster.start_node("gpu")
        created, _ = cluster.one_replica_workspace("gpu")
        task_id, received = _call_headers(cluster, str(created["workspace_id"]))
        traces = wait_for(
            lambda: (t := _traces_of(cluster, task_id)) and "TaskCompleted" in t and t,
            30, "the task's events",
        )  # fmt: skip
        everything = cluster.events("ngpu.tasks") + cluster.events("ngpu.workspaces")
    finally:
        cluster.stop()
    assert "traceparent" not in received
    assert set(traces) >= set(TASK_EVENTS) and set(traces.values()) == {None}
    assert all("trace" not in event for event in everything)
    assert collector.posts == 0  # the processes have exited: whatever they held was sent
