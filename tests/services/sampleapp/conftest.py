"""Fixtures of the sample app tests: one app process shared by a module's tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.services.sampleapp.helpers import sampleapp


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with sampleapp(env={"NGPU_NODE_ID": "node-7"}) as running:
        yield running


@pytest.fixture
def client(app: tuple[subprocess.Popen[bytes], str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app[1], trust_env=False, timeout=20.0) as http:
        yield http
