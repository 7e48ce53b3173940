"""A scheduling profile: the plugins built from `SchedulerSettings`, in order, with weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import FilterPlugin, ScheduleContext, ScorePlugin
from services.scheduler.plugins.registry import make_filter, make_score
from services.scheduler.records import DeploymentState, NodeState

FilterCall = Callable[[ScheduleContext, DeploymentState, NodeState], "str | None"]
ScoreCall = Callable[[ScheduleContext, DeploymentState, NodeState], float]


@dataclass(frozen=True, slots=True)
class Profile:
    """Plugins ready to run. `filter_calls` and `score_calls` are the bound methods the
    hot loop calls (looked up once here rather than per candidate)."""

    settings: SchedulerSettings
    filters: tuple[FilterPlugin, ...]
    scores: tuple[tuple[ScorePlugin, float], ...]
    filter_calls: tuple[tuple[str, FilterCall], ...]
    score_calls: tuple[tuple[float, ScoreCall], ...]


def build_profile(settings: SchedulerSettings | None = None) -> Profile:
    """Build the plugins `settings` name. Raises `UnknownPluginError` for a name not in
    the registry. Score plugins with weight 0 are left out."""
    settings = settings or SchedulerSettings()
    filters = tuple(make_filter(name, settings) for name in settings.filters)
    built = [(make_score(name, settings), weight) for name, weight in settings.weights.items()]
    scores = tuple((plugin, weight) for plugin, weight in built if weight > 0)
    return Profile(
        settings=settings,
        filters=filters,
        scores=scores,
        filter_calls=tuple((f.NAME, f.filter) for f in filters),
        score_calls=tuple((weight, s.score) for s, weight in scores),
    )
