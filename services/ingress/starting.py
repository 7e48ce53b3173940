"""While the ingress's directory catches up with the log, its server already answers: the
probes (`/healthz`, `/readyz`), the API docs and the BRC-20 check as usual, every other
route 503, since each needs the directory (workspaces, their tokens, nodes) whole to
answer right."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

STARTING = "the gateway is starting: catching up with the log; try again shortly"
PROBES = ("/healthz", "/readyz")
# /metrics reads the directory as it stands (it needs no workspace, nor a whole one).
_OPEN = frozenset(
    (*PROBES, "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
)


def needs_directory(path: str) -> bool:
    """Whether the route at `path` reads the directory: all but the probes, the API docs
    and the BRC-20 check (which takes no bearer)."""
    return path not in _OPEN and not path.startswith("/brc20/")


class StartingGate:
    """Answers 503 to the paths that `need_directory` until `started()` is true (checked
    per request until it first is; after that, nothing)."""

    def __init__(
        self,
        app: ASGIApp,
        started: Callable[[], bool],
        contract_path: Callable[[str], bool] = lambda path: False,
        need_directory: Callable[[str], bool] = needs_directory,
    ) -> None:
        self.app = app
        self.started = started
        self.contract_path = contract_path
        self.need_directory = need_directory
        self._open = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._open or scope["type"] != "http" or not self.need_directory(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.started():
            self._open = True
            await self.app(scope, receive, send)
            return
        await _refuse(send, self.contract_path(scope["path"]))


async def _refuse(send: Send, contract: bool) -> None:
    doc: dict[str, object] = (
        {"result_code": 503, "msg": STARTING}
        if contract
        else {"error": {"code": "starting", "message": STARTING, "field": None}}
    )
    body = orjson.dumps(doc)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
