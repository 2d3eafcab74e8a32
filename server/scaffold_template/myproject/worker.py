"""A worker for myproject's own workflow and for graph runs, on one task queue.

``python -m myproject.worker`` against ``TEMPORAL_ADDRESS`` (default ``chamberlain dev``'s).
"""

from __future__ import annotations

import asyncio
import os

from chamberlain.workflows import ChamberlainPlugin
from temporalio.client import Client
from temporalio.worker import Worker

from myproject import app
from myproject.workflow import RefundCaseWorkflow, note_to_customer

TASK_QUEUE = "myproject"


async def connect(address: str | None = None) -> Client:
    """A client whose workers run graphs too: the plugin brings the graph workflow, its
    activities behind the gate, and the encrypted payload converter."""
    tools = app.tools()
    plugin = ChamberlainPlugin(models=app.models(), tools=tools, gate=app.gate(tools))
    return await Client.connect(address or os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"), plugins=[plugin])


def worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[RefundCaseWorkflow], activities=[note_to_customer])


async def main() -> None:
    async with worker(await connect()):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
