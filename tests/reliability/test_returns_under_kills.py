"""Returns under a worker that keeps dying: 30 returns runs (the evaluation's returns graph: the
model reads the message, the policy tools decide, an RMA, a refund) behind the shipped policies,
while the only worker process is SIGKILLed at random moments (a fixed seed) and started again
with the deployment's shared grant key. Every run completes; the ERP holds one RMA and one
refund per run and moved each order's money once; the audit chain verifies, with one effect
record per effect. The worker's ERP lingers after each write, so kills often land between a
write and its report — the case where a retry must find the write instead of repeating it."""

from __future__ import annotations

import asyncio
import random
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from chamberlain.workflows import GRANT_SECRET_ENV, DevServer, RunResult
from tests.conftest import run_id
from tests.support.returns import Shop, ledger_writes, start_return
from tests.support.returns_worker import LINGER, SHOP_ENV, spawn

pytestmark = [pytest.mark.chaos, pytest.mark.slow]
RUNS = 30
KILLS = 6
SEED = 20261130


def kill(worker: subprocess.Popen[str]) -> None:
    worker.kill()
    worker.wait()


async def retried_steps(client: Client, run_ids: list[str]) -> int:
    """How many activity attempts began again after an attempt was cut off."""
    count = 0
    for rid in run_ids:
        async for event in client.get_workflow_handle(rid).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                count += event.activity_task_started_event_attributes.attempt > 1
    return count


async def test_thirty_returns_with_the_worker_killed_at_random_refund_and_authorise_once(
    client: Client, dev_server: DevServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = Shop.seeded(tmp_path / "shop")
    runs = {run_id(): case for case in await shop.small_returns(RUNS)}
    monkeypatch.setenv(SHOP_ENV, shop.url)
    monkeypatch.setenv(GRANT_SECRET_ENV, secrets.token_hex(32))  # every worker process gets the same key
    spec = shop.graph()
    rng = random.Random(SEED)
    start_gaps = [rng.uniform(0.05, 0.3) for _ in runs]
    # where to kill: within a moment of the n-th of the 60 writes (while it lingers unreported),
    # the other runs wherever they are — points in the runs' progress, not in time, so the
    # machine's load does not move them
    kill_points = [(n, rng.uniform(0, LINGER)) for n in sorted(rng.sample(range(1, 2 * RUNS), KILLS))]
    results: list[asyncio.Task[RunResult]] = []

    async def start_all() -> None:
        """The runs arrive one by one, so the kills cut them at different steps."""
        for (rid, case), gap in zip(runs.items(), start_gaps, strict=True):
            await asyncio.sleep(gap)
            handle = await start_return(client, spec, rid, case, task_queue)
            results.append(asyncio.ensure_future(handle.result()))

    worker = await asyncio.to_thread(spawn, dev_server.address, task_queue)
    unfinished_at_kill: list[int] = []
    began = time.monotonic()
    try:
        starting = asyncio.ensure_future(start_all())
        for writes, delay in kill_points:
            while len(set(ledger_writes())) < writes and not (starting.done() and all(r.done() for r in results)):
                await asyncio.sleep(0.02)
            await asyncio.sleep(delay)
            kill(worker)  # SIGKILL: whatever it was doing stops mid-way
            unfinished_at_kill.append(sum(not r.done() for r in results))
            worker = await asyncio.to_thread(spawn, dev_server.address, task_queue)  # as a supervisor restarts it
        await starting
        last_kill = time.monotonic() - began
        _, pending = await asyncio.wait(results, timeout=240)
        assert not pending, f"{len(pending)} runs still running after the last kill"
    finally:
        kill(worker)
    outcomes = [r.result() for r in results]
    finished = time.monotonic() - began
    assert all(unfinished_at_kill), unfinished_at_kill  # every kill cut runs short

    await shop.check_each_return_once(runs, outcomes)

    # how the kills hit: attempts begun again, and writes whose step ran again after them
    repeated = [k for k, n in Counter(ledger_writes()).items() if n > 1]
    retried = await retried_steps(client, list(runs))
    print(
        f"{len(unfinished_at_kill)} kills (the last at {last_kill:.0f} s, all done at {finished:.0f} s), "
        f"runs in flight at each {unfinished_at_kill}, attempts begun again {retried}, writes repeated {len(repeated)}"
    )
    assert retried > 0 and repeated  # the kills cut steps off, some between a write and its report
