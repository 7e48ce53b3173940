"""`ngpu workspaces …` and `ngpu nodes …`: the management API through the SDK (admin
token), as rich tables or `--json`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ngpu_client import Node, Workspace
from services.cli_connect import AsJson, Token, Url, calling, client, err, fields, out, table
from services.cli_connect import print_json as show_json

workspaces_app = typer.Typer(help="Manage workspaces (admin token).", no_args_is_help=True)
nodes_app = typer.Typer(help="Manage nodes (admin token).", no_args_is_help=True)

SpecFile = Annotated[
    Path, typer.Option("-f", "--file", exists=True, dir_okay=False, readable=True,
                       help="The workspace as YAML or JSON (the management API's body).")
]  # fmt: skip
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def read_spec(path: Path) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) mapping; exit 2 for anything else."""
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        err.print(f"ngpu: {path} is not YAML or JSON: {exc}", markup=False)
        raise typer.Exit(2) from exc
    if not isinstance(spec, dict):
        err.print(f"ngpu: {path} must hold a mapping of the workspace's fields", markup=False)
        raise typer.Exit(2)
    return spec


def apply_sets(changes: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """`key=value` (a dotted key reaches into a mapping: `replicas.max=3`; the value read
    as YAML: `3`, `true`, `[8080]`, text) applied onto `changes`."""
    for item in sets:
        key, equals, raw = item.partition("=")
        if not equals or not key:
            err.print(f"ngpu: --set takes KEY=VALUE, not {item!r}", markup=False)
            raise typer.Exit(2)
        *parents, last = key.split(".")
        target = changes
        for name in parents:
            target = target.setdefault(name, {})
        target[last] = yaml.safe_load(raw) if raw else ""
    return changes


def _replicas(ws: Workspace) -> str:
    r = ws.replicas
    return f"{r.get('ready', 0)}/{r.get('wanted', r.get('min', 0))} ({r.get('min')}-{r.get('max')})"


def _show_workspace(ws: Workspace, as_json: bool) -> None:
    if as_json:
        show_json(ws.raw)
        return
    shown = {k: v for k, v in ws.raw.items() if k != "webhook_secret"}
    fields(f"workspace {ws.name}", shown)
    if ws.webhook_secret:
        out.print(f"webhook secret (shown once): {ws.webhook_secret}", markup=False)


@workspaces_app.command("create")
def create(file: SpecFile, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Register a workspace from a YAML or JSON file; prints it with its Workspace ID and
    webhook secret (answered this once)."""
    spec = read_spec(file)
    with calling(client(url, token=token)) as gateway:
        _show_workspace(gateway.create_workspace(spec), as_json)


@workspaces_app.command("list")
def list_workspaces(
    prefix: Annotated[str, typer.Option(help="Only names starting with this.")] = "",
    url: Url = None, token: Token = None, as_json: AsJson = False,
) -> None:  # fmt: skip
    """Every workspace, in name order."""
    with calling(client(url, token=token)) as gateway:
        found = list(gateway.list_workspaces(name_prefix=prefix))
    if as_json:
        show_json([ws.raw for ws in found])
        return
    table("workspaces", ("name", "workspace id", "image", "gpu", "replicas ready/wanted",
                         "revision"),
          [(ws.name, ws.workspace_id, ws.image, f"{ws.gpu_count}x {ws.gpu_type}",
            _replicas(ws), ws.revision) for ws in found])  # fmt: skip


@workspaces_app.command("get")
def get(workspace_id: str, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """One workspace."""
    with calling(client(url, token=token)) as gateway:
        _show_workspace(gateway.get_workspace(workspace_id), as_json)


@workspaces_app.command("update")
def update(
    workspace_id: str,
    file: Annotated[Path | None, typer.Option("-f", "--file", exists=True, dir_okay=False,
                                              help="The changes as YAML or JSON.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE, e.g. "
                                                   "replicas.max=3 (repeatable).")] = None,
    url: Url = None, token: Token = None, as_json: AsJson = False,
) -> None:  # fmt: skip
    """Change settings or what the replicas run (a new revision, rolled out); the fields
    left out keep their values. `replicas`, `gpu` and `scaling` are replaced whole."""
    changes = apply_sets(read_spec(file) if file else {}, set_ or [])
    if not changes:
        err.print("ngpu: nothing to change: give -f FILE or --set KEY=VALUE")
        raise typer.Exit(2)
    with calling(client(url, token=token)) as gateway:
        _show_workspace(gateway.update_workspace(workspace_id, changes), as_json)


@workspaces_app.command("delete")
def delete(workspace_id: str, yes: Yes = False, url: Url = None, token: Token = None) -> None:
    """Delete a workspace: its ID stops working and its replicas stop."""
    if not yes:
        typer.confirm(f"Delete workspace {workspace_id}?", abort=True)
    with calling(client(url, token=token)) as gateway:
        gateway.delete_workspace(workspace_id)
    err.print(f"deleted workspace {workspace_id}", markup=False)


@workspaces_app.command("logs")
def logs(
    workspace_id: str,
    tail: Annotated[int, typer.Option(help="Last lines per replica (0-1000).")] = 100,
    url: Url = None, token: Token = None, as_json: AsJson = False,
) -> None:  # fmt: skip
    """The last lines of output of each replica not stopped, read from its node."""
    with calling(client(url, token=token)) as gateway:
        replicas = gateway.workspace_logs(workspace_id, tail=tail)
    if as_json:
        show_json([{"deployment_id": r.deployment_id, "node_id": r.node_id, "state": r.state,
                    "lines": list(r.lines), "error": r.error} for r in replicas])  # fmt: skip
        return
    for replica in replicas:
        err.print(f"== {replica.deployment_id} on {replica.node_id} ({replica.state})",
                  markup=False)  # fmt: skip
        if replica.error:
            err.print(f"   error: {replica.error}", markup=False)
        for line in replica.lines:
            typer.echo(line)


def _node_state(node: Node) -> str:
    for flag in ("revoked", "lost", "draining"):
        if getattr(node, flag):
            return flag
    return "healthy" if node.healthy else "silent"


def _show_nodes(nodes: tuple[Node, ...], as_json: bool) -> None:
    if as_json:
        show_json([n.raw for n in nodes])
        return
    table("nodes", ("node id", "address", "host", "region", "gpus", "state", "in flight",
                    "replicas"),
          [(n.node_id, n.address, n.host, n.region,
            ", ".join(str(g.get("type", "")) for g in n.gpus), _node_state(n), n.in_flight,
            len(n.deployments)) for n in nodes])  # fmt: skip


@nodes_app.command("list")
def list_nodes(url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """Every node, its GPUs, state and replicas."""
    with calling(client(url, token=token)) as gateway:
        _show_nodes(gateway.list_nodes(), as_json)


@nodes_app.command("drain")
def drain(node_id: str, url: Url = None, token: Token = None, as_json: AsJson = False) -> None:
    """The node takes no new work; what it runs finishes, then its replicas move."""
    with calling(client(url, token=token)) as gateway:
        _show_nodes((gateway.drain_node(node_id),), as_json)


@nodes_app.command("revoke")
def revoke(node_id: str, yes: Yes = False, url: Url = None, token: Token = None) -> None:
    """Revoke the node: its token stops working, its replicas are placed elsewhere."""
    if not yes:
        typer.confirm(f"Revoke node {node_id}?", abort=True)
    with calling(client(url, token=token)) as gateway:
        gateway.revoke_node(node_id)
    err.print(f"revoked node {node_id}", markup=False)
