"""`CatchUp`: how far a reader is from the ends the log had when it started, said every few
seconds as "x of y records", and done once every partition has reached its end."""

from __future__ import annotations

import logging

import pytest

from services.bus import Record
from services.bus.progress import CatchUp, catching_up
from services.bus.protocol import Outgoing
from tests.services.bus.conftest import bus  # noqa: F401 - the fixture: each bus in turn

A, B = ("t", 0), ("t", 1)


def _records(where: tuple[str, int], offsets: range) -> list[Record]:
    return [Record(where[0], where[1], o, "k", b"", 0) for o in offsets]


def test_done_once_every_partition_reached_its_end(caplog: pytest.LogCaptureFixture) -> None:
    done: list[bool] = []
    catch_up = CatchUp("scheduler", {A: 2}, {A: 5, B: 3}, every_s=0,
                       on_done=lambda: done.append(True))  # fmt: skip
    assert (catch_up.total, catch_up.done) == (6, False)
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        catch_up.seen(_records(A, range(2, 5)))
        assert not catch_up.done and not done
        catch_up.seen(_records(B, range(3)))
        catch_up.seen(_records(B, range(3, 4)))  # past the end: not counted
    assert catch_up.done and done == [True]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("scheduler: catching up, 3 of 6 records (")
    assert lines[-1].startswith("scheduler: caught up, 6 of 6 records (")


def test_progress_is_said_every_few_seconds_not_every_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catch_up = CatchUp("directory", {}, {A: 100}, every_s=3600)
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        for offset in range(99):
            catch_up.seen(_records(A, range(offset, offset + 1)))
        assert not caplog.records
        catch_up.seen(_records(A, range(99, 100)))
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "directory: caught up, 100 of 100 records"
    ]


def test_nothing_behind_is_done_at_once_and_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    done: list[bool] = []
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        catch_up = CatchUp("projector", {A: 5}, {A: 5, B: 0}, on_done=lambda: done.append(True))
    assert catch_up.done and done == [True] and catch_up.total == 0
    assert not caplog.records


def test_positions_tell_progress_and_a_partition_no_longer_held_is_not_waited_for() -> None:
    catch_up = CatchUp("dispatcher", {A: 10, B: 0}, {A: 20, B: 4}, every_s=0)
    catch_up.at({A: 15, B: 0})
    assert (catch_up.read, catch_up.done) == (5, False)
    catch_up.at({A: 20})  # B went to another member of the group
    assert catch_up.done and catch_up.read == 14


async def test_a_consumer_is_caught_up_from_where_it_is(bus) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    stored = await bus.publish_many([Outgoing("t", f"k{i % 5}", b"x") for i in range(40)])
    async with bus.consumer(["t"], group="g") as consumer:
        catch_up = await catching_up("projector", consumer)
        assert (catch_up.total, catch_up.done) == (len(stored), False)
        got: list[Record] = []
        while len(got) < len(stored):
            got += await consumer.fetch(7, timeout_s=1.0)
            catch_up.at(await consumer.positions())
        assert catch_up.done and catch_up.read == len(stored)
        await consumer.commit()
    async with bus.consumer(["t"], group="g") as again:  # resumes at the ends: nothing behind
        assert (await catching_up("projector", again)).done
