"""The customer's NGPU API against `ngpu up --demo` in a child process: the contract's
examples sent verbatim, the task details, and the adversarial inputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.demo import WORKSPACE_NAME
from tests.e2e.cluster import ADMIN_TOKEN, Cluster, cluster_env, sample_workspace, wait_for

BTC = "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus"
# A valid mainnet address that holds nothing in the demo holdings (BIP-173 vector).
POOR_BTC = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
CONTRACT_BODY = {"btc_address": BTC, "data": ""}
TASK_INFO_TYPES: dict[str, type] = {
    "id": int, "userkey": str, "btcaddress": str, "workspaceid": str, "taskid": str,
    "requrl": str, "method": str, "userip": str, "nodeip": str, "nodeaddr": str,
    "requesttime": str, "responsetime": str, "request": str, "state": int, "response": str,
    "recordDursion": int, "videodursion": int, "gpudursion": int, "watermarktime": str,
    "watermarkres": str,
}  # fmt: skip


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None
) -> Iterator[tuple[Cluster, str]]:
    env = cluster_env(kafka_bootstrap, NGPU_TRUSTED_PROXIES='["127.0.0.1"]', NGPU_TASK_TTL_S="20")
    cluster = Cluster(tmp_path_factory.mktemp("demo"), env)
    try:
        workspace_id = cluster.start_demo()
        yield cluster, workspace_id
    finally:
        cluster.stop()


def _client(demo: tuple[Cluster, str], token: str | None = None) -> httpx.Client:
    cluster, workspace_id = demo
    headers = {"Authorization": f"Bearer {token or workspace_id}"}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=60)


def _assert_shape(body: dict[str, Any], types: dict[str, type]) -> None:
    assert set(body) == set(types), f"fields {sorted(body)} != {sorted(types)}"
    for name, kind in types.items():
        assert type(body[name]) is kind, f"{name} is {type(body[name]).__name__}, not {kind}"


def _wait_done(http: httpx.Client, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = http.get(f"/user/queryTask&taskID={task_id}").json()
        return body if body["result_code"] != 100 else None

    return wait_for(done, 60, f"task {task_id} to end")


def test_contract_examples_verbatim(demo: tuple[Cluster, str]) -> None:
    with _client(demo) as http:
        sync = http.post("/user/img2img", json=CONTRACT_BODY)
        assert sync.status_code == 200, sync.text
        _assert_shape(sync.json(), {"result_code": int, "msg": str, "data": str})
        assert sync.json()["result_code"] == 200
        assert '"image_url": "https://ngpu.ai/image/' in sync.json()["data"]

        accepted = http.post(
            "/user/schedulingTask?paramUrl=sdapi/v1/img2img&paramPort=8080", json=CONTRACT_BODY
        )
        assert accepted.status_code == 202, accepted.text
        _assert_shape(accepted.json(), {"result_code": int, "msg": str, "taskID": str})
        assert accepted.json()["result_code"] == 100
        task_id = accepted.json()["taskID"]

        queried = http.get(f"/user/queryTask&taskID={task_id}")
        _assert_shape(queried.json(), {"result_code": int, "msg": str, "taskID": str, "data": str})
        assert queried.json()["result_code"] in (100, 200)
        done = _wait_done(http, task_id)
        assert done["result_code"] == 200 and done["taskID"] == task_id
        assert http.get("/user/queryTask", params={"taskID": task_id}).json() == done

        listing = http.get("/user/queryTaskList?startTime=2024-04-11&endTime=2024-04-20")
        _assert_shape(
            listing.json(), {"result_code": int, "msg": str, "result_size": int, "taskIds": list}
        )
        assert listing.json()["result_size"] == 0  # the contract's dates hold none of ours
        everything = wait_for(
            lambda: (b := http.get("/user/queryTaskList").json())["result_size"] >= 2 and b,
            30, "the list to hold both tasks",
        )  # fmt: skip
        assert task_id in everything["taskIds"]
        assert everything["result_size"] == len(everything["taskIds"])

        detailed = http.get(f"/user/getDetailed?taskID={task_id}")
        assert detailed.status_code == 200, detailed.text
        _assert_shape(detailed.json(), {"result_code": int, "msg": str, "taskInfo": dict})
        _assert_shape(detailed.json()["taskInfo"], TASK_INFO_TYPES)
        assert detailed.json()["taskInfo"]["state"] == 3

        check = http.get(f"/brc20/checkAddress&address={BTC}")
        assert check.json() == {"exists": True, "names": ["AINN"], "balances": [100]}
        assert http.get("/brc20/checkAddress", params={"address": BTC}).json() == check.json()


def test_task_details_are_filled(demo: tuple[Cluster, str]) -> None:
    cluster, workspace_id = demo
    with _client(demo) as http:
        accepted = http.post(
            "/user/schedulingTask?paramUrl=sleep?ms=1200",
            json={"btc_address": BTC, "data": '{"prompt": "slow"}'},
            headers={"X-Forwarded-For": "94.74.66.215"},
        )
        task_id = accepted.json()["taskID"]
        assert _wait_done(http, task_id)["result_code"] == 200
        info = wait_for(
            lambda: (r := http.get(f"/user/getDetailed?taskID={task_id}")).is_success
            and r.json()["taskInfo"]["state"] == 3 and r.json()["taskInfo"],
            30, "the detail to be projected",
        )  # fmt: skip
    nodes = cluster.nodes()
    assert info["taskid"] == task_id and info["workspaceid"] == workspace_id
    assert info["userip"] == "94.74.66.215"  # from the trusted proxy's X-Forwarded-For
    assert info["btcaddress"] == BTC and info["userkey"].startswith("ts-")
    assert info["requrl"] == "/user/schedulingTask?paramUrl=sleep?ms=1200"
    assert info["method"] == "schedulingTask"
    assert info["request"] == '{"prompt": "slow"}'
    assert info["nodeip"] == "127.0.0.1"
    assert info["nodeaddr"] == nodes[0]["address"]
    assert info["recordDursion"] >= 1 and info["gpudursion"] >= 1
    assert info["videodursion"] == 0 and info["watermarktime"] == info["watermarkres"] == ""
    assert time.strptime(info["requesttime"], "%Y-%m-%d %H:%M:%S")
    assert info["responsetime"] >= info["requesttime"]
    assert info["id"] > 0


def _submissions(cluster: Cluster) -> int:
    return sum(1 for e in cluster.events() if e["type"] == "TaskSubmitted")


def _other_workspace(cluster: Cluster) -> str:
    """A new workspace no node can run (names are unique: each call its own)."""
    body = {"name": f"other-team-{uuid.uuid4().hex[:8]}", "image": "x", "command": "true",
            "gpu": {"type": "A100", "count": 1}, "ports": [9000]}  # fmt: skip
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=body, headers=cluster.admin())
    assert created.status_code == 201, created.text
    return str(created.json()["workspace_id"])


def _other_workspace_task(cluster: Cluster) -> str:
    other = _other_workspace(cluster)
    accepted = httpx.post(
        f"{cluster.url}/user/schedulingTask?paramUrl=run",
        json={"data": ""},
        headers={"Authorization": f"Bearer {other}"},
    )
    return str(accepted.json()["taskID"])


PROBE = "/user/schedulingTask?paramUrl="
ADVERSARIAL = [
    ("traversal", "post", PROBE + "../admin", CONTRACT_BODY, 400),
    ("encoded-traversal", "post", PROBE + "a/%252e%252e/b", CONTRACT_BODY, 400),
    ("absolute-url", "post", PROBE + "http://169.254.169.254/x", CONTRACT_BODY, 400),
    ("scheme-relative", "post", PROBE + "//evil.example/x", CONTRACT_BODY, 400),
    ("crlf", "post", PROBE + "a%0d%0aHost:%20evil", CONTRACT_BODY, 400),
    ("undeclared-port", "post", PROBE + "img2img&paramPort=9999", CONTRACT_BODY, 400),
    ("sync-undeclared-port", "post", "/user/img2img?paramPort=22", CONTRACT_BODY, 400),
    ("invalid-btc", "post", "/user/img2img", {"btc_address": "bc1qnotanaddress", "data": ""}, 400),
    ("asset-missing", "post", "/user/img2img", {"btc_address": POOR_BTC, "data": ""}, 403),
    ("malformed-json", "post", "/user/img2img", b'{"data": ', 400),
    ("data-not-a-string", "post", "/user/img2img", {"data": 42}, 400),
    ("body-over-limit", "post", "/user/img2img", {"data": "x" * (2 << 20)}, 413),
    ("unknown-task", "get", "/user/queryTask?taskID=20240411_13_36_11_922124", None, 404),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "path", "body", "status"), ADVERSARIAL,
                         ids=[a[0] for a in ADVERSARIAL])  # fmt: skip
def test_adversarial_inputs_answer_4xx_and_publish_nothing(
    demo: tuple[Cluster, str], name: str, method: str, path: str, body: Any, status: int
) -> None:
    cluster, _ = demo
    before = _submissions(cluster)
    with _client(demo) as http:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = http.request(method.upper(), path, **(kwargs if body is not None else {}))
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["result_code"] == status and isinstance(answer["msg"], str) and answer["msg"]
    assert _submissions(cluster) == before


def test_bad_bearers_are_401_and_publish_nothing(demo: tuple[Cluster, str]) -> None:
    cluster, workspace_id = demo
    before = _submissions(cluster)
    for token in ("nope", ADMIN_TOKEN, workspace_id[:-1], workspace_id + "0"):
        with _client(demo, token) as http:
            response = http.post("/user/img2img", json=CONTRACT_BODY)
            assert response.status_code == 401 and response.json()["result_code"] == 401
    no_header = httpx.post(f"{cluster.url}/user/img2img", json=CONTRACT_BODY)
    assert no_header.status_code == 401
    assert _submissions(cluster) == before


def test_another_workspaces_task_is_unknown(demo: tuple[Cluster, str]) -> None:
    cluster, _ = demo
    foreign = _other_workspace_task(cluster)
    with _client(demo) as http:
        for path in (f"/user/queryTask?taskID={foreign}", f"/user/getDetailed?taskID={foreign}",
                     f"/user/queryTask&taskID={foreign}"):  # fmt: skip
            response = http.get(path)
            assert response.status_code == 404 and response.json()["result_code"] == 404
        assert foreign not in http.get("/user/queryTaskList").json()["taskIds"]


def test_usage_rolls_up_gpu_seconds(demo: tuple[Cluster, str]) -> None:
    cluster, workspace_id = demo
    with _client(demo) as http:
        http.post("/user/img2img", json=CONTRACT_BODY)

    def rows(group_by: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{cluster.url}/v1/analytics/usage",
                             params={"group_by": group_by}, headers=cluster.admin())  # fmt: skip
        assert response.status_code == 200, response.text
        return list(response.json()["rows"])

    def settled() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        # Tasks may still be landing in the projections: read until two reads agree.
        first, days, again = rows("workspace"), rows("day"), rows("workspace")
        return (first, days) if first and first == again else None

    by_workspace, by_day = wait_for(settled, 30, "usage rows")
    (mine,) = [r for r in by_workspace if r["key"] == workspace_id]
    assert mine["tasks"] >= 1 and mine["gpu_seconds"] > 0
    assert [r["key"] for r in rows("gpu_type")] == ["RTX4090"]
    assert sum(r["tasks"] for r in by_day) == sum(r["tasks"] for r in by_workspace)
    forbidden = httpx.get(
        f"{cluster.url}/v1/analytics/usage", headers={"Authorization": "Bearer x"}
    )
    assert forbidden.status_code == 401


def _demo_node(cluster: Cluster) -> tuple[str, str]:
    """The demo node's id and own token, from the registration its agent keeps."""
    for work_dir in ("demo-node", "demo"):  # `ngpu up --demo`'s agent; on Kafka, ours
        path = cluster.data_dir / work_dir / "registration.json"
        if path.exists():
            registration = json.loads(path.read_text())["registration"]
            return str(registration["node_id"]), str(registration["token"])
    raise AssertionError("the demo node's registration is not in its work dir")


def test_workspaces_and_nodes_see_their_own_usage_as_the_admin_does(
    demo: tuple[Cluster, str],
) -> None:
    cluster, workspace_id = demo
    node_id, node_token = _demo_node(cluster)
    with _client(demo) as http:
        assert http.post("/user/img2img", json=CONTRACT_BODY).status_code == 200

    def admin(**params: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{cluster.url}/v1/analytics/usage", params=params,
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        return list(response.json()["rows"])

    def mine(**params: str) -> dict[str, Any]:
        with _client(demo) as http:
            response = http.get("/user/usage", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def node(**params: str) -> dict[str, Any]:
        bearer = {"Authorization": f"Bearer {node_token}"}
        response = httpx.get(f"{cluster.url}/v1/nodes/{node_id}/usage", params=params,
                             headers=bearer, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        return dict(response.json())

    def node_slices() -> tuple[list[Any], list[Any]]:
        return admin(group_by="day", node_id=node_id), admin(group_by="revision", node_id=node_id)

    def settled() -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]] | None:
        # Tasks (this module's others too, on the same node) may still be landing in the
        # projections: read until the views agree before and after.
        first, node_first = admin(group_by="day", workspace_id=workspace_id), node_slices()
        own, served = mine(group_by="day"), node()
        again, node_again = admin(group_by="day", workspace_id=workspace_id), node_slices()
        if first and first == again == own["rows"] and node_first == node_again:
            return own, served, *node_again
        return None

    own, served, node_days, node_revisions = wait_for(settled, 30, "usage to settle")
    assert own["result_code"] == 200 and own["tasks"] >= 1 and own["gpu_seconds"] > 0
    assert own["tasks"] == sum(r["tasks"] for r in own["rows"])
    today = own["rows"][-1]["key"]
    by_gpu = mine(group_by="gpu_type", startTime=today, endTime=today)
    assert by_gpu["rows"] == admin(
        group_by="gpu_type", workspace_id=workspace_id, **{"from": today, "to": today}
    )  # fmt: skip
    assert [r["key"] for r in by_gpu["rows"]] == ["RTX4090"]
    # The node's view: its slice of the admin's, by day and by workspace revision.
    assert workspace_id not in json.dumps(served)
    assert served["node_id"] == node_id and served["tasks"] >= own["tasks"]
    days: dict[str, int] = {}
    for row in served["rows"]:
        days[row["day"]] = days.get(row["day"], 0) + row["tasks"]
    assert days == {r["key"]: r["tasks"] for r in node_days}
    (ours,) = {r["workspace_hash"] for r in served["rows"] if r["workspace"] == WORKSPACE_NAME}
    assert ours == hashlib.sha256(workspace_id.encode()).hexdigest()[:12]
    revisions = {f"{r['workspace_hash']}@{r['revision']}": r["tasks"] for r in served["rows"]}
    expected = {
        f"{hashlib.sha256(r['key'].rpartition('@')[0].encode()).hexdigest()[:12]}"
        f"@{r['key'].rpartition('@')[2]}": r["tasks"]
        for r in node_revisions
    }
    assert revisions == expected
    # Credentials: a workspace sees only itself, a node only itself; errors as their APIs.
    with _client(demo, _other_workspace(cluster)) as http:
        assert http.get("/user/usage").json()["rows"] == []
        wrong = http.get("/user/usage", params={"group_by": "node"})
        assert wrong.status_code == 400 and wrong.json()["result_code"] == 400
    with _client(demo, "nope") as http:
        assert http.get("/user/usage").json()["result_code"] == 401
    for token, path_id in (("nope", node_id), (node_token, "n-unknown"), (workspace_id, node_id)):
        refused = httpx.get(f"{cluster.url}/v1/nodes/{path_id}/usage",
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


def test_the_log_replays_into_identical_projections(
    demo: tuple[Cluster, str], tmp_path: Path
) -> None:
    cluster, workspace_id = demo
    submitted = {
        e["key"]
        for e in cluster.events()
        if e["type"] == "TaskSubmitted" and e["data"]["workspace_id"] == workspace_id
    }
    with _client(demo) as http:
        # The projector writes in batches: wait until it holds every submission.
        live_ids = wait_for(
            lambda: set(ids := http.get("/user/queryTaskList").json()["taskIds"]) == submitted
            and ids,
            30, "the projections to catch up",
        )  # fmt: skip
        live = {t: http.get(f"/user/getDetailed?taskID={t}").json()["taskInfo"] for t in live_ids}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("replay_child.py")),
         str(cluster.data_dir), str(tmp_path / "clickhouse"), workspace_id],
        capture_output=True, check=True, env=cluster.env,
    ).stdout  # fmt: skip
    first, second = json.loads(out)
    assert first == second
    assert first["tasks"] == live_ids
    for task_id in live_ids:
        if live[task_id]["state"] == 3:
            assert first["details"][task_id] == live[task_id]


def _projected_tasks(cluster: Cluster, workspace_id: str) -> int:
    """Completed tasks of the workspace in the projections (the admin's usage view, which
    reads them alone; lists also merge what the ingress followed from the log)."""
    usage = httpx.get(f"{cluster.url}/v1/analytics/usage", headers=cluster.admin(),
                      params={"workspace_id": workspace_id}, timeout=30)  # fmt: skip
    assert usage.status_code == 200, usage.text
    return sum(int(row["tasks"]) for row in usage.json()["rows"])


def test_get_detailed_flushes_the_projector_beside_it(
    tmp_path: Path, kafka_bootstrap: str | None
) -> None:
    # A projector that holds its batches for a minute: a task that queryTask reports done
    # is still in getDetailed at once, since the ingress asks its projector to flush.
    # Another workspace asking for it gets 404 at once, and no flush.
    cluster = Cluster(tmp_path, cluster_env(kafka_bootstrap, NGPU_PROJECTOR_LINGER_S="60"))
    try:
        workspace_id = cluster.start_demo()
        with _client((cluster, workspace_id)) as http:
            accepted = http.post("/user/schedulingTask?paramUrl=echo", json={"data": "hi"})
            task_id = accepted.json()["taskID"]
            assert _wait_done(http, task_id)["result_code"] == 200
            stranger = {"Authorization": f"Bearer {_other_workspace(cluster)}"}
            foreign = http.get(f"/user/getDetailed?taskID={task_id}", headers=stranger)
            assert foreign.status_code == 404, foreign.text
            assert _projected_tasks(cluster, workspace_id) == 0  # no flush for a stranger
            detailed = http.get(f"/user/getDetailed?taskID={task_id}")
            assert detailed.status_code == 200, detailed.text
            assert detailed.json()["taskInfo"]["state"] == 3
            assert _projected_tasks(cluster, workspace_id) == 1
    finally:
        cluster.stop()


# `data` as a client may write it: integers and exponents no double holds, a trailing
# zero, spacing, escapes, raw UTF-8, and JSON's punctuation inside strings.
EXACT_DATA = (
    '{\n  "big": 123456789012345678901234567890, "price": 1.10, "huge": 1e400,\n'
    '  "s": "}{\\"data\\": [", "name": "caf\\u00e9 \\ud83d\\ude00", "raw": "café",\n'
    '  "list": [ 1 , [ ] , {} ]\n}'
)
EXACT_BODY = (
    '{"meta": {"data": 0}, "note": "\\"data\\": {}", "data":  ' + EXACT_DATA + " }"
).encode()


def test_data_reaches_the_container_byte_for_byte(demo: tuple[Cluster, str]) -> None:
    json_type = {"Content-Type": "application/json"}
    with _client(demo) as http:
        sync = http.post("/user/echo", content=EXACT_BODY, headers=json_type)
        assert sync.status_code == 200, sync.text
        assert sync.json()["data"] == EXACT_DATA  # what /echo received, sent back
        accepted = http.post("/user/schedulingTask?paramUrl=echo", content=EXACT_BODY,
                             headers=json_type)  # fmt: skip
        task_id = accepted.json()["taskID"]
        assert _wait_done(http, task_id)["data"] == EXACT_DATA
        detailed = http.get(f"/user/getDetailed?taskID={task_id}")
        assert detailed.status_code == 200, detailed.text
        assert detailed.json()["taskInfo"]["request"] == EXACT_DATA


def test_submission_answers_carry_the_task_id(demo: tuple[Cluster, str]) -> None:
    with _client(demo) as http:
        done = http.post("/user/echo", json={"data": "hello"})
        assert done.status_code == 200, done.text
        task_id = done.headers["X-NGPU-Task-ID"]
        polled = http.get("/user/queryTask", params={"taskID": task_id}).json()
        assert polled == {"result_code": 200, "msg": "success", "taskID": task_id, "data": "hello"}

        failed = http.post("/user/fail", json=CONTRACT_BODY)  # the container answers 500
        assert failed.status_code == 502, failed.text
        assert {"result_code", "msg", "data"} <= set(failed.json())
        failed_id = failed.headers["X-NGPU-Task-ID"]
        assert failed_id != task_id
        polled = http.get("/user/queryTask", params={"taskID": failed_id}).json()
        assert polled["result_code"] == 502 and polled["data"] == failed.json()["data"]

        accepted = http.post("/user/schedulingTask?paramUrl=echo", json={"data": "x"})
        assert accepted.headers["X-NGPU-Task-ID"] == accepted.json()["taskID"]

        refused = http.post("/user/img2img", json={"btc_address": POOR_BTC, "data": ""})
        assert refused.status_code == 403 and "X-NGPU-Task-ID" not in refused.headers


def test_a_sync_call_that_outwaits_its_limit_names_its_task(
    tmp_path: Path, kafka_bootstrap: str | None
) -> None:
    # No node: the task waits for capacity, and the sync call gives up after 1 s (504).
    cluster = Cluster(tmp_path, cluster_env(kafka_bootstrap, NGPU_SYNC_WAIT_MAX_S="1"))
    try:
        cluster.start_control_plane()
        created = httpx.post(f"{cluster.url}/v1/workspaces", json=sample_workspace(),
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        assert created.status_code == 201, created.text
        with _client((cluster, str(created.json()["workspace_id"]))) as http:
            timed_out = http.post("/user/echo", json={"data": "x"})
            assert timed_out.status_code == 504, timed_out.text
            assert timed_out.json()["result_code"] == 504
            task_id = timed_out.headers["X-NGPU-Task-ID"]
            assert task_id in timed_out.json()["msg"]
            polled = http.get("/user/queryTask", params={"taskID": task_id}).json()
            assert polled["result_code"] == 100
    finally:
        cluster.stop()
