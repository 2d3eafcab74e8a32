"""What the durable benchmarks run: tools, a scripted model, graphs and the gate, and a
worker process (``python -m benchmarks.stack ADDRESS QUEUE FOLDER``) whose memory can be read.

The gate is always on, as deployments run it: the shipped Cedar policies plus a permit for
the benchmark's tools, a hash-chained audit log in SQLite, a random shared grant key.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from benchmarks.baseline import raw_worker
from chamberlain.agents import GraphSpec, ModelRegistry, Tier
from chamberlain.agents._scripted import ScriptedChatModel
from chamberlain.tools import Effect, ToolContext, ToolRegistry, tool
from chamberlain.workflows import AuditLog, DevServer, Gate, PolicyEngine, connect, create_worker
from chamberlain.workflows._policy import POLICIES

BENCH_ACTIONS = ("order", "policy", "rma", "refund", "note", "noop", "read")
_LISTED = ", ".join(f'Action::"tool.bench.{name}"' for name in BENCH_ACTIONS)
BENCH_POLICY = f"permit (principal, action in [{_LISTED}], resource);"
GRANT_KEY_FILE = "grant-key"
ROOT = Path(__file__).parents[1]


class Order(BaseModel):
    order_id: str


class OrderView(BaseModel):
    total: float
    eligible: bool = True
    reference: str = ""


class Counter(BaseModel):
    n: int


def _view(args: Order) -> OrderView:
    return OrderView(total=120.0, reference=f"{args.order_id}-{len(args.order_id)}")


@tool("bench.order")
async def order(args: Order, ctx: ToolContext) -> OrderView:
    """Read an order (in memory): a read-only step."""
    return _view(args)


@tool("bench.policy")
async def eligibility(args: Order, ctx: ToolContext) -> OrderView:
    """Decide whether the order may be returned: a read-only step."""
    return _view(args)


@tool("bench.rma", effect=Effect.WRITE)
async def rma(args: Order, ctx: ToolContext) -> OrderView:
    """Open a return authorisation: a write keyed by its step."""
    return OrderView(total=0, reference=f"RMA-{ctx.idempotency_key}")


@tool("bench.refund", effect=Effect.WRITE)
async def refund(args: Order, ctx: ToolContext) -> OrderView:
    """Refund: a write keyed by its step."""
    return OrderView(total=120.0, reference=f"RF-{ctx.idempotency_key}")


@tool("bench.note", effect=Effect.WRITE)
async def note(args: Order, ctx: ToolContext) -> OrderView:
    """A note on the customer's record: a write keyed by its step."""
    return OrderView(total=0, reference=f"N-{ctx.idempotency_key}")


@tool("bench.noop", effect=Effect.WRITE)
async def noop(args: Counter, ctx: ToolContext) -> Counter:
    """Add one: the cheapest step with an effect."""
    return Counter(n=args.n + 1)


@tool("bench.read")
async def read(args: Counter, ctx: ToolContext) -> Counter:
    """Add one, declared read-only."""
    return Counter(n=args.n + 1)


def tools() -> ToolRegistry:
    return ToolRegistry([order, eligibility, rma, refund, note, noop, read])


def answer(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> str:
    """The scripted model: the intent of a returns message, or a reply."""
    if "Classify" in str(messages[-1].content):
        return json.dumps({"intent": "return", "order_id": "A1002"})
    return json.dumps({"reply": "Your refund is on its way."})


def models() -> ModelRegistry:
    registry = ModelRegistry()
    registry.register("scripted", ScriptedChatModel(respond=answer), Tier.EDGE)
    return registry


def gate(folder: Path, registry: ToolRegistry) -> Gate:
    """The gate as deployed; the key is kept in ``folder`` so every worker process shares it."""
    key_file = folder / GRANT_KEY_FILE
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
    policies = PolicyEngine([*(f.read_text() for f in sorted(POLICIES.glob("*.cedar"))), BENCH_POLICY])
    return Gate(policies, AuditLog(f"sqlite:///{folder / 'audit.sqlite'}"), registry, key_file.read_text().encode())


def _tool(name: str, next_: str, output: str = "reference") -> dict[str, Any]:
    return {
        "type": "tool",
        "tool": name,
        "args": {"order_id": "order_id"},
        "output": {output: f"result.{output}"},
        "next": next_,
    }


def returns_graph() -> GraphSpec:
    """A returns-shaped run: classify (model), route, order and eligibility (reads), RMA, refund
    and note (writes), reply (model) — 8 steps, 7 of them effects."""
    nodes: dict[str, Any] = {
        "classify": {
            "type": "model",
            "tier": "edge",
            "prompt": "Classify this customer message: {message}",
            "output": {"intent": {"type": "str"}, "order_id": {"type": "str"}},
            "next": "route",
        },
        "route": {"type": "route", "next": [{"when": "intent == 'return'", "to": "order"}, {"to": "done"}]},
        "order": _tool("bench.order", "eligible", "total"),
        "eligible": _tool("bench.policy", "rma"),
        "rma": _tool("bench.rma", "refund"),
        "refund": _tool("bench.refund", "note"),
        "note": _tool("bench.note", "reply"),
        "reply": {
            "type": "model",
            "tier": "edge",
            "prompt": "Write the reply for order {order_id}",
            "output": {"reply": {"type": "str"}},
            "next": "done",
        },
        "done": {"type": "end", "output": ["intent", "order_id", "reply"]},
    }
    fields = ("message", "intent", "order_id", "reference", "reply")
    state: dict[str, dict[str, Any]] = {name: {"type": "str"} for name in fields}
    state["total"] = {"type": "float", "default": 0}
    return GraphSpec.model_validate({"name": "bench-returns", "state": state, "start": "classify", "nodes": nodes})


RETURNS_ACTIVITIES = 7  # the model and tool steps of returns_graph()


def parked_graph() -> GraphSpec:
    """A run that waits for a manager's approval, then reads and ends."""
    nodes = {
        "approve": {
            "type": "approval",
            "ask": "Refund order {order_id}?",
            "approvers": ["manager"],
            "timeout": "24h",
            "default": "reject",
            "next": "order",
        },
        "order": _tool("bench.order", "done", "total"),
        "done": {"type": "end", "output": ["total"]},
    }
    state = {"order_id": {"type": "str"}, "total": {"type": "float", "default": 0}}
    return GraphSpec.model_validate({"name": "bench-parked", "state": state, "start": "approve", "nodes": nodes})


def chain(steps: int, tool_name: str = "bench.noop") -> GraphSpec:
    """``steps`` tool steps in a row, each adding one."""
    nodes: dict[str, Any] = {
        f"s{i}": {
            "type": "tool",
            "tool": tool_name,
            "args": {"n": "n"},
            "output": {"n": "result.n"},
            "next": f"s{i + 1}",
        }
        for i in range(steps)
    }
    nodes[f"s{steps}"] = {"type": "end"}
    return GraphSpec.model_validate(
        {"name": "chain", "state": {"n": {"type": "int", "default": 0}}, "start": "s0", "nodes": nodes}
    )


def spawn(address: str, task_queue: str, folder: Path, kind: str = "graph") -> subprocess.Popen[str]:
    """A worker process (``kind`` graph: the graph worker; raw: the baseline's), once it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.stack", address, task_queue, str(folder), kind],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready", "the worker did not start"
    return process


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def serve(address: str, task_queue: str, folder: Path, kind: str) -> None:
    """One worker in this process, until killed: the graph worker, or the raw baseline's."""
    client = await connect(address, codec=DevServer(folder / "bench.db").codec())  # the stack's payload keys
    if kind == "raw":
        worker = raw_worker(client, task_queue)
    else:
        registry, queue = tools(), task_queue
        worker = create_worker(client, models=models(), tools=registry, gate=gate(folder, registry), task_queue=queue)
    async with worker:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]))
