"""Pure derivations of the read side: state codes, the serving node, durations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import Envelope
from projections import DispatchRow, OutcomeRow, RequeueRow, TaskState
from projections.apply import rows_for
from projections.views import ceil_seconds, contract_time, serving_node, state_of

from .builders import at, cancelled, completed, dispatched, expired, failed, retried


def fact(env: Envelope) -> DispatchRow | OutcomeRow | RequeueRow:
    row = rows_for(env)[1]
    assert isinstance(row, DispatchRow | OutcomeRow | RequeueRow)
    return row


def split(
    history: list[Envelope],
) -> tuple[OutcomeRow | None, list[DispatchRow], list[RequeueRow]]:
    rows = [fact(e) for e in history]
    outcomes = sorted(
        (r for r in rows if isinstance(r, OutcomeRow)), key=lambda r: (r.occurred_at, r.event_id)
    )
    return (
        outcomes[0] if outcomes else None,
        [r for r in rows if isinstance(r, DispatchRow)],
        [r for r in rows if isinstance(r, RequeueRow)],
    )


STATES: list[tuple[str, list[Envelope], TaskState]] = [
    ("only submitted", [], TaskState.QUEUED),
    ("dispatched", [dispatched("T", at(1))], TaskState.RUNNING),
    (
        "attempt failed, retry pending",
        [dispatched("T", at(1)), failed("T", at(2), retryable=True)],
        TaskState.QUEUED,
    ),
    (
        "retried, waiting",
        [dispatched("T", at(1)), failed("T", at(2), retryable=True), retried("T", at(3))],
        TaskState.QUEUED,
    ),
    (
        "second attempt running",
        [
            dispatched("T", at(1)),
            failed("T", at(2), retryable=True),
            retried("T", at(3)),
            dispatched("T", at(4), attempt=2, node="n2"),
        ],
        TaskState.RUNNING,
    ),
    ("completed", [dispatched("T", at(1)), completed("T", at(1), at(2))], TaskState.COMPLETED),
    ("failed", [dispatched("T", at(1)), failed("T", at(2), retryable=False)], TaskState.FAILED),
    ("cancelled", [cancelled("T", at(1))], TaskState.CANCELLED),
    ("expired", [expired("T", at(1))], TaskState.EXPIRED),
]


@pytest.mark.parametrize(("case", "history", "state"), STATES, ids=[c[0] for c in STATES])
def test_state_of(case: str, history: list[Envelope], state: TaskState) -> None:
    assert state_of(*split(history)) is state


def test_state_codes_are_the_documented_ones() -> None:
    assert {s.name: int(s) for s in TaskState} == {
        "QUEUED": 0,
        "RUNNING": 1,
        "COMPLETED": 3,
        "FAILED": 4,
        "CANCELLED": 5,
        "EXPIRED": 6,
    }


NODES: list[tuple[str, list[Envelope], tuple[str, str]]] = [
    ("never dispatched", [], ("", "")),
    ("running", [dispatched("T", at(1), node="n1")], ("10.0.0.1", "0xn1")),
    (
        "completed on the second node",
        [
            dispatched("T", at(1), node="n1"),
            dispatched("T", at(2), attempt=2, node="n2"),
            completed("T", at(2), at(3), attempt=2, node="n2"),
        ],
        ("10.0.0.2", "0xn2"),
    ),
    (
        "failed attempt 1 though attempt 2 was dispatched later",
        [
            dispatched("T", at(1), node="n1"),
            failed("T", at(2), retryable=False, attempt=1, node="n1"),
            dispatched("T", at(3), attempt=2, node="n2"),
        ],
        ("10.0.0.1", "0xn1"),
    ),
    (
        "cancelled after two dispatches: the latest",
        [
            dispatched("T", at(1), node="n1"),
            dispatched("T", at(2), attempt=2, node="n2"),
            cancelled("T", at(3)),
        ],
        ("10.0.0.2", "0xn2"),
    ),
]


@pytest.mark.parametrize(("case", "history", "node"), NODES, ids=[c[0] for c in NODES])
def test_serving_node(case: str, history: list[Envelope], node: tuple[str, str]) -> None:
    outcome, dispatches, _ = split(history)
    assert serving_node(outcome, dispatches) == node


@pytest.mark.parametrize(
    ("micros", "seconds"),
    [(0, 0), (1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (-3_000_000, 0)],
)
def test_ceil_seconds(micros: int, seconds: int) -> None:
    assert ceil_seconds(micros) == seconds


def test_contract_time() -> None:
    moment = datetime(2024, 4, 15, 14, 30, 11, 999_999, tzinfo=UTC)
    assert contract_time(moment) == "2024-04-15 14:30:11"
