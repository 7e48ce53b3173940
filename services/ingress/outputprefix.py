"""What a reader of a task's streamed output has passed on, so that at the task's end it
can complete it from the recorded body: chunks may be missed (a slow reader, a gap on the
output topic, chunks arriving after the end on Kafka), the recorded body never is."""

from __future__ import annotations

import base64
import hashlib

from services.ingress.taskview import TaskStatus
from services.output import OutputChunk


def recorded_body(status: TaskStatus) -> bytes:
    """The response body a task's status holds, as bytes."""
    if status.body_encoding == "base64":
        return base64.b64decode(status.body)
    return status.body.encode()


class OutputPrefix:
    """The bytes passed on of one attempt's output, in order from its first chunk."""

    def __init__(self) -> None:
        self.attempt = 0
        self.next_seq = 0
        self.sent = 0
        self.in_order = True
        self._digest = hashlib.sha256()

    @property
    def started(self) -> bool:
        return self.attempt != 0

    def take(self, chunk: OutputChunk) -> bool:
        """Whether `chunk` continues the output in order (the first chunk of an attempt
        when nothing was taken yet); if so it counts as passed on. A gap (or another
        attempt's chunk) ends the order for good: the end fills what follows."""
        if not self.started and chunk.seq == 0:
            self.attempt = chunk.attempt
        if not self.in_order or chunk.attempt != self.attempt or chunk.seq != self.next_seq:
            if self.started and (chunk.attempt != self.attempt or chunk.seq > self.next_seq):
                self.in_order = False
            return False
        self._digest.update(chunk.data)
        self.sent += len(chunk.data)
        self.next_seq += 1
        return True

    def rest(self, ended: TaskStatus) -> bytes:
        """What the recorded body of the completed task `ended` holds beyond the bytes
        passed on, when they are its prefix (else nothing: the output went elsewhere)."""
        if not self.started or ended.phase != "completed":
            return b""
        body = recorded_body(ended)
        if hashlib.sha256(body[: self.sent]).digest() != self._digest.digest():
            return b""
        return body[self.sent :]
