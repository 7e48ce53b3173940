"""The sample app as a real child process, called over HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from services.sampleapp import MAX_BODY_BYTES
from tests.services.sampleapp.helpers import DEADLINE_S, sampleapp

BODY = {
    "image_url": "https://ngpu.ai/image/1683730315image.jpeg",
    "prompt": "manicured claws, score_9, 1girl, realistic, cat woman, dutch angle",
}
DIGEST = hashlib.sha256(BODY["prompt"].encode()).hexdigest()


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("path", ["/img2img", "/sdapi/v1/img2img"])
def test_img2img_answers_like_the_original_api(client: httpx.Client, path: str) -> None:
    headers = {"X-NGPU-Task-ID": "task-123", "X-NGPU-Attempt": "2"}
    response = client.post(path, json=BODY, headers=headers)

    assert response.status_code == 200
    answer = response.json()
    assert answer["result_code"] == 100
    assert answer["msg"].startswith("SUCCESS!")
    assert answer["image_url"] == f"https://ngpu.ai/image/{DIGEST[:32]}.jpeg"
    assert answer["prompt_sha256"] == DIGEST
    assert answer["prompt_words"] == len(BODY["prompt"].split())
    assert answer["source_image_url"] == BODY["image_url"]
    assert (answer["task_id"], answer["attempt"]) == ("task-123", "2")
    assert answer["node"] == "node-7"


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'["any", "json"]', 200),
        (b"42", 200),
        (b"", 200),
        (b'{"prompt": 7}', 200),
        (b"not json", 400),
        (b"\xff\xfe", 400),
    ],
)
def test_img2img_accepts_any_json_and_refuses_the_rest(
    client: httpx.Client, content: bytes, status: int
) -> None:
    response = client.post("/img2img", content=content)
    assert response.status_code == status
    assert response.json()["result_code"] == (100 if status == 200 else 400)


def test_the_sdapi_answer_carries_a_task_id_that_can_be_polled(client: httpx.Client) -> None:
    answer = client.post("/sdapi/v1/img2img", json=BODY).json()
    task = client.get(f"/img2img&taskID={answer['taskID']}").json()

    assert task["status"] == "done"
    assert task["result"]["image_url"] == answer["image_url"]


def test_an_async_task_is_running_until_its_delay_passes(client: httpx.Client) -> None:
    queued = client.post("/tasks?delay_ms=600000", json=BODY).json()
    running = client.get(f"/tasks/{queued['taskID']}").json()

    assert queued["result_code"] == 100
    assert (running["status"], running["result"]) == ("running", None)


def test_async_tasks_complete_with_their_result(client: httpx.Client) -> None:
    task_id = client.post("/tasks?delay_ms=100", json=BODY).json()["taskID"]
    deadline = time.monotonic() + DEADLINE_S
    while (done := client.get(f"/tasks/{task_id}").json())["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert done["taskID"] == task_id
    assert done["result"]["prompt_sha256"] == DIGEST
    assert client.get(f"/img2img?taskID={task_id}").json() == done


def test_an_unknown_task_is_404(client: httpx.Client) -> None:
    assert client.get("/tasks/nope").status_code == 404
    assert client.get("/img2img&taskID=nope").status_code == 404


def test_sleep_answers_after_the_delay(client: httpx.Client) -> None:
    response = client.post("/sleep?ms=150", headers={"X-NGPU-Task-ID": "t-9"})
    assert response.json() == {"slept_ms": 150, "task_id": "t-9"}


@pytest.mark.parametrize("query", ["ms=-1", "ms=soon", "ms=600001"])
def test_sleep_refuses_bad_durations(client: httpx.Client, query: str) -> None:
    response = client.post(f"/sleep?{query}")
    assert response.status_code == 400
    assert "ms must be an integer" in response.json()["msg"]


def test_a_client_timeout_during_sleep_leaves_the_app_serving(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/sleep?ms=2000", timeout=0.2)
    assert client.get("/health").status_code == 200


def _hold_of(client: httpx.Client, task_id: str) -> str | None:
    holds: dict[str, str] = client.get("/holds").json()["holds"]
    return holds.get(task_id)


def test_a_hold_answers_after_the_delay_and_is_recorded(client: httpx.Client) -> None:
    response = client.post("/hold", json={"ms": 100}, headers={"X-NGPU-Task-ID": "h-1"})
    assert response.json() == {"held_ms": 100, "task_id": "h-1"}
    assert _hold_of(client, "h-1") == "answered"
    assert client.post("/hold?ms=soon").status_code == 400


def test_a_hold_whose_caller_hangs_up_ends_at_once_as_closed(client: httpx.Client) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post("/hold?ms=60000", headers={"X-NGPU-Task-ID": "h-2"}, timeout=0.5)
    deadline = time.monotonic() + DEADLINE_S  # a hang guard: the hold would last 60 s
    while _hold_of(client, "h-2") != "closed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _hold_of(client, "h-2") == "closed"
    assert time.monotonic() - started < DEADLINE_S
    assert client.post("/holds").status_code == 200  # for sync calls through the gateway


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (bytes(range(256)) * 4, "application/octet-stream"),
        (b'{"a": 1}', "application/json; charset=utf-8"),
        (b"", "text/plain"),
    ],
)
def test_echo_returns_the_body_and_content_type_unchanged(
    client: httpx.Client, content: bytes, content_type: str
) -> None:
    response = client.post("/echo", content=content, headers={"Content-Type": content_type})
    assert response.content == content
    assert response.headers["content-type"] == content_type


def test_headers_answers_the_headers_it_received(client: httpx.Client) -> None:
    sent = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "X-NGPU-Task-ID": "t-headers"}  # fmt: skip
    received = client.post("/headers", content=b"{}", headers=sent).json()["headers"]
    assert received["traceparent"] == sent["traceparent"]
    assert received["x-ngpu-task-id"] == "t-headers"


def test_a_body_at_the_limit_is_accepted(client: httpx.Client) -> None:
    response = client.post("/echo", content=b"x" * MAX_BODY_BYTES)
    assert response.status_code == 200
    assert len(response.content) == MAX_BODY_BYTES


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 65536):
        yield b"y" * 65536


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_10_mb_is_refused_with_413(client: httpx.Client, chunked: bool) -> None:
    size = MAX_BODY_BYTES + 65536
    content = _chunks(size) if chunked else b"y" * size
    try:
        response = client.post("/echo", content=content)
    except httpx.WriteError:
        pytest.fail("the app closed the connection without answering 413")
    assert response.status_code == 413
    assert response.json()["result_code"] == 413
    assert client.get("/health").status_code == 200


def test_whoami_names_the_node_and_the_process(
    client: httpx.Client, app: tuple[subprocess.Popen[bytes], str]
) -> None:
    answer = client.get("/whoami").json()
    assert answer["node"] == "node-7"
    assert answer["pid"] == app[0].pid
    assert answer["env"] == {"NGPU_NODE_ID": "node-7"}


def test_calls_counts_the_requests_of_each_task(client: httpx.Client) -> None:
    for task_id, path in [("t-1", "/echo"), ("t-2", "/img2img"), ("t-1", "/fail"), ("t-1", "/x")]:
        client.post(path, json={}, headers={"X-NGPU-Task-ID": task_id})
    client.post("/echo", json={})  # no task: not counted
    calls = client.get("/calls").json()["calls"]
    assert (calls["t-1"], calls["t-2"]) == (3, 1)
    counted = client.post("/calls", json={}, headers={"X-NGPU-Task-ID": "t-3"}).json()["calls"]
    assert counted["t-3"] == 1  # a call through the gateway counts itself
    assert client.post("/echo", content=b"next").content == b"next"  # the body was read


@pytest.mark.parametrize("status", [400, 500, 503])
def test_fail_answers_the_status_asked(client: httpx.Client, status: int) -> None:
    assert client.post(f"/fail?status={status}").status_code == status


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/img2img/x", 404),
        ("GET", "/echo", 405),
        ("POST", "/health", 405),
    ],
)
def test_unknown_routes_and_methods(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    assert client.request(method, path).status_code == status


@pytest.mark.parametrize(("path", "status"), [("/nope", 404), ("/health", 405)])
def test_a_refused_body_is_not_taken_for_the_next_request(
    client: httpx.Client, path: str, status: int
) -> None:
    # Refused before its body was read, a request leaves the body on the connection: it
    # must be closed, or the next request on it would begin with that body ("[]POST").
    assert client.post(path, content=b"[]").status_code == status
    echoed = client.post("/echo", content=b"hi")
    assert (echoed.status_code, echoed.content) == (200, b"hi")


def test_port_comes_from_the_environment_and_sigterm_exits_cleanly() -> None:
    with sampleapp(env={"NGPU_NODE_ID": "node-env"}, port_from_env=True) as (proc, url):
        whoami = httpx.get(f"{url}/whoami", trust_env=False).json()
        assert whoami["port"] == int(url.rsplit(":", 1)[1])
        assert whoami["env"]["PORT"] == str(whoami["port"])
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE_S) == 0


def test_exit_ends_the_process_with_the_code_asked() -> None:
    with sampleapp() as (proc, url):
        with pytest.raises(httpx.HTTPError):
            httpx.post(f"{url}/exit?code=7", trust_env=False)
        assert proc.wait(timeout=DEADLINE_S) == 7
