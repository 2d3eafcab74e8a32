"""The dashboard: decisions, runs, escalations, approval waits, tokens and cost with budgets,
as server-drawn SVG — in a real browser over real runs (screenshot docs/console/dashboard.png),
and a tenant's viewer who sees only their tenant's runs and no company budgets."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from temporalio.client import Client

from chamberlain.server.console.dashboard import build
from chamberlain.server.console.timeline import AuditReader
from chamberlain.workflows import ApprovalAnswer, DevServer, Principal, create_worker, decide, start_run
from chamberlain.workflows._run_index import RunIndex, RunRow
from chamberlain.workflows._usage import UsageEntry, UsageLedger
from tests.conftest import run_id
from tests.console.console_app import console_server
from tests.console.test_console_browser import screenshot, sign_in
from tests.support import toolbox
from tests.support.graphs import chat_models, graph
from tests.support.workers import gate_for_tests, wait_for_approval

ALICE = Principal(id="alice", roles=["customer"], department="客服")  # a department named in Chinese


@pytest.mark.browser
async def test_the_dashboard_charts_real_runs(
    browser: Browser, dev_server: DevServer, client: Client, task_queue: str, tmp_path: Path, ledger: Path
) -> None:
    runs, usage = f"sqlite:///{tmp_path / 'runs.sqlite'}", f"sqlite:///{tmp_path / 'usage.sqlite'}"
    budgets = {"客服": 5.0}
    index, ledger_ = RunIndex(runs), UsageLedger(usage, budgets)
    models, _ = chat_models()
    tools = toolbox.tools()
    worker = create_worker(
        client,
        models=models,
        tools=tools,
        gate=gate_for_tests(tools),
        task_queue=task_queue,
        run_index=index,
        usage=ledger_,
    )
    with console_server(dev_server.address, tmp_path, ledger, runs=runs, usage=usage, budgets=budgets) as console:
        async with worker:
            for _ in range(2):
                chat = await start_run(
                    client,
                    graph("chat"),
                    {"history": ["Where is A1?"]},
                    run_id=run_id(),
                    principal=ALICE,
                    task_queue=task_queue,
                )
                await chat.result()
            parked = await start_run(
                client, graph("approval"), {}, run_id=run_id(), principal=ALICE, task_queue=task_queue
            )
            pending = await wait_for_approval(parked)
            maria = Principal(id="maria", roles=["manager"])
            await decide(parked, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=maria))
            await parked.result()
        page = await sign_in(browser, console, "root")
        ours = page.locator("#cost table.spend").nth(1).locator("tr", has_text="客服")  # our department's row
        for _ in range(50):  # until visibility shows our three runs (the session's dev server holds others' too)
            await page.goto(f"{console}/console/dashboard")
            if await ours.count() and (await ours.locator("td").nth(1).inner_text()) == "3":
                break
            await asyncio.sleep(0.2)
        await expect(ours.locator("td").nth(1)).to_have_text("3")
        assert int(await page.locator("#runs-total").inner_text()) >= 3
        escalated = re.compile(r"^[1-9][0-9]*%$")  # the parked run reached a person
        await expect(page.locator("#escalation-rate")).to_have_text(escalated)
        await expect(page.locator("#decisions svg.chart")).to_be_visible()
        await expect(page.locator("table.decisions").first).to_contain_text("model.invoke")
        cost = page.locator("#cost")
        await expect(cost.locator("table.spend").first).to_contain_text("chat")
        await expect(cost.locator("table.budgets")).to_contain_text("客服")
        await expect(cost.locator("table.spend").nth(2)).to_contain_text("chat")  # per model: the ledger
        await screenshot(page, "dashboard")


def test_a_tenant_viewer_sees_only_their_runs_and_no_budgets(tmp_path: Path) -> None:
    index = RunIndex(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    now = datetime.now(UTC)
    index.add(
        RunRow(
            run_id="ours",
            tenant="acme",
            graph="refund",
            department="support",
            started_at=now,
            cost=0.5,
            input_tokens=100,
            status="completed",
            closed_at=now + timedelta(seconds=4),
        ),
        RunRow(
            run_id="theirs",
            tenant="other-co",
            graph="secret-graph",
            department="board",
            started_at=now,
            cost=9.0,
            status="completed",
            closed_at=now + timedelta(seconds=2),
        ),
    )
    usage = UsageLedger(f"sqlite:///{tmp_path / 'usage.sqlite'}", {"board": 10.0})
    for run in ("ours", "theirs"):
        usage.record(
            UsageEntry(
                step_id=f"{run}/a/1",
                run_id=run,
                principal=None,
                department=None,
                model=f"model-of-{run}",
                input_tokens=1,
                output_tokens=1,
                cost=0.1,
            )
        )
    audit = AuditReader(f"sqlite:///{tmp_path / 'no-audit-yet.sqlite'}")  # none written yet: empty, not an error
    acme = build(index, audit, usage, Principal(id="ann", tenant="acme"), hours=24)
    assert acme.runs == 1 and [s.name for s in acme.by_graph] == ["refund"]
    assert [s.name for s in acme.by_model] == ["model-of-ours"] and acme.budgets == []
    assert acme.duration_p50_s == 4.0
    everyone = build(index, audit, usage, Principal(id="root"), hours=24)
    assert everyone.runs == 2 and [b.department for b in everyone.budgets] == ["board"]
