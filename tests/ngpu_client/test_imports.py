"""The SDK stands alone: importable where the server's packages are not installed."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

_CHILD = """
import sys
for name in ("fastapi", "pydantic", "orjson", "aiohttp", "aiokafka", "events", "services",
             "projections", "typer", "rich"):
    sys.modules[name] = None  # an import of it raises ImportError
import ngpu_client
print(ngpu_client.Client.__name__, ngpu_client.AsyncClient.__name__)
"""


def test_the_sdk_imports_without_the_servers_packages() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=REPO, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Client", "AsyncClient"]
