"""Installers' questions answered on the embedded stack, each for its asker:

1. a field engineer's English question on an E5 fault (the engineering root-cause analysis
   matches best, but is not theirs to read);
2. the same engineer's Chinese question on an iced-up outdoor unit;
3. a partner installer (no department: public documents only) on R32 safety;
4. a question the knowledge base cannot answer → an expert replies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from rich.console import Console

from chamberlain.agents import EmbeddedModelServer, load_graph
from chamberlain.examples.field_support import app
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
FIELD = Principal(id="li.wei", roles=["field-engineer"], department="field-service")
PARTNER = Principal(id="partner:nordbau", kind="service", roles=["installer"])
EXPERT = Principal(id="sven", roles=["expert"], department="field-service", clearance=["confidential"])
QUESTIONS = [
    (FIELD, "The AW-9 shows E5 after defrost and the unit is from batch 2403. What part do I replace?"),
    (FIELD, "室外机除霜后底盘结冰，风扇被冰顶住了，怎么处理？"),
    (PARTNER, "焊接 R32 制冷剂管路之前要注意什么？"),
    (FIELD, "What will the weather be like in Paris tomorrow?"),
]


def values(question: str, asker: Principal) -> dict[str, object]:
    """A run's input: the question and the asker's own view (the gate refuses any other)."""
    return {"question": question, "department": asker.department, "clearance": asker.clearance}


async def main(console: Console | None = None) -> list[dict[str, object]]:
    console = console or Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data = app.DATA
    async with AsyncExitStack() as stack:
        if not os.environ.get("CHAMBERLAIN_EMBEDDED_URL"):
            model = EmbeddedModelServer(log_file=data / "support-model.log").start()
            stack.callback(model.stop)
            os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model.base_url
            stack.callback(os.environ.pop, "CHAMBERLAIN_EMBEDDED_URL")
        if address := os.environ.get("TEMPORAL_ADDRESS"):
            client = await connect(address)
        else:
            server = DevServer(data / "support-temporal.db", log_file=data / "support-temporal.log")
            client = await server.start()
            stack.callback(server.stop)
        task_queue = f"support-{uuid.uuid4().hex[:6]}"
        tools = app.tools()
        spec = load_graph(GRAPH, tools=tools)
        await stack.enter_async_context(
            create_worker(client, models=app.models(), tools=tools, gate=app.gate(tools), task_queue=task_queue)
        )
        outputs = []
        for asker, question in QUESTIONS:
            run_id = f"support-{uuid.uuid4().hex[:8]}"
            started = time.monotonic()
            handle = await start_run(
                client, spec, values(question, asker), run_id=run_id, principal=asker, task_queue=task_queue
            )
            result_task = asyncio.ensure_future(handle.result())
            answered_in = None
            while not result_task.done():
                if pending := (await progress(handle)).pending_approval:
                    answered_in = answered_in or time.monotonic() - started
                    console.print(f"[yellow]handed to an expert[/yellow] ({answered_in:.1f} s): {pending.ask[:160]}")
                    reply = {"answer": "Not a field-service question: no knowledge base entry.", "citations": []}
                    decision = ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=EXPERT, values=reply)
                    await decide(handle, decision)
                await asyncio.wait([result_task], timeout=0.2)
            result = result_task.result()
            took = answered_in or time.monotonic() - started
            route = " → ".join(step.node for step in (await progress(handle)).steps)
            console.print(f"[bold]{asker.id}[/bold]: {question}\n  {route} ({took:.1f} s)")
            console.print(f"  → {result.output.get('answer')}")
            for source in result.output.get("sources") or []:
                console.print(f"    [{source['document']}] {source['title']}")
            outputs.append({"end": result.end, "seconds": round(took, 1), **result.output})
        return outputs


if __name__ == "__main__":
    asyncio.run(main())
