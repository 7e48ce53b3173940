"""What the managing commands (`ngpu workspaces|nodes|tasks`) share: where the gateway is
and the bearers (a flag, else the environment, else the config file), an SDK client,
errors turned into a message and an exit code, and output as rich tables or `--json`.

The config file is `$XDG_CONFIG_HOME/ngpu/config.toml` (`~/.config/ngpu/config.toml`
when unset), with any of `url`, `admin_token`, `workspace_id`."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from ngpu_client import Client, MissingBearer, NgpuError

DEFAULT_URL = "http://127.0.0.1:8000"
out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped: 80 columns would fold the ids in the tables
    out.width = max(out.width, 200)

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="NGPU_URL", show_envvar=True,
                 help=f"The gateway's URL (else the config file, else {DEFAULT_URL})."),
]  # fmt: skip
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="NGPU_ADMIN_TOKEN", show_envvar=True,
                 help="The admin token (else the config file's admin_token)."),
]  # fmt: skip
WorkspaceId = Annotated[
    str | None,
    typer.Option("--workspace", envvar="NGPU_WORKSPACE_ID", show_envvar=True,
                 help="The Workspace ID, the NGPU API's bearer (else the config file's "
                 "workspace_id)."),
]  # fmt: skip
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ngpu" / "config.toml"


def config_file() -> dict[str, Any]:
    """The config file's values (none when it does not exist; exit 2 when it is not TOML)."""
    path = config_path()
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        err.print(f"ngpu: cannot read {path}: {exc}")
        raise typer.Exit(2) from exc


def client(url: str | None, *, token: str | None = None, workspace: str | None = None) -> Client:
    """A client of the gateway: each value from its flag or variable, else the config file."""
    config = config_file()
    return Client(
        url or str(config.get("url") or DEFAULT_URL),
        admin_token=token or config.get("admin_token"),
        workspace_id=workspace or config.get("workspace_id"),
    )


@contextmanager
def calling(gateway: Client) -> Iterator[Client]:
    """Run SDK calls: an error answer exits 1 with its code and message, an unreachable
    gateway exits 1, a missing bearer exits 2."""
    try:
        with gateway:
            yield gateway
    except NgpuError as exc:
        field = f" ({exc.field})" if exc.field else ""
        task = f" [task {exc.task_id}]" if exc.task_id else ""
        err.print(f"ngpu: {exc.result_code} {exc.msg}{field}{task}", markup=False)
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        err.print(f"ngpu: cannot reach {gateway.config.base_url}: {exc}", markup=False)
        raise typer.Exit(1) from exc
    except MissingBearer as exc:
        err.print(f"ngpu: {exc}: give --token/--workspace, the environment or "
                  f"{config_path()}", markup=False)  # fmt: skip
        raise typer.Exit(2) from exc


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    shown = Table(title=title, title_justify="left")
    for n, column in enumerate(columns):  # ids whole; the last column takes what is left
        last = n == len(columns) - 1
        shown.add_column(column, no_wrap=not last, overflow="fold" if last else "ellipsis")
    for row in rows:
        shown.add_row(*(str(v) for v in row))
    out.print(shown)


def fields(title: str, values: dict[str, Any]) -> None:
    """One record as a two-column table."""
    rows = [(k, json.dumps(v) if isinstance(v, dict | list) else v) for k, v in values.items()]
    table(title, ("field", "value"), rows)
