"""Three order changes end to end, on the embedded stack:

1. C20001 wants 160 bolts instead of 100 → drafted, confirmed through the signed webhook → committed;
2. C20001 wants 2 pumps instead of 1 → drafted, declined → cancelled, nothing written;
3. C20002 wants 10 pumps instead of 2, with 3 in stock → the draft says so, nothing to confirm.

With no ``TEMPORAL_ADDRESS`` it brings its own Temporal (the embedded dev server), with no
``CHAMBERLAIN_EMBEDDED_URL`` its own embedded model, and a worker and the confirmation webhook
on loopback — so it needs nothing else running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import uuid
from contextlib import AsyncExitStack

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from chamberlain.agents import EmbeddedModelServer
from chamberlain.examples.b2b_order_change import app
from chamberlain.examples.b2b_order_change.webhook import SIGNATURE_HEADER, confirmations_app, signature_for
from chamberlain.examples.b2b_order_change.worker import plugin, worker
from chamberlain.examples.b2b_order_change.workflow import (
    ChangeOutcome,
    Confirmation,
    OrderChange,
    OrderChangeWorkflow,
    change_workflow_id,
)
from chamberlain.server import BackgroundServer
from chamberlain.workflows import DevServer

CASES = [  # the request, and the customer's answer (None: no answer is asked for)
    (OrderChange(customer_id="C20001", order_id="B2001", line_no=1, quantity=160), True),
    (OrderChange(customer_id="C20001", order_id="B2001", line_no=2, quantity=2), False),
    (OrderChange(customer_id="C20002", order_id="B2002", line_no=1, quantity=10), None),
]


async def main(console: Console | None = None) -> list[ChangeOutcome]:
    console = console or Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = app.data_dir()
    app.prepare()
    async with AsyncExitStack() as stack:
        if not os.environ.get("CHAMBERLAIN_EMBEDDED_URL"):
            with console.status("starting the embedded model (SmolLM2-135M, llama.cpp)"):
                model = EmbeddedModelServer(log_file=data / "b2b-model.log").start()
            stack.callback(model.stop)
            os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model.base_url
            stack.callback(os.environ.pop, "CHAMBERLAIN_EMBEDDED_URL")
        codec = None  # a given Temporal: the payload keys of $CHAMBERLAIN_PAYLOAD_KEYS
        if not (address := os.environ.get("TEMPORAL_ADDRESS")):
            server = DevServer(data / "b2b-temporal.db", log_file=data / "b2b-temporal.log")
            with console.status("starting the embedded Temporal server"):
                await server.start()
            stack.callback(server.stop)
            address, codec = server.address, server.codec()
        client = await Client.connect(address, plugins=[plugin(codec)])
        task_queue = f"b2b-{uuid.uuid4().hex[:6]}"
        await stack.enter_async_context(worker(client, task_queue))
        secret = secrets.token_hex(32).encode()  # in production: $B2B_PORTAL_SECRET, shared with the portal
        webhook = BackgroundServer(confirmations_app(client, [secret])).start()
        stack.callback(webhook.stop)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=webhook.url))

        outcomes, started = [], set()
        for change, accepts in CASES:
            request_id = uuid.uuid4().hex[:10]
            handle = await client.start_workflow(
                OrderChangeWorkflow.run, change, id=change_workflow_id(request_id), task_queue=task_queue
            )
            started.add(handle.id)
            asked = f"order {change.order_id} line {change.line_no} → {change.quantity} units"
            console.print(f"[bold]{change.customer_id}[/bold]: {asked} ({handle.id})")
            if accepts is not None:
                while not (draft := await handle.query(OrderChangeWorkflow.draft)):
                    await asyncio.sleep(0.1)
                console.print(f"  draft: {draft}")
                answer = Confirmation(customer_id=change.customer_id, accepted=accepts, event_id=uuid.uuid4().hex)
                body = json.dumps({**answer.model_dump(), "request_id": request_id}).encode()
                headers = {SIGNATURE_HEADER: signature_for(secret, body), "content-type": "application/json"}
                reply = await http.post("/confirmations", content=body, headers=headers)
                console.print(f"  the customer {'confirms' if accepts else 'declines'}: webhook {reply.status_code}")
            outcome = await handle.result()
            console.print(f"  → [green]{outcome.status}[/green]: {outcome.message}\n")
            outcomes.append(outcome)

        table = Table(title="order lines now", title_justify="left")
        for column in ("order", "line", "quantity"):
            table.add_column(column)
        for order_id in ("B2001", "B2002"):
            order = await app.prepare().get_order(order_id)
            for line in order.lines:
                table.add_row(order_id, f"{line.line_no} {line.sku}", str(line.quantity))
        console.print(table)
        tools = app.tools()
        audit = app.gate(tools).audit
        ours = [r for r in audit.records() if r.run_id.split("/")[0] in started]  # the graphs' child runs
        kinds = ", ".join(f"{k}s: {sum(r.kind == k for r in ours)}" for k in ("decision", "effect"))
        console.print(f"audit log: {kinds} — {audit.verify() or 'chain intact'}")
        return outcomes


if __name__ == "__main__":
    asyncio.run(main())
