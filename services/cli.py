"""The `ngpu` command line: thin shells over the packages (decode arguments, call, print)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from events import topics
from services.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="NGPU gateway: run Docker-packaged models on a network of GPU nodes.",
    no_args_is_help=True,
    add_completion=False,
)
events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)
app.add_typer(events_app, name="events")

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
    check: Annotated[
        bool, typer.Option("--check", help="Only report drift; exit 1 if files differ.")
    ] = False,
) -> None:
    """Write a JSON Schema per event, generated from the event classes."""
    from services.tools.schemas import write_event_schemas

    drift = write_event_schemas(out, check=check)
    for name in drift:
        typer.echo(f"{'differs' if check else 'wrote'}: {out / name}")
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


def main() -> None:
    """Entry point for `python -m services.cli`."""
    app()


if __name__ == "__main__":
    main()
