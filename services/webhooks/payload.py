"""What a webhook says: the Standard Webhooks payload shape, whose `data` is the task's
`queryTask` answer as it stood at the event reported (built by the code that builds that
answer: `services.ingress.routers.ngpu.outcome`, `contract_body`).

    {"type": "task.completed", "timestamp": "2024-04-15T14:30:12.120000Z",
     "data": {"result_code": 200, "msg": "success", "taskID": "...", "data": "..."}}

`type` is `task.start` (the first attempt was dispatched; `data` says 100, running) or
`task.completed` (the task ended, however it ended: `result_code` says how). `timestamp` is
the time of the event reported, so every attempt of a message sends the same bytes."""

from __future__ import annotations

from datetime import datetime

import orjson

from events import WebhookKind
from services.ingress.results import contract_body
from services.ingress.routers.ngpu import outcome
from services.ingress.taskview import TaskStatus


def message_id(task_id: str, kind: WebhookKind) -> str:
    """The `webhook-id` of the task's `kind` message: the same on every attempt and in
    every process, so a receiver can drop a message it has already taken."""
    return f"msg_{task_id}_{kind}"


def payload(kind: WebhookKind, status: TaskStatus, at: datetime) -> bytes:
    """The JSON body of the `kind` message of the task whose status is `status`."""
    code, msg, data = outcome(status)
    answer = contract_body(code, msg, taskID=status.task_id, data=data)
    document = {"type": f"task.{kind}", "timestamp": at, "data": answer}
    return orjson.dumps(document, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
