"""A live `ngpu up --demo` (the embedded log, a node agent, the sample workspace ready) for
tests of the SDK and the managing commands: one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.cluster import ADMIN_TOKEN, Cluster, cluster_env

WEBHOOK_ENV = {
    "NGPU_WEBHOOK_HOST_ALLOW": '["127.0.0.1/32"]',
    "NGPU_WEBHOOK_RETRY_BASE_S": "0.3",
    "NGPU_WEBHOOK_RETRY_MAX_S": "1",
}
"""Webhooks may go to a receiver on 127.0.0.1, and are retried fast."""


@dataclass(frozen=True)
class Gateway:
    url: str
    admin_token: str
    workspace_id: str
    cluster: Cluster


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cluster = Cluster(tmp_path_factory.mktemp("gateway"), cluster_env(**WEBHOOK_ENV))
    try:
        workspace_id = cluster.start_demo()
        yield Gateway(cluster.url, ADMIN_TOKEN, workspace_id, cluster)
    finally:
        cluster.stop()
