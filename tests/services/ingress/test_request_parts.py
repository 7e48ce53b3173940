"""The pure parts of the NGPU API: paths, client IPs, ids, rate limits, bodies, statuses."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from events import (
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    WorkspaceRegistered,
)
from services.ingress.clientip import client_ip, parse_networks, rate_key
from services.ingress.directory import WorkspaceView
from services.ingress.errors import BadRequest
from services.ingress.paramurl import container_path
from services.ingress.ratelimit import RateLimiter
from services.ingress.routers.ngpu import detail_wait_s, outcome
from services.ingress.submission import parse_body, target_port
from services.ingress.taskids import issued_at, new_task_id, new_task_seq
from services.ingress.taskview import TaskView
from services.ingress.timebounds import parse_bound


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sdapi/v1/img2img", "/sdapi/v1/img2img"),
        ("/img2img", "/img2img"),
        ("sadTalker", "/sadTalker"),
        ("sleep?ms=10", "/sleep?ms=10"),
        ("a/b-c_d.e~f", "/a/b-c_d.e~f"),
        ("v1/%20x", "/v1/%20x"),
    ],
)
def test_relative_paths_are_accepted(raw: str, expected: str) -> None:
    assert container_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "http://169.254.169.254/latest",
        "https://evil.example/x",
        "//evil.example/x",
        "file:/etc/passwd",
        "../admin",
        "a/../../b",
        "a/%2e%2e/b",
        "a/%2E%2E/b",
        "./x",
        "a\\b",
        "a%5cb",
        "a\r\nHost: evil",
        "a%0d%0aX: y",
        "a%00b",
        "a b",
        "a\tb",
        'a"b',
        "x" * 3000,
    ],
)
def test_anything_but_a_relative_path_is_refused(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        container_path(raw)
    assert caught.value.field == "paramUrl"


PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1"])


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("94.74.66.215", None, "94.74.66.215"),
        ("94.74.66.215", "1.2.3.4", "94.74.66.215"),  # an untrusted peer cannot claim an IP
        ("10.1.2.3", "94.74.66.215", "94.74.66.215"),
        ("10.1.2.3", "6.6.6.6, 94.74.66.215, 10.9.9.9", "94.74.66.215"),
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
        ("10.1.2.3", "10.4.4.4", "10.4.4.4"),
    ],
)
def test_client_ip_believes_only_trusted_proxies(
    peer: str, header: str | None, expected: str
) -> None:
    assert client_ip(peer, header, PROXIES) == expected


def test_task_ids_have_the_contract_shape_and_differ() -> None:
    now = datetime(2024, 4, 11, 13, 36, 11, 922124, tzinfo=UTC)
    ids = {new_task_id(now) for _ in range(200)}
    assert len(ids) > 190
    assert all(re.fullmatch(r"20240411_13_36_11_922124\d{4}", i) for i in ids)
    seqs = [new_task_seq() for _ in range(5000)]
    assert len(set(seqs)) == 5000 and all(0 < s < 2**63 for s in seqs)
    assert issued_at(ids.pop()) == now.replace(microsecond=0)
    assert issued_at("not-a-task-id") is None and issued_at("20241399_00_00_00_1") is None


def test_rate_limiter_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=3)
    assert [limiter.allow("w", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("other", now=0.0)
    assert limiter.allow("w", now=0.1) and not limiter.allow("w", now=0.1)
    assert RateLimiter(0, 1).allow("w")


@pytest.mark.parametrize(
    ("raw", "payload", "content_type"),
    [
        (b'{"btc_address": "", "data": ""}', "", "application/json"),
        (b'{"data": "{\\"a\\": 1}"}', '{"a": 1}', "application/json"),
        (b'{"data": "plain words"}', "plain words", "text/plain; charset=utf-8"),
        (b'{"data": {"prompt": "x"}}', '{"prompt": "x"}', "application/json"),
        (b'{"data": [1, 2]}', "[1, 2]", "application/json"),
        (b"", "", "application/json"),
    ],
)
def test_contract_bodies_pass_data_through(raw: bytes, payload: str, content_type: str) -> None:
    body = parse_body(raw)
    assert (body.payload, body.content_type) == (payload, content_type)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{", "body"),
        (b"[]", "body"),
        (b'{"data": 5}', "data"),
        (b'{"btc_address": 1}', "btc_address"),
    ],
)
def test_bad_contract_bodies_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_body(raw)
    assert caught.value.field == field


def test_time_bounds_make_the_end_day_inclusive() -> None:
    default = datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_bound("2024-04-20", default, end=True, field="endTime") == datetime(
        2024, 4, 21, tzinfo=UTC
    )
    assert parse_bound("2024-04-11", default, end=False, field="startTime") == datetime(
        2024, 4, 11, tzinfo=UTC
    )
    assert parse_bound("2024-04-11 10:30:00", default, end=True, field="endTime") == datetime(
        2024, 4, 11, 10, 30, tzinfo=UTC
    )
    assert parse_bound(None, default, end=False, field="startTime") is default
    with pytest.raises(BadRequest):
        parse_bound("yesterday", default, end=False, field="startTime")


EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "end", "expected"),
    [
        ("9999-12-31", True, LATEST),
        ("9999-12-31T23:59:59", True, LATEST),
        ("9999-12-31T23:59:59-01:00", True, LATEST),
        ("2300-01-01", False, LATEST),
        ("2299-12-31T23:59:59.999999", False, LATEST),
        ("0001-01-01", False, EARLIEST),
        ("0001-01-01T00:00:00+01:00", False, EARLIEST),
        ("1899-12-31", True, EARLIEST),
        ("1900-01-01", False, EARLIEST),
        ("2299-12-31", True, LATEST),
    ],
)
def test_time_bounds_are_clamped_to_what_the_store_can_hold(
    raw: str, end: bool, expected: datetime
) -> None:
    # ClickHouse's DateTime64 spans 1900-01-01 to 2299-12-31; past that a bound means
    # "everything", not a 500 (a date overflow) or a 503 (the store refusing the value).
    default = datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_bound(raw, default, end=end, field="endTime") == expected


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-01", "2024-04-11T25:00", "2024\x00", "²"])
def test_unparseable_time_bounds_name_the_field(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_bound(raw, datetime(1970, 1, 1, tzinfo=UTC), end=False, field="startTime")
    assert caught.value.field == "startTime"


def _workspace(*ports: int) -> WorkspaceView:
    registered = WorkspaceRegistered(
        workspace_id="w", name="n", userkey="u", image="i", command=("run",),
        gpu_type="RTX4090", gpu_count=1, ports=ports,
    )  # fmt: skip
    return WorkspaceView(registered, {}, 1, 1, 5.0, datetime.now(UTC))


@pytest.mark.parametrize(("raw", "port"), [(None, 8080), ("", 8080), ("9000", 9000)])
def test_param_port_defaults_to_the_first_declared_port(raw: str | None, port: int) -> None:
    assert target_port(_workspace(8080, 9000), raw) == port


# "²" is a digit to str.isdigit() but not to int(), which reads fullwidth digits as
# ASCII ones; 5000 digits exceed int()'s limit on decimal strings.
FULLWIDTH_8080 = "\uff18\uff10\uff18\uff10"


@pytest.mark.parametrize(
    "raw", ["²", FULLWIDTH_8080, "8080 ", "-8080", "+8080", "0x1f90", "1" * 5000]
)
def test_param_port_is_ascii_digits_of_a_declared_port(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        target_port(_workspace(8080), raw)
    assert caught.value.field == "paramPort"


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("94.74.66.215", "94.74.66.215"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:94.74.66.215", "94.74.66.215"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_rate_keys_group_an_ipv6_64(ip: str, key: str) -> None:
    # One IPv6 host holds a whole /64: keyed by address it would have 2**64 buckets.
    assert rate_key(ip) == key


def test_rate_limiter_keeps_a_bounded_number_of_keys() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1, max_keys=3)
    for key in "abcdef":
        assert limiter.allow(key, now=0.0)
    assert len(limiter._buckets) <= 3
    assert not limiter.allow("f", now=0.0)  # the newest keys are kept


def _submitted(task_id: str = "t1") -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id, seq=1, workspace_id="w", userkey="u", btc_address="", mode="async",
        method="schedulingTask", request_url="/user/schedulingTask", param_url="/x",
        param_port=8080, user_ip="127.0.0.1", request_body="", gpu_type="RTX4090", gpu_count=1,
        timeout_s=5,
    )  # fmt: skip


def test_task_view_follows_a_task_and_the_first_end_wins() -> None:
    view = TaskView(capacity=10)
    now = datetime.now(UTC)
    view.apply(_submitted())
    assert outcome(view.get("t1"))[0] == 100  # type: ignore[arg-type]
    view.apply(TaskDispatched("t1", "w", 1, "n", "127.0.0.1", "0x", "d", 1))
    view.apply(TaskFailed("t1", "w", 1, "n", "node_refused", "refused", retryable=True))
    assert view.get("t1").phase == "running"  # type: ignore[union-attr]
    view.apply(TaskRetried("t1", "w", 2, ("n",), "refused"))
    assert view.get("t1").phase == "queued"  # type: ignore[union-attr]
    view.apply(
        TaskCompleted("t1", "w", 2, "m", "127.0.0.1", "0x", 200, "ok", now, now, "RTX4090", 1)
    )
    view.apply(TaskFailed("t1", "w", 2, "m", "timeout", "late", retryable=False))
    assert outcome(view.get("t1")) == (200, "success", "ok")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (TaskFailed("t1", "w", 3, "n", "timeout", "slow", retryable=False), 504),
        (TaskFailed("t1", "w", 3, "n", "node_error", "reset", retryable=False), 502),
    ],
)
def test_failures_map_to_their_result_codes(event: TaskFailed, code: int) -> None:
    view = TaskView()
    view.apply(_submitted())
    view.apply(event)
    assert outcome(view.get("t1"))[0] == code  # type: ignore[arg-type]


def test_task_view_forgets_the_oldest_tasks() -> None:
    view = TaskView(capacity=3)
    for i in range(5):
        view.apply(_submitted(f"t{i}"))
    assert view.get("t0") is None and view.get("t4") is not None


def test_task_view_counts_what_runs_on_each_node() -> None:
    view = TaskView()
    now = datetime.now(UTC)
    for task_id in ("t1", "t2"):
        view.apply(_submitted(task_id))
        view.apply(TaskDispatched(task_id, "w", 1, "n", "127.0.0.1", "0x", "d", 1))
    assert view.in_flight("n") == 2
    view.apply(TaskFailed("t1", "w", 1, "n", "node_refused", "refused", retryable=True))
    view.apply(TaskRetried("t1", "w", 2, ("n",), "refused"))
    assert view.in_flight("n") == 1
    view.apply(TaskDispatched("t1", "w", 2, "m", "127.0.0.1", "0x", "e", 1))
    assert (view.in_flight("n"), view.in_flight("m")) == (1, 1)
    view.apply(TaskCompleted("t2", "w", 1, "n", "127.0.0.1", "0x", 200, "", now, now, "X", 1))
    view.apply(TaskCompleted("t1", "w", 2, "m", "127.0.0.1", "0x", 200, "", now, now, "X", 1))
    assert (view.in_flight("n"), view.in_flight("m")) == (0, 0)


def test_get_detailed_waits_out_the_linger_of_a_projector_elsewhere() -> None:
    # A projector in the process is flushed; one in another process writes within its
    # linger, which the wait must cover, or getDetailed would deny what queryTask says.
    assert detail_wait_s(30.0, flush=lambda: None) < 30.0
    assert detail_wait_s(30.0, flush=None) > 30.0
    assert detail_wait_s(0.0, flush=None) == detail_wait_s(0.0, flush=lambda: None) > 0
