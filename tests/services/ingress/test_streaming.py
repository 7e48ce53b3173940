"""What asks for a stream: an `Accept` naming `text/event-stream` (not with q=0), and
`schedulingTask`'s `stream=true`."""

from __future__ import annotations

import pytest

from services.ingress.errors import BadRequest
from services.ingress.streaming import stream_requested, wants_stream


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ([], False),
        (["*/*"], False),
        (["application/json"], False),
        (["text/event-stream"], True),
        (["Text/Event-Stream"], True),
        (["application/json, text/event-stream;q=0.5"], True),
        (["application/json", "text/event-stream"], True),
        (["text/event-stream;q=0"], False),
        (["text/event-stream; q=0.0"], False),
        (["text/event-streaming"], False),
    ],
)
def test_accept(accept: list[str], wanted: bool) -> None:
    assert wants_stream(accept) is wanted


@pytest.mark.parametrize(("query", "wanted"), [({}, False), ({"stream": "false"}, False),
                                               ({"stream": "true"}, True)])  # fmt: skip
def test_stream_parameter(query: dict[str, str], wanted: bool) -> None:
    assert stream_requested(query) is wanted


@pytest.mark.parametrize("raw", ["", "1", "True", "yes"])
def test_a_bad_stream_parameter_is_a_400_naming_it(raw: str) -> None:
    with pytest.raises(BadRequest) as refused:
        stream_requested({"stream": raw})
    assert refused.value.field == "stream"
