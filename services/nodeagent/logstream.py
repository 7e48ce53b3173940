"""A deployment's log as its proxy serves it to the control plane (`callsign.LOGS_PATH`,
signed with the deployment's log key): the last lines of `<log dir>/<id>.log`, then, when
asked to follow, the lines appended to it, until the caller hangs up or `max_s` passes.

The answer is NDJSON, one `{"line": "..."}` per line of the log (decoded leniently, at
most `MAX_LINE_CHARS` characters, longer ones cut and marked). Lines are read from the
file the runtime writes and go only to the caller: never to the control plane's event
log."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from services.nodeagent.runtimes.logs import tail_lines

MAX_TAIL_LINES = 1000
MAX_LINE_CHARS = 8192
MAX_FOLLOW_S = 3600.0
POLL_S = 0.25
TRUNCATED = " [truncated]"
_TAIL_WINDOW = 4 << 20
_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class LogQuery:
    """`tail` (0-`MAX_TAIL_LINES`), `follow` (`1`/`true`), `max_s` (follow at most so long,
    up to `MAX_FOLLOW_S`)."""

    tail: int = 100
    follow: bool = False
    max_s: float = MAX_FOLLOW_S

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> LogQuery | None:
        """None when a value is malformed or out of range."""
        try:
            tail = int(query.get("tail", "100"))
            max_s = float(query.get("max_s", str(MAX_FOLLOW_S)))
        except ValueError:
            return None
        follow = query.get("follow", "0").lower() in ("1", "true")
        if not 0 <= tail <= MAX_TAIL_LINES or not 0 < max_s <= MAX_FOLLOW_S:
            return None
        return cls(tail, follow, max_s)


def clip(line: str) -> str:
    """The line, cut to `MAX_LINE_CHARS` (and marked) when longer."""
    if len(line) <= MAX_LINE_CHARS:
        return line
    return line[: MAX_LINE_CHARS - len(TRUNCATED)] + TRUNCATED


class LogFollower:
    """The complete lines appended to `path` after `offset`. A file replaced (rotated:
    another inode) or truncated is read again from its start; a line longer than
    `MAX_LINE_CHARS` is cut as soon as that much of it has arrived."""

    def __init__(self, path: Path, offset: int, inode: int | None) -> None:
        self.path = path
        self.offset = offset
        self.inode = inode
        self._pending = b""
        self._skipping = False  # inside a line already cut

    @classmethod
    def at_end(cls, path: Path) -> LogFollower:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return cls(path, 0, None)
        return cls(path, stat.st_size, stat.st_ino)

    def read_new(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                stat = os.fstat(f.fileno())
                if stat.st_ino != self.inode or stat.st_size < self.offset:
                    self.inode, self.offset, self._pending = stat.st_ino, 0, b""
                f.seek(self.offset)
                data = f.read(_READ_CHUNK)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        return self._split(data)

    def _split(self, data: bytes) -> list[str]:
        lines: list[str] = []
        *complete, self._pending = (self._pending + data).split(b"\n")
        for raw in complete:
            if not self._skipping:
                lines.append(clip(raw.decode("utf-8", "replace").rstrip("\r")))
            self._skipping = False
        if len(self._pending) > MAX_LINE_CHARS * 4:  # UTF-8: at most 4 bytes a character
            if not self._skipping:
                lines.append(clip(self._pending.decode("utf-8", "replace")))
            self._pending, self._skipping = b"", True
        return lines


def start(path: Path | None, tail: int) -> tuple[tuple[str, ...], LogFollower | None]:
    """The last `tail` lines and a follower from the end they were read at. Blocking."""
    if path is None:
        return (), None
    follower = LogFollower.at_end(path)
    lines = tail_lines(path, tail, _TAIL_WINDOW) if tail else ()
    return tuple(clip(line) for line in lines), follower


async def serve_log(request: web.Request, path: Path | None) -> web.StreamResponse:
    """Answer a verified log read (`LogQuery` from the query string; 400 when
    malformed)."""
    query = LogQuery.parse(request.query)
    if query is None:
        return web.Response(status=400, text="bad tail, follow or max_s\n")
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    lines, follower = await asyncio.to_thread(start, path, query.tail)
    await _write(response, lines)
    if query.follow and follower is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query.max_s
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            await _write(response, follower.read_new())
    await response.write_eof()
    return response


async def _write(response: web.StreamResponse, lines: tuple[str, ...] | list[str]) -> None:
    if lines:
        await response.write(b"".join(orjson.dumps({"line": line}) + b"\n" for line in lines))
