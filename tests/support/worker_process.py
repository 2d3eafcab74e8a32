"""A graph worker in its own process, for tests that kill it:
``python -m tests.support.worker_process ADDRESS QUEUE [hold NODE | lose | forbid ACTION]``.

It runs behind the test gate with the fixed test key, and audits beside the test's ledger
(``CHAMBERLAIN_TEST_LEDGER``), so a restarted worker accepts the tickets of the one killed.
``hold NODE``: that node's tool activity stops right after its audit record is committed and
before it completes (printing ``recorded <step ID>``): the window a SIGKILL must survive.
``lose``: records written behind are never committed by this worker (as if it died within
their 50 ms): only the run's seal, on another worker, can write them.
``forbid ACTION``: the test policy with ``ACTION`` forbidden (:func:`forbidding`): a worker
whose fresh decision of such a step is a refusal."""

from __future__ import annotations

import asyncio
import sys

from chamberlain.agents._steps import ToolCall, ToolReply
from chamberlain.workflows import Gate, PolicyEngine, connect, create_worker
from chamberlain.workflows._policy import Ticket
from tests.support import toolbox
from tests.support.workers import TEST_POLICY, TEST_SECRET, audit_log, gate_for_tests, graph_worker


def forbidding(action: str) -> str:
    """The test policy, and ``action`` forbidden."""
    forbid = f'@id("tests-forbid")\nforbid (principal, action == Action::"{action}", resource);\n'
    return TEST_POLICY.read_text(encoding="utf-8") + "\n" + forbid


class HoldAfterRecord(Gate):
    """The test gate, except that once the record of ``node``'s effect is committed, its
    activity waits until killed."""

    node = ""

    async def _act(self, call: ToolCall, admitted: Ticket, attempt: int) -> ToolReply:  # where every effect happens
        reply = await super()._act(call, admitted, attempt)
        if call.step.node == self.node:
            await self.drain()
            print(f"recorded {call.step.step_id}", flush=True)
            await asyncio.Event().wait()
        return reply


async def main(address: str, task_queue: str, mode: list[str]) -> None:
    client = await connect(address)
    tools = toolbox.tools()
    if mode and mode[0] == "hold":
        gate: Gate = HoldAfterRecord(
            PolicyEngine([TEST_POLICY.read_text(encoding="utf-8")]), audit_log(), tools, TEST_SECRET
        )
        gate.node = mode[1]
        worker = create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue)
    elif mode == ["lose"]:
        gate = gate_for_tests(tools)
        gate.commits.behind = 3600
        worker = create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue)
    elif mode and mode[0] == "forbid":
        gate = Gate(PolicyEngine([forbidding(mode[1])]), audit_log(), tools, TEST_SECRET)
        worker = create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue)
    else:
        worker = graph_worker(client, task_queue)
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
