"""A fake Docker Engine: the few Engine API endpoints the docker runtime uses, served over
real HTTP on 127.0.0.1, where a "container" is a real child process running the image's
command. Publishing is emulated by telling the process to listen on the host port (the
fake has no network namespace): `PORT` and `NGPU_PORT_<p>` are rewritten to host ports."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import struct
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

API = "1.45"
PULLABLE_PREFIX = "ngpu/"  # images a pull can find; any other is "pull access denied"


@dataclass
class FakeContainer:
    id: str
    name: str
    body: dict[str, Any]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    removed: bool = False

    def state(self) -> dict[str, Any]:
        if self.proc is None:
            return {"Status": "created", "ExitCode": 0, "OOMKilled": False}
        code = self.proc.poll()
        if code is None:
            return {"Status": "running", "ExitCode": 0, "OOMKilled": False}
        return {"Status": "exited", "ExitCode": code, "OOMKilled": False}


@dataclass
class FakeEngine:
    """The engine's state, readable by tests: images, containers, and every call."""

    workdir: Path
    cwd: Path
    images: set[str] = field(default_factory=set)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    pull_auths: list[dict[str, Any] | None] = field(default_factory=list)
    """The decoded `X-Registry-Auth` of each pull (None: the pull sent none)."""

    def find(self, ref: str) -> FakeContainer | None:
        for c in self.containers.values():
            if not c.removed and ref in (c.id, c.name):
                return c
        return None

    def kill_all(self) -> None:
        for c in self.containers.values():
            if c.proc is not None and c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"message": f"No such {what}"}, status_code=404)


class EngineApi:
    """The Engine API endpoints, one method each, over a `FakeEngine`."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def routes(self) -> list[Route]:
        prefix = f"/v{API}"
        return [
            Route("/version", self.version),
            Route(f"{prefix}/version", self.version),
            Route(f"{prefix}/_ping", self.ping),
            Route(f"{prefix}/images/create", self.image_pull, methods=["POST"]),
            Route(f"{prefix}/images/{{name:path}}/json", self.image_inspect),
            Route(f"{prefix}/containers/create", self.create, methods=["POST"]),
            Route(f"{prefix}/containers/{{ref}}/json", self.inspect),
            Route(f"{prefix}/containers/{{ref}}/start", self.start, methods=["POST"]),
            Route(f"{prefix}/containers/{{ref}}/stop", self.stop, methods=["POST"]),
            Route(f"{prefix}/containers/{{ref}}/logs", self.logs),
            Route(f"{prefix}/containers/{{ref}}", self.remove, methods=["DELETE"]),
        ]

    def _record(self, request: Request) -> FakeContainer | None:
        self.engine.calls.append(f"{request.method} {request.url.path.removeprefix('/v' + API)}")
        return self.engine.find(request.path_params.get("ref", ""))

    async def version(self, request: Request) -> Response:
        self._record(request)
        return JSONResponse({"ApiVersion": API, "Version": "fake-27.0", "Os": "linux"})

    async def ping(self, request: Request) -> Response:
        self._record(request)
        return PlainTextResponse("OK")

    async def image_inspect(self, request: Request) -> Response:
        self._record(request)
        name = request.path_params["name"]
        return JSONResponse({"Id": name}) if name in self.engine.images else _not_found("image")

    async def image_pull(self, request: Request) -> Response:
        self._record(request)
        header = request.headers.get("X-Registry-Auth")
        self.engine.pull_auths.append(
            json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
            if header else None
        )  # fmt: skip
        image = f"{request.query_params['fromImage']}:{request.query_params.get('tag', 'latest')}"
        if not image.startswith(PULLABLE_PREFIX):
            return JSONResponse({"message": f"pull access denied for {image}"}, status_code=404)
        self.engine.images.add(image)
        return PlainTextResponse(json.dumps({"status": f"Pulled {image}"}) + "\n")

    async def create(self, request: Request) -> Response:
        self._record(request)
        name = request.query_params["name"]
        if self.engine.find(name) is not None:
            return JSONResponse({"message": f"name {name} is in use"}, status_code=409)
        cid = uuid.uuid4().hex
        log = self.engine.workdir / f"{cid}.log"
        self.engine.containers[cid] = FakeContainer(cid, name, await request.json(), log)
        return JSONResponse({"Id": cid, "Warnings": []}, status_code=201)

    async def inspect(self, request: Request) -> Response:
        c = self._record(request)
        if c is None:
            return _not_found("container")
        return JSONResponse(
            {"Id": c.id, "Name": "/" + c.name, "State": c.state(), "Config": c.body}
        )

    async def start(self, request: Request) -> Response:
        c = self._record(request)
        if c is None:
            return _not_found("container")
        c.proc = _spawn(c.body, c.log, self.engine.cwd)
        return Response(status_code=204)

    async def stop(self, request: Request) -> Response:
        c = self._record(request)
        if c is None:
            return _not_found("container")
        await _signal(c, signal.SIGTERM)
        return Response(status_code=204)

    async def logs(self, request: Request) -> Response:
        c = self._record(request)
        if c is None:
            return _not_found("container")
        output = c.log.read_bytes() if c.log.exists() else b""
        # Non-TTY containers answer Docker's multiplexed stream: 8-byte header per frame.
        frame = struct.pack(">BxxxL", 1, len(output)) + output if output else b""
        return Response(frame, media_type="application/vnd.docker.multiplexed-stream")

    async def remove(self, request: Request) -> Response:
        c = self._record(request)
        if c is None:
            return _not_found("container")
        await _signal(c, signal.SIGKILL)
        c.removed = True
        return Response(status_code=204)


async def _signal(container: FakeContainer, signum: int) -> None:
    proc = container.proc
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signum)
        await asyncio.to_thread(proc.wait)


def _spawn(body: dict[str, Any], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(item.split("=", 1) for item in body.get("Env") or [])
    bindings = body.get("HostConfig", {}).get("PortBindings", {})
    host_port = {key.split("/")[0]: b[0]["HostPort"] for key, b in bindings.items()}
    for key, value in list(env.items()):
        if key == "PORT" or key.startswith("NGPU_PORT_"):
            env[key] = host_port.get(value, value)
    env["PATH"] = os.environ.get("PATH", "")
    with log.open("ab") as out:
        return subprocess.Popen(
            body["Cmd"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.asynccontextmanager
async def serve_fake_engine(workdir: Path, cwd: Path, port: int) -> AsyncIterator[FakeEngine]:
    """Serve a fake engine at `tcp://127.0.0.1:<port>` in this event loop."""
    engine = FakeEngine(workdir=workdir, cwd=cwd)
    config = uvicorn.Config(
        Starlette(routes=EngineApi(engine).routes()), host="127.0.0.1", port=port, log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # up to 20 s
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "the fake Docker engine did not start"
        yield engine
    finally:
        server.should_exit = True
        await task
        engine.kill_all()
