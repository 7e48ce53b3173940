"""`services.tracing`: off unless an OTLP endpoint is set; contexts survive the trip
through an envelope's `TraceContext`; `configure` exports over real OTLP/HTTP."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events import TraceContext
from services import tracing
from tests.e2e.cluster import wait_for
from tests.support.traces import OtlpCollector, hex_ids, named, spans  # noqa: F401

OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                  "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
                  "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")  # fmt: skip


def _sampled(trace: TraceContext) -> bool:
    return bool(int(trace.traceparent[-2:], 16) & 1)


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_SERVICE_NAME": "ngpu"}, False),
    ],
)
def test_traces_are_wanted_only_with_an_otlp_endpoint(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing.wanted(environ) is wanted


def test_without_an_endpoint_nothing_is_installed(no_otel_env: pytest.MonkeyPatch) -> None:
    assert tracing.configure(["ingress"]) is False
    assert tracing.ENABLED is False
    assert tracing.current_trace() is None
    with tracing.span("nothing") as span:
        assert not span.is_recording()  # the API's no-op tracer: no SDK behind it
        assert tracing.current_trace() is None


def test_a_context_survives_the_trip_through_an_envelope(
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    assert tracing.current_trace() is None  # no span current
    with tracing.span("parent") as parent:
        carried = tracing.current_trace()
    assert carried is not None and carried == tracing.trace_of(parent)
    trace_id, span_id = hex_ids(named(spans, "parent")[0])
    assert carried.traceparent.startswith(f"00-{trace_id}-{span_id}-") and _sampled(carried)
    assert carried.tracestate == ""

    child = tracing.start_span("child", context=tracing.context_of(carried))
    child.end()
    (finished,) = named(spans, "child")
    assert finished.parent is not None and finished.parent.is_remote
    assert hex_ids(finished)[0] == trace_id
    assert format(finished.parent.span_id, "016x") == span_id


def test_a_tracestate_is_carried_along(spans: InMemorySpanExporter) -> None:  # noqa: F811
    parent = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "rojo=00f067aa0ba902b7")  # fmt: skip
    with tracing.span("child", context=tracing.context_of(parent)):
        carried = tracing.current_trace()
        headers: dict[str, str] = {}
        tracing.inject(headers)
    assert carried is not None and carried.tracestate == "rojo=00f067aa0ba902b7"
    assert carried.traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert headers == {"traceparent": carried.traceparent, "tracestate": carried.tracestate}


def test_no_parent_begins_a_new_trace(spans: InMemorySpanExporter) -> None:  # noqa: F811
    with tracing.span("outer"):
        inner = tracing.start_span("root", context=tracing.context_of(None))
        inner.end()
    (outer,) = named(spans, "outer")
    (root,) = named(spans, "root")
    assert root.parent is None and hex_ids(root)[0] != hex_ids(outer)[0]


@pytest.mark.parametrize(
    ("service_name", "expected"), [(None, "ngpu-gateway"), ("gateway-eu", "gateway-eu")]
)
def test_configure_exports_over_otlp_http(
    no_otel_env: pytest.MonkeyPatch, service_name: str | None, expected: str
) -> None:
    with OtlpCollector() as collector:
        no_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        no_otel_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        if service_name:
            no_otel_env.setenv("OTEL_SERVICE_NAME", service_name)
        try:
            assert tracing.configure(["scheduler", "dispatcher"]) is True
            assert tracing.ENABLED
            with tracing.span("exported", attributes={"ngpu.task_id": "t-1"}):
                pass
            (span,) = wait_for(collector.spans, 30, "the span at the collector")
        finally:
            tracing.shutdown()
        assert tracing.ENABLED is False
    assert span.name == "exported" and span.attributes == {"ngpu.task_id": "t-1"}
    assert span.resource["service.name"] == expected
    assert span.resource["ngpu.roles"] == "dispatcher,scheduler"


def test_the_sampler_comes_from_the_environment(no_otel_env: pytest.MonkeyPatch) -> None:
    with OtlpCollector() as collector:
        no_otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        no_otel_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
        try:
            assert tracing.configure(["ingress"])
            with tracing.span("sampled out") as span:
                assert not span.is_recording()
                # Still propagated, marked not sampled, so the roles downstream agree.
                carried = tracing.current_trace()
                assert carried is not None and not _sampled(carried)
        finally:
            tracing.shutdown()  # exports what the processor holds before it returns
        assert collector.spans() == []
