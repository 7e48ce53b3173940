"""Every plugin by `NAME`, with the factory that builds it from `SchedulerSettings`.
Adding a plugin: one file with `NAME`, one method, reason constants and `new`, and one
line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from services.scheduler.config import SchedulerSettings
from services.scheduler.errors import UnknownPluginError
from services.scheduler.plugins import (
    deployment_ready,
    failure_streak,
    free_slot,
    gpu_fit,
    heartbeat_fresh,
    latency,
    least_load,
    node_schedulable,
    not_excluded,
    region,
    success_rate,
    warm_deployment,
)
from services.scheduler.plugins.base import FilterFactory, FilterPlugin, ScoreFactory, ScorePlugin

FILTERS: Mapping[str, FilterFactory] = MappingProxyType(
    {
        free_slot.FreeSlot.NAME: free_slot.new,
        node_schedulable.NodeSchedulable.NAME: node_schedulable.new,
        heartbeat_fresh.HeartbeatFresh.NAME: heartbeat_fresh.new,
        not_excluded.NotExcluded.NAME: not_excluded.new,
        failure_streak.FailureStreak.NAME: failure_streak.new,
        deployment_ready.DeploymentReady.NAME: deployment_ready.new,
        gpu_fit.GpuFit.NAME: gpu_fit.new,
    }
)
SCORES: Mapping[str, ScoreFactory] = MappingProxyType(
    {
        least_load.LeastLoad.NAME: least_load.new,
        latency.Latency.NAME: latency.new,
        success_rate.SuccessRate.NAME: success_rate.new,
        warm_deployment.WarmDeployment.NAME: warm_deployment.new,
        region.Region.NAME: region.new,
    }
)


def make_filter(name: str, settings: SchedulerSettings) -> FilterPlugin:
    """The filter plugin `name` built from `settings`; `UnknownPluginError` if none."""
    factory = FILTERS.get(name)
    if factory is None:
        raise UnknownPluginError(f"unknown filter plugin {name!r}; known: {sorted(FILTERS)}")
    return factory(settings)


def make_score(name: str, settings: SchedulerSettings) -> ScorePlugin:
    """The score plugin `name` built from `settings`; `UnknownPluginError` if none."""
    factory = SCORES.get(name)
    if factory is None:
        raise UnknownPluginError(f"unknown score plugin {name!r}; known: {sorted(SCORES)}")
    return factory(settings)
