from typing import Any

import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import gpu_fit
from services.scheduler.plugins.gpu_fit import MISSING_GPU_TYPE, REPLICA_TOO_SMALL, TOO_FEW_GPUS
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("wanted", "node_gpus", "replica", "expected"),
    [
        (("RTX4090", 1), {"RTX4090": 1}, ("RTX4090", 1), None),
        (("RTX4090", 2), {"RTX4090": 4}, ("RTX4090", 2), None),
        (("RTX4090", 1), {"A100": 8}, ("RTX4090", 1), MISSING_GPU_TYPE),
        (("RTX4090", 1), {}, ("RTX4090", 1), MISSING_GPU_TYPE),
        (("RTX4090", 2), {"RTX4090": 1}, ("RTX4090", 2), TOO_FEW_GPUS),
        (("RTX4090", 2), {"RTX4090": 4}, ("RTX4090", 1), REPLICA_TOO_SMALL),
        (("RTX4090", 1), {"RTX4090": 1, "A100": 1}, ("A100", 1), REPLICA_TOO_SMALL),
        (("RTX4090", 0), {}, ("", 0), None),  # no GPU asked: fits anywhere
        (("", 0), {"A100": 1}, ("A100", 1), None),
    ],
)
def test_gpu_fit(
    wanted: tuple[str, int],
    node_gpus: dict[str, int],
    replica: tuple[str, int],
    expected: str | None,
) -> None:
    plugin = gpu_fit.new(SchedulerSettings())
    context = ctx(gpu_type=wanted[0], gpu_count=wanted[1])
    candidate: dict[str, Any] = {"gpu_type": replica[0], "gpu_count": replica[1]}
    assert plugin.filter(context, dep(**candidate), node(gpus=node_gpus)) == expected


def test_reason_reads_like_the_contract() -> None:
    assert TOO_FEW_GPUS.format(gpu_type="RTX4090", gpu_count=2) == "without RTX4090 x2"
