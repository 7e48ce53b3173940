"""`/ui` over real HTTP on a real ingress (embedded log, projector into chdb): the login
form and its cookie, the redirect of pages asked for without it, each page's content from
tasks, nodes and workspaces made through the API and events published as the scheduler
and dispatcher would, escaping, and what no page may show (a Workspace ID)."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from markupsafe import escape

from events import (
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
)
from services.bus import publish_events
from services.logs import workspace_hash
from services.ui.router import LOGIN_BURST, SECURITY_HEADERS, STATIC
from tests.services.ui.conftest import ADMIN, JOIN, Dashboard, running

PAGES = ["/ui/tasks", "/ui/nodes", "/ui/workspaces", "/ui/usage", "/ui/queue"]
HOSTILE = "<script>alert('x')</script>"
NODE = {"address": "0x" + "ab" * 20, "host": "127.0.0.1", "region": "eu-1",
        "gpus": [{"type": "A100", "memory_mb": 81920}] * 2, "runtime": "process"}  # fmt: skip


@pytest.mark.parametrize(
    "path", ["/ui", "/ui/", *PAGES, "/ui/tasks/some-task", "/ui/queue?window=6h"]
)
async def test_a_page_without_a_session_redirects_to_the_login_form(
    dashboard: Dashboard, path: str
) -> None:
    answer = await dashboard.http.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login?next=")
    assert answer.headers["location"].endswith(re.sub("[/?=]", lambda m: f"%{ord(m[0]):02X}", path))
    # An htmx request is told to go there itself (it would follow a redirect in place).
    live = await dashboard.http.get(path, headers={"HX-Request": "true"})
    assert (live.status_code, live.headers["hx-redirect"]) == (401, "/ui/login")


async def test_a_wrong_token_is_refused_without_a_cookie(dashboard: Dashboard) -> None:
    form = await dashboard.http.get("/ui/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    for token in ("", "wrong", ADMIN + "x", ADMIN[:-1], JOIN):
        refused = await dashboard.http.post("/ui/login", data={"token": token})
        assert refused.status_code == 401, token
        assert "That is not the admin token." in refused.text
        assert "set-cookie" not in refused.headers
    assert (await dashboard.http.get("/ui/tasks")).status_code == 303


async def test_signing_in_sets_a_cookie_that_is_not_the_token_and_out_clears_it(
    dashboard: Dashboard,
) -> None:
    signed = await dashboard.http.post("/ui/login", data={"token": ADMIN, "next": "/ui/nodes"})
    assert (signed.status_code, signed.headers["location"]) == (303, "/ui/nodes")
    cookie = signed.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    flags = {part.strip().split("=")[0].lower() for part in rest.split(";")[1:]}
    assert name == "ngpu_ui" and ADMIN not in cookie
    assert {"httponly", "path", "samesite", "max-age"} <= flags and "secure" not in flags
    assert "Path=/ui" in cookie and "SameSite=lax" in cookie  # the pages only read
    for path in PAGES:
        page = await dashboard.http.get(path)
        assert page.status_code == 200, path
        assert {k: page.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS
        assert page.headers["content-type"].startswith("text/html")
    # Signed in, the form sends you on.
    again = await dashboard.http.get("/ui/login?next=/ui/usage")
    assert (again.status_code, again.headers["location"]) == (303, "/ui/usage")
    out = await dashboard.http.post("/ui/logout")
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    assert "ngpu_ui=" in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert (await dashboard.http.get("/ui/tasks")).status_code == 303


@pytest.mark.parametrize(
    ("target", "location"),
    [
        pytest.param("/ui/workspaces", "/ui/workspaces", id="a-page"),
        pytest.param(
            "/ui/tasks?state=failed&window=7d",
            "/ui/tasks?state=failed&window=7d",
            id="with-filters",
        ),
        pytest.param("", "/ui/tasks", id="none"),
        pytest.param("https://evil.example/ui/", "/ui/tasks", id="another-origin"),
        pytest.param("//evil.example/ui/", "/ui/tasks", id="scheme-relative"),
        pytest.param("/ui//evil.example", "/ui/tasks", id="double-slash"),
        pytest.param("/ui/\\evil.example", "/ui/tasks", id="backslash"),
        pytest.param("/v1/workspaces", "/ui/tasks", id="outside-the-dashboard"),
        pytest.param("/ui/login", "/ui/tasks", id="the-form-itself"),
    ],
)
async def test_signing_in_sends_you_only_within_the_dashboard(
    dashboard: Dashboard, target: str, location: str
) -> None:
    signed = await dashboard.http.post("/ui/login", data={"token": ADMIN, "next": target})
    assert (signed.status_code, signed.headers["location"]) == (303, location)


async def test_login_attempts_are_limited_per_client(dashboard: Dashboard) -> None:
    answers = [
        (await dashboard.http.post("/ui/login", data={"token": "guess"})).status_code
        for _ in range(LOGIN_BURST + 2)
    ]
    assert answers[0] == 401 and 429 in answers
    # Past the limit even the right token waits.
    limited = await dashboard.http.post("/ui/login", data={"token": ADMIN})
    assert limited.status_code == 429 and "Too many attempts" in limited.text


async def test_the_dashboard_is_not_in_the_openapi_document(dashboard: Dashboard) -> None:
    paths = (await dashboard.http.get("/openapi.json")).json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/ui")]


def test_the_vendored_files_are_the_ones_noted() -> None:
    noted = (STATIC / "VENDORED.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| .+? \| `([0-9a-f]{64})` \|", noted, re.MULTILINE)
    assert {name for name, _ in rows} == {"htmx-2.0.11.min.js", "chart-4.6.1.umd.min.js"}
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    base = (Path(STATIC).parent / "templates" / "base.html").read_text()
    assert all(name in base for name, _ in rows)
    assert "http://" not in base and "https://" not in base  # nothing from another origin


async def test_the_static_files_are_served(dashboard: Dashboard) -> None:
    for name in ("htmx-2.0.11.min.js", "chart-4.6.1.umd.min.js", "app.js", "app.css"):
        answer = await dashboard.http.get(f"/ui/static/{name}")
        assert answer.status_code == 200, name
        assert answer.content == (STATIC / name).read_bytes()


def _charts(text: str) -> dict[str, dict[str, Any]]:
    """The chart specifications a page hands its script, by canvas id."""
    found = re.findall(r'<canvas id="([^"]+)"[^>]*data-chart="([^"]*)"', text)
    return {name: json.loads(html.unescape(spec)) for name, spec in found}


async def _scene(d: Dashboard) -> dict[str, Any]:
    """Two workspaces; alpha's tasks: one completed (2 GPU-seconds), one failed for good
    with a hostile reason, one queued; beta's: one running. A node runs a ready replica
    of alpha and one that failed to start."""
    alpha, alpha_auth = await d.workspace("alpha")
    beta, beta_auth = await d.workspace("beta")
    node = await d.http.post("/v1/nodes/register", json=NODE,
                             headers={"Authorization": f"Bearer {JOIN}"})  # fmt: skip
    assert node.status_code == 201, node.text
    node_id = node.json()["node_id"]
    spec = {"node_id": node_id, "workspace_id": alpha, "image": "ngpu/x:1",
            "command": ("serve",), "ports": (9000,), "gpu_type": "A100",
            "gpu_count": 1}  # fmt: skip
    records = await publish_events(d.bus, [
        DeploymentRequested(deployment_id="dep-ok", **spec),
        DeploymentReady("dep-ok", node_id, alpha, {"9000": 31001}),
        DeploymentRequested(deployment_id="dep-bad", **spec),
        DeploymentFailed("dep-bad", node_id, alpha, f"image pull failed {HOSTILE}"),
    ])  # fmt: skip
    await d.context.follower.wait_for(records)
    done, failed, queued = [await d.submit(alpha_auth, p) for p in ("ok", "bad", "later")]
    running_ = await d.submit(beta_auth, "long")
    now = datetime.now(UTC)
    where = (node_id, "127.0.0.1", NODE["address"])

    def sent(task_id: str, workspace_id: str) -> TaskDispatched:
        return TaskDispatched(task_id, workspace_id, 1, *where, "dep-ok", 31001)

    finished = now + timedelta(seconds=2)
    completed = TaskCompleted(done, alpha, 1, *where, 200, "{}", now, finished, "A100", 1)
    timed_out = TaskFailed(failed, alpha, 1, node_id, "timeout", f"took too long {HOSTILE}",
                           retryable=False)  # fmt: skip
    await d.publish_after(done, sent(done, alpha), completed)
    await d.publish_after(failed, sent(failed, alpha), timed_out)
    await d.publish_after(running_, sent(running_, beta))
    return {"alpha": alpha, "beta": beta, "node_id": node_id, "done": done, "failed": failed,
            "queued": queued, "running": running_}  # fmt: skip


def _states(text: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-task="([^"]+)" data-state="([^"]+)">', text))


async def test_the_pages_show_the_cluster_and_never_a_workspace_id(dashboard: Dashboard) -> None:
    d = dashboard
    s = await _scene(d)
    await d.sign_in()
    tasks = await d.page_until("/ui/tasks", lambda text: len(_states(text)) == 4)
    assert _states(tasks) == {s["done"]: "completed", s["failed"]: "failed",
                              s["queued"]: "queued", s["running"]: "running"}  # fmt: skip
    assert f'alpha <span class="hash">{workspace_hash(s["alpha"])}</span>' in tasks

    filtered = {
        "workspace=" + workspace_hash(s["alpha"]): {s["done"], s["failed"], s["queued"]},
        "workspace=" + workspace_hash(s["beta"]) + "&state=running": {s["running"]},
        "state=failed": {s["failed"]},
        "state=queued&window=1h": {s["queued"]},
        "workspace=000000000000": set(),
    }
    for query, expected in filtered.items():
        # A filter on state reads the projected state, which lags the live one shown.
        await d.page_until(f"/ui/tasks?{query}", lambda text, e=expected: set(_states(text)) == e)  # type: ignore[misc]
    live = await d.http.get("/ui/tasks?state=failed", headers={"HX-Request": "true"})
    assert live.text.startswith('<section id="task-list"') and "<html" not in live.text
    assert 'hx-get="/ui/tasks?workspace=&amp;state=failed&amp;window=24h"' in live.text

    timeline = await d.page_until(f"/ui/tasks/{s['failed']}", lambda text: "TaskFailed" in text)
    assert re.findall(r'class="what">(\w+)<', timeline) == ["TaskSubmitted", "TaskDispatched",
                                                           "TaskFailed"]  # fmt: skip
    assert "took too long" in timeline and "/user/schedulingTask?paramUrl=bad" in timeline
    missing = await d.http.get("/ui/tasks/no-such-task")
    assert missing.status_code == 404 and "No such task" in missing.text

    nodes = await d.http.get("/ui/nodes")
    assert (
        s["node_id"] in nodes.text
        and ">healthy<" in nodes.text
        and "2 \N{MULTIPLICATION SIGN} A100" in nodes.text
    )
    assert re.findall(r'<tr data-state="(\w+)">', nodes.text) == ["failed", "ready"]

    workspaces = await d.page_until("/ui/workspaces", lambda text: s["failed"] in text)
    alpha_card = workspaces.split('data-workspace="')[1]
    assert "1 / 1 ready" in alpha_card and "image pull failed" in alpha_card
    assert "took too long" in alpha_card and s["done"] not in alpha_card
    assert "None in the last 24 hours." in workspaces.split('data-workspace="')[2]

    usage = await d.page_until("/ui/usage?days=7", lambda text: "completed tasks" in text)
    charts = _charts(usage)
    per_day, per_workspace = charts["usage-per-day"], charts["usage-per-workspace"]
    assert per_day["labels"][-1] == datetime.now(UTC).date().isoformat()
    assert len(per_day["labels"]) == 7
    (alpha_usage,) = per_day["datasets"]
    assert alpha_usage["label"] == f"alpha · {workspace_hash(s['alpha'])}"
    assert alpha_usage["data"][-1] == pytest.approx(2 / 3600)
    assert per_workspace["datasets"][0]["data"] == [pytest.approx(2 / 3600)]

    queue = await d.http.get("/ui/queue?window=1h")
    chart = _charts(queue.text)["queue-delay"]
    assert [set_["label"] for set_ in chart["datasets"]] == ["mean wait", "p90 wait", "max wait"]
    assert sum(v is not None for v in chart["datasets"][0]["data"]) >= 1
    assert re.search(r'class="value">1</span><span class="muted">queued now', queue.text)

    everything = [tasks, timeline, nodes.text, workspaces, usage, queue.text]
    for text in everything:
        assert s["alpha"] not in text and s["beta"] not in text  # the customers' credentials
        assert HOSTILE not in text
    assert str(escape(HOSTILE)) in workspaces and str(escape(HOSTILE)) in timeline


async def test_without_a_task_store_the_pages_that_need_it_say_so(
    tmp_path: Path, ch_client: Client
) -> None:
    async with running(tmp_path, None) as d:
        await d.workspace("alpha")
        await d.sign_in()
        for path in ("/ui/tasks", "/ui/tasks/x", "/ui/usage", "/ui/queue"):
            page = await d.http.get(path)
            assert page.status_code == 503 and "does not serve the task store" in page.text
        workspaces = await d.http.get("/ui/workspaces")
        assert workspaces.status_code == 200 and "alpha" in workspaces.text
        assert (await d.http.get("/ui/nodes")).status_code == 200


@pytest.mark.parametrize("path", ["/ui/login", "/ui/logout"])
@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({"Origin": "https://evil.example"}, True),
        ({"Origin": "null"}, True),
        ({}, False),  # no browser's cross-site form: a script, the tests
    ],
)
async def test_another_sites_form_may_not_sign_in_or_out(
    dashboard: Dashboard, path: str, headers: dict[str, str], refused: bool
) -> None:
    answer = await dashboard.http.post(path, data={"token": ADMIN}, headers=headers)
    assert answer.status_code == (403 if refused else 303), answer.text
    assert ("set-cookie" in answer.headers) is not refused


async def test_a_same_origin_form_passes(dashboard: Dashboard) -> None:
    origin = {"Origin": dashboard.url}
    answer = await dashboard.http.post("/ui/login", data={"token": ADMIN}, headers=origin)
    assert answer.status_code == 303


@pytest.mark.parametrize(
    ("trusted", "forwarded", "secure"),
    [(True, "https", True), (True, "http", False), (False, "https", False)],
)
async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(
    tmp_path: Path, trusted: bool, forwarded: str, secure: bool
) -> None:
    proxies = ["127.0.0.1/32"] if trusted else []
    async with running(tmp_path, None, trusted_proxies=proxies) as d:
        answer = await d.http.post("/ui/login", data={"token": ADMIN},
                                   headers={"X-Forwarded-Proto": forwarded})  # fmt: skip
    assert answer.status_code == 303
    assert ("Secure" in answer.headers["set-cookie"]) is secure
