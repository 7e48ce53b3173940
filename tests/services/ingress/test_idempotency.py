"""What an ingress makes of an `Idempotency-Key`: the key's hash (scoped to its workspace),
the request's digest, the 422 of another request under it, and the index of the
scheduler's verdicts it answers repeats from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events import IdempotencyChecked
from services.ingress.errors import BadRequest, Unprocessable
from services.ingress.idempotency import KeyIndex, Original, keyed_request, same_request

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _keyed(key: str, workspace: str = "ws", payload: str = "{}", path: str = "/run"):  # type: ignore[no-untyped-def]
    return keyed_request({"Idempotency-Key": key}, workspace, path=path, port=80,
                         btc_address="", payload=payload)  # fmt: skip


def test_no_header_is_no_key_and_a_key_is_scoped_to_its_workspace() -> None:
    assert keyed_request({}, "ws", path="/", port=80, btc_address="", payload="") is None
    mine, theirs = _keyed("order-1"), _keyed("order-1", workspace="other")
    assert mine is not None and theirs is not None
    assert mine.key != theirs.key and mine.digest == theirs.digest
    assert "order-1" not in mine.key


@pytest.mark.parametrize("raw", ["", "a b", "x" * 256, "é", "tab\there"])
def test_a_key_must_be_1_to_255_visible_ascii_characters(raw: str) -> None:
    with pytest.raises(BadRequest) as refused:
        _keyed(raw)
    assert refused.value.field == "Idempotency-Key"


def test_another_request_under_a_key_is_a_422_naming_the_first_task() -> None:
    first = _keyed("k")
    assert first is not None
    original = Original("t1", first.digest)
    again = _keyed("k")
    assert again is not None and same_request(again, original) == "t1"
    for other in (_keyed("k", payload='{"x":1}'), _keyed("k", path="/other")):
        assert other is not None
        with pytest.raises(Unprocessable, match="t1"):
            same_request(other, original)
    # The digest takes each part's length: moving bytes between parts changes it.
    a = keyed_request({"Idempotency-Key": "k"}, "ws", path="/a", port=80, btc_address="b",
                      payload="c")  # fmt: skip
    b = keyed_request({"Idempotency-Key": "k"}, "ws", path="/a", port=80, btc_address="",
                      payload="bc")  # fmt: skip
    assert a is not None and b is not None and a.digest != b.digest


def test_the_index_learns_first_claims_for_a_day_and_forgets_the_oldest_first() -> None:
    index = KeyIndex(capacity=2)
    index.apply(IdempotencyChecked("t1", "ws", "k1", "t1", "d1"), T0)
    index.apply(IdempotencyChecked("t2", "ws", "k1", "t1", "d1"), T0)  # a repeat: no news
    assert index.original("k1", T0) == Original("t1", "d1")
    assert index.original("k1", T0 + timedelta(days=1, seconds=1)) is None
    index.apply(IdempotencyChecked("t3", "ws", "k2", "t3", "d3"), T0 + timedelta(hours=1))
    index.apply(IdempotencyChecked("t4", "ws", "k3", "t4", "d4"), T0 + timedelta(hours=2))
    assert len(index) == 2 and index.original("k1", T0) is None
    # A repeat verdict of a key the index does not hold teaches nothing (its claim's time
    # is not in it); the scheduler is asked again.
    index.apply(IdempotencyChecked("t5", "ws", "k9", "t0", "d0"), T0 + timedelta(hours=2))
    assert index.original("k9", T0 + timedelta(hours=2)) is None
    # A claim past the window is dropped as later verdicts arrive; a new claim replaces it.
    index.apply(IdempotencyChecked("t6", "ws", "k2", "t6", "d6"), T0 + timedelta(days=2))
    assert index.original("k2", T0 + timedelta(days=2)) == Original("t6", "d6")
    assert len(index) == 1
