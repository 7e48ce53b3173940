"""Filter and score plugins (one per file) and their registry."""

from services.scheduler.plugins.base import (
    FilterFactory,
    FilterPlugin,
    ScheduleContext,
    ScoreFactory,
    ScorePlugin,
)
from services.scheduler.plugins.registry import FILTERS, SCORES, make_filter, make_score

__all__ = [
    "FILTERS",
    "SCORES",
    "FilterFactory",
    "FilterPlugin",
    "ScheduleContext",
    "ScoreFactory",
    "ScorePlugin",
    "make_filter",
    "make_score",
]
