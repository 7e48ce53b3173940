"""The API contract's own examples (docs/ngpu-api-integration.md), as OpenAPI examples of
the NGPU routes: what `/docs` and a client generator show. Values are the contract's,
but for the messages, which are the gateway's own; `data` is the container's response body
as a string."""

from __future__ import annotations

from typing import Any

REQUEST_BODY: dict[str, Any] = {
    "btc_address": "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
    "data": {
        "image_url": "https://ngpu.ai/image/1683730315image.jpeg",
        "prompt": "cat woman, black suit, character concept, night time, dark shadows",
    },
}
SYNC_ANSWER: dict[str, Any] = {
    "result_code": 200,
    "msg": "success",
    "data": '{"image_url": "https://ngpu.ai/image/16837303689.jpeg"}',
}
SUBMITTED: dict[str, Any] = {
    "result_code": 100,
    "msg": "SUCCESS! The task is queued",
    "taskID": "20230423_11_23_05_10279",
}
QUERIED: dict[str, Any] = {**SYNC_ANSWER, "taskID": SUBMITTED["taskID"]}
CANCELLED: dict[str, Any] = {
    "result_code": 200,
    "msg": "the task was cancelled",
    "taskID": "20230423_11_23_05_10279",
}
TASK_LIST: dict[str, Any] = {
    "result_code": 200,
    "msg": "success",
    "result_size": 4,
    "taskIds": [
        "20240411_13_36_11_922124",
        "20240411_14_37_10_405715",
        "20240411_14_53_35_843805",
        "20240411_14_54_23_785178",
    ],
}
DETAIL: dict[str, Any] = {
    "result_code": 200,
    "msg": "success",
    "taskInfo": {
        "id": 2687,
        "userkey": "ts-22a51e64-a535-4c2a-8c20-3e7f2b4fbc2c",
        "btcaddress": "0000000000000000000000000GFg7xJaNVN2",
        "workspaceid": "367614711220405248",
        "taskid": "20240415_14_30_09_891041",
        "requrl": "/user/schedulingTask?paramUrl=create",
        "method": "schedulingTask",
        "userip": "94.74.66.215",
        "nodeip": "43.240.1.180",
        "nodeaddr": "0xCac10F51814E8e425a6877951fecb7746161c669",
        "requesttime": "2024-04-15 14:30:11",
        "responsetime": "2024-04-15 14:30:12",
        "request": '{"prompt": "a cat"}',
        "state": 3,
        "response": '{"task_id": "37a41eba-23d2-4490-aca9-b84b1c2408f6"}',
        "recordDursion": 1,
        "videodursion": 0,
        "gpudursion": 1,
        "watermarktime": "",
        "watermarkres": "",
    },
}
BRC20_CHECK: dict[str, Any] = {"exists": True, "names": ["AINN"], "balances": [100]}


def answered(example: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """An operation's `responses` part showing `example` as its JSON answer of `status`."""
    return {str(status): {"content": {"application/json": {"example": example}}}}
