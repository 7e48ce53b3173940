"""`Idempotency-Key` on the two submission routes: the same key from the same workspace
within a day answers the first task instead of creating a second one.

Who decides is the scheduler (one decider, its state checkpointed): a keyed
`TaskSubmitted` waits for its `IdempotencyChecked`, which names the task that holds the
key. Every ingress folds those verdicts (`KeyIndex`), so a repeat of a key it has seen
decided is answered without publishing anything; a key it has not (it was decided before
this ingress started, or moments ago elsewhere) is submitted and the verdict awaited. A
repeat decided that way is recorded: a task ended at once, cancelled as a repeat.

A repeat must send the same request: the same container path, port, `btc_address` and
`data`. Another request under the same key is a 422."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from events import IdempotencyChecked
from services.ingress.errors import BadRequest, Unprocessable

KEY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
WINDOW = timedelta(days=1)
"""As the scheduler's `IDEMPOTENCY_WINDOW_S`."""
VERDICT_WAIT_S = 10.0
"""How long a keyed submission waits for the scheduler's verdict before a 503."""


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A submission's key (hashed with its workspace id: a key names nothing outside its
    workspace) and the digest of what it asks the container."""

    key: str
    digest: str


@dataclass(frozen=True, slots=True)
class Original:
    """The task that holds a key, and the digest of its request."""

    task_id: str
    digest: str


def keyed_request(
    headers: Mapping[str, str],
    workspace_id: str,
    *,
    path: str,
    port: int,
    btc_address: str,
    payload: str,
) -> KeyedRequest | None:
    """The request's key and digest, or None without an `Idempotency-Key` header.
    `BadRequest` naming the header unless it is 1-255 visible ASCII characters."""
    raw = headers.get(KEY_HEADER)
    if raw is None:
        return None
    if not (0 < len(raw) <= MAX_KEY_LENGTH and raw.isascii() and raw.isprintable()) or (" " in raw):
        raise BadRequest(
            f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters", field=KEY_HEADER
        )
    key = _digest(workspace_id, raw)
    return KeyedRequest(key, _digest(path, str(port), btc_address, payload))


def _digest(*parts: str) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        hashed.update(len(data).to_bytes(8, "big"))
        hashed.update(data)
    return hashed.hexdigest()[:32]


def same_request(keyed: KeyedRequest, original: Original) -> str:
    """The original's task id when `keyed` asks what it asked; `Unprocessable` (422,
    naming the header and the task) when it asks something else."""
    if keyed.digest != original.digest:
        raise Unprocessable(
            f"this key was first used for task {original.task_id} with another request "
            "(path, port, btc_address or data differ); use a new key for a new request",
            field=KEY_HEADER,
        )
    return original.task_id


class KeyIndex:
    """The keys decided within the window, as the scheduler's verdicts said: key -> the
    task holding it. At most `capacity` keys (the oldest forgotten first: a key this index
    forgot is asked of the scheduler again, which still knows it)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, tuple[Original, datetime]] = OrderedDict()

    def apply(self, verdict: IdempotencyChecked, at: datetime) -> None:
        """Fold a verdict whose envelope's time is `at`: a first claim takes its key (one
        that expired is claimed anew) until `at` plus the window, as in the scheduler. A
        repeat's verdict teaches nothing (when its key was claimed is not in it)."""
        if verdict.repeat:
            return
        key = verdict.idempotency_key
        self._keys.pop(key, None)
        self._keys[key] = (Original(verdict.task_id, verdict.original_digest), at)
        while self._keys and (
            len(self._keys) > self.capacity or next(iter(self._keys.values()))[1] < at - WINDOW
        ):
            self._keys.popitem(last=False)

    def original(self, key: str, now: datetime) -> Original | None:
        """The task holding `key` at `now`, if this index knows it."""
        held = self._keys.get(key)
        if held is None or held[1] < now - WINDOW:
            return None
        return held[0]

    def __len__(self) -> int:
        return len(self._keys)
