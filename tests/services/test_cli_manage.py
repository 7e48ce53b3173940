"""`ngpu workspaces|nodes|tasks` as child processes against a live `ngpu up --demo`: the
URL and bearers from flags, the environment, or `$XDG_CONFIG_HOME/ngpu/config.toml`,
`--json` parsed, errors as exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from services.demo import demo_workspace
from tests.conftest import REPO
from tests.support.gateway import Gateway, gateway

__all__ = ["gateway"]  # the module's live gateway fixture


def ngpu(
    *args: str, env: dict[str, str] | None = None, config_home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`ngpu ARGS` in a child process, with no NGPU_* variable but those of `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    base["XDG_CONFIG_HOME"] = str(config_home or REPO / "no-such-config-home")
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def as_json(*args: str, **kwargs: Any) -> Any:
    done = ngpu(*args, "--json", **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_workspaces_create_list_get_update_delete(gateway: Gateway, tmp_path: Path) -> None:
    admin = {"NGPU_URL": gateway.url, "NGPU_ADMIN_TOKEN": gateway.admin_token}
    name = f"cli-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "ws.yaml"
    spec.write_text(yaml.safe_dump({**demo_workspace(), "name": name,
                                    "replicas": {"min": 0, "max": 1}}))  # fmt: skip
    created = as_json("workspaces", "create", "-f", str(spec), env=admin)
    assert created["name"] == name and created["webhook_secret"].startswith("whsec_")
    workspace_id = created["workspace_id"]

    listed = as_json("workspaces", "list", env=admin)
    assert {name, str(demo_workspace()["name"])} <= {ws["name"] for ws in listed}
    table = ngpu("workspaces", "list", env=admin)
    assert table.returncode == 0 and name in table.stdout and workspace_id in table.stdout
    assert as_json("workspaces", "get", workspace_id, env=admin)["workspace_id"] == workspace_id

    updated = as_json("workspaces", "update", workspace_id, "--set", "replicas.max=2",
                      "--set", "replicas.min=0", "--set", "timeout_s=45", env=admin)  # fmt: skip
    assert updated["replicas"]["max"] == 2 and updated["timeout_s"] == 45

    assert ngpu("workspaces", "delete", workspace_id, "--yes", env=admin).returncode == 0
    missing = ngpu("workspaces", "get", workspace_id, env=admin)
    assert missing.returncode == 1 and "404" in missing.stderr
    logs = as_json("workspaces", "logs", gateway.workspace_id, "--tail", "3", env=admin)
    assert logs and logs[0]["deployment_id"]


def test_nodes_list_from_the_config_file(gateway: Gateway, tmp_path: Path) -> None:
    (tmp_path / "ngpu").mkdir()
    (tmp_path / "ngpu" / "config.toml").write_text(
        f'url = "{gateway.url}"\nadmin_token = "{gateway.admin_token}"\n'
    )
    nodes = as_json("nodes", "list", config_home=tmp_path)
    assert any(d["workspace_id"] == gateway.workspace_id and d["state"] == "ready"
               for n in nodes for d in n["deployments"])  # fmt: skip
    shown = ngpu("nodes", "list", config_home=tmp_path)
    assert shown.returncode == 0 and nodes[0]["node_id"] in shown.stdout
    # A flag wins over the file: a wrong token is refused.
    refused = ngpu("nodes", "list", "--token", "wrong", config_home=tmp_path)
    assert refused.returncode == 1 and "401" in refused.stderr
    assert ngpu("nodes", "drain", "no-such-node", config_home=tmp_path).returncode == 1


def test_tasks_submit_wait_get_list_cancel(gateway: Gateway) -> None:
    env = {"NGPU_URL": gateway.url, "NGPU_WORKSPACE_ID": gateway.workspace_id}
    task_id = ngpu("tasks", "submit", "img2img", "--data", '{"prompt": "cli"}', env=env)
    assert task_id.returncode == 0, task_id.stderr
    task_id_text = task_id.stdout.strip()
    done = as_json("tasks", "wait", task_id_text, "--timeout", "60", env=env)
    assert done["result_code"] == 200 and done["data"]["task_id"] == task_id_text
    got = as_json("tasks", "get", task_id_text, env=env)
    assert got["state"] == "completed"
    detail = as_json("tasks", "get", task_id_text, "--detail", env=env)
    assert detail["taskid"] == task_id_text and detail["state"] == 3
    assert task_id_text in as_json("tasks", "list", "--page-size", "2", env=env)

    waited = as_json("tasks", "submit", "echo", "--data", "hello", "--wait", env=env)
    assert waited["data"] == "hello"

    held = as_json("tasks", "submit", "hold", "--data", '{"ms": 60000}', env=env)["taskID"]
    assert as_json("tasks", "cancel", held, env=env)["result_code"] == 200
    again = ngpu("tasks", "cancel", held, env=env)
    assert again.returncode == 1 and "409" in again.stderr
    gone = ngpu("tasks", "wait", held, env=env)
    assert gone.returncode == 1 and "410" in gone.stderr
    watched = as_json("tasks", "watch", task_id_text, "--timeout", "30", env=env)
    assert watched["state"] == "completed" and watched["events"][0]["type"] == "TaskSubmitted"

    unknown = ngpu("tasks", "get", "no-such-task", env=env)
    assert unknown.returncode == 1 and "404" in unknown.stderr
    no_bearer = ngpu("tasks", "list", env={"NGPU_URL": gateway.url})
    assert no_bearer.returncode == 2 and "workspace_id" in no_bearer.stderr
