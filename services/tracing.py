"""Traces (OpenTelemetry), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.

Off (the default) costs nothing measurable: `configure` installs nothing, `ENABLED` stays
False, and each hot path tests that one module-level flag before doing anything else, so
envelopes carry no trace and encode to the bytes they always did.

On, `configure` (at the start of `ngpu up` and `ngpu serve`) installs the SDK's tracer
provider, whose spans a background thread exports in batches over OTLP/HTTP (protobuf).
The SDK reads the standard variables itself: `OTEL_SERVICE_NAME` (else `ngpu-gateway`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and `_ARG`, `OTEL_BSP_*` and the
exporter's `OTEL_EXPORTER_OTLP_*` (headers, timeout, compression, certificates);
`OTEL_SDK_DISABLED=true` keeps traces off.

One trace follows a task: the ingress's server span of the request (continuing the
caller's `traceparent`, if it sent one) -> `publish ngpu.tasks` (its `TaskSubmitted`) ->
the scheduler's `schedule` (from when it took the task into its queue to its
`TaskDispatched` being durable) -> the dispatcher's `dispatch` -> its `POST` to the
container (which receives `traceparent`) and the `publish ngpu.tasks` of the outcome.
Between processes the context travels in the envelope (`events.TraceContext`, W3C Trace
Context): an event published while a span is current carries that span's context
(`services.bus.publish_events`), and a role that handles a traced event starts its span
from the event's context (`context_of`). Spans name routes by their templates and
workspaces by their hashes, never by a raw path or a Workspace ID (a credential).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from structlog.contextvars import bind_contextvars, get_contextvars

from events import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ENABLED",
    "AttributeValue",
    "Span",
    "SpanKind",
    "StatusCode",
    "TracingMiddleware",
    "bind_trace_id",
    "configure",
    "context_of",
    "current_trace",
    "in_span",
    "inject",
    "install",
    "shutdown",
    "span",
    "start_span",
    "trace_of",
    "uninstall",
    "wanted",
]

ENABLED = False
"""Whether spans are made. Test it before anything else on a hot path."""
SERVICE_NAME = "ngpu-gateway"
"""`service.name` unless `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names one."""
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, and
    `OTEL_SDK_DISABLED` is not true."""
    endpoint = (
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return bool(endpoint) and not disabled


def configure(roles: Iterable[str]) -> bool:
    """When `wanted()`, install the SDK's tracer provider exporting over OTLP/HTTP, its
    resource naming `roles` (`ngpu.roles`); whether it did. Imports the SDK only then.

    It is not made OpenTelemetry's global provider: FastAPI's own telemetry traces through
    that one as soon as it is set, and its spans record raw paths and queries, which hold
    Workspace IDs (the customer's bearer credential)."""
    if not wanted():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"ngpu.roles": ",".join(sorted(roles))})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: TracerProvider) -> None:
    """Make spans through `provider` from now on (tests pass one with an in-memory
    exporter; OpenTelemetry's global provider is left alone)."""
    global ENABLED, _tracer, _provider
    _tracer = provider.get_tracer("ngpu")
    _provider = provider
    ENABLED = True


def uninstall() -> None:
    """Back to off. The provider is not shut down (its owner does that)."""
    global ENABLED, _tracer, _provider
    ENABLED = False
    _tracer = trace.NoOpTracer()
    _provider = None


def shutdown() -> None:
    """Export the spans still buffered, then stop (at the end of the process)."""
    provider = _provider
    uninstall()
    if provider is not None:
        provider.shutdown()


# -- contexts ------------------------------------------------------------------------


def in_span() -> bool:
    """Whether a span is current (one whose context can be propagated)."""
    return trace.get_current_span().get_span_context().is_valid


def trace_of(span_or_context: Span | Context | None = None) -> TraceContext | None:
    """The W3C trace context of a span, of a context, or (None) of the current one; None
    when there is no valid span in it."""
    context = (
        trace.set_span_in_context(span_or_context)
        if isinstance(span_or_context, Span)
        else span_or_context
    )
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    parent = carrier.get("traceparent")
    return TraceContext(parent, carrier.get("tracestate", "")) if parent else None


def current_trace() -> TraceContext | None:
    """The trace context of the current span; None when there is none or traces are off."""
    return trace_of() if ENABLED else None


def context_of(parent: TraceContext | None) -> Context:
    """A context whose span is `parent` (a remote parent, as read from an envelope); an
    empty one (a span started in it begins a new trace) for None."""
    if parent is None:
        return Context()
    carrier = {"traceparent": parent.traceparent}
    if parent.tracestate:
        carrier["tracestate"] = parent.tracestate
    return _PROPAGATOR.extract(carrier, context=Context())


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` (and `tracestate`) to outgoing HTTP headers."""
    _PROPAGATOR.inject(headers)


# -- spans ---------------------------------------------------------------------------


def start_span(
    name: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    start_time: int | None = None,
) -> Span:
    """A span the caller ends; its parent is `context`'s span (None: the current one)."""
    return _tracer.start_span(
        name, context=context, kind=kind, attributes=attributes, start_time=start_time
    )


@contextmanager
def span(
    name: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Sequence[Link] | None = None,
) -> Iterator[Span]:
    """A span current for the block and ended at its end (an exception that leaves the
    block is recorded and sets the error status); parent as in `start_span`."""
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, links=links
    ) as current:
        yield current


def bind_trace_id(current: Span) -> None:
    """Put the span's trace id on the log lines of this asyncio task (`services.logs`)."""
    if current.is_recording():
        bind_contextvars(trace_id=format(current.get_span_context().trace_id, "032x"))


MAX_CALLER_TRACESTATE = 512
"""A caller's `tracestate` longer than this is dropped (W3C's advice to vendors: 512)."""


class TracingMiddleware:
    """ASGI: a server span per HTTP request, current while the request is handled and
    ended with its response, named `<method> <route template>` once routing has matched
    (the method alone otherwise). Its parent is the caller's `traceparent` when it sent
    one and `trust_caller`; else the span starts a trace of its own, linked to the
    caller's (a caller may not choose the trace id, whether it is sampled, or what the
    gateway carries in `tracestate`). Attributes: the method, route template, status, and
    the task id and workspace hash the request bound to its log lines. A 5xx sets the
    error status. Requests whose path `untraced` accepts (probes, node agents' polls) get
    no span."""

    def __init__(
        self, app: ASGIApp, *, untraced: Callable[[str], bool], trust_caller: bool = False
    ) -> None:
        self.app = app
        self.untraced = untraced
        self.trust_caller = trust_caller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.untraced(scope["path"]):
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        if len(carrier.get("tracestate", "")) > MAX_CALLER_TRACESTATE:
            del carrier["tracestate"]
        caller = _PROPAGATOR.extract(carrier, context=Context())
        links = None
        if not self.trust_caller:
            linked = trace.get_current_span(caller).get_span_context()
            caller, links = Context(), ([Link(linked)] if linked.is_valid else None)
        method = scope["method"]
        status = 500  # an error that escapes before an answer becomes a 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with span(
            method,
            context=caller,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope["scheme"]},
            links=links,
        ) as current:
            bind_trace_id(current)
            try:
                await self.app(scope, receive, sending)
            finally:
                _describe(current, scope, method, status)


def _describe(current: Span, scope: Scope, method: str, status: int) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route:
        current.update_name(f"{method} {route}")
        current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    bound = get_contextvars()
    for key, attribute in (("task_id", "ngpu.task_id"), ("workspace", "ngpu.workspace")):
        if isinstance(bound.get(key), str):
            current.set_attribute(attribute, bound[key])
    if status >= 500:
        current.set_status(StatusCode.ERROR)
