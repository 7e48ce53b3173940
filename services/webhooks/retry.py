"""When a webhook is tried again: exponential backoff with jitter, within a window."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The pause after attempt `n` (1-based) is drawn from [d/2, d], where d is
    `base_s` · 2^(n-1), at most `max_s` ("equal jitter": the pauses still grow, and
    receivers that failed together are not retried together). A message is abandoned
    once its next attempt would come more than `window_s` after the event it reports."""

    base_s: float = 5.0
    max_s: float = 3600.0
    window_s: float = 86_400.0

    def pause_after(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 60))
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2

    def next_pause(
        self, attempt: int, elapsed_s: float, rng: random.Random | None = None
    ) -> float | None:
        """The pause before the next attempt after attempt `attempt`, made `elapsed_s`
        after the message's event; None: give up (the window would be passed)."""
        pause = self.pause_after(attempt, rng)
        if elapsed_s + pause > self.window_s:
            return None
        return pause
