"""Output chunks on the output topic: what `encode_chunk` writes `decode_chunk` reads back,
bytes for bytes; anything else is a `ChunkDecodeError`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bus.topology import OUTPUT, OUTPUT_RETENTION_MS, spec_for
from services.output import ChunkDecodeError, OutputChunk, decode_chunk, encode_chunk


@given(st.text(min_size=1, max_size=40), st.integers(1, 9), st.integers(0, 10**6),
       st.binary(max_size=512), st.sampled_from(["", "text/event-stream"]))  # fmt: skip
def test_a_chunk_survives_its_record(
    task_id: str, attempt: int, seq: int, data: bytes, content_type: str
) -> None:
    chunk = OutputChunk(task_id, attempt, seq, data, content_type)
    assert decode_chunk(encode_chunk(chunk)) == chunk


@pytest.mark.parametrize(
    "value",
    [b"", b"{", b"[]", b'{"task_id": "t"}', b'{"task_id": "t", "attempt": 1, "seq": 0, '
     b'"data": "!!"}', b'{"task_id": "t", "attempt": "x", "seq": 0, "data": ""}'],
)  # fmt: skip
def test_what_is_not_a_chunk_is_refused(value: bytes) -> None:
    with pytest.raises(ChunkDecodeError):
        decode_chunk(value)


def test_the_output_topic_is_kept_an_hour_keyed_by_task() -> None:
    spec = spec_for(OUTPUT)
    assert (spec.key_field, spec.retention_ms, spec.cleanup_policy) == (
        "task_id", OUTPUT_RETENTION_MS, "delete")  # fmt: skip
    assert OUTPUT_RETENTION_MS == 3_600_000
