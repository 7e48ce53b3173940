"""Read limits at the HTTP edge that uvicorn lacks: a deadline for each request's head and
one for its body, and a cap on the head's size.

uvicorn (httptools) closes a connection only when it idles between requests
(`timeout_keep_alive`); a client that opens a connection and trickles its headers a byte
at a time (slowloris) holds it forever, and httptools puts no bound on a head's size. This
protocol is uvicorn's own httptools protocol with three additions:
- the head (request line and headers) must arrive within `header_timeout_s` of the
  connection opening, or, on a kept-alive connection, of the request's first byte;
- the body must arrive within `body_timeout_s` of the head's end;
- a head still incomplete after `max_head_bytes` is answered 431 and the connection closed.
A connection past a deadline is closed (a request whose body stopped arriving sees the
client gone). Nothing is timed while the application runs: a request held open by the
application (a sync call) is bounded by the application, not here."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 31\r\n"
    b"connection: close\r\n\r\n"
    b"Request header fields too large"
)


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head/body deadlines and a head size cap; made
    with its limits by `edge_protocol()`."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_head_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing: a chunk holding a whole head and part of a body is fine.
        too_big = self._in_head and self._head_bytes > self.max_head_bytes
        if too_big and not self.transport.is_closing():
            self._disarm()
            self.transport.write(_431)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on a kept-alive connection
            self._in_head, self._head_bytes = True, 0
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            part = "head" if self._in_head else "body"
            log.debug("closing %s: the request %s did not arrive in time", self.client, part)
            self.transport.close()


def edge_protocol(
    *, header_timeout_s: float, body_timeout_s: float, max_head_bytes: int
) -> type[EdgeProtocol]:
    """An `EdgeProtocol` class with these limits, for `uvicorn.Config(http=...)`."""
    return type(
        "EdgeProtocol",
        (EdgeProtocol,),
        {
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "max_head_bytes": max_head_bytes,
        },
    )
