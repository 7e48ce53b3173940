from typing import Any

import pytest

from services.scheduler import DeploymentPhase, SchedulerSettings
from services.scheduler.plugins import deployment_ready
from services.scheduler.plugins.deployment_ready import (
    NOT_READY,
    OTHER_WORKSPACE,
    PORT_NOT_PUBLISHED,
)
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("ctx_changes", "dep_changes", "expected"),
    [
        ({}, {}, None),
        ({}, {"phase": DeploymentPhase.REQUESTED}, NOT_READY),
        ({}, {"phase": DeploymentPhase.STARTING}, NOT_READY),
        ({}, {"workspace_id": "other"}, OTHER_WORKSPACE),
        ({"port": 9000}, {}, PORT_NOT_PUBLISHED),
        ({}, {"host_ports": {}}, PORT_NOT_PUBLISHED),
        ({"port": 0}, {}, None),  # no port asked: any published port will do
        ({"port": 0}, {"host_ports": {}}, PORT_NOT_PUBLISHED),
        ({"port": 9000}, {"host_ports": {8080: 1, 9000: 2}}, None),
    ],
)
def test_deployment_ready(
    ctx_changes: dict[str, Any], dep_changes: dict[str, Any], expected: str | None
) -> None:
    plugin = deployment_ready.new(SchedulerSettings())
    assert plugin.filter(ctx(**ctx_changes), dep(**dep_changes), node()) == expected
