"""A process is ready once every one of its components has caught up with the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.readiness import Component, Readiness


def test_ready_once_every_component_has_caught_up_and_says_who_has_not() -> None:
    readiness = Readiness()
    assert readiness.ready and readiness.waiting_for == []  # nothing to wait for
    directory, scheduler = readiness.component("directory"), readiness.component("scheduler")
    assert not readiness.ready
    assert readiness.waiting_for == ["directory", "scheduler"]
    scheduler.mark_caught_up()
    assert readiness.waiting_for == ["directory"]
    directory.mark_caught_up()
    directory.mark_caught_up()  # idempotent
    assert readiness.ready and readiness.waiting_for == []


def test_a_component_is_added_once_and_keeps_its_state() -> None:
    readiness = Readiness()
    tasks = Component("tasks")
    tasks.mark_caught_up()
    assert readiness.add(tasks) is tasks
    readiness.add(tasks)
    late = readiness.add(Component("projector"))
    assert readiness.waiting_for == ["projector"]
    late.mark_caught_up()
    assert readiness.ready


def test_the_process_says_once_when_it_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    readiness = Readiness()
    one, two = readiness.component("one"), readiness.component("two")
    with caplog.at_level(logging.INFO, logger="services.readiness"):
        one.mark_caught_up()
        assert not caplog.records
        two.mark_caught_up()
        two.mark_caught_up()
    assert [r.getMessage() for r in caplog.records] == ["ready: caught up with the log (one, two)"]


async def test_wait_returns_once_the_last_component_has_caught_up() -> None:
    readiness = Readiness()
    await readiness.wait()  # nothing to wait for
    one, two = readiness.component("one"), readiness.component("two")
    waiting = asyncio.create_task(readiness.wait())
    one.mark_caught_up()
    await asyncio.sleep(0)
    assert not waiting.done()
    two.mark_caught_up()
    async with asyncio.timeout(5):  # a hang guard
        await waiting
