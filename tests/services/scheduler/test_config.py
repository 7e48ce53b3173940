import math

import pytest

from services.scheduler import (
    DEFAULT_PROFILE,
    InvalidSchedulerSettings,
    SchedulerSettings,
    UnknownPluginError,
    build_profile,
)


@pytest.mark.parametrize(
    "changes",
    [
        {"heartbeat_window_s": 0.0},
        {"heartbeat_window_s": math.nan},
        {"lost_after_s": -1.0},
        {"heartbeat_window_s": 60.0, "lost_after_s": 30.0},
        {"warm_window_s": math.inf},
        {"failure_cooldown_s": -1.0},
        {"ewma_alpha": 0.0},
        {"ewma_alpha": 1.5},
        {"max_feasible": -1},
        {"failure_streak": -1},
        {"weights": {"LeastLoad": -1.0}},
        {"weights": {"LeastLoad": math.inf}},
    ],
)
def test_out_of_range_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidSchedulerSettings):
        SchedulerSettings(**changes)  # type: ignore[arg-type]


def test_profile_follows_the_settings() -> None:
    profile = build_profile(
        SchedulerSettings(filters=("GpuFit", "FreeSlot"), weights={"Region": 3.0, "Latency": 0.0})
    )
    assert [f.NAME for f in profile.filters] == ["GpuFit", "FreeSlot"]
    assert [(s.NAME, w) for s, w in profile.scores] == [("Region", 3.0)]
    assert [name for name, _ in profile.filter_calls] == ["GpuFit", "FreeSlot"]


def test_default_profile_runs_every_plugin() -> None:
    assert len(DEFAULT_PROFILE.filters) == 7
    assert len(DEFAULT_PROFILE.scores) == 5


@pytest.mark.parametrize(
    "settings",
    [SchedulerSettings(filters=("Nope",)), SchedulerSettings(weights={"Nope": 0.0})],
)
def test_unknown_plugins_are_refused_even_with_weight_zero(settings: SchedulerSettings) -> None:
    with pytest.raises(UnknownPluginError):
        build_profile(settings)
