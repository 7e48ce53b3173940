"""compose/docker-compose.yml and compose/Dockerfile, checked without a Docker engine: the
file is interpolated as Compose does, every command of our image is parsed by the real
`ngpu` CLI, every environment is loaded by the real `Settings`, and the wiring between
services (Kafka listeners, ClickHouse user and database, ports, replicas, health
conditions, the node's docker socket, GPUs and address) is compared value by value."""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import typer.main
import yaml

# typer (0.2x) carries its own copy of click, whose context and errors live here.
from typer._click.core import Context as CliContext
from typer._click.exceptions import BadParameter, MissingParameter, NoSuchOption, UsageError
from typer.core import TyperGroup

from services.cli import app
from services.ingress.models import NodeRegister
from services.roles import RolesError, check_roles, parse_roles
from services.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
DOCKERFILE = REPO / "compose" / "Dockerfile"

# What an operator must provide; interpolating without any one of them must fail.
ENV = {
    "NGPU_ADMIN_TOKEN": "admin-token-from-env",
    "NGPU_NODE_JOIN_TOKEN": "join-token-from-env",
    "CLICKHOUSE_PASSWORD": "clickhouse-secret",
    "NODE_ADDRESS": "0x" + "ab" * 20,
}
SERVE_SERVICES = ("ingress", "scheduler", "dispatcher", "projector", "webhooks")
OUR_SERVICES = (*SERVE_SERVICES, "node")
USES_CLICKHOUSE = ("ingress", "projector")
HEALTHY = {"condition": "service_healthy"}


# -- Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
# ${VAR:+r}, ${VAR+r}. A `$` in any other form is an error, as in Compose.

_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<bad>))"
)


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset (or empty)."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bad"] is not None:
            raise ValueError(f"invalid interpolation at {text[match.start() :]!r}")
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else str(value)
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset else arg
        return value or ""

    return _TOKEN.sub(replace, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (Compose leaves keys alone)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    resolved = resolve(raw_compose(), ENV)
    assert isinstance(resolved, dict)
    return resolved


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    found = compose["services"][name]
    assert isinstance(found, dict)
    return found


def environment(svc: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as strings (mapping or `KEY=VALUE` list form)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(entry.split("=", 1) for entry in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def replicas(svc: Mapping[str, Any]) -> int:
    return int(svc.get("deploy", {}).get("replicas", 1))


def published_range(svc: Mapping[str, Any]) -> tuple[range, int]:
    """The single `HOST_START-HOST_END:TARGET` port entry: host ports and target."""
    (entry,) = svc["ports"]
    published, target = str(entry).rsplit(":", 1)
    start, _, end = published.rpartition(":")[2].partition("-")
    return range(int(start), int(end or start) + 1), int(target)


@contextmanager
def only_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Iterator[None]:
    """The process environment as a container of the service sees it (for NGPU_*)."""
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("NGPU_"):
                patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        yield


def parse_cli(args: Sequence[str]) -> CliContext:
    """Parse `ngpu ARGS` with the real typer/click app, strictly: an unknown command or
    option, a bad value or a missing required option raises a `UsageError`."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    root = typer.Context(group, info_name="ngpu")
    name, *rest = args
    command = group.get_command(root, name)
    if command is None:
        raise UsageError(f"no such command {name!r}", root)
    return command.make_context(name, list(rest), parent=root, resilient_parsing=False)


def serve_settings(monkeypatch: pytest.MonkeyPatch, svc: Mapping[str, Any]) -> Settings:
    with only_env(monkeypatch, environment(svc)):
        return load_settings(_env_file=None)


# -- interpolation --------------------------------------------------------------------


@pytest.mark.parametrize("missing", sorted(ENV))
@pytest.mark.parametrize("value", [None, ""])
def test_required_variables_stop_the_start(missing: str, value: str | None) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    if value is not None:
        env[missing] = value
    with pytest.raises(MissingVariable, match=missing):
        resolve(raw_compose(), env)


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$SET ${SET} $SET ${NOPE:-d} ${EMPTY:-d} ${EMPTY-d}", env) == (
        "$SET x x d d "
    )
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?required}", env)
    with pytest.raises(ValueError, match="invalid interpolation"):
        interpolate("cost: 5$", env)


# -- services and commands -------------------------------------------------------------


def test_services_and_the_one_image(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "clickhouse", *OUR_SERVICES}
    images = set()
    for name in OUR_SERVICES:
        svc = service(compose, name)
        build = svc["build"]
        assert (build["context"], build["dockerfile"]) == ("..", "compose/Dockerfile"), name
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
        assert svc.get("restart") == "unless-stopped", name
        images.add(svc["image"])
    assert len(images) == 1


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_commands_parse_with_the_real_cli(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(compose, name)
    command = svc["command"]
    assert isinstance(command, list), "a list: no shell splitting of interpolated values"
    assert all(isinstance(arg, str) for arg in command)
    with only_env(monkeypatch, environment(svc)):
        ctx = parse_cli(command)
    if name in SERVE_SERVICES:
        assert ctx.info_name == "serve"
        assert parse_roles(ctx.params["roles"]) == {name}
    else:
        assert ctx.info_name == "node"
        assert ctx.params["runtime"] == "docker"
        assert ctx.params["join_token"] == ENV["NGPU_NODE_JOIN_TOKEN"]
        assert ctx.params["address"] == ENV["NODE_ADDRESS"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["serve", "--roles", "ingress", "--replicas", "2"], NoSuchOption),
        (["serve"], MissingParameter),
        (["serve", "--roles", "ingress", "--port", "http"], BadParameter),
        (["node", "--control-plane", "http://x", "--host", "h", "--address", "0x1"],
         MissingParameter),  # no --join-token, no NGPU_NODE_JOIN_TOKEN
        (["start", "--roles", "ingress"], UsageError),
    ],
)  # fmt: skip
def test_the_cli_check_refuses_bad_commands(
    args: list[str], error: type[UsageError], monkeypatch: pytest.MonkeyPatch
) -> None:
    with only_env(monkeypatch, {}), pytest.raises(error):
        parse_cli(args)


def test_unknown_roles_are_refused() -> None:
    with pytest.raises(RolesError):
        parse_roles("ingress,gateway")


# -- environment -------------------------------------------------------------------------


def test_every_ngpu_variable_is_a_setting(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    mentioned = set(re.findall(r"\bNGPU_[A-Z0-9_]+", COMPOSE.read_text()))
    assert mentioned, "the file names NGPU_* settings"
    unknown = {n for n in mentioned if n.removeprefix("NGPU_").lower() not in fields}
    assert not unknown, f"not fields of services.settings.Settings: {sorted(unknown)}"
    for name in OUR_SERVICES:
        # Anything else in our services' environment would be ignored by the settings.
        foreign = [k for k in environment(service(compose, name)) if not k.startswith("NGPU_")]
        assert not foreign, f"{name}: {foreign}"


@pytest.mark.parametrize("name", SERVE_SERVICES)
def test_serve_services_load_their_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(service(compose, name))
    assert {"NGPU_BUS", "NGPU_KAFKA_BOOTSTRAP", "NGPU_CLICKHOUSE_DSN"} <= set(env)
    settings = serve_settings(monkeypatch, service(compose, name))
    assert settings.bus == "kafka"
    check_roles(settings, parse_roles(name))  # refuses embedded backends when split

    advertised = environment(service(compose, "kafka"))["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{settings.kafka_bootstrap}" in advertised.split(",")
    assert settings.kafka_bootstrap.split(":")[0] in compose["services"]
    assert settings.kafka_replication_factor == 1, "one broker"

    clickhouse = environment(service(compose, "clickhouse"))
    dsn = urlsplit(settings.resolved_clickhouse_dsn)
    assert (dsn.scheme, dsn.hostname, dsn.port) == ("http", "clickhouse", 8123)
    assert dsn.path == "/" + clickhouse["CLICKHOUSE_DB"]
    assert dsn.username == clickhouse["CLICKHOUSE_USER"] == "ngpu"
    assert dsn.password == clickhouse["CLICKHOUSE_PASSWORD"] == ENV["CLICKHOUSE_PASSWORD"]


def test_ingress(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ingress = service(compose, "ingress")
    settings = serve_settings(monkeypatch, ingress)
    assert settings.host == "0.0.0.0"
    assert settings.admin_token is not None and settings.node_join_token is not None
    assert settings.admin_token.get_secret_value() == ENV["NGPU_ADMIN_TOKEN"]
    assert settings.node_join_token.get_secret_value() == ENV["NGPU_NODE_JOIN_TOKEN"]
    host_ports, target = published_range(ingress)
    assert target == settings.port
    assert len(host_ports) == replicas(ingress), "one host port per ingress replica"
    assert list(host_ports) == [8000, 8001]
    probe = " ".join(ingress["healthcheck"]["test"])
    assert f"http://127.0.0.1:{settings.port}/readyz" in probe  # ready to serve, not only alive


@pytest.mark.parametrize(
    ("name", "count"), [("ingress", 2), ("dispatcher", 2), ("scheduler", 1), ("projector", 1)]
)
def test_replicas(compose: dict[str, Any], name: str, count: int) -> None:
    assert replicas(service(compose, name)) == count


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_depends_on_healthy_dependencies(compose: dict[str, Any], name: str) -> None:
    depends = service(compose, name)["depends_on"]
    expected: dict[str, Any] = {}
    if name in SERVE_SERVICES:
        expected["kafka"] = HEALTHY
    if name in USES_CLICKHOUSE:
        expected["clickhouse"] = HEALTHY
    if name == "node":
        expected["ingress"] = HEALTHY
    assert depends == expected
    for dependency in depends:
        assert service(compose, dependency)["healthcheck"]["test"], dependency


# -- infrastructure ----------------------------------------------------------------------


def test_kafka_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = service(compose, "kafka")
    env = environment(kafka)
    assert kafka["image"] == "apache/kafka:4.1.1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    listeners = {
        name: address
        for name, _, address in (e.partition("://") for e in env["KAFKA_LISTENERS"].split(","))
    }
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    controller_port = listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]].rsplit(":", 1)[1]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        f"{env['KAFKA_NODE_ID']}@kafka:{controller_port}"
    )
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[name] == "1", name
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert "kafka-data" in compose["volumes"]
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_clickhouse(compose: dict[str, Any]) -> None:
    clickhouse = service(compose, "clickhouse")
    image, _, tag = clickhouse["image"].partition(":")
    assert image == "clickhouse/clickhouse-server"
    assert re.fullmatch(r"2[56]\.\d+(\.\d+)*", tag), "a pinned 25.x/26.x tag"
    assert environment(clickhouse)["CLICKHOUSE_DB"] == "ngpu"
    assert "clickhouse-data:/var/lib/clickhouse" in clickhouse["volumes"]
    assert "http://127.0.0.1:8123/ping" in clickhouse["healthcheck"]["test"]


def test_node_agent(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    node = service(compose, "node")
    with only_env(monkeypatch, environment(node)):
        params = parse_cli(node["command"]).params
    assert params["runtime"] == "docker"
    assert "/var/run/docker.sock:/var/run/docker.sock" in node["volumes"]
    assert f"node-work:{params['work_dir']}" in node["volumes"]
    assert node["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]
    # The docker runtime health-checks deployments at 127.0.0.1:<host port>.
    assert node["network_mode"] == "host"
    # What the ingress would accept at registration.
    registration = NodeRegister(
        address=params["address"], host=params["host"], gpus=[], runtime="docker"
    )
    control = urlsplit(params["control_plane"])
    assert control.scheme == "http" and control.hostname == "127.0.0.1"
    host_ports, _ = published_range(service(compose, "ingress"))
    assert control.port in host_ports, "the node reaches an ingress through its published port"
    if registration.host == "host.docker.internal":
        dispatcher = service(compose, "dispatcher")
        assert "host.docker.internal:host-gateway" in dispatcher["extra_hosts"]


# -- the image ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for word, rest in instructions:
        by_name.setdefault(word, []).append(rest)
    assert by_name["FROM"] == ["python:3.11-slim"]
    assert json.loads(by_name["ENTRYPOINT"][-1]) == ["ngpu"]
    assert by_name["USER"][-1] not in ("root", "0")
    assert by_name["EXPOSE"] == ["8000"]
    assert "HEALTHCHECK" not in by_name, "only the ingress serves HTTP (compose checks it)"
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in by_name["RUN"])
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    for args in by_name["COPY"]:
        *sources, _ = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the build context"
            assert source.rstrip("/") not in ignored, f"COPY {source}: in .dockerignore"


def test_ngpu_is_the_console_script() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attribute = scripts["ngpu"].partition(":")
    assert getattr(importlib.import_module(module), attribute) is app


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".ngpu", "tests", "**/__pycache__", ".mypy_cache"} <= ignored
