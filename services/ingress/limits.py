"""Request body size limits, enforced before the body reaches a route (and so before
anything is published): by `Content-Length` when given, else while the body streams."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Answers 413 for a body over `limit_for(path)` bytes."""

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str], int],
        contract_path: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.contract_path = contract_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        contract = self.contract_path(scope["path"])
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit, contract)
            return
        seen = 0
        refused = started = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client left: it stops reading and
                    # whatever it would have done with the body never happens.
                    refused = True
                    if not started:
                        await _refuse(send, limit, contract)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not refused:
                started = started or message["type"] == "http.response.start"
                await send(message)

        await self.app(scope, counting_receive, guarded_send)


async def _refuse(send: Send, limit: int, contract: bool) -> None:
    message = f"bodies are limited to {limit} bytes"
    doc: dict[str, object] = (
        {"result_code": 413, "msg": f"body: {message}"}
        if contract
        else {"error": {"code": "body_too_large", "message": message, "field": "body"}}
    )
    body = orjson.dumps(doc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
