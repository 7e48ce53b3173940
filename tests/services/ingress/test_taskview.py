"""The task view's lists: what an ingress lists before the projections know a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from events import TaskCompleted, TaskSubmitted
from services.ingress.taskview import TaskView

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _submitted(task_id: str, workspace_id: str = "w") -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id, seq=1, workspace_id=workspace_id, userkey="k", btc_address="",
        mode="async", method="m", request_url="/", param_url="/", param_port=8080,
        user_ip="127.0.0.1", request_body="", gpu_type="RTX4090", gpu_count=1, timeout_s=5,
    )  # fmt: skip


def _done(task_id: str, workspace_id: str = "w") -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id, workspace_id=workspace_id, attempt=1, node_id="n", node_ip="h",
        node_address="a", status_code=200, response_body="", started_at=T0, finished_at=T0,
        gpu_type="RTX4090", gpu_count=1,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.sampled_from("wv")), max_size=40),
    st.integers(0, 50),
    st.integers(0, 50),
    st.one_of(st.none(), st.integers(0, 45)),
    st.one_of(st.none(), st.integers(1, 10)),
)
def test_listed_is_the_range_in_order_after_the_cursor(
    arrivals: list[tuple[int, str]],
    lo: int,
    hi: int,
    after_index: int | None,
    limit: int | None,
) -> None:
    view = TaskView()
    entries = []
    for n, (second, workspace_id) in enumerate(arrivals):
        task_id, at = f"t{n:03d}", T0 + timedelta(seconds=second)
        view.apply(_submitted(task_id, workspace_id), at)
        view.apply(_submitted(task_id, workspace_id), at + timedelta(seconds=1))  # ignored
        view.apply(_done(task_id, workspace_id))
        if workspace_id == "w":
            entries.append((at, task_id))
    start, end = T0 + timedelta(seconds=lo), T0 + timedelta(seconds=hi)
    expected = sorted(e for e in entries if start <= e[0] < end)
    after = None
    if after_index is not None and entries:
        after = sorted(entries)[after_index % len(entries)]
        expected = [e for e in expected if e > after]
    assert view.listed("w", start, end, after=after, limit=limit) == expected[:limit]


def test_forgotten_tasks_leave_the_list() -> None:
    view = TaskView(capacity=3)
    for n in range(5):
        view.apply(_submitted(f"t{n}"), T0 + timedelta(seconds=n))
    ever = (T0, T0 + timedelta(days=1))
    assert [task for _, task in view.listed("w", *ever)] == ["t2", "t3", "t4"]
    assert view.listed_at("w", "t0") is None
    assert view.listed_at("w", "t3") == T0 + timedelta(seconds=3)
    assert view.listed_at("other", "t3") is None
