"""The sample app's work, free of HTTP: a cheap, deterministic stand-in for img2img, and
the store behind its asynchronous `/tasks` endpoints."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

SUCCESS_CODE = 100
IMAGE_URL = "https://ngpu.ai/image/{digest}.jpeg"


class NotJson(ValueError):
    """The request body is not a JSON document."""


def img2img(
    body: bytes, *, task_id: str | None, attempt: str | None, node: str | None
) -> dict[str, Any]:
    """Answer an img2img request the way the contract's original API does, from any JSON
    body: the prompt (if any) is hashed and counted, and the image URL is derived from
    the hash, so equal prompts give equal URLs. `task_id` and `attempt` are the
    `X-NGPU-Task-ID` / `X-NGPU-Attempt` headers, echoed so callers can check them.
    Raises `NotJson` for a body that is not JSON."""
    try:
        document = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotJson(f"body is not JSON: {exc}") from exc
    fields = document if isinstance(document, dict) else {}
    prompt = fields.get("prompt")
    prompt = prompt if isinstance(prompt, str) else ""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return {
        "result_code": SUCCESS_CODE,
        "msg": "SUCCESS! The image was generated",
        "image_url": IMAGE_URL.format(digest=digest[:32]),
        "source_image_url": fields.get("image_url"),
        "prompt_sha256": digest,
        "prompt_words": len(prompt.split()),
        "body_bytes": len(body),
        "task_id": task_id,
        "attempt": attempt,
        "node": node,
    }


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A task of the asynchronous API: its result, and when it is due to be done."""

    task_id: str
    result: dict[str, Any]
    done_at: float


class TaskStore:
    """Thread-safe, bounded store of asynchronous tasks (the oldest are forgotten first,
    so a long demo cannot grow it without limit)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._tasks: OrderedDict[str, StoredTask] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, result: dict[str, Any], delay_s: float = 0.0) -> str:
        """Keep `result` under a new task id, reported as running for `delay_s`."""
        task_id = time.strftime("%Y%m%d_%H_%M_%S_") + uuid.uuid4().hex[:12]
        with self._lock:
            self._tasks[task_id] = StoredTask(task_id, result, time.monotonic() + delay_s)
            while len(self._tasks) > self._capacity:
                self._tasks.popitem(last=False)
        return task_id

    def describe(self, task_id: str) -> dict[str, Any] | None:
        """The task's state as the API answers it, or None for an unknown id."""
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            return None
        done = time.monotonic() >= task.done_at
        return {
            "result_code": SUCCESS_CODE,
            "msg": "SUCCESS! The task is done" if done else "The task is being processed",
            "taskID": task.task_id,
            "status": "done" if done else "running",
            "result": task.result if done else None,
        }
