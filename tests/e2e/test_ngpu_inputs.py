"""The NGPU API against `ngpu up --demo`: every malformed or out-of-range query value is a
400 naming the parameter (never a 500, never a store's own error text), far dates are
clamped, and the BRC-20 check is served without a bearer, limited per client IP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.settings import Settings
from tests.e2e.cluster import Cluster, cluster_env

BTC = "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus"
CONTRACT_BODY = {"btc_address": "", "data": ""}


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None
) -> Iterator[tuple[Cluster, str]]:
    # 127.0.0.1 is a trusted proxy, so each test can speak from client IPs of its own.
    env = cluster_env(kafka_bootstrap, NGPU_TRUSTED_PROXIES='["127.0.0.1"]')
    cluster = Cluster(tmp_path_factory.mktemp("inputs"), env)
    try:
        workspace_id = cluster.start_demo()
        yield cluster, workspace_id
    finally:
        cluster.stop()


def _client(demo: tuple[Cluster, str], **headers: str) -> httpx.Client:
    cluster, workspace_id = demo
    headers = {"Authorization": f"Bearer {workspace_id}", **headers}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=60)


def _assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    answer = response.json()
    assert set(answer) == {"result_code", "msg"}, answer
    assert answer["result_code"] == status
    assert field in answer["msg"], answer


SCHEDULE = "/user/schedulingTask?paramUrl=img2img&paramPort="
BAD_QUERY_VALUES = [
    ("post", SCHEDULE + "%C2%B2", "paramPort"),  # "²": a digit to str.isdigit(), not to int()
    ("post", SCHEDULE + "%EF%BC%98%EF%BC%90%EF%BC%98%EF%BC%90", "paramPort"),  # fullwidth
    ("post", SCHEDULE + "1" * 5000, "paramPort"),  # past int()'s 4300 digits
    ("post", SCHEDULE + "-1", "paramPort"),
    ("post", "/user/img2img?paramPort=%C2%B2", "paramPort"),
    ("post", "/user/schedulingTask", "paramUrl"),
    ("get", "/user/queryTaskList?startTime=yesterday", "startTime"),
    ("get", "/user/queryTaskList?endTime=2024-02-30", "endTime"),
    ("get", "/user/queryTaskList?endTime=%C2%B2", "endTime"),
    ("get", "/user/queryTaskList?limit=abc", "limit"),
    ("get", "/user/queryTaskList?limit=0", "limit"),
    ("get", "/user/queryTaskList?limit=1e3", "limit"),
    ("get", "/user/queryTaskList?limit=" + "9" * 5000, "limit"),
    ("get", "/user/queryTaskList?cursor=" + "x" * 65, "cursor"),
    ("get", "/user/queryTaskList?cursor=20240411_13_36_11_922124", "cursor"),
    ("get", "/user/queryTask", "taskID"),
    ("get", "/user/getDetailed?taskID=" + "x" * 65, "taskID"),
    ("get", "/brc20/checkAddress", "address"),
    ("get", "/brc20/checkAddress?address=" + "x" * 129, "address"),
]


@pytest.mark.parametrize(("method", "path", "field"), BAD_QUERY_VALUES)
def test_bad_query_values_are_400_naming_the_parameter(
    demo: tuple[Cluster, str], method: str, path: str, field: str
) -> None:
    with _client(demo) as http:
        kwargs: dict[str, Any] = {"json": CONTRACT_BODY} if method == "post" else {}
        _assert_refused(http.request(method.upper(), path, **kwargs), 400, field)


@pytest.mark.parametrize(
    "query",
    [
        "endTime=9999-12-31",
        "startTime=0001-01-01",
        "startTime=0001-01-01&endTime=9999-12-31",
        "startTime=0001-01-01T00:00:00%2B01:00&endTime=9999-12-31T23:59:59-01:00",
        "startTime=1000-01-01&endTime=2500-06-01%2010:00:00",
    ],
)
def test_far_dates_are_clamped_to_everything(demo: tuple[Cluster, str], query: str) -> None:
    with _client(demo) as http:
        assert http.post("/user/img2img", json=CONTRACT_BODY).status_code == 200
        everything = http.get("/user/queryTaskList").json()["taskIds"]
        response = http.get(f"/user/queryTaskList?{query}")
    assert response.status_code == 200, response.text
    assert response.json()["result_code"] == 200
    assert response.json()["taskIds"] == everything


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-workspace"}, {"Authorization": "Basic eDp5"}],
    ids=["none", "unknown-bearer", "other-scheme"],
)
def test_check_address_needs_no_bearer(demo: tuple[Cluster, str], headers: dict[str, str]) -> None:
    cluster, _ = demo
    expected = {"exists": True, "names": ["AINN"], "balances": [100]}
    with httpx.Client(base_url=cluster.url, headers=headers, timeout=30) as http:
        for path in (f"/brc20/checkAddress?address={BTC}", f"/brc20/checkAddress&address={BTC}"):
            response = http.get(path)
            assert response.status_code == 200, response.text
            assert response.json() == expected
        _assert_refused(http.get("/brc20/checkAddress?address=bc1qnotanaddress"), 400, "address")
        _assert_refused(http.get("/brc20/checkAddress&address=bc1qnotanaddress"), 400, "address")


def test_check_address_is_rate_limited_per_client_ip(demo: tuple[Cluster, str]) -> None:
    cluster, _ = demo
    burst = Settings.model_fields["brc20_check_burst"].default
    path = f"/brc20/checkAddress?address={BTC}"
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        greedy = {"X-Forwarded-For": "203.0.113.7"}
        responses = [http.get(path, headers=greedy) for _ in range(burst + 10)]
        statuses = [r.status_code for r in responses]
        assert statuses[:burst] == [200] * burst and 429 in statuses, statuses
        limited = responses[statuses.index(429)].json()
        assert set(limited) == {"result_code", "msg"} and limited["result_code"] == 429
        # Another client, and another /64 of IPv6, are unaffected.
        for other in ("203.0.113.8", "2001:db8:0:1::1"):
            assert http.get(path, headers={"X-Forwarded-For": other}).status_code == 200
        # One IPv6 /64 is one client.
        statuses = [http.get(path, headers={"X-Forwarded-For": f"2001:db8::{n:x}"}).status_code
                    for n in range(burst + 10)]  # fmt: skip
        assert 429 in statuses, statuses


def test_check_address_without_a_provider_is_503_without_details(cluster: Cluster) -> None:
    # `cluster` runs no demo: no BRC-20 provider is configured.
    response = httpx.get(f"{cluster.url}/brc20/checkAddress?address={BTC}", timeout=30)
    assert response.status_code == 503, response.text
    assert response.json() == {
        "result_code": 503,
        "msg": "the BRC-20 check is unavailable; try again later",
    }
