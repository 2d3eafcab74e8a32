"""A graph worker in its own process, for tests that kill it: python -m tests.support.worker_process ADDRESS QUEUE

It runs behind the test gate with the fixed test key, and audits beside the test's ledger
(``CHAMBERLAIN_TEST_LEDGER``), so a restarted worker accepts the tickets of the one killed."""

from __future__ import annotations

import asyncio
import sys

from chamberlain.workflows import connect
from tests.support.workers import graph_worker


async def main(address: str, task_queue: str) -> None:
    client = await connect(address)
    async with graph_worker(client, task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
