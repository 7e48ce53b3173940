"""Counters and histograms, in prometheus-client's default registry (one per process).
Label values are bounded: route templates, HTTP statuses, failure codes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from events import TaskCompleted, TaskFailed

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 300.0)  # fmt: skip
"""From a millisecond (an answer from memory) to minutes (a long container call)."""

REQUESTS = Counter(
    "ngpu_http_requests",
    "HTTP requests answered by the ingress, by route template, method and status "
    "(result_code: the NGPU API's, which is the HTTP status but 202 for in progress).",
    ["route", "method", "result_code"],
)
REQUEST_SECONDS = Histogram(
    "ngpu_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=BUCKETS_S,
)
DISPATCH_ATTEMPTS = Counter(
    "ngpu_dispatch_attempts", "Container calls this dispatcher made (every attempt)."
)
DISPATCH_FAILURES = Counter(
    "ngpu_dispatch_failures", "Attempts that failed, by failure code.", ["code"]
)
CALL_SECONDS = Histogram(
    "ngpu_container_call_duration_seconds",
    "Duration of container calls, by outcome (completed: the container answered, whatever "
    "its status; failed: the call did not complete).",
    ["outcome"],
    buckets=BUCKETS_S,
)
_COMPLETED = CALL_SECONDS.labels("completed")
_FAILED = CALL_SECONDS.labels("failed")


def record_call(outcome: TaskCompleted | TaskFailed, seconds: float) -> None:
    """Count one container call that ended with `outcome` after `seconds`."""
    DISPATCH_ATTEMPTS.inc()
    if isinstance(outcome, TaskFailed):
        DISPATCH_FAILURES.labels(outcome.code).inc()
        _FAILED.observe(seconds)
    else:
        _COMPLETED.observe(seconds)
