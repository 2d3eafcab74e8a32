"""Three Singles' Day returns, end to end, on the embedded stack:

1. an 11.11 order inside its 30-day window → RMA, label, refund, no one involved;
2. a large one → a manager approves first;
3. an ordinary order past its 7-day window → declined, with the policy's reason.

When the exemplar classifier is unsure of a message's intent (a margin below ``min_margin``),
the run parks in the support queue instead; the starter then answers as a support agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from chamberlain.agents import EmbeddedModelServer, load_graph
from chamberlain.examples.promo_returns import app
from chamberlain.tools import REFERENCE_DAY, SINGLES_DAY
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Order
from chamberlain.tools.returns.policy import ReturnPolicy
from chamberlain.workflows import (
    ApprovalAnswer,
    DevServer,
    Principal,
    connect,
    create_worker,
    decide,
    progress,
    start_run,
)

GRAPH = Path(__file__).with_name("graph.yaml")


async def scenarios(erp: EmbeddedErp) -> list[tuple[str, str]]:
    """(order, message) for the three cases, found in the seeded data."""
    policy = ReturnPolicy.load()
    with Session(erp.engine) as session:
        delivered = session.exec(select(Order).where(Order.status == "delivered").order_by(Order.id)).all()
        candidates = [(o.id, o.promotion, o.delivered_at) for o in delivered]
    small = large = late = None
    for order_id, promotion, delivered_at in candidates:
        order = await erp.get_order(order_id)
        first = order.lines[0]
        days = (REFERENCE_DAY.replace(tzinfo=None) - delivered_at.replace(tzinfo=None)).days if delivered_at else 0
        returnable = first.category not in policy.excluded_categories and order.refunded == 0
        if promotion == SINGLES_DAY and returnable and days < 30:
            if small is None and first.unit_price <= 200:
                small = order_id
            elif large is None and first.unit_price > 200:
                large = order_id
        elif promotion is None and returnable and days > 30 and late is None:
            late = order_id
        if small and large and late:
            break
    assert small and large and late, "the seed lacks a case"
    return [
        (small, f"双十一买的 {small} 尺码不对，没拆封，想退货"),
        (large, f"Hi, I'd like to return what I bought on 11.11, order {large}. Still sealed."),
        (late, f"Can I still return order {late}? It arrived in September."),
    ]


async def main(console: Console | None = None) -> list[dict[str, object]]:
    console = console or Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = app.DATA
    erp = app.prepare()
    assert erp is not None, "the starter picks its cases from the embedded ERP"
    spec = load_graph(GRAPH, tools=app.tools())
    async with AsyncExitStack() as stack:
        if not os.environ.get("CHAMBERLAIN_EMBEDDED_URL"):
            model = EmbeddedModelServer(log_file=data / "promo-model.log").start()
            stack.callback(model.stop)
            os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model.base_url
            stack.callback(os.environ.pop, "CHAMBERLAIN_EMBEDDED_URL")
        if address := os.environ.get("TEMPORAL_ADDRESS"):
            client = await connect(address)
        else:
            server = DevServer(data / "promo-temporal.db", log_file=data / "promo-temporal.log")
            client = await server.start()
            stack.callback(server.stop)
        task_queue = f"promo-{uuid.uuid4().hex[:6]}"
        tools = app.tools()
        await stack.enter_async_context(
            create_worker(client, models=app.models(), tools=tools, task_queue=task_queue, gate=app.gate(tools))
        )
        outputs = []
        for order_id, message in await scenarios(erp):
            customer = (await erp.get_order(order_id)).customer_id
            values = {"message": message, "customer_id": customer}
            principal = Principal(id=f"helpdesk:{customer}", kind="service", roles=["helpdesk"], customer=customer)
            run_id = f"return-{order_id}-{uuid.uuid4().hex[:6]}"
            handle = await start_run(client, spec, values, run_id=run_id, principal=principal, task_queue=task_queue)
            result_task = asyncio.ensure_future(handle.result())
            while not result_task.done():
                if pending := (await progress(handle)).pending_approval:
                    console.print(f"[yellow]{pending.node}[/yellow] {pending.ask}")
                    if pending.node == "support":  # the classifier was unsure: a person answers the customer
                        agent, answer = Principal(id="wei", roles=["support"]), {"reply": "We will call you today."}
                    else:
                        agent, answer = Principal(id="maria", roles=["manager"]), None
                    decision = ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=agent, values=answer)
                    await decide(handle, decision)
                await asyncio.wait([result_task], timeout=0.2)
            result = result_task.result()
            table = Table("node", "updates", "decided by", title=message, title_justify="left")
            for step in (await progress(handle)).steps:
                table.add_row(step.node, str(step.updates)[:70], "; ".join(step.routing)[:50])
            console.print(table)
            console.print(f"→ [bold]{result.end}[/bold]: {result.output}\n")
            outputs.append({"end": result.end, **result.output})
        return outputs


if __name__ == "__main__":
    asyncio.run(main())
