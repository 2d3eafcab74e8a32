"""The quickstart end to end: three customer messages through the durable support graph,
then the ops console over the runs it just made.

With no ``TEMPORAL_ADDRESS`` it brings its own Temporal (the embedded dev server, SQLite
under ``.chamberlain/``), with no ``CHAMBERLAIN_EMBEDDED_URL`` its own embedded model
(SmolLM2-135M on llama.cpp), and a worker — so ``make demo`` needs nothing else running.

It ends by printing the console's URL and, the first time, the demo admin's password (only
its hash is kept, in the data folder's user file that ``chamberlain dev`` uses too). In a
terminal the console stays up until Ctrl-C; elsewhere (a pipe, CI) it stops at once, unless
``--serve``; ``--no-console`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chamberlain.agents import EmbeddedModelServer, load_graph
from chamberlain.examples.quickstart import app
from chamberlain.server import BackgroundServer, ServerSettings, create_app
from chamberlain.server.console import DemoAdmin, ensure_demo_admin
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
CONSOLE_PORT = 8000  # as `chamberlain dev`; another free port when it is taken
MESSAGES = [
    ("alice", "Where is my order A1001?"),
    ("bob", "Please refund order A1002, it arrived broken"),
    ("chen", "我要退货 A1003 — refund the whole thing"),
]


async def main(
    console: Console | None = None, serve: bool | None = None, port: int = CONSOLE_PORT
) -> list[dict[str, object]]:
    """Run the messages and print each run; then the console: kept up until Ctrl-C when
    ``serve`` (default: when run in a terminal), not started at all when ``serve`` is False."""
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
            address = server.address
            if "CHAMBERLAIN_PAYLOAD_KEYS" not in os.environ:  # the console reads the runs with the stack's keys
                os.environ["CHAMBERLAIN_PAYLOAD_KEYS"] = server.payload_keys()
                stack.callback(os.environ.pop, "CHAMBERLAIN_PAYLOAD_KEYS")
            console.print(f"Temporal dev server on [bold]{server.address}[/bold]")
        task_queue = f"quickstart-{uuid.uuid4().hex[:6]}"
        tools = app.tools()
        gate = app.gate(tools)  # every step checked against Cedar policy, and audited
        ops = None
        if serve is not False:  # the console first: the worker counts each step in its run index
            ops = _console(data, address, gate.audit.engine.url.render_as_string(hide_password=False), port)
            stack.callback(ops[0].stop)
        index = ops[1] if ops else None
        models = app.models()
        worker = create_worker(client, models=models, tools=tools, task_queue=task_queue, gate=gate, run_index=index)
        await stack.enter_async_context(worker)

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
                    await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=manager))
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
        if ops:
            http, _, admin = ops
            _print_console(console, http.url, admin)
            if serve if serve is not None else sys.stdin.isatty() and sys.stdout.isatty():
                console.print("the console stays up (and the worker with it) — [bold]Ctrl-C[/bold] stops the demo")
                await _until_interrupted()
            else:
                console.print("[dim]not a terminal: the console stopped with the demo (--serve keeps it up)[/dim]")
        return results


def _console(data: Path, address: str, audit: str, port: int) -> tuple[BackgroundServer, Any, DemoAdmin | str]:
    """The HTTP server with the console over this demo's Temporal, audit log and run index, and
    who signs in: the data folder's demo admin, created (with a password to print) the first time."""
    users, admin = ensure_demo_admin(data)
    settings = ServerSettings(
        temporal_address=address,
        users=users,
        data=data,
        audit=audit,
        runs=f"sqlite:///{data / 'quickstart-runs.sqlite'}",
        webhooks=None,
    )
    web = create_app(settings)
    try:
        http = BackgroundServer(web, port=port).start()
    except RuntimeError:  # the port is taken (say, by `chamberlain dev`): any free one
        http = BackgroundServer(web).start()
    return http, web.state.run_index.index, admin or str(users)


def _print_console(console: Console, url: str, admin: DemoAdmin | str) -> None:
    console.print(f"\n[bold]ops console[/bold]  {url}/console  — the runs above: steps, decisions, audit, cost")
    if isinstance(admin, DemoAdmin):  # shown this once: only its hash is kept
        who = f"[bold]{admin.user_id}[/bold], password [bold]{admin.password}[/bold]"
        console.print(f"sign in as {who} (shown only now)")
    else:
        console.print(
            f"sign in as [bold]admin[/bold] with the password printed when {admin} was made "
            "(delete that file for a new one next time)"
        )


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--serve", action="store_true", default=None, help="keep the console up until Ctrl-C")
    keep.add_argument("--no-console", dest="serve", action="store_false", help="do not start the console")
    parser.add_argument("--port", type=int, default=CONSOLE_PORT, help="the console's port (default: %(default)s)")
    args = parser.parse_args()
    asyncio.run(main(serve=args.serve, port=args.port))


if __name__ == "__main__":
    cli()
