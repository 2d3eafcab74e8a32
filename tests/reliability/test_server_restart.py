"""The Temporal server SIGKILLed and restarted on its database while ten returns runs are
under way (the same returns as the worker-kill test, behind the shipped policies): halfway
through their RMAs and refunds the server dies with no clean shutdown, keeping only what
its SQLite file committed, and comes back on the same port. The worker process rides the
outage out; every run completes, each RMA and refund exactly once, the audit chain valid."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from chamberlain.workflows import GRANT_SECRET_ENV, DevServer
from tests.conftest import run_id
from tests.support.returns import Shop, ledger_writes, start_return
from tests.support.returns_worker import SHOP_ENV, spawn

pytestmark = pytest.mark.chaos
RUNS = 10


async def test_server_killed_halfway_through_ten_returns_each_completes_once(
    tmp_path: Path, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = DevServer(tmp_path / "temporal.db", log_file=tmp_path / "temporal.log")
    client = await server.start()
    shop = Shop.seeded(tmp_path / "shop")
    runs = {run_id(): case for case in await shop.small_returns(RUNS)}
    monkeypatch.setenv(SHOP_ENV, shop.url)
    monkeypatch.setenv(GRANT_SECRET_ENV, secrets.token_hex(32))
    spec = shop.graph()
    worker = await asyncio.to_thread(spawn, server.address, task_queue)
    try:
        handles = [await start_return(client, spec, rid, case, task_queue) for rid, case in runs.items()]
        while len(set(ledger_writes())) < RUNS:  # half of the 20 writes are in the ERP
            await asyncio.sleep(0.02)
        server.kill()  # SIGKILL: only what SQLite committed survives
        written_at_kill = len(set(ledger_writes()))
        await asyncio.sleep(1)
        await server.start()
        outcomes = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 240)
        assert worker.poll() is None  # the same worker process went on after the outage
    finally:
        worker.kill()
        worker.wait()
        server.stop()
    assert written_at_kill < 2 * RUNS  # the outage came before the runs were done
    await shop.check_each_return_once(runs, outcomes)
