"""The sample app's HTTP server, on the standard library so that it starts in about 50 ms
(uvicorn alone doubles that): a threaded server, one thread per connection, HTTP/1.1
keep-alive. Routes are listed in `services.sampleapp.__doc__`."""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from services.sampleapp.logic import NotJson, TaskStore, img2img

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_SLEEP_MS = 600_000
LINGER_S = 2.0
LINGER_BYTES = 4 * MAX_BODY_BYTES
WHOAMI_ENV = ("PORT", "NGPU_DEPLOYMENT_ID", "NGPU_NODE_ID", "NGPU_BIND_HOST")
HOLDS_KEPT = 10_000
HOLD_POLL_S = 0.02
MAX_EVENTS = 10_000
GATE_WAIT_S = 60.0


class HttpError(Exception):
    """Answer this status with a JSON `msg`, then go on with the next request."""

    def __init__(self, status: HTTPStatus, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


class SampleServer(ThreadingHTTPServer):
    """The listening server; holds the state shared by request threads."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 refuses bursts of concurrent test clients

    def __init__(self, address: tuple[str, int], *, quiet: bool = False) -> None:
        super().__init__(address, SampleHandler)
        self.tasks = TaskStore()
        self.quiet = quiet
        self.calls: Counter[str] = Counter()  # requests per X-NGPU-Task-ID
        self.calls_lock = threading.Lock()
        # `/hold` calls by X-NGPU-Task-ID: "holding", then "closed" or "answered".
        self.holds: OrderedDict[str, str] = OrderedDict()
        # `/stream` gates by name, opened by `/gates?open=`.
        self.gates: OrderedDict[str, threading.Event] = OrderedDict()

    def gate(self, name: str) -> threading.Event:
        with self.calls_lock:
            gate = self.gates.setdefault(name, threading.Event())
            while len(self.gates) > HOLDS_KEPT:
                self.gates.popitem(last=False)
            return gate

    def count_call(self, task_id: str) -> None:
        with self.calls_lock:
            self.calls[task_id] += 1

    def hold_state(self, task_id: str, state: str) -> None:
        with self.calls_lock:
            self.holds[task_id] = state
            self.holds.move_to_end(task_id)
            while len(self.holds) > HOLDS_KEPT:
                self.holds.popitem(last=False)


class SampleHandler(BaseHTTPRequestHandler):
    """Routes one request; every answer carries a Content-Length so connections persist."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK (about 40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: SampleServer
    _body_read = False
    """Whether the current request's body was read (or refused and the connection closed)."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def handle_expect_100(self) -> bool:
        # Refuse an announced oversized body before the client sends it.
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            self._send_json({"result_code": status.value, "msg": _too_large(int(length))}, status)
            self._linger()
            return False
        return super().handle_expect_100()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")
            sys.stderr.flush()

    def _handle(self, method: str) -> None:
        task_id = self.headers.get("X-NGPU-Task-ID")
        if task_id:
            self.server.count_call(task_id)
        # The contract's `&` form (`/img2img&taskID=…`) is a query glued to the path.
        url = urlsplit(self.path)
        path, _, glued = url.path.partition("&")
        query = {k: v[-1] for k, v in parse_qs("&".join(filter(None, (glued, url.query)))).items()}
        self._body_read = False
        try:
            self._route(method, path, query)
        except HttpError as exc:
            if not self._body_read and self._has_body():
                # Left on the connection, the body would be read as the next request.
                self.close_connection = True
            self._send_json({"result_code": exc.status.value, "msg": exc.msg}, exc.status)
            if self.close_connection:
                self._linger()

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        routes: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "/health"): lambda: self._send_json({"ok": True}),
            ("POST", "/img2img"): lambda: self._send_json(self._img2img()),
            ("POST", "/sdapi/v1/img2img"): lambda: self._sdapi_img2img(),
            ("GET", "/img2img"): lambda: self._get_task(query.get("taskID", "")),
            ("POST", "/tasks"): lambda: self._post_task(query),
            ("POST", "/sleep"): lambda: self._sleep(query),
            ("POST", "/hold"): lambda: self._hold(query),
            ("GET", "/holds"): lambda: self._holds(),
            ("POST", "/holds"): lambda: self._holds(),
            ("POST", "/echo"): lambda: self._echo(),
            ("POST", "/headers"): lambda: self._headers(),
            ("POST", "/stream"): lambda: self._stream(query),
            ("POST", "/gates"): lambda: self._open_gate(query),
            ("GET", "/whoami"): lambda: self._send_json(_whoami(self.server)),
            ("GET", "/calls"): lambda: self._calls(),
            ("POST", "/calls"): lambda: self._calls(),
            ("POST", "/fail"): lambda: self._fail(query),
            ("POST", "/exit"): lambda: os._exit(_int(query, "code", 1, 0, 255)),
        }
        handler = routes.get((method, path))
        if handler is not None:
            handler()
        elif method == "GET" and path.startswith("/tasks/"):
            self._get_task(path.removeprefix("/tasks/"))
        elif any(route_path == path for _, route_path in routes):
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no route {method} {path}")

    def _img2img(self) -> dict[str, Any]:
        body = self._read_body()
        try:
            return img2img(
                body,
                task_id=self.headers.get("X-NGPU-Task-ID"),
                attempt=self.headers.get("X-NGPU-Attempt"),
                node=os.environ.get("NGPU_NODE_ID"),
            )
        except NotJson as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from exc

    def _sdapi_img2img(self) -> None:
        result = self._img2img()
        # The original asynchronous API answers a taskID that can be polled later.
        self._send_json({**result, "taskID": self.server.tasks.add(result)})

    def _post_task(self, query: dict[str, str]) -> None:
        result = self._img2img()
        delay_s = _int(query, "delay_ms", 0, 0, MAX_SLEEP_MS) / 1000
        task_id = self.server.tasks.add(result, delay_s)
        self._send_json({"result_code": 100, "msg": "SUCCESS! Task queued", "taskID": task_id})

    def _get_task(self, task_id: str) -> None:
        described = self.server.tasks.describe(task_id)
        if described is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no task {task_id!r}")
        self._send_json(described)

    def _sleep(self, query: dict[str, str]) -> None:
        """Sleep `ms` milliseconds: from the query, else from a JSON body `{"ms": N}` (so
        a sync call, whose path carries no query, can ask for it too)."""
        body = self._read_body()
        if "ms" not in query:
            with contextlib.suppress(ValueError, AttributeError):
                query = {"ms": str(json.loads(body or b"{}").get("ms", 0))}
        ms = _int(query, "ms", 0, 0, MAX_SLEEP_MS)
        time.sleep(ms / 1000)
        self._send_json({"slept_ms": ms, "task_id": self.headers.get("X-NGPU-Task-ID")})

    def _hold(self, query: dict[str, str]) -> None:
        """Like `/sleep`, watching the connection meanwhile: a caller that closes it
        ends the hold at once, unanswered, and is recorded as "closed" (`/holds`)."""
        body = self._read_body()
        if "ms" not in query:
            with contextlib.suppress(ValueError, AttributeError):
                query = {"ms": str(json.loads(body or b"{}").get("ms", 0))}
        ms = _int(query, "ms", 0, 0, MAX_SLEEP_MS)
        task_id = self.headers.get("X-NGPU-Task-ID") or ""
        self.server.hold_state(task_id, "holding")
        deadline = time.monotonic() + ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            if _closed_by_peer(self.connection, min(left, HOLD_POLL_S)):
                self.server.hold_state(task_id, "closed")
                self.close_connection = True
                return
        self.server.hold_state(task_id, "answered")
        self._send_json({"held_ms": ms, "task_id": task_id or None})

    def _stream(self, query: dict[str, str]) -> None:
        """`n` server-sent events `gap_ms` apart, each written (a chunk) as it is made;
        with `gate`, the events after the first wait for that gate to open, and with
        `start_gate`, the first one too (the headers go out at once)."""
        body = self._read_body()
        with contextlib.suppress(ValueError, AttributeError):
            given = json.loads(body or b"{}")
            query = {**{k: str(v) for k, v in given.items()}, **query}
        n = _int(query, "n", 3, 1, MAX_EVENTS)
        gap_s = _int(query, "gap_ms", 0, 0, MAX_SLEEP_MS) / 1000
        gate = self.server.gate(query["gate"]) if query.get("gate") else None
        start = self.server.gate(query["start_gate"]) if query.get("start_gate") else None
        task_id = self.headers.get("X-NGPU-Task-ID")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(n):
            if i == 0 and start is not None:
                start.wait(GATE_WAIT_S)
            if i == 1 and gate is not None:
                gate.wait(GATE_WAIT_S)
            elif i and gap_s:
                time.sleep(gap_s)
            event = b"data: " + json.dumps({"i": i, "task_id": task_id}).encode() + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _open_gate(self, query: dict[str, str]) -> None:
        self._read_body()
        self.server.gate(query.get("open", "")).set()
        self._send_json({"opened": query.get("open", "")})

    def _holds(self) -> None:
        self._read_body()
        with self.server.calls_lock:
            holds = dict(self.server.holds)
        self._send_json({"holds": holds})

    def _calls(self) -> None:
        self._read_body()  # left unread, a body would be taken for the next request
        self._send_json(_call_counts(self.server))

    def _echo(self) -> None:
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        self._send(HTTPStatus.OK, body, content_type)

    def _headers(self) -> None:
        self._read_body()
        self._send_json({"headers": {k.lower(): v for k, v in self.headers.items()}})

    def _fail(self, query: dict[str, str]) -> None:
        self._read_body()
        status = HTTPStatus(_int(query, "status", 500, 400, 599))
        raise HttpError(status, f"failing on purpose with {status.value}")

    def _has_body(self) -> bool:
        length = self.headers.get("Content-Length", "0").strip()
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return chunked or length not in ("", "0")

    def _read_body(self) -> bytes:
        """The request body, at most `MAX_BODY_BYTES` (413 beyond, without reading it)."""
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as exc:
            raise self._fatal(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from exc
        if length > MAX_BODY_BYTES:
            raise self._fatal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(length))
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise self._fatal(HTTPStatus.BAD_REQUEST, "malformed chunk size") from exc
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise self._fatal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(total))
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _fatal(self, status: HTTPStatus, msg: str) -> HttpError:
        # The unread body makes the connection unusable: answer, then close it.
        self.close_connection = True
        return HttpError(status, msg)

    def _linger(self) -> None:
        """Drain what the client still sends (bounded) before closing, so that it reads
        our answer rather than a connection reset while it is still writing the body."""
        deadline = time.monotonic() + LINGER_S
        drained = 0
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                data = self.connection.recv(65536)
                if not data:
                    break
                drained += len(data)

    def _send_json(self, document: dict[str, Any], status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer in {low}..{high}")
    return int(text)


def _closed_by_peer(connection: socket.socket, wait_s: float) -> bool:
    """Whether the peer closed `connection`, waiting up to `wait_s` for it to say so. A
    pipelined request waiting to be read is not a close (the wait is then slept out)."""
    readable, _, _ = select.select([connection], [], [], wait_s)
    if not readable:
        return False
    try:
        if connection.recv(1, socket.MSG_PEEK) == b"":
            return True
    except OSError:  # reset by the peer
        return True
    time.sleep(wait_s)
    return False


def _too_large(size: int) -> str:
    return f"body of {size} bytes is over the limit of {MAX_BODY_BYTES}"


def _call_counts(server: SampleServer) -> dict[str, Any]:
    with server.calls_lock:
        return {"calls": dict(server.calls)}


def _whoami(server: SampleServer) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k in WHOAMI_ENV or k.startswith("NGPU_PORT_")}
    return {
        "node": os.environ.get("NGPU_NODE_ID"),
        "pid": os.getpid(),
        "port": server.server_address[1],
        "env": env,
    }
