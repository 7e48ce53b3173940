"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against
a real `ngpu up --demo` on 127.0.0.1, with a second node and workspace and tasks sent
through the NGPU API: signing in through the form, a wrong token refused, pages without
the session sent to the form, the live task list and its filters, a task's timeline,
nodes, workspaces, the usage and queue delay charts drawn. Each page is saved as a
screenshot (`tests.support.browser.screenshot_dir`). Every page loads only this origin's
files and logs no error (a Content-Security-Policy violation would be one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from services.demo import DEMO_BTC_ADDRESS
from services.logs import workspace_hash
from tests.e2e.cluster import ADMIN_TOKEN, Cluster, cluster_env, sample_workspace, wait_for
from tests.support.browser import VIEWPORT, browser, save_screenshot

__all__ = ["browser"]  # the module's headless chromium

# Waits for what the browser shows are guards against hangs, not performance assertions:
# a live part re-fetches itself every few seconds, after the projector's linger.
expect.set_options(timeout=20_000)


@dataclass
class Site:
    url: str
    cluster: Cluster
    workspaces: dict[str, str]
    """Name -> Workspace ID."""
    tasks: dict[str, list[str]] = field(default_factory=dict)
    """What each was sent to do -> its task ids."""

    def submit(self, workspace: str, path: str, **query: Any) -> str:
        params = {"paramUrl": path, **query}
        answer = httpx.post(f"{self.url}/user/schedulingTask", params=params,
                            json={"btc_address": DEMO_BTC_ADDRESS, "data": {"prompt": "a cat"}},
                            headers={"Authorization": f"Bearer {self.workspaces[workspace]}"},
                            timeout=30)  # fmt: skip
        assert answer.status_code == 202, answer.text
        return str(answer.json()["taskID"])

    def state(self, workspace: str, task_id: str) -> int:
        answer = httpx.get(f"{self.url}/user/getDetailed", params={"taskID": task_id},
                           headers={"Authorization": f"Bearer {self.workspaces[workspace]}"},
                           timeout=30)  # fmt: skip
        return int(answer.json()["taskInfo"]["state"]) if answer.status_code == 200 else -1


def _replica_ready(cluster: Cluster, workspace_id: str) -> bool:
    return any(d["state"] == "ready" and d["workspace_id"] == workspace_id
               for n in cluster.nodes() for d in n["deployments"])  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`ngpu up --demo` (the img2img sample on an RTX 4090 node), a second node with an
    A100 running a second workspace, and tasks: completed ones on both, some that queued
    behind each other, one that timed out."""
    cluster = Cluster(tmp_path_factory.mktemp("dashboard"), cluster_env())
    try:
        demo = cluster.start_demo()
        cluster.start_node("a100-node", gpu="A100:1", region="eu-west")
        body = sample_workspace(name="embeddings", gpu={"type": "A100", "count": 1},
                                replicas={"min": 1, "max": 1})  # fmt: skip
        created = httpx.post(f"{cluster.url}/v1/workspaces", json=body, headers=cluster.admin(),
                             timeout=30)  # fmt: skip
        assert created.status_code == 201, created.text
        other = str(created.json()["workspace_id"])
        wait_for(lambda: _replica_ready(cluster, other), 90, "the second workspace's replica")
        site = Site(cluster.url, cluster, {"demo-img2img": demo, "embeddings": other})
        site.tasks["img2img"] = [site.submit("demo-img2img", "sdapi/v1/img2img") for _ in range(6)]
        site.tasks["queued"] = [site.submit("demo-img2img", "sleep?ms=300") for _ in range(4)]
        site.tasks["timeout"] = [site.submit("demo-img2img", "sleep?ms=3000", timeout_s=1)]
        site.tasks["embed"] = [site.submit("embeddings", "sleep?ms=600") for _ in range(3)]
        for kind, ids in site.tasks.items():
            workspace = "embeddings" if kind == "embed" else "demo-img2img"
            for task_id in ids:
                wait_for(lambda w=workspace, t=task_id: site.state(w, t) >= 3, 60,  # type: ignore[misc]
                         f"task {task_id} to end")  # fmt: skip
        yield site
    finally:
        cluster.stop()


@pytest.fixture
def problems() -> list[str]:
    """What the page logged as errors, and requests it made to another origin: none is
    expected (a test that causes one on purpose takes it out)."""
    return []


@pytest.fixture
def page(browser: Browser, site: Site, problems: list[str]) -> Iterator[Page]:
    """A fresh browser context (no cookie) whose page records what it logs and loads."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    tab = context.new_page()
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.on("request", lambda r: None if r.url.startswith((site.url, "data:"))
           else problems.append(f"request to another origin: {r.url}"))  # fmt: skip
    try:
        yield tab
        assert problems == []
    finally:
        context.close()


def sign_in(page: Page, site: Site, path: str = "/ui/tasks") -> None:
    page.goto(f"{site.url}{path}")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(f"{site.url}{path}") + "$"))


def test_a_page_without_a_session_goes_to_the_form_and_a_wrong_token_is_refused(
    page: Page, site: Site, problems: list[str]
) -> None:
    page.goto(f"{site.url}/ui/nodes")
    expect(page).to_have_url(f"{site.url}/ui/login?next=%2Fui%2Fnodes")
    expect(page.locator("h1")).to_have_text("Sign in")
    save_screenshot(page, "login")
    page.fill("#token", "not-the-admin-token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("That is not the admin token.")
    assert page.context.cookies() == []
    _expected(problems, "401")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{site.url}/ui/nodes")
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert ADMIN_TOKEN not in cookie["value"]
    # Signing out ends the session: the pages send you to the form again.
    page.click("text=Sign out")
    expect(page).to_have_url(f"{site.url}/ui/login")
    page.goto(f"{site.url}/ui/workspaces")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))


def test_the_task_list_is_live_and_filters(page: Page, site: Site) -> None:
    sign_in(page, site)
    rows = page.locator("tr[data-task]")
    ended = sum(len(ids) for ids in site.tasks.values())
    expect(rows).to_have_count(ended)
    expect(page.locator('tr[data-state="failed"]')).to_have_count(1)
    save_screenshot(page, "tasks")
    # A task sent now shows up without a reload (the list re-fetches itself).
    late = site.submit("embeddings", "sleep?ms=1500")
    expect(page.locator(f'tr[data-task="{late}"]')).to_have_count(1)
    expect(rows).to_have_count(ended + 1)

    page.select_option('select[name="state"]', "failed")
    expect(page).to_have_url(re.compile(r"state=failed"))
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-task="{site.tasks["timeout"][0]}"]')).to_have_count(1)

    page.select_option('select[name="state"]', "")
    page.select_option('select[name="workspace"]', workspace_hash(site.workspaces["embeddings"]))
    expect(page).to_have_url(re.compile(r"workspace=[0-9a-f]{12}"))
    expect(rows).to_have_count(len(site.tasks["embed"]) + 1)
    for text in rows.all_inner_texts():
        assert "embeddings" in text and "demo-img2img" not in text


def test_a_task_shows_its_timeline(page: Page, site: Site) -> None:
    sign_in(page, site, "/ui/tasks?state=failed")
    failed = site.tasks["timeout"][0]
    page.click(f'a[href="/ui/tasks/{failed}"]')
    expect(page).to_have_url(f"{site.url}/ui/tasks/{failed}")
    events = page.locator(".timeline .what")
    expect(events).to_have_text(["TaskSubmitted", "TaskDispatched", "TaskFailed"])
    expect(page.locator(".event-TaskFailed")).to_contain_text("timeout")
    completed = site.tasks["img2img"][0]
    page.goto(f"{site.url}/ui/tasks/{completed}")
    expect(events).to_have_text(["TaskSubmitted", "TaskDispatched", "TaskCompleted"])
    expect(page.locator(".facts")).to_contain_text("schedulingTask /user/schedulingTask?paramUrl=")
    save_screenshot(page, "task")


def test_nodes_show_health_gpus_and_deployments(page: Page, site: Site) -> None:
    sign_in(page, site, "/ui/nodes")
    nodes = page.locator("article.node")
    expect(nodes).to_have_count(2)
    expect(page.locator("article.node .badge.node-healthy")).to_have_count(2)
    expect(page.locator("article.node", has_text="A100")).to_contain_text("embeddings")
    expect(page.locator("article.node", has_text="RTX4090")).to_contain_text("demo-img2img")
    expect(page.locator('article.node tr[data-state="ready"]')).to_have_count(2)
    save_screenshot(page, "nodes")


def test_workspaces_show_replicas_and_recent_errors(page: Page, site: Site) -> None:
    sign_in(page, site, "/ui/workspaces")
    cards = page.locator("article.workspace")
    expect(cards).to_have_count(2)
    demo = cards.filter(has_text="demo-img2img")
    expect(demo).to_contain_text("1 / 1 ready")
    expect(demo.locator("ul.errors")).to_contain_text(site.tasks["timeout"][0])
    expect(cards.filter(has_text="embeddings")).to_contain_text("None in the last 24 hours.")
    save_screenshot(page, "workspaces")


def _painted(page: Page, selector: str) -> int:
    """How many pixels of the canvas are not transparent."""
    count: int = page.eval_on_selector(selector, """canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) painted++; }
        return painted;
    }""")  # fmt: skip
    return count


def _bars(page: Page, selector: str) -> list[float]:
    """The values the chart drew, every dataset's (Chart.js's own record of them)."""
    values: list[float] = page.eval_on_selector(
        selector, "canvas => Chart.getChart(canvas).data.datasets.flatMap(d => d.data)"
    )
    return values


def test_usage_charts_are_drawn(page: Page, site: Site) -> None:
    sign_in(page, site, "/ui/usage?days=7")
    for chart in ("#usage-per-day", "#usage-per-workspace"):
        expect(page.locator(f'{chart}[data-drawn="true"]')).to_have_count(1)
        assert _painted(page, chart) > 1000, chart
    per_day = [v for v in _bars(page, "#usage-per-day") if v]
    assert len(per_day) == 2  # today, one stack per workspace
    assert sorted(_bars(page, "#usage-per-workspace"), reverse=True) == _bars(
        page, "#usage-per-workspace"
    )
    expect(page.locator("table.grid tbody tr")).to_have_count(2)
    save_screenshot(page, "usage")


def test_queue_delay_chart_is_drawn(page: Page, site: Site) -> None:
    sign_in(page, site, "/ui/queue")
    expect(page.locator('#queue-delay[data-drawn="true"]')).to_have_count(1)
    assert _painted(page, "#queue-delay") > 1000
    assert any(v for v in _bars(page, "#queue-delay") if v is not None)
    expect(page.locator("table.grid tbody tr").first).to_be_visible()
    save_screenshot(page, "queue")


def test_a_live_page_whose_session_ends_goes_to_the_form(
    page: Page, site: Site, problems: list[str]
) -> None:
    sign_in(page, site, "/ui/tasks")
    page.context.clear_cookies()
    # The next re-fetch is refused and htmx is told to leave for the form.
    expect(page).to_have_url(f"{site.url}/ui/login")
    expect(page.locator("#token")).to_be_visible()
    _expected(problems, "401")


def _expected(problems: list[str], status: str) -> None:
    """Take out the errors the browser logs for an answer of `status` a test caused."""
    problems[:] = [p for p in problems if status not in p]
