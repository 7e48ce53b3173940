"""One chunk of a task's streamed output, and its record on the output topic."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson


class ChunkDecodeError(ValueError):
    """A record of the output topic that is not a chunk."""


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes `data` of attempt `attempt` of task `task_id`, the `seq`-th (from 0) the
    dispatcher read from the container's response; the first carries the response's
    `content_type`."""

    task_id: str
    attempt: int
    seq: int
    data: bytes
    content_type: str = ""


def encode_chunk(chunk: OutputChunk) -> bytes:
    """`{"task_id", "attempt", "seq", "content_type", "data": base64}` as JSON."""
    return orjson.dumps({
        "task_id": chunk.task_id, "attempt": chunk.attempt, "seq": chunk.seq,
        "content_type": chunk.content_type, "data": base64.b64encode(chunk.data).decode(),
    })  # fmt: skip


def decode_chunk(value: bytes) -> OutputChunk:
    """The chunk `encode_chunk` made; `ChunkDecodeError` for anything else."""
    try:
        fields = orjson.loads(value)
        return OutputChunk(
            task_id=str(fields["task_id"]), attempt=int(fields["attempt"]),
            seq=int(fields["seq"]), data=base64.b64decode(fields["data"], validate=True),
            content_type=str(fields.get("content_type", "")),
        )  # fmt: skip
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ChunkDecodeError(f"not an output chunk: {exc}") from exc
