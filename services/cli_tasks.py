"""`ngpu tasks …`: the NGPU API through the SDK (the Workspace ID as bearer): submit,
get, list, cancel, wait (a rich spinner on stderr) and watch (the task's history, live),
as rich tables or `--json`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from ngpu_client import Client, Progress, TaskHistory, TaskStatus
from services.cli_connect import AsJson, Url, WorkspaceId, calling, client, err, fields
from services.cli_connect import print_json as show_json

tasks_app = typer.Typer(help="Submit and follow tasks (Workspace ID).", no_args_is_help=True)

Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Give up waiting after this many seconds.")
]


def read_data(raw: str | None) -> Any:
    """`--data`: JSON when it parses (`{"prompt": "x"}`), else the text; `@FILE` reads a
    file the same way."""
    if raw is None:
        return None
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _status(status: TaskStatus) -> dict[str, Any]:
    return {"taskID": status.task_id, "result_code": status.result_code, "msg": status.msg,
            "state": status.state, "data": status.data}  # fmt: skip


def _show_status(status: TaskStatus, as_json: bool) -> None:
    if as_json:
        show_json(_status(status))
    else:
        fields(f"task {status.task_id}", _status(status))


def _wait(gateway: Client, task_id: str, timeout: float | None) -> TaskStatus:
    with err.status(f"task {task_id}: waiting") as spinner:

        def progress(update: Progress) -> None:
            spinner.update(f"task {task_id}: {update.state} ({update.elapsed_s:.0f}s)")

        return gateway.wait(task_id, timeout, on_progress=progress)


@tasks_app.command("submit")
def submit(
    param_url: Annotated[str, typer.Argument(help="Path on the container, e.g. img2img.")],
    data: Annotated[str | None, typer.Option(help="JSON or text, or @FILE.")] = None,
    port: Annotated[int | None, typer.Option(help="A declared container port.")] = None,
    priority: Annotated[int | None, typer.Option(help="0-9.")] = None,
    timeout_s: Annotated[float | None, typer.Option(help="Each attempt's call limit.")] = None,
    ttl_s: Annotated[float | None, typer.Option(help="Longest wait for capacity.")] = None,
    webhook: Annotated[str | None, typer.Option(help="URL its events are posted to.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Then wait for its outcome.")] = False,
    timeout: Timeout = None,
    url: Url = None, workspace: WorkspaceId = None, as_json: AsJson = False,
) -> None:  # fmt: skip
    """Queue a task (`schedulingTask`); prints its taskID, or with --wait its outcome."""
    options = {"param_port": port, "priority": priority, "timeout_s": timeout_s,
               "ttl_s": ttl_s, "webhook": webhook, "idempotency_key": idempotency_key}  # fmt: skip
    chosen: Any = {k: v for k, v in options.items() if v is not None}
    with calling(client(url, workspace=workspace)) as gateway:
        task = gateway.submit(param_url, read_data(data), **chosen)
        if wait:
            _show_status(_wait(gateway, task.task_id, timeout), as_json)
        elif as_json:
            show_json({"taskID": task.task_id, "msg": task.msg})
        else:
            typer.echo(task.task_id)


@tasks_app.command("get")
def get(task_id: str, url: Url = None, workspace: WorkspaceId = None, as_json: AsJson = False,
        detail: Annotated[bool, typer.Option("--detail", help="All 20 taskInfo fields.")] = False,
) -> None:  # fmt: skip
    """A task's status (`queryTask`: a failure exits 1), or with --detail its taskInfo."""
    with calling(client(url, workspace=workspace)) as gateway:
        if detail:
            info = gateway.detail(task_id)
            if as_json:
                show_json(info.raw)
            else:
                fields(f"task {task_id}", info.raw)
        else:
            _show_status(gateway.get(task_id), as_json)


@tasks_app.command("list")
def list_tasks(
    start: Annotated[str | None, typer.Option(help="Date or date-time (UTC by default).")] = None,
    end: Annotated[str | None, typer.Option(help="Date (inclusive) or date-time.")] = None,
    page_size: Annotated[int, typer.Option(help="Task ids per request.")] = 1000,
    url: Url = None, workspace: WorkspaceId = None, as_json: AsJson = False,
) -> None:  # fmt: skip
    """The workspace's task ids in submission order, one a line (every page)."""
    with calling(client(url, workspace=workspace)) as gateway:
        ids = list(gateway.list(start, end, page_size=page_size))
    if as_json:
        show_json(ids)
    else:
        for task_id in ids:
            typer.echo(task_id)


@tasks_app.command("cancel")
def cancel(task_id: str, url: Url = None, workspace: WorkspaceId = None,
           as_json: AsJson = False) -> None:  # fmt: skip
    """Cancel a task (a task that had ended exits 1: 409 with its state)."""
    with calling(client(url, workspace=workspace)) as gateway:
        answer = gateway.cancel(task_id)
    if as_json:
        show_json(asdict(answer))
    else:
        typer.echo(f"{task_id}: {'cancelled' if answer.cancelled else answer.msg}")


@tasks_app.command("wait")
def wait(task_id: str, timeout: Timeout = None, url: Url = None,
         workspace: WorkspaceId = None, as_json: AsJson = False) -> None:  # fmt: skip
    """Wait for a task's outcome (polling with backoff); a failure exits 1."""
    with calling(client(url, workspace=workspace)) as gateway:
        _show_status(_wait(gateway, task_id, timeout), as_json)


def _history_table(history: TaskHistory) -> Table:
    shown = Table(title=f"task {history.task_id}: {history.state}", title_justify="left")
    for column in ("at", "event", "details"):
        shown.add_column(column)
    for event in history.events:
        details = " ".join(f"{k}={v}" for k, v in event.fields.items())
        shown.add_row(event.at, event.type, details)
    return shown


_ENDED = frozenset({"completed", "failed", "cancelled", "expired"})


@tasks_app.command("watch")
def watch(task_id: str, timeout: Timeout = None, url: Url = None,
          workspace: WorkspaceId = None, as_json: AsJson = False) -> None:  # fmt: skip
    """Show a task's history live (`/v1/tasks/{taskID}`) until it ends; --json prints the
    final history."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with calling(client(url, workspace=workspace)) as gateway:
        history = gateway.history(task_id)
        with Live(_history_table(history), console=err, transient=as_json) as live:
            while history.state not in _ENDED:
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                history = gateway.history(task_id)
                live.update(_history_table(history))
    if as_json:
        show_json({**asdict(history), "events": [asdict(e) for e in history.events]})
    elif history.state not in _ENDED:
        raise typer.Exit(1)
