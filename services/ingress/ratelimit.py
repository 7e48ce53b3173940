"""Token buckets per key (a workspace, or a client IP), in this process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class RateLimiter:
    """`rate_per_s` sustained, `burst` at once; `rate_per_s <= 0` disables the limit.
    At most `max_keys` buckets are kept: beyond that the oldest key is forgotten (it
    starts again with a full burst), so keys a caller can choose, such as client IPs,
    cannot grow memory without bound."""

    rate_per_s: float
    burst: int
    max_keys: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for `key`; False when none is left."""
        if self.rate_per_s <= 0:
            return True
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True
