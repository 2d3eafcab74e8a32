"""Run the scenario's worker against a Temporal service (default: `chamberlain dev`'s)."""

from __future__ import annotations

import asyncio
import os

from chamberlain.examples.field_support import app
from chamberlain.workflows import connect, create_worker


async def main() -> None:
    client = await connect(os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    tools = app.tools()
    async with create_worker(client, models=app.models(), tools=tools, gate=app.gate(tools)):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
