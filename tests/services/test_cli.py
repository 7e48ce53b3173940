"""`ngpu` commands that are not covered by the end-to-end suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# In a child process: chdb allows one engine path per process, and this test's store
# lives under its own data dir (the CLI opens the same path, which one process may share).
_REBUILD_CHILD = """
import json, sys
from pathlib import Path
from typer.testing import CliRunner
from projections import DERIVED, ProjectionWriter, connect, drop_schema
from services.cli import app
from services.roles import DATABASE
from tests.projections.builders import TASKS, WORKSPACES, mixed_history
from tests.projections.snapshot import snapshot

data_dir = Path(sys.argv[1])
client = connect(f"chdb:///{data_dir.resolve() / 'clickhouse'}")
writer = ProjectionWriter(client, DATABASE)
writer.ensure_schema()
writer.write(mixed_history())
before = snapshot(client, DATABASE, WORKSPACES, TASKS)
drop_schema(client, DATABASE, DERIVED)
result = CliRunner().invoke(app, ["projections", "rebuild", "--data-dir", str(data_dir)])
after = snapshot(client, DATABASE, WORKSPACES, TASKS)
print(json.dumps({"code": result.exit_code, "output": result.output, "same": before == after}))
"""


def test_projections_rebuild_restores_the_task_tables_from_the_archive(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    out = subprocess.run(
        [sys.executable, "-c", _REBUILD_CHILD, str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = json.loads(out.splitlines()[-1])
    assert result == {
        "code": 0,
        "output": "rebuilt the task tables from 18 archived task events\n",
        "same": True,
    }
