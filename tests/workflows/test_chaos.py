"""Crashes in the middle of a run: a worker killed with SIGKILL, the server killed and restarted.

Side effects are counted in a SQLite ledger that the tool writes without any idempotency,
so a completed step that ran again would show up as a second row.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client

from chamberlain.tools._seed import seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Refund
from chamberlain.workflows import DevServer, GraphWorkflow, RunResult, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.workers import audit_log, graph_worker

pytestmark = pytest.mark.chaos
ROOT = Path(__file__).parents[2]
RUNS = 10  # the issue saw 10 of 10 such runs fail with a per-process key


async def wait_for_effect(event: str, step_id: str, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.05)):
        if (event, step_id) in toolbox.effects(event):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{event} {step_id} never happened")


def spawn_worker(address: str, task_queue: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", address, task_queue],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout and process.stdout.readline().strip() == "ready"
    return process


async def run_killing_the_first_worker(
    client: Client,
    address: str,
    task_queue: str,
    rid: str,
    name: str,
    values: dict[str, object],
    kill_at: tuple[str, str],
) -> RunResult:
    """Start a run on a worker process, SIGKILL it when the ledger shows ``kill_at``, and let a
    second worker process finish the run."""
    first = spawn_worker(address, task_queue)
    try:
        handle = await start_run(client, graph(name), values, run_id=rid, task_queue=task_queue)
        await wait_for_effect(*kill_at)
    finally:
        first.kill()
        first.wait()
    second = spawn_worker(address, task_queue)
    try:
        return await handle.result()
    finally:
        second.kill()
        second.wait()


async def test_killed_worker_resumes_on_a_new_one_without_repeating_steps(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    rid = run_id()
    # SIGKILL in the middle of step s3
    result = await run_killing_the_first_worker(
        client, dev_server.address, task_queue, rid, "slow_chain", {}, ("start", f"{rid}/s3/1")
    )
    assert result.status == "completed" and result.output["last"] == "s5"
    starts = Counter(s for e, s in toolbox.effects("start"))
    dones = Counter(s for e, s in toolbox.effects("done"))
    assert dones == {f"{rid}/s{i}/1": 1 for i in range(1, 6)}  # every step finished exactly once
    assert starts == {**{f"{rid}/s{i}/1": 1 for i in (1, 2, 4, 5)}, f"{rid}/s3/1": 2}  # only s3, cut off, ran again


async def test_server_killed_and_restarted_on_its_database_completes_the_run(tmp_path: Path, task_queue: str) -> None:
    server = DevServer(tmp_path / "temporal.db", log_file=tmp_path / "temporal.log")
    client = await server.start()
    rid = run_id()
    try:
        async with graph_worker(client, task_queue):
            await start_run(client, graph("slow_chain"), {}, run_id=rid, task_queue=task_queue)
            await wait_for_effect("done", f"{rid}/s1/1")
            await wait_for_effect("start", f"{rid}/s2/1")
            server.kill()  # SIGKILL: no clean shutdown, only what SQLite committed survives
            await asyncio.sleep(1)
            await server.start()
            result = await client.get_workflow_handle_for(GraphWorkflow.run, rid).result()
    finally:
        server.stop()
    assert result.status == "completed" and result.output["last"] == "s5"
    dones = Counter(s for e, s in toolbox.effects("done"))
    # s1 completed before the crash and s3-s5 ran after it: each exactly once. s2 was running
    # while the server was down; its completion is re-reported after the restart, but a longer
    # outage than its timeout may legitimately run it again (its tool must then be idempotent).
    assert {k: v for k, v in dones.items() if not k.endswith("/s2/1")} == {f"{rid}/s{i}/1": 1 for i in (1, 3, 4, 5)}
    assert dones[f"{rid}/s2/1"] >= 1


async def test_workers_killed_mid_refund_with_the_gate_on_resume_and_refund_each_order_once(
    client: Client, dev_server: DevServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "10 of 10 runs failed with no valid grant": a worker killed between the ERP
    write and the activity's completion came back with a new random key. Now every worker
    shares the configured key, so the retry on the new worker is admitted."""
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    erp = EmbeddedErp(url)
    seed(erp, EmbeddedCrm(erp.engine), customers=20, orders=50)
    monkeypatch.setenv("CHAMBERLAIN_TEST_ERP", url)
    orders = [f"A{1001 + i}" for i in range(30)]
    payable = [o for o in orders if (view := await erp.get_order(o)).paid - view.refunded >= 10][:RUNS]
    before = {o: (await erp.get_order(o)).refunded for o in payable}
    runs = {run_id(): order for order in payable}
    first = spawn_worker(dev_server.address, task_queue)
    try:
        spec, refund = graph("crash_refund"), {"amount": 10.0}
        handles = [
            await start_run(client, spec, {**refund, "order_id": order}, run_id=rid, task_queue=task_queue)
            for rid, order in runs.items()
        ]
        for rid in runs:  # SIGKILL once every refund is in the ERP but no activity has completed
            await wait_for_effect("refund-written", f"{rid}/refund/1")
    finally:
        first.kill()
        first.wait()
    second = spawn_worker(dev_server.address, task_queue)
    try:
        results = [await handle.result() for handle in handles]
    finally:
        second.kill()
        second.wait()
    assert [r.status for r in results] == ["completed"] * RUNS
    written = Counter(step for _, step in toolbox.effects("refund-written"))
    assert written == {f"{rid}/refund/1": 2 for rid in runs}  # every call ran twice…
    with Session(erp.engine) as session:
        refunds = session.exec(select(Refund).where(col(Refund.order_id).in_(payable))).all()
    assert sorted(r.idempotency_key for r in refunds) == sorted(f"{rid}/refund/1" for rid in runs)  # …paid once
    for result, order in zip(results, runs.values(), strict=True):
        assert (await erp.get_order(order)).refunded == pytest.approx(before[order] + 10.0)
        assert result.output["refund_id"] == next(f"RF{r.id:06d}" for r in refunds if r.order_id == order)
    audit = audit_log()  # the workers' audit log, beside this test's ledger
    effects = sorted((r.step_id, r.amount, r.currency) for r in audit.records() if r.kind == "effect")
    currency = {o: (await erp.get_order(o)).currency for o in payable}
    assert effects == sorted((f"{rid}/refund/1", 10.0, currency[o]) for rid, o in runs.items())  # one per effect
    allowed = Counter(r.step_id for r in audit.records() if r.decision == "allow")
    assert allowed == {f"{rid}/refund/1": 1 for rid in runs}  # one record per step: its allowance with its effect
    assert audit.verify() is None
