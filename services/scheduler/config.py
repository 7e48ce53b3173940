"""The scheduler's tunables: which filters run (in order), score weights, time windows.

A plain frozen value with defaults in code, passed into `build_profile`, `plan_replicas`
and `ClusterState`; the process settings (pydantic, `NGPU_*`) map onto it in the runner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from services.scheduler.errors import InvalidSchedulerSettings

DEFAULT_FILTERS: tuple[str, ...] = (
    # The busy-slot check rejects most often under load, so it runs first and a full
    # replica costs one call; the order also decides which reason a rejection is filed under.
    "FreeSlot",
    "NodeSchedulable",
    "HeartbeatFresh",
    "NotExcluded",
    "FailureStreak",
    "DeploymentReady",
    "GpuFit",
)
"""Filter plugins by name, in evaluation order."""

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "LeastLoad": 1.0,
        "Latency": 1.0,
        "SuccessRate": 1.0,
        "WarmDeployment": 0.5,
        # Larger than any other single score: a requested region wins unless the node in
        # it is clearly worse on several other counts.
        "Region": 2.0,
    }
)
"""Score plugins by name and their weights; a plugin with weight 0 is not run."""


def _default_weights() -> Mapping[str, float]:
    return MappingProxyType(dict(DEFAULT_WEIGHTS))


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """Scheduler tunables. Raises `InvalidSchedulerSettings` on out-of-range values.

    - `heartbeat_window_s`: a node whose last heartbeat is older gets no new task or replica.
    - `lost_after_s`: a node silent for longer is declared lost by `plan_replicas`.
    - `max_feasible`: stop filtering after this many feasible replicas (0 = evaluate all);
      the scan starts at an offset seeded by the task id, so load still spreads (the idea of
      kube-scheduler's `percentageOfNodesToScore`). 16 bounds a decision to tens of
      microseconds however many replicas a workspace has, and the best of 16 feasible
      replicas already balances load well (the "power of d choices").
    - `warm_window_s`: a replica that served a task this recently counts as warm.
    - `failure_streak` / `failure_cooldown_s`: after that many consecutive failures a node
      gets no task until the cooldown since its last failure passes (0 disables).
    - `ewma_alpha`: weight of the newest sample in the latency EWMAs.
    - `start_deadline_s`: a replica not ready this long after it was requested is failed
      and stopped, and placed again (an image pull and a model load fit in the default).
    """

    filters: tuple[str, ...] = DEFAULT_FILTERS
    weights: Mapping[str, float] = field(default_factory=_default_weights)
    heartbeat_window_s: float = 30.0
    lost_after_s: float = 90.0
    max_feasible: int = 16
    warm_window_s: float = 600.0
    failure_streak: int = 5
    failure_cooldown_s: float = 60.0
    ewma_alpha: float = 0.2
    start_deadline_s: float = 900.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_window_s", "lost_after_s", "warm_window_s", "start_deadline_s"):
            _require(name, getattr(self, name), lambda v: v > 0, "a positive number")
        _require("failure_cooldown_s", self.failure_cooldown_s, lambda v: v >= 0, ">= 0")
        _require("ewma_alpha", self.ewma_alpha, lambda v: 0 < v <= 1, "in (0, 1]")
        if self.max_feasible < 0 or self.failure_streak < 0:
            raise InvalidSchedulerSettings("max_feasible and failure_streak must be >= 0")
        if self.lost_after_s < self.heartbeat_window_s:
            raise InvalidSchedulerSettings("lost_after_s must be >= heartbeat_window_s")
        for plugin, weight in self.weights.items():
            _require(f"weights[{plugin!r}]", weight, lambda v: v >= 0, ">= 0")


def _require(name: str, value: float, ok: Callable[[float], bool], expected: str) -> None:
    if not math.isfinite(value) or not ok(value):
        raise InvalidSchedulerSettings(f"{name} must be {expected}, got {value!r}")
