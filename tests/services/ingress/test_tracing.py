"""The ingress's server spans, on an in-process ingress over the embedded log with traces
on (the SDK's in-memory exporter): one per request, named by its route template, the
a caller's `traceparent` linked to (continued when trusted), the submitted task's event
in the request's trace;
probes and node agents' polls untraced; no Workspace ID in any span."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from events import TaskSubmitted, topics
from services.bus import decode_record
from services.ingress.app import untraced
from services.logs import workspace_hash
from tests.services.ingress.test_cancel_and_options import Ingress, _admin, ingress  # noqa: F401
from tests.support.traces import hex_ids, named, spans  # noqa: F401

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def traced(spans: InMemorySpanExporter) -> InMemorySpanExporter:  # noqa: F811
    """Traces on before the app is made (its middleware is added only then)."""
    return spans


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_submission_is_traced_from_the_request_to_its_event(
    ingress: Ingress,  # noqa: F811
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    accepted = await ingress.http.post("/user/schedulingTask?paramUrl=run", json={"data": "{}"},
                                       headers={**auth, "traceparent": CALLER})  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["taskID"]

    (request,) = named(spans, "POST /user/schedulingTask")
    assert request.kind is SpanKind.SERVER
    # A caller's trace is not continued unless NGPU_TRACE_TRUST_CALLER: linked to.
    assert request.parent is None and hex_ids(request)[0] != CALLER.split("-")[1]
    (link,) = request.links
    assert format(link.context.trace_id, "032x") == CALLER.split("-")[1]
    assert format(link.context.span_id, "016x") == CALLER.split("-")[2]
    assert request.attributes == {
        "http.request.method": "POST", "url.scheme": "http",
        "http.route": "/user/schedulingTask", "http.response.status_code": 202,
        "ngpu.task_id": task_id, "ngpu.workspace": workspace_hash(workspace_id),
    }  # fmt: skip
    assert request.context is not None
    (publish,) = [s for s in named(spans, f"publish {topics.TASKS}")
                  if s.parent and s.parent.span_id == request.context.span_id]  # fmt: skip

    submitted = [decode_record(r) async for r in ingress.bus.replay([topics.TASKS])]
    (envelope,) = [e for e in submitted if isinstance(e.event, TaskSubmitted)]
    assert envelope.trace is not None
    assert envelope.trace.traceparent[3:-3] == "-".join(hex_ids(publish))


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """NGPU_TRACE_TRUST_CALLER=true for an `ingress` asked for after it."""
    monkeypatch.setenv("NGPU_TRACE_TRUST_CALLER", "true")


@pytest.mark.parametrize(
    ("tracestate", "carried"),
    # Three valid members, 608 characters in all: too long, dropped.
    [("vendor=abc", "vendor=abc"), (",".join(f"{k}={'x' * 200}" for k in "abc"), "")],
)
async def test_a_trusted_callers_trace_is_continued(
    trusting: None,
    ingress: Ingress,  # noqa: F811
    spans: InMemorySpanExporter,  # noqa: F811
    tracestate: str,
    carried: str,
) -> None:
    _, auth = await ingress.workspace("alpha")
    caller = {"traceparent": CALLER, "tracestate": tracestate}
    accepted = await ingress.http.post("/user/schedulingTask?paramUrl=run", json={"data": "{}"},
                                       headers={**auth, **caller})  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    (request,) = named(spans, "POST /user/schedulingTask")
    assert request.parent is not None and request.parent.is_remote and not request.links
    assert hex_ids(request)[0] == CALLER.split("-")[1]  # the caller's trace, continued
    assert format(request.parent.span_id, "016x") == CALLER.split("-")[2]
    submitted = [decode_record(r) async for r in ingress.bus.replay([topics.TASKS])]
    (envelope,) = [e for e in submitted if isinstance(e.event, TaskSubmitted)]
    assert envelope.trace is not None and envelope.trace.tracestate == carried


async def test_spans_are_named_by_route_templates_never_by_raw_paths(
    ingress: Ingress,  # noqa: F811
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    workspace_id, _ = await ingress.workspace("alpha")
    assert (await ingress.http.get(f"/v1/workspaces/{workspace_id}",
                                   headers=_admin())).status_code == 200  # fmt: skip
    assert (await ingress.http.get("/no/such/route")).status_code == 404
    names = [s.name for s in server_spans(spans)]
    assert names == ["POST /v1/workspaces", "GET /v1/workspaces/{workspace_id}", "GET"]
    (created,) = named(spans, "POST /v1/workspaces")
    assert created.parent is None  # no traceparent sent: a trace of its own
    for span in spans.get_finished_spans():
        everything = repr((span.name, dict(span.attributes or {}), span.events))
        assert workspace_id not in everything


async def test_probes_and_node_agents_polls_are_not_traced(
    ingress: Ingress,  # noqa: F811
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        await ingress.http.get(path)
    await ingress.http.post("/v1/nodes/n-1/heartbeat", json={})
    await ingress.http.get("/v1/nodes/n-1/assignments")
    assert server_spans(spans) == []
    await ingress.http.get("/v1/nodes", headers=_admin())
    assert [s.name for s in server_spans(spans)] == ["GET /v1/nodes"]


@pytest.mark.parametrize(
    ("path", "traced"),
    [
        ("/healthz", False), ("/readyz", False), ("/metrics", False),
        ("/v1/nodes/n-1/heartbeat", False), ("/v1/nodes/n-1/assignments", False),
        ("/v1/nodes/register", True), ("/v1/nodes/n-1/deployments/d-1/status", True),
        ("/v1/nodes", True), ("/user/img2img", True), ("/user/heartbeat", True),
    ],
)  # fmt: skip
def test_which_paths_are_untraced(path: str, traced: bool) -> None:
    assert untraced(path) is not traced
