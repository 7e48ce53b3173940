"""A stream's reader completes its output from the recorded body at the end: only what
follows the bytes it passed on in order, and only when they are the body's prefix."""

from __future__ import annotations

import base64

import pytest

from services.ingress.outputprefix import OutputPrefix
from services.ingress.taskview import TaskStatus
from services.output import OutputChunk

BODY = b"data: 1\n\ndata: 2\n\ndata: 3\n\n"


def _done(body: bytes = BODY, phase: str = "completed") -> TaskStatus:
    return TaskStatus("t", "w", phase, 200, base64.b64encode(body).decode(), "base64")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chunks", "taken", "rest"),
    [
        ([], [], b""),  # nothing passed on: nothing to complete
        ([(1, 0, b"data: 1\n\n")], [True], b"data: 2\n\ndata: 3\n\n"),
        ([(1, 0, b"data: 1\n\n"), (1, 1, b"data: 2\n\n")], [True, True], b"data: 3\n\n"),
        ([(1, 0, b"data: 1\n\n"), (1, 0, b"data: 1\n\n")], [True, False], BODY[9:]),  # again
        ([(1, 0, b"data: 1\n\n"), (1, 2, b"data: 3\n\n")], [True, False], BODY[9:]),  # a gap
        ([(1, 1, b"data: 2\n\n")], [False], b""),  # joined midway
        ([(1, 0, b"other\n\n")], [True], b""),  # not the recorded body's prefix
        ([(1, 0, b"data: 1\n\n"), (2, 0, b"data: 1\n\n")], [True, False], BODY[9:]),
    ],
)
def test_the_rest_follows_what_was_passed_on(
    chunks: list[tuple[int, int, bytes]], taken: list[bool], rest: bytes
) -> None:
    prefix = OutputPrefix()
    assert [prefix.take(OutputChunk("t", *chunk)) for chunk in chunks] == taken
    assert prefix.rest(_done()) == rest


def test_a_task_that_did_not_complete_has_no_rest() -> None:
    prefix = OutputPrefix()
    prefix.take(OutputChunk("t", 1, 0, b"data: 1\n\n"))
    assert prefix.rest(_done(phase="failed")) == b""
