"""`RepeatFilter`: one line per repeating message instead of a flood.

While Kafka is unreachable, aiokafka logs the same connection error every ~100 ms from
each of a process's clients. The filter lets the first of a kind through, then at most
one per `interval_s`, saying how many it held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """For records of loggers under `prefixes`: pass a (logger, level, message template)
    once per `interval_s`, counting the ones held back in between."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval_s:g} s)"
        return True
