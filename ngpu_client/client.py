"""The synchronous client (`Client`); `ngpu_client.aio.AsyncClient` has the same methods,
as coroutines and async iterators. Every method raises the `ngpu_client.errors` class of
an answer that is not a success, and `httpx.HTTPError` when the gateway is not reached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Unpack

import httpx

from ngpu_client import _core
from ngpu_client._core import Bound, Call, Config, RunOptions, SubmitOptions
from ngpu_client.errors import WaitTimeout
from ngpu_client.models import (
    Cancel,
    Node,
    Progress,
    ReplicaLog,
    Submitted,
    TaskHistory,
    TaskInfo,
    TaskPage,
    TaskStatus,
    UsageRow,
    Workspace,
)

ProgressCallback = Callable[[Progress], None]


class Client:
    """A gateway at `base_url`. `workspace_id` is the NGPU API's bearer (run, submit, get,
    wait, list, cancel, detail, history, stream); `admin_token` the management API's
    (workspaces, nodes, usage). `timeout` bounds each request, except a sync call's wait
    for its answer, which the gateway bounds. `verify` is httpx's (a CA file's context)."""

    def __init__(
        self,
        base_url: str,
        *,
        workspace_id: str | None = None,
        admin_token: str | None = None,
        timeout: float = 30.0,
        verify: Any = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = Config(base_url.rstrip("/"), workspace_id, admin_token, timeout)
        self._http = httpx.Client(base_url=self.config.base_url, verify=verify,
                                  transport=transport)  # fmt: skip

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> dict[str, Any]:
        response = self._http.request(
            call.method, call.path, params=call.params, headers=self.config.headers(call),
            json=call.json if call.has_body else None, timeout=self.config.timeout_of(call),
        )  # fmt: skip
        return _core.answer(response)

    # The NGPU API (the workspace's bearer).

    def run(self, path: str, data: Any = None, **options: Unpack[RunOptions]) -> TaskStatus:
        """Call `path` on the container and wait for its answer (`POST /user/{path}`);
        options as `RunOptions` says (with `prefer_wait`, a pending status to `wait()` on
        may come back)."""
        return TaskStatus.from_json(self._send(_core.run_call(path, data, **options)))

    def submit(
        self, param_url: str, data: Any = None, **options: Unpack[SubmitOptions]
    ) -> Submitted:
        """Queue a task for `param_url` on the container (`schedulingTask`); options as
        `SubmitOptions` says."""
        return Submitted.from_json(self._send(_core.submit_call(param_url, data, **options)))

    def get(self, task_id: str) -> TaskStatus:
        """`queryTask`: 100 while queued or running, 200 with `data`; a failed task raises."""
        body = self._send(_core.task_call("GET", "/user/queryTask", task_id))
        return TaskStatus.from_json(body, task_id)

    status = get

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        *,
        poll_initial: float = 0.2,
        poll_max: float = 5.0,
        backoff: float = 1.5,
        on_progress: ProgressCallback | None = None,
    ) -> TaskStatus:
        """Poll `get` until the task ends, pausing `poll_initial` seconds, then `backoff`
        times longer each poll up to `poll_max`; `on_progress` after each poll that finds
        it pending. Answers the 200 status; a failed task raises its error, and
        `WaitTimeout` after `timeout` seconds (the task goes on)."""
        started = time.monotonic()
        for polls, delay in enumerate(_core.delays(poll_initial, poll_max, backoff), 1):
            status = self.get(task_id)
            if status.done:
                return status
            elapsed = time.monotonic() - started
            if on_progress is not None:
                on_progress(Progress(task_id, status.state, elapsed, polls))
            if timeout is not None and elapsed >= timeout:
                raise WaitTimeout(f"task {task_id} has not ended after {timeout}s",
                                  task_id=task_id)  # fmt: skip
            time.sleep(delay if timeout is None else max(0.0, min(delay, timeout - elapsed)))
        raise AssertionError("unreachable")  # pragma: no cover

    def list_page(
        self, start: Bound = None, end: Bound = None, *, limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:  # fmt: skip
        """One page of `queryTaskList` (task ids in submission order)."""
        return TaskPage.from_json(self._send(_core.list_call(start, end, limit, cursor)))

    def list(
        self, start: Bound = None, end: Bound = None, *, page_size: int = 1000
    ) -> Iterator[str]:
        """Every task id of the workspace submitted in [start, end] (a date as `end` is
        inclusive), page after page, in submission order."""
        cursor: str | None = None
        while True:
            page = self.list_page(start, end, limit=page_size, cursor=cursor)
            yield from page.task_ids
            if page.cursor is None:
                return
            cursor = page.cursor

    def cancel(self, task_id: str) -> Cancel:
        """`cancelTask`: `cancelled`, or under way (100); a task that had ended raises
        `Conflict` (its `state`)."""
        body = self._send(_core.task_call("POST", "/user/cancelTask", task_id))
        return Cancel.from_json(body, task_id)

    def detail(self, task_id: str) -> TaskInfo:
        """`getDetailed`: the contract's 20 fields."""
        body = self._send(_core.task_call("GET", "/user/getDetailed", task_id))
        return TaskInfo.from_json(body["taskInfo"])

    def history(self, task_id: str) -> TaskHistory:
        """`GET /v1/tasks/{taskID}`: state, options and events."""
        return TaskHistory.from_json(self._send(Call("GET", f"/v1/tasks/{task_id}", "workspace")))

    def stream(self, path: str, data: Any = None, **options: Unpack[RunOptions]) -> Iterator[bytes]:
        """A sync call with `Accept: text/event-stream`: the container's body, chunk by
        chunk as it produces them (options as `run`). A task that fails before its first
        byte raises its error."""
        call = _core.run_call(path, data, stream=True, **options)
        with self._http.stream(call.method, call.path, params=call.params, json=call.json,
                               headers=self.config.headers(call),
                               timeout=self.config.timeout_of(call)) as response:  # fmt: skip
            if response.status_code != 200:
                response.read()
                _core.answer(response)  # raises the failure's error
                raise WaitTimeout("no output within prefer_wait; the task goes on",
                                  task_id=response.headers.get(_core.TASK_ID_HEADER))  # fmt: skip
            yield from response.iter_bytes()

    # The management API (the admin token).

    def create_workspace(self, spec: Mapping[str, Any]) -> Workspace:
        """Register a workspace; the answer carries its `webhook_secret`, shown this once."""
        return Workspace.from_json(self._send(_core.admin("POST", "/v1/workspaces", dict(spec))))

    def get_workspace(self, workspace_id: str) -> Workspace:
        return Workspace.from_json(self._send(_core.admin("GET", f"/v1/workspaces/{workspace_id}")))

    def list_workspaces(
        self, *, name: str = "", name_prefix: str = "", page_size: int = 100
    ) -> Iterator[Workspace]:
        """Every workspace (or those of `name`, or starting with `name_prefix`), page
        after page, in name order."""
        cursor = ""
        while True:
            call = _core.admin("GET", "/v1/workspaces", limit=page_size, cursor=cursor or None,
                               name=name or None, name_prefix=name_prefix or None)  # fmt: skip
            page = self._send(call)
            yield from (Workspace.from_json(w) for w in page["workspaces"])
            cursor = page.get("cursor") or ""
            if not cursor:
                return

    def update_workspace(self, workspace_id: str, changes: Mapping[str, Any]) -> Workspace:
        """`PATCH`: settings, or what the replicas run (a new revision, rolled out)."""
        call = _core.admin("PATCH", f"/v1/workspaces/{workspace_id}", dict(changes))
        return Workspace.from_json(self._send(call))

    def delete_workspace(self, workspace_id: str) -> None:
        self._send(_core.admin("DELETE", f"/v1/workspaces/{workspace_id}"))

    def rotate_webhook_secret(self, workspace_id: str) -> str:
        """A new webhook secret (the old one signs nothing from now on)."""
        call = _core.admin("POST", f"/v1/workspaces/{workspace_id}/webhook-secret")
        return str(self._send(call)["webhook_secret"])

    def workspace_logs(self, workspace_id: str, tail: int = 100) -> tuple[ReplicaLog, ...]:
        """The last `tail` lines of each replica not stopped."""
        body = self._send(_core.admin("GET", f"/v1/workspaces/{workspace_id}/logs", tail=tail))
        return tuple(ReplicaLog.from_json(r) for r in body["replicas"])

    def list_nodes(self) -> tuple[Node, ...]:
        return tuple(
            Node.from_json(n) for n in self._send(_core.admin("GET", "/v1/nodes"))["nodes"]
        )

    def drain_node(self, node_id: str) -> Node:
        return Node.from_json(self._send(_core.admin("POST", f"/v1/nodes/{node_id}/drain")))

    def revoke_node(self, node_id: str) -> None:
        self._send(_core.admin("DELETE", f"/v1/nodes/{node_id}"))

    def usage(
        self, group_by: str = "workspace", start: Bound = None, end: Bound = None,
        workspace_id: str | None = None,
    ) -> tuple[UsageRow, ...]:  # fmt: skip
        """Completed tasks and GPU seconds per key (workspace, node, gpu_type, day, revision)."""
        call = _core.admin("GET", "/v1/analytics/usage", group_by=group_by,
                           workspace_id=workspace_id, **{"from": _core.bound(start),
                                                         "to": _core.bound(end)})  # fmt: skip
        return tuple(UsageRow.from_json(r) for r in self._send(call)["rows"])
