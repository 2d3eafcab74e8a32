"""The quickstart end to end: three customer messages through the durable support graph.

With no ``TEMPORAL_ADDRESS`` it brings its own Temporal (the embedded dev server, SQLite
under ``.chamberlain/``), with no ``CHAMBERLAIN_EMBEDDED_URL`` its own embedded model
(SmolLM2-135M on llama.cpp), and a worker — so ``make demo`` needs nothing else running.
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

from chamberlain.agents import EmbeddedModelServer, load_graph
from chamberlain.examples.quickstart import app
from chamberlain.workflows import Decision, DevServer, Principal, connect, create_worker, decide, progress, start_run

GRAPH = Path(__file__).with_name("graph.yaml")
MESSAGES = [
    ("alice", "Where is my order A1001?"),
    ("bob", "Please refund order A1002, it arrived broken"),
    ("chen", "我要退货 A1003 — refund the whole thing"),
]


async def main(console: Console | None = None) -> list[dict[str, object]]:
    console = console or Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per model call is noise here
    spec = load_graph(GRAPH, tools=app.tools())
    data = Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain"))
    async with AsyncExitStack() as stack:
        if not os.environ.get("CHAMBERLAIN_EMBEDDED_URL"):
            with console.status("starting the embedded model (SmolLM2-135M, llama.cpp)"):
                model_server = EmbeddedModelServer(log_file=data / "quickstart-model.log").start()
            stack.callback(model_server.stop)
            os.environ["CHAMBERLAIN_EMBEDDED_URL"] = model_server.base_url
            stack.callback(os.environ.pop, "CHAMBERLAIN_EMBEDDED_URL")
            console.print(f"embedded model on [bold]{model_server.base_url}[/bold]")
        if address := os.environ.get("TEMPORAL_ADDRESS"):
            client = await connect(address)
        else:
            server = DevServer(data / "quickstart-temporal.db", log_file=data / "quickstart-temporal.log")
            with console.status("starting the embedded Temporal server"):
                client = await server.start()
            stack.callback(server.stop)
            console.print(f"Temporal dev server on [bold]{server.address}[/bold]")
        task_queue = f"quickstart-{uuid.uuid4().hex[:6]}"
        tools = app.tools()
        gate = app.gate(tools)  # every step checked against Cedar policy, and audited
        await stack.enter_async_context(
            create_worker(client, models=app.models(), tools=tools, task_queue=task_queue, gate=gate)
        )

        results, started = [], set()
        for customer, message in MESSAGES:
            principal = Principal(id=customer, kind="user", roles=["customer"])
            handle = await start_run(
                client,
                spec,
                {"message": message},
                run_id=f"quickstart-{uuid.uuid4().hex[:8]}",
                principal=principal,
                task_queue=task_queue,
            )
            started.add(handle.id)
            result_task = asyncio.ensure_future(handle.result())
            while not result_task.done():
                pending = (await progress(handle)).pending_approval
                if pending:
                    console.print(
                        f"[yellow]waiting for approval[/yellow] {pending.ask} (approvers: {pending.approvers})"
                    )
                    manager = Principal(id="maria", roles=["manager"])
                    await decide(handle, Decision(step_id=pending.step_id, outcome="approve", approver=manager))
                    console.print("[green]maria (manager) approved[/green]")
                await asyncio.wait([result_task], timeout=0.2)
            result = result_task.result()
            steps = (await progress(handle)).steps
            table = Table(title=f"{handle.id}: {message}", title_justify="left")
            for column in ("step", "node", "updates", "decided by"):
                table.add_column(column)
            for i, step in enumerate(steps, 1):
                usage = f" {step.usage.input_tokens}+{step.usage.output_tokens} tokens" if step.usage else ""
                table.add_row(str(i), step.node, str(step.updates)[:60], "; ".join(step.routing) + usage)
            console.print(table)
            console.print(f"→ {result.status}: {result.output.get('reply') or result.output}\n")
            results.append(result.output)
        audit = gate.audit
        ours = [r for r in audit.records() if r.run_id in started]
        kinds = ", ".join(f"{k}s: {sum(r.kind == k for r in ours)}" for k in ("decision", "approval", "effect"))
        console.print(f"audit log: {kinds} — {audit.verify() or 'chain intact'}")
        return results


if __name__ == "__main__":
    asyncio.run(main())
