"""`OutageLog`: how a bus says that its writes fail, in a few lines rather than one a write.

A full disk or a broker away fails every publish, and a busy gateway publishes thousands
a second: the bus logs the first failure with its reason, then at most one line per
`interval_s` with how many writes were refused since the last, and one line when writes
succeed again. Some writes may pass while others fail (a nearly full disk takes a small
write, not a large one): the outage ends only with a write that succeeds `quiet_s`
after the last failure.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable


class OutageLog:
    """The failing writes of one bus (`what` names it in the lines). Call `failed` for
    every refused write (or batch of them) and `succeeded` after every stored one; both
    are cheap outside an outage. Not thread-safe: call from one thread."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        interval_s: float = 10.0,
        quiet_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.logger = logger
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.clock = clock
        self._held = 0  # refused writes not yet counted in a line
        self._total = 0  # refused writes of the outage announced
        self._since: float | None = None  # when the outage was announced; None: none is
        self._last_line = -math.inf
        self._last_failure = -math.inf

    @property
    def failing(self) -> bool:
        """Whether an outage was announced and writes have not succeeded since."""
        return self._since is not None

    def failed(self, reason: str, writes: int = 1) -> None:
        """`writes` were refused (nothing of them stored) because of `reason`."""
        self._held += writes
        now = self._last_failure = self.clock()
        if now - self._last_line < self.interval_s:
            return
        if self._since is None:
            self._since = now
            self.logger.warning(
                "%s: writes are failing (%s); nothing of them is stored: the ingress answers "
                "503 and the roles retry. %d refused; one line per %g s while it lasts",
                self.what, reason, self._held, self.interval_s,
            )  # fmt: skip
        else:
            self.logger.warning(
                "%s: writes still failing (%s); %d refused in the last %.0f s",
                self.what, reason, self._held, now - self._last_line,
            )  # fmt: skip
        self._total += self._held
        self._held = 0
        self._last_line = now

    def succeeded(self) -> None:
        """A write was stored: ends the outage announced, if any, once no write has
        failed for `quiet_s`."""
        if self._since is None:
            return
        now = self.clock()
        if now - self._last_failure < self.quiet_s:
            return
        self._total += self._held
        self.logger.warning(
            "%s: writes succeed again, %.1f s after they began failing; %d refused",
            self.what, now - self._since, self._total,
        )  # fmt: skip
        self._since, self._total, self._held = None, 0, 0
