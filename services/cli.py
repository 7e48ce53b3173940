"""The `ngpu` command line: thin shells over the packages (decode arguments, call, print)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from events import topics
from services.cli_manage import nodes_app, workspaces_app
from services.cli_tasks import tasks_app
from services.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from services.roles import Credentials, Role

app = typer.Typer(
    help="NGPU gateway: run Docker-packaged models on a network of GPU nodes.",
    no_args_is_help=True,
    add_completion=True,
)
events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)
app.add_typer(events_app, name="events")
projections_app = typer.Typer(help="Maintain the ClickHouse projections.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")
app.add_typer(workspaces_app, name="workspaces")  # the managing commands, on the SDK
app.add_typer(nodes_app, name="nodes")
app.add_typer(tasks_app, name="tasks")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default: NGPU_DATA_DIR or ./.ngpu)."),
]


def _settings(data_dir: Path | None = None) -> Settings:
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@app.command("version")
def version_command() -> None:
    """Print the installed version."""
    try:
        typer.echo(version("ngpu-gateway"))
    except PackageNotFoundError:  # running from a source tree that is not installed
        typer.echo("0+unknown")


@app.command("schemas")
def schemas_command(
    out: Annotated[Path, typer.Option(help="Directory for the event schemas.")] = Path(
        "schemas/events"
    ),
    openapi: Annotated[Path, typer.Option(help="The HTTP API's OpenAPI document.")] = Path(
        "schemas/openapi.json"
    ),
    check: Annotated[
        bool, typer.Option("--check", help="Only report drift; exit 1 if files differ.")
    ] = False,
) -> None:
    """Write a JSON Schema per event, generated from the event classes, and the OpenAPI
    document of the HTTP API, generated from its routes."""
    from services.tools.schemas import write_event_schemas, write_openapi

    drift = [out / name for name in write_event_schemas(out, check=check)]
    drift += [openapi] if write_openapi(openapi, check=check) else []
    for path in drift:
        typer.echo(f"{'differs' if check else 'wrote'}: {path}")
    if check and drift:
        raise typer.Exit(1)


@events_app.command("tail")
def events_tail(
    group: Annotated[
        str | None, typer.Option(help="Consume as this group, committing what was printed.")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep waiting for new events.")
    ] = True,
    topic: Annotated[
        list[str] | None, typer.Option(help="Topic to read (repeatable; default: all).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Print events as JSON lines: envelope fields plus topic, partition and offset.

    A group without a committed position starts at the end unless --from-beginning.
    """
    from services.tools.tail import tail_events

    settings = _settings(data_dir)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(
            tail_events(
                settings,
                topics=tuple(topic or topics.ALL_TOPICS),
                group=group,
                from_beginning=from_beginning,
                follow=follow,
                out=sys.stdout.buffer,
            )
        )


@projections_app.command("rebuild")
def projections_rebuild(data_dir: DataDir = None) -> None:
    """Rebuild the task tables (submissions, dispatches, requeues, outcomes) from the
    archive, ClickHouse's raw events table, alone: the bus is not read.

    Stop the projector first (with the embedded ClickHouse, `ngpu up` holds the store:
    stop it).
    """
    from projections import (
        ProjectionError,
        ProjectionWriter,
        connect,
        rebuild_from_archive,
        split_archived_bodies,
    )
    from services.roles import DATABASE

    settings = _settings(data_dir)
    try:
        client = connect(settings.resolved_clickhouse_dsn)
        retention = settings.body_retention_days
        ProjectionWriter(client, DATABASE, body_retention_days=retention).ensure_schema()
        split_archived_bodies(client, DATABASE)
        read = rebuild_from_archive(client, DATABASE)
    except ProjectionError as exc:
        typer.echo(f"ngpu projections rebuild: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"rebuilt the task tables from {read} archived task events")


@app.command("up")
def up_command(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default: NGPU_PORT or 8000).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: NGPU_HOST).")] = None,
    data_dir: DataDir = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Also run a local node and the sample workspace.")
    ] = False,
) -> None:
    """Run the whole system (ingress, scheduler, dispatcher, projector, webhooks) in this
    process on the embedded backends."""
    from services.demo import DemoError, demo_settings

    overrides: dict[str, object] = {"bus": "embedded"}
    for name, value in (("port", port), ("host", host), ("data_dir", data_dir)):
        if value is not None:
            overrides[name] = value
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    _configure_logging(settings.log_level)
    if demo:
        settings = demo_settings(settings)
    _configure_tracing(("ingress", "scheduler", "dispatcher", "projector", "webhooks"))
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_loop(_up(settings, demo))
    except DemoError as exc:  # the demo's replica never became ready: say why, no traceback
        typer.echo(f"ngpu up: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        _stop_tracing()


async def _up(settings: Settings, demo: bool) -> None:
    from services.demo import Demo, curl_examples, start_demo
    from services.roles import credentials, run_all

    url = f"{settings.url_scheme}://{settings.host}:{settings.port}"
    running: list[Demo] = []
    creds = credentials(settings)

    async def ready() -> None:
        typer.echo(f"NGPU gateway listening on {url}")
        typer.echo(f"  data dir:         {settings.data_dir.resolve()}")
        typer.echo(f"  readiness:        {url}/readyz (503 while catching up with the log)")
        for label, token, source in (
            ("admin token:     ", creds.admin_token, creds.admin_token_source),
            ("node join token: ", creds.join_token, creds.join_token_source),
        ):
            # A token from the environment is the operator's secret: not echoed to logs.
            shown = "(from the environment)" if source == "environment" else f"{token}  ({source})"
            typer.echo(f"  {label}{shown}")
        if demo:
            started = await start_demo(settings, url, creds.admin_token, creds.join_token)
            running.append(started)
            typer.echo(f"  demo workspace:   {started.workspace_id} (Workspace ID = bearer token)")
            export = f"export NGPU_WORKSPACE_ID={started.workspace_id}"
            typer.echo(f"  for the SDK and `ngpu tasks`: {export}")
            typer.echo(curl_examples(url, started.workspace_id, settings.tls_cert_file))
        else:
            ca = f" --ca-file {settings.tls_cert_file}" if settings.tls_cert_file else ""
            typer.echo(f"  add a node:       ngpu node --control-plane {url}{ca} --join-token "
                       "<token> --host 127.0.0.1 --address 0x<40 hex> --gpu RTX4090:1")  # fmt: skip
        sys.stdout.flush()

    async def stop_demo() -> None:
        for started in running:
            await asyncio.to_thread(started.stop)
        running.clear()

    try:
        await run_all(settings, creds, on_ready=ready, on_stop=stop_demo)
    finally:
        await stop_demo()


@app.command("serve")
def serve_command(
    roles: Annotated[
        str,
        typer.Option(
            help="Comma-separated roles to run in this process: "
            "ingress, scheduler, dispatcher, projector, webhooks."
        ),
    ],
    port: Annotated[
        int | None, typer.Option(help="HTTP port of the ingress (default: NGPU_PORT or 8000).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: NGPU_HOST).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run some roles against Kafka (NGPU_BUS=kafka, NGPU_KAFKA_BOOTSTRAP) and ClickHouse
    (NGPU_CLICKHOUSE_DSN); start as many processes of each role as needed."""
    from services.roles import RolesError, check_roles, parse_roles

    overrides: dict[str, object] = {}
    for name, value in (("port", port), ("host", host), ("data_dir", data_dir)):
        if value is not None:
            overrides[name] = value
    try:
        settings = load_settings(**overrides)
        chosen = parse_roles(roles)
        check_roles(settings, chosen)
        creds = _serve_credentials(settings) if "ingress" in chosen else None
    except (SettingsError, RolesError) as exc:
        typer.echo(f"ngpu serve: {exc}", err=True)
        raise typer.Exit(2) from exc
    _configure_logging(settings.log_level)
    _configure_tracing(chosen)
    from services.bus import BusError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_loop(_serve(settings, chosen, creds))
    except BusError as exc:  # e.g. Kafka unreachable at start: say so, without a traceback
        typer.echo(f"ngpu serve: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        _stop_tracing()


def _serve_credentials(settings: Settings) -> Credentials:
    """Every ingress must accept the same tokens: on Kafka they come from the environment."""
    from services.roles import RolesError, credentials

    if settings.bus == "kafka" and not (settings.admin_token and settings.node_join_token):
        raise RolesError(
            "NGPU_ADMIN_TOKEN and NGPU_NODE_JOIN_TOKEN are required for the ingress on "
            "Kafka (every ingress process must accept the same tokens)"
        )
    return credentials(settings)


async def _serve(settings: Settings, roles: frozenset[Role], creds: Credentials | None) -> None:
    from services.roles import run_roles

    def ready() -> None:
        where = f" on {settings.url_scheme}://{settings.host}:{settings.port}"
        where = where if "ingress" in roles else ""
        typer.echo(f"ngpu serve: {','.join(sorted(roles))} running{where} (bus: {settings.bus})")
        sys.stdout.flush()

    await run_roles(settings, roles, creds, on_ready=ready)


@app.command("node")
def node_command(
    control_plane: Annotated[str, typer.Option(help="The control plane's base URL.")],
    host: Annotated[str, typer.Option(help="The address the dispatcher reaches this node at.")],
    address: Annotated[str, typer.Option(help="The node operator's 0x address.")],
    join_token: Annotated[
        str, typer.Option(envvar="NGPU_NODE_JOIN_TOKEN", help="The cluster's join token.")
    ],
    runtime: Annotated[str, typer.Option(help="process or docker.")] = "process",
    gpu: Annotated[
        list[str] | None, typer.Option(help="TYPE:COUNT[:MEMORY_MB] when no driver reports GPUs.")
    ] = None,
    region: Annotated[str, typer.Option(help="Region label.")] = "",
    work_dir: Annotated[Path, typer.Option(help="Logs and state of this agent.")] = Path(
        ".ngpu-node"
    ),
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="NGPU_NODE_CA_FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="PEM certificates to check an https control plane against instead of the "
            "system's CAs: its CA, or its own (self-signed) certificate.",
        ),
    ] = None,
    proxy_tls: Annotated[
        bool,
        typer.Option(
            "--proxy-tls/--no-proxy-tls",
            help="Serve the deployments' proxies over HTTPS with a self-signed certificate "
            "kept in the work dir, which the control plane pins (--no-proxy-tls: plain "
            "HTTP, for a local demo).",
        ),
    ] = True,
) -> None:
    """Run a node agent: register, heartbeat, run assigned deployments until SIGTERM."""
    from services.certs import CertificateError
    from services.nodeagent.errors import NodeAgentError
    from services.nodeagent.main import run_node

    if runtime not in ("process", "docker"):
        typer.echo(f"--runtime must be process or docker, not {runtime!r}", err=True)
        raise typer.Exit(2)
    _configure_logging("info")
    try:
        asyncio.run(
            run_node(
                control_plane=control_plane, join_token=join_token, runtime=runtime,
                host=host, address=address, gpus=gpu or [], region=region, work_dir=work_dir,
                ca_file=ca_file, proxy_tls=proxy_tls,
            )
        )  # fmt: skip
    except (NodeAgentError, CertificateError) as exc:
        typer.echo(f"ngpu node: {exc}", err=True)
        raise typer.Exit(1) from exc


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop where it is installed (about 10% more requests per second
    through the ingress), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _configure_logging(level: str) -> None:
    from services.logs import configure_logging  # NGPU_LOG_FORMAT: json, console

    configure_logging(level)


def _configure_tracing(roles: Iterable[str]) -> None:
    from services import tracing  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set

    if tracing.configure(roles):
        logging.getLogger(__name__).info("traces on: spans exported over OTLP/HTTP")


def _stop_tracing() -> None:
    from services import tracing

    tracing.shutdown()  # exports what is buffered


def main() -> None:
    """Entry point for `python -m services.cli`."""
    app()


if __name__ == "__main__":
    main()
