"""README's "First call" works as written against a live `ngpu up --demo`: the demo prints
the line the reader copies, the SDK example prints what README shows, and so do the sync
curl call's fields. Only the gateway's address differs (the test's gateway listens on a
free port, not 8000)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.cluster import wait_for
from tests.support.gateway import Gateway, gateway

__all__ = ["gateway"]  # the module's live gateway fixture
README_URL = "http://127.0.0.1:8000"


def _first_call() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## First call\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def _env(gateway: Gateway) -> dict[str, str]:
    return {**os.environ, "NGPU_WORKSPACE_ID": gateway.workspace_id}


def _curl(gateway: Gateway, command: str) -> dict[str, Any]:
    """The JSON answer of README's curl `command`, run by bash against `gateway`."""
    run = subprocess.run(
        ["bash", "-c", command.replace(README_URL, gateway.url)],
        env=_env(gateway), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer: dict[str, Any] = json.loads(run.stdout)
    return answer


def test_the_demo_prints_the_export_line_readme_shows(gateway: Gateway) -> None:
    shown = next(line for line in _blocks(_first_call(), "console")[0].splitlines()
                 if "export NGPU_WORKSPACE_ID=" in line)  # fmt: skip
    printed = (gateway.cluster.data_dir / "up.log").read_text()
    wanted = re.sub(r"=\d+$", f"={gateway.workspace_id}", shown.strip())
    assert wanted in printed


def test_the_sdk_example_prints_what_readme_shows(gateway: Gateway) -> None:
    section = _first_call()
    (example,) = _blocks(section, "python")
    assert len([line for line in example.splitlines() if line.strip()]) == 5  # as promised
    expected = next(block for block in _blocks(section, "console") if "$" not in block)
    run = subprocess.run(
        [sys.executable, "-c", example.replace(README_URL, gateway.url)],
        env=_env(gateway), capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_sync_curl_call_answers_what_readme_shows(gateway: Gateway) -> None:
    lines = _blocks(_first_call(), "console")[1].splitlines()
    command = next(line for line in lines if line.startswith("$ curl"))[2:]
    shown = json.loads(re.sub(r", …}", "}", lines[lines.index(f"$ {command}") + 1]))
    answer = _curl(gateway, command)
    assert (answer["result_code"], answer["msg"]) == (shown["result_code"], shown["msg"])
    assert json.loads(answer["data"])["image_url"] == json.loads(shown["data"])["image_url"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_async_curl_calls_answer_what_readme_shows(gateway: Gateway) -> None:
    lines = _blocks(_first_call(), "console")[2].splitlines()
    submit, query = [line[2:] for line in lines if line.startswith("$ curl")]
    shown_submit = json.loads(lines[lines.index(f"$ {submit}") + 1])
    shown_query = json.loads(lines[lines.index(f"$ {query}") + 1].replace(", …}", "}"))

    submitted = _curl(gateway, submit)
    assert (submitted["result_code"], submitted["msg"]) == (100, shown_submit["msg"])
    mine = query.replace(shown_submit["taskID"], submitted["taskID"])
    assert mine != query  # README's query asks for the task its submission answered

    def ended() -> dict[str, Any] | None:  # the reader types slower than the task runs
        answer = _curl(gateway, mine)
        return answer if answer["result_code"] != 100 else None

    queried = wait_for(ended, 60, "the task to end")
    assert (queried["result_code"], queried["msg"]) == (200, shown_query["msg"])
    assert queried["taskID"] == submitted["taskID"]
    data, shown_data = json.loads(queried["data"]), json.loads(shown_query["data"])
    assert data["result_code"] == shown_data["result_code"]
