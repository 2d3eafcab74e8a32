"""The console in a real browser (Chromium through Playwright) against the real dev server and
real workers: sign in, watch a run live, approve a parked refund, a viewer refused and masked,
cancel, retry a failed run from its failed step, a form without its CSRF token. Each test
leaves a screenshot of its page in docs/console/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus

from chamberlain.agents import parse_graph
from chamberlain.tools import Effect, ToolContext, ToolRegistry, ToolRejected, tool
from chamberlain.workflows import DevServer, GraphWorkflow, Principal, create_worker, start_run
from chamberlain.workflows._run_index import graph_version
from tests.conftest import run_id
from tests.console.console_app import PASSWORD, console_server
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.workers import gate_for_tests, graph_worker, wait_for_approval

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).parents[2] / "docs" / "console"
CUSTOMER = "张伟"
ALICE = Principal(id="alice", roles=["customer"], department="support")


@pytest.fixture
async def console(dev_server: DevServer, tmp_path: Path, ledger: Path) -> AsyncIterator[str]:
    with console_server(dev_server.address, tmp_path, ledger, temporal_ui="http://127.0.0.1:8233") as url:
        yield url


async def sign_in(browser: Browser, console: str, user: str, shot: str | None = None) -> Page:
    page = await browser.new_page(viewport={"width": 1200, "height": 800})
    await page.goto(f"{console}/console/runs")
    await page.fill("input[name=user]", user)
    await page.fill("input[name=password]", PASSWORD)
    if shot:
        await screenshot(page, shot)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_contain_text(user)
    return page


async def until_listed(page: Page, url: str, run: str) -> None:
    """Load the runs page until it lists ``run``: the index learns of a new run from Temporal's
    visibility, which a loaded machine may update a few seconds after the start."""
    link = page.get_by_role("link", name=run)
    for _ in range(30):
        await page.goto(url)
        if await link.count():
            return
        await asyncio.sleep(0.5)
    await expect(link).to_be_visible()


async def screenshot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_sign_in_and_watch_a_run_progress_live_to_completion(
    browser: Browser, console: str, client: Client, task_queue: str
) -> None:
    page = await sign_in(browser, console, "root", shot="signin")
    async with graph_worker(client, task_queue):
        spec, values = graph("slow_chain"), {"seconds": 1.5}
        handle = await start_run(client, spec, values, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        await until_listed(page, f"{console}/console/runs?status=running", handle.id)
        version = f"v{graph_version(spec)}"  # the graph each run uses: declared version + content hash
        await expect(page.locator("tr", has=page.get_by_role("link", name=handle.id))).to_contain_text(version)
        await screenshot(page, "runs")
        await page.get_by_role("link", name=handle.id).click()
        await page.evaluate("window.sameDocument = true")
        status = page.locator("#run-status")
        await expect(status).to_have_text("running")
        await expect(page.locator("#graph-version")).to_have_text(version)
        await expect(page.locator("li.step[data-node=s2]")).to_be_visible(timeout=15_000)
        await expect(status).to_have_text("running")  # a step arrived while the run was still going
        await expect(status).to_have_text("completed", timeout=30_000)
        assert await page.evaluate("window.sameDocument === true")  # live, not reloaded
        await expect(page.locator("li.step")).to_have_count(6)
        await screenshot(page, "run-live")
        assert (await handle.result()).status == "completed"


async def test_a_manager_approves_a_parked_refund_and_sees_it_in_the_timeline(
    browser: Browser, console: str, client: Client, task_queue: str
) -> None:
    async with graph_worker(client, task_queue):
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        await wait_for_approval(handle)
        page = await sign_in(browser, console, "maria")
        await page.goto(f"{console}/console/approvals")
        row = page.locator("tr", has=page.get_by_role("link", name=handle.id))
        for _ in range(50):  # the visibility store is eventually consistent
            if await row.count():
                break
            await asyncio.sleep(0.2)
            await page.reload()
        await expect(row).to_contain_text("Refund 500.0?")
        await row.locator("input[type=checkbox]").check()
        await page.fill("input[name=reason]", "客户是老顾客, within policy")
        await screenshot(page, "approvals")
        await page.get_by_role("button", name="Approve selected").click()
        await expect(page.locator(".results")).to_contain_text("decided: approve")
        assert (await handle.result()).status == "completed"
        await page.goto(f"{console}/console/runs/{handle.id}")
        approval = page.locator("li.step[data-node=manager] .approval")
        await expect(approval).to_contain_text("approve by maria")
        await expect(approval).to_contain_text("客户是老顾客, within policy")
        await expect(page.locator("li.step[data-node=refund] .audit").first).to_contain_text("allow")
        await screenshot(page, "run-approved")
    assert len(toolbox.effects("refund")) == 1


VIEW_GRAPH = """
name: masked-view
state:
  customer: {type: str, labels: [pii]}
  order_id: {type: str}
  note: {type: str}
start: lookup
nodes:
  lookup:
    type: tool
    tool: erp.order
    args: {order_id: order_id}
    output: {note: "'refund for ' + customer"}
    next: manager
  manager:
    {type: approval, ask: "Refund for {customer}?", approvers: [manager], timeout: 1h, default: reject, next: done}
  done: {type: end}
"""


async def test_a_viewer_is_refused_the_approve_action_and_sees_pii_masked(
    browser: Browser, console: str, client: Client, task_queue: str
) -> None:
    spec = parse_graph(VIEW_GRAPH, tools=toolbox.tools())
    async with graph_worker(client, task_queue):
        values = {"customer": CUSTOMER, "order_id": "A1"}
        handle = await start_run(client, spec, values, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        pending = await wait_for_approval(handle)
        page = await sign_in(browser, console, "victor")
        await page.goto(f"{console}/console/runs/{handle.id}")
        await expect(page.locator("li.step[data-node=lookup]")).to_contain_text("[pii]")
        await expect(page.locator("#not-yours")).to_be_visible()
        await expect(page.locator("#approve")).to_have_count(0)
        assert CUSTOMER not in await page.content()
        await screenshot(page, "run-viewer-masked")
        token = await page.locator("input[name=csrf]").first.input_value()
        forged = await page.request.post(
            f"{console}/console/approvals",
            form={"csrf": token, "item": f"{handle.id}|{pending.step_id}", "outcome": "approve"},
        )
        assert forged.status == 403 and "victor (viewer) may not decide" in await forged.text()
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (await wait_for_approval(handle)).step_id == pending.step_id
        await handle.terminate()


async def test_an_operator_cancels_a_run(browser: Browser, console: str, client: Client, task_queue: str) -> None:
    async with graph_worker(client, task_queue):
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        await wait_for_approval(handle)
        page = await sign_in(browser, console, "olga")
        await page.goto(f"{console}/console/runs/{handle.id}")
        await page.click("#cancel")
        await expect(page.locator("#run-status")).to_have_text("canceled", timeout=15_000)
        await expect(page.locator("li.operation")).to_contain_text("cancel by olga")
        await page.reload()
        await expect(page.locator("#pending")).to_have_count(0)  # a canceled run waits for nobody
        await screenshot(page, "run-canceled")
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert not toolbox.effects("refund")


class Fragile(BaseModel):
    n: int


@tool("console.bump", effect=Effect.WRITE)
async def bump(args: Fragile, ctx: ToolContext) -> Fragile:
    """A write before the failing one: a retry must not run it again. (A read would run as a
    local activity, recorded in the same workflow task as the failed step, and be read again.)"""
    toolbox.record("count", ctx.step_id)
    return Fragile(n=args.n + 1)


@tool("console.fragile", effect=Effect.WRITE)
async def fragile(args: Fragile, ctx: ToolContext) -> Fragile:
    """Refuse while the backend is marked down (a file beside the ledger), then succeed."""
    toolbox.record("fragile", ctx.step_id)
    if toolbox.ledger_path().with_suffix(".down").exists():
        raise ToolRejected("the backend refused: maintenance")
    return Fragile(n=args.n + 100)


FRAGILE_GRAPH = """
name: fragile
state:
  n: {type: int, default: 0}
start: bump
nodes:
  bump: {type: tool, tool: console.bump, args: {n: n}, output: {n: result.n}, next: write}
  write: {type: tool, tool: console.fragile, args: {n: n}, output: {n: result.n}, next: done}
  done: {type: end, output: [n]}
"""


async def test_a_failed_run_is_retried_from_its_failed_step(
    browser: Browser, console: str, client: Client, task_queue: str
) -> None:
    tools = ToolRegistry([*(toolbox.tools()[name] for name in toolbox.tools()), bump, fragile])
    spec = parse_graph(FRAGILE_GRAPH, tools=tools)
    down = toolbox.ledger_path().with_suffix(".down")
    down.touch()
    gate = gate_for_tests(tools)
    worker = create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue)
    async with worker:
        handle = await start_run(client, spec, {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        for _ in range(100):
            if (await handle.describe()).status == WorkflowExecutionStatus.FAILED:
                break
            await asyncio.sleep(0.1)
        page = await sign_in(browser, console, "olga")
        await page.goto(f"{console}/console/runs/{handle.id}")
        await expect(page.locator("#run-status")).to_have_text("failed")
        await expect(page.locator(".summary .error")).to_contain_text("maintenance")
        await screenshot(page, "run-failed")
        down.unlink()
        await page.click("#retry")
        await expect(page.locator("#run-status")).to_have_text("completed", timeout=20_000)
        await expect(page.locator("li.operation")).to_contain_text("retry by olga")
        await screenshot(page, "run-retried")
        latest = client.get_workflow_handle_for(GraphWorkflow.run, handle.id)  # the reset run, not the failed one
        result = await latest.result()
    assert result.output == {"n": 101}
    assert len(toolbox.effects("count")) == 1  # the step before the failure did not run again
    assert len(toolbox.effects("fragile")) == 2  # the failed step ran once more


async def test_a_form_without_its_csrf_token_is_refused(
    browser: Browser, console: str, client: Client, task_queue: str
) -> None:
    async with graph_worker(client, task_queue):
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue)
        await wait_for_approval(handle)
        page = await sign_in(browser, console, "olga")
        await page.goto(f"{console}/console/runs/{handle.id}")
        strip = "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())"
        # and again whenever the live timeline re-renders the forms (a server-sent event may land after the first strip)
        await page.evaluate(
            f"{{ const strip = () => {strip}; strip(); "
            "new MutationObserver(strip).observe(document.body, {childList: true, subtree: true}); }"
        )
        await page.click("#cancel")
        await expect(page.locator(".error")).to_contain_text("CSRF token is missing")
        await screenshot(page, "csrf-refused")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        await handle.terminate()
