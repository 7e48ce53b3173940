import pytest

from services.scheduler import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    SchedulerSettings,
    UnknownPluginError,
)
from services.scheduler.plugins import FILTERS, SCORES, make_filter, make_score


def test_every_default_plugin_is_registered() -> None:
    assert set(DEFAULT_FILTERS) == set(FILTERS)
    assert set(DEFAULT_WEIGHTS) == set(SCORES)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filter_factories_build_the_named_plugin(name: str) -> None:
    assert name == make_filter(name, SchedulerSettings()).NAME


@pytest.mark.parametrize("name", sorted(SCORES))
def test_score_factories_build_the_named_plugin(name: str) -> None:
    assert name == make_score(name, SchedulerSettings()).NAME


def test_unknown_names_are_refused() -> None:
    with pytest.raises(UnknownPluginError, match="Nope"):
        make_filter("Nope", SchedulerSettings())
    with pytest.raises(UnknownPluginError, match="Nope"):
        make_score("Nope", SchedulerSettings())
