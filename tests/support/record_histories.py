"""Record the histories the replay test pins: python -m tests.support.record_histories

Re-record only on purpose: a recorded history that no longer replays means the workflow
code changed in a way that would break runs already in flight (use workflow.patched)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from langchain_core.messages import message_to_dict

from chamberlain.workflows import ApprovalAnswer, DevServer, Principal, connect, decide, progress, start_run
from tests.support.graphs import chat_models, conversation, graph
from tests.support.workers import graph_worker

HISTORIES = Path(__file__).parent.parent / "histories"


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "temporal.db")
    await server.start()
    client = await connect(server.address)  # plain payloads (the embedded server's client encrypts them)
    models, _ = chat_models()
    try:
        async with graph_worker(client, "record", models):
            chat_input = {"history": [message_to_dict(m) for m in conversation()]}
            runs = {
                "five_steps": await start_run(
                    client, graph("five_steps"), {"message": "refund"}, run_id="h-five", task_queue="record"
                ),
                "chat": await start_run(client, graph("chat"), chat_input, run_id="h-chat", task_queue="record"),
                "loop": await start_run(
                    client, graph("loop"), {"limit": 3}, run_id="h-loop", steps_per_segment=4, task_queue="record"
                ),
            }
            approval = await start_run(
                client, graph("approval"), {}, run_id="h-approval", principal=Principal(id="alice"), task_queue="record"
            )
            while not (pending := (await progress(approval)).pending_approval):
                await asyncio.sleep(0.05)
            maria = Principal(id="maria", roles=["manager"])
            await decide(approval, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=maria))
            runs["approval"] = approval
            for name, handle in runs.items():
                await handle.result()
                history = await handle.fetch_history()  # the last segment of a continued run
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print("recorded", name, len(history.events), "events")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
