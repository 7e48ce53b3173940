"""Where the dispatcher hands a streamed response's chunks."""

from __future__ import annotations

from typing import Protocol

from services.output.chunks import OutputChunk


class OutputSink(Protocol):
    def emit(self, chunk: OutputChunk) -> None:
        """Pass `chunk` on, in order after the chunks emitted before it; never blocks nor
        raises (output is best effort: whoever reads it falls back on the recorded body)."""
        ...
