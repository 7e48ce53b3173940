"""Streamed container output: the chunks of a task's response as its container produces
them, from the dispatcher to the ingress waiting for them. Not history: chunks are never
folded nor archived (the whole body is in `TaskCompleted`), and a chunk nobody waits for
is dropped. Embedded: the dispatcher emits into the ingress's `OutputHub` in the same
process (`services.ingress.outputhub`). Kafka: `TopicSink` publishes them on the output
topic (`services.bus.topology.OUTPUT`), and each ingress's `OutputFollower` routes that
topic into its own hub."""

from services.output.chunks import ChunkDecodeError, OutputChunk, decode_chunk, encode_chunk
from services.output.sink import OutputSink
from services.output.topic import OutputFollower, TopicSink

__all__ = [
    "ChunkDecodeError",
    "OutputChunk",
    "OutputFollower",
    "OutputSink",
    "TopicSink",
    "decode_chunk",
    "encode_chunk",
]
