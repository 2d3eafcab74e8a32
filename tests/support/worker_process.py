"""A graph worker in its own process, for tests that kill it:
``python -m tests.support.worker_process ADDRESS QUEUE [NODE]``.

It runs behind the test gate with the fixed test key, and audits beside the test's ledger
(``CHAMBERLAIN_TEST_LEDGER``), so a restarted worker accepts the tickets of the one killed.
Given a ``NODE``, that node's tool activity stops right after its audit record is committed
and before it completes (printing ``recorded <step ID>``): the window a SIGKILL must survive."""

from __future__ import annotations

import asyncio
import sys

from chamberlain.workflows import Gate, PolicyEngine, connect, create_worker
from chamberlain.workflows._audit import AuditEntry
from tests.support import toolbox
from tests.support.workers import TEST_POLICY, TEST_SECRET, audit_log, graph_worker


class HoldAfterRecord(Gate):
    """The test gate, except that the effect record of ``node`` is followed by a wait until killed."""

    node = ""

    async def record(self, entry: AuditEntry) -> None:
        await super().record(entry)
        if entry.kind == "effect" and entry.step_id.rsplit("/", 2)[-2] == self.node:
            print(f"recorded {entry.step_id}", flush=True)
            await asyncio.Event().wait()


async def main(address: str, task_queue: str, hold: str | None) -> None:
    client = await connect(address)
    if hold:
        tools = toolbox.tools()
        gate = HoldAfterRecord(PolicyEngine([TEST_POLICY.read_text(encoding="utf-8")]), audit_log(), tools, TEST_SECRET)
        gate.node = hold
        worker = create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue)
    else:
        worker = graph_worker(client, task_queue)
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
