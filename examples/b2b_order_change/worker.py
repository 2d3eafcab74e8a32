"""Run the scenario's worker against a Temporal service (default: `chamberlain dev`'s): the
business's workflow and activity next to the graphs, on one task queue."""

from __future__ import annotations

import asyncio
import os

from temporalio.client import Client
from temporalio.converter import PayloadCodec
from temporalio.worker import Worker

from chamberlain.examples.b2b_order_change import app
from chamberlain.examples.b2b_order_change.activities import notify_customer
from chamberlain.examples.b2b_order_change.workflow import OrderChangeWorkflow
from chamberlain.workflows import ChamberlainPlugin

TASK_QUEUE = "b2b-orders"


def plugin(codec: PayloadCodec | None = None) -> ChamberlainPlugin:
    """Graphs on this process's client and workers: the app's models and tools behind its gate;
    payloads encrypted by ``codec`` (default: the keys in ``$CHAMBERLAIN_PAYLOAD_KEYS``)."""
    tools = app.tools()
    return ChamberlainPlugin(models=app.models(), tools=tools, gate=app.gate(tools), codec=codec)


def worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    """A worker for a client connected with :func:`plugin` (the plugin adds the graph workflow)."""
    return Worker(client, task_queue=task_queue, workflows=[OrderChangeWorkflow], activities=[notify_customer])


async def main() -> None:
    client = await Client.connect(os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"), plugins=[plugin()])
    async with worker(client):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
