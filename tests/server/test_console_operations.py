"""Console operations over real HTTP on the real dev server: re-run a run with edited input as
a new run linked to the old (for the same principal, audited on both), bulk cancel over a
filter that leaves another department's runs alone — and the refusals: a viewer, a form
without its CSRF token, a field the graph does not have, a run still running."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.client import WorkflowExecutionStatus as Status

from chamberlain.server._runs import _request_of
from chamberlain.workflows import AuditLog, DevServer, Principal, start_run
from chamberlain.workflows._run_index import RunIndex
from tests.conftest import run_id
from tests.console.console_app import console_server
from tests.server.test_console_access import csrf_of, signed_in
from tests.support.graphs import graph
from tests.support.workers import graph_worker

ALICE = Principal(id="alice", roles=["customer"], department="support")
BOB = Principal(id="bob", roles=["customer"], department="sales")


@pytest.fixture
async def console(dev_server: DevServer, tmp_path: Path, ledger: Path) -> AsyncIterator[str]:
    with console_server(dev_server.address, tmp_path, ledger) as url:
        yield url


def operations(ledger: Path, action: str) -> list[str]:
    log = AuditLog.open(f"sqlite:///{ledger.with_suffix('.audit.sqlite')}")
    return [r.run_id for r in log.records() if r.kind == "operation" and r.action == action]


async def form_token(http: httpx.AsyncClient, path: str) -> str:
    return csrf_of((await http.get(path)).text)


async def test_a_run_again_with_edited_input_is_a_new_linked_run_for_the_same_principal(
    console: str, client: Client, task_queue: str, tmp_path: Path, ledger: Path
) -> None:
    async with graph_worker(client, task_queue):
        first = await start_run(
            client, graph("slow_chain"), {"seconds": 0.05}, run_id=run_id(), principal=ALICE, task_queue=task_queue
        )
        await first.result()
        page = f"/console/runs/{first.id}"
        olga, _ = await signed_in(console, "olga")
        victor, _ = await signed_in(console, "victor")
        try:
            viewer = await victor.post(f"{page}/rerun", data={"csrf": await form_token(victor, page), "changes": "{}"})
            assert viewer.status_code == 403
            no_token = await olga.post(f"{page}/rerun", data={"changes": '{"seconds": 0.01}'})
            assert no_token.status_code == 403
            csrf = await form_token(olga, page)
            unknown = await olga.post(f"{page}/rerun", data={"csrf": csrf, "changes": '{"amount": 10000}'})
            assert unknown.status_code == 422 and "amount" in unknown.text and "seconds" in unknown.text
            assert operations(ledger, "rerun") == []  # nothing refused was started or audited

            again = await olga.post(f"{page}/rerun", data={"csrf": csrf, "changes": '{"seconds": 0.01}'})
            assert again.status_code == 303
            new_id = again.headers["location"].removeprefix("/console/runs/")
            assert new_id != first.id and new_id.startswith(first.id)
            assert (await client.get_workflow_handle(new_id).result())["status"] == "completed"
            request = await _request_of(client, new_id)
            assert request is not None and request.input["seconds"] == 0.01
            assert request.principal is not None and request.principal.id == "alice"  # not the operator
            assert sorted(operations(ledger, "rerun")) == sorted([first.id, new_id])
            link = RunIndex(f"sqlite:///{tmp_path / 'data' / 'runs.sqlite'}").get(new_id)
            assert link is not None and link.rerun_of == first.id

            running = await start_run(
                client, graph("slow_chain"), {"seconds": 2}, run_id=run_id(), principal=ALICE, task_queue=task_queue
            )
            busy = await olga.post(f"/console/runs/{running.id}/rerun", data={"csrf": csrf, "changes": "{}"})
            assert busy.status_code == 409 and "still running" in busy.text
            await running.cancel()
        finally:
            await olga.aclose()
            await victor.aclose()


async def test_bulk_cancel_touches_only_the_runs_its_filter_matches(
    console: str, client: Client, task_queue: str, ledger: Path
) -> None:
    returns = Principal(id="alice", roles=["customer"], department=f"退货-{uuid.uuid4().hex[:6]}")  # this test's own
    async with graph_worker(client, task_queue):
        slow = {"seconds": 3.0}
        ours = [
            await start_run(
                client, graph("slow_chain"), slow, run_id=run_id(), principal=returns, task_queue=task_queue
            )
            for _ in range(2)
        ]
        theirs = await start_run(
            client, graph("slow_chain"), slow, run_id=run_id(), principal=BOB, task_queue=task_queue
        )
        olga, _ = await signed_in(console, "olga")
        try:
            for _ in range(100):  # until the index lists all three as running
                listed = (await olga.get("/console/runs", params={"status": "running"})).text
                if all(h.id in listed for h in [*ours, theirs]):
                    break
                await asyncio.sleep(0.2)
            csrf = await form_token(olga, "/console/runs")
            department = {"csrf": csrf, "action": "cancel", "department": returns.department}
            done = await olga.post("/console/runs/bulk", data=department)
            assert done.status_code == 200 and done.text.count("<td>canceled</td>") == 2
            for handle in ours:  # cancelled mid-activity: the graph workflow ends such a run failed, not canceled
                for _ in range(50):
                    if (await handle.describe()).status != Status.RUNNING:
                        break
                    await asyncio.sleep(0.1)
                assert (await handle.describe()).status in (Status.CANCELED, Status.FAILED)
            assert (await theirs.describe()).status == Status.RUNNING  # another department's
            assert sorted(operations(ledger, "cancel")) == sorted(h.id for h in ours)
            nonsense = await olga.post("/console/runs/bulk", data={"csrf": csrf, "action": "terminate"})
            assert nonsense.status_code == 422 and "action" in nonsense.text
        finally:
            await olga.aclose()
        await theirs.cancel()
