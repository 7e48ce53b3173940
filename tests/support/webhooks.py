"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 (in a thread, so sync and
async tests alike can use it) that verifies each delivery's signature with the
`standardwebhooks` library, as a customer's receiver would, and answers as scripted."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got: its path, headers (lower-case names), body, whether
    its signature verified under the secret then in force, and the parsed payload."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any
    status: int

    @property
    def type(self) -> str:
        return str(self.payload["type"]) if isinstance(self.payload, dict) else ""


@dataclass
class Receiver:
    """`answers`: per path, the statuses of its next requests (then 200). `redirect`: a
    path answered 302 to `/elsewhere`."""

    secret: str = ""
    answers: dict[str, list[int]] = field(default_factory=dict)
    redirect: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    """Paths answered 500 for as long as they are listed."""
    deliveries: list[Delivery] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._record(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _record(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = handler.path
        with self._lock:
            verified, payload = self.verify(body, headers)
            scripted = self.answers.get(path)
            if path in self.redirect:
                status = 302
            elif path in self.failing:
                status = 500
            elif scripted:
                status = scripted.pop(0)
            else:
                status = 200
            self.deliveries.append(Delivery(path, headers, body, verified, payload, status))
        handler.send_response(status)
        if status == 302:
            handler.send_header("Location", "/elsewhere")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    def verify(self, body: bytes, headers: dict[str, str]) -> tuple[bool, Any]:
        """Whether `body` is signed under `secret` (as the library checks it), and its JSON."""
        try:
            return True, Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            try:
                return False, json.loads(body)
            except ValueError:
                return False, None

    def at(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def wait(
        self, what: Callable[[list[Delivery]], bool], path: str = "/hook", timeout_s: float = 60
    ) -> list[Delivery]:
        """Wait until `what` holds of the deliveries at `path` (a hang guard)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.at(path)
            if what(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for deliveries at {path}: {self.at(path)}")
