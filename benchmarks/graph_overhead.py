"""Per-step cost of a Chamberlain graph step versus a raw Temporal activity chain.

Both run on the same embedded dev server (tuned as `chamberlain dev` starts it), in the
same process, interleaved; the graph runs once on a worker without a permission gate and
once with the gate as deployments run it (Cedar decision + hash-chained audit record in
SQLite per step, grant checked where the tool runs); plain in-process LangGraph is shown
as the no-durability floor.

    python -m benchmarks.graph_overhead [--steps 20] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import track
from rich.table import Table
from temporalio.worker import Worker

from benchmarks.baseline import RawChain, raw_noop
from chamberlain.agents import GraphSpec, ModelRegistry, run_in_process
from chamberlain.tools import ToolContext, ToolRegistry, tool
from chamberlain.workflows import AuditLog, DevServer, Gate, PolicyEngine, create_worker, execute_run
from chamberlain.workflows.policy import POLICIES

OUT = Path(__file__).parents[1] / "docs" / "benchmarks"
BENCH_POLICY = 'permit (principal, action == Action::"tool.bench.noop", resource);'


class Counter(BaseModel):
    n: int


@tool("bench.noop")
async def noop(args: Counter, ctx: ToolContext) -> Counter:
    """Add one and return: the cheapest possible tool step."""
    return Counter(n=args.n + 1)


def chain(steps: int) -> GraphSpec:
    nodes: dict[str, Any] = {
        f"s{i}": {
            "type": "tool",
            "tool": "bench.noop",
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


async def measure(steps: int, runs: int, console: Console) -> dict[str, list[float]]:
    tools = ToolRegistry([noop])
    spec = chain(steps)
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "bench.db")
    client = await server.start()
    policies = PolicyEngine([*(f.read_text() for f in sorted(POLICIES.glob("*.cedar"))), BENCH_POLICY])
    gate = Gate(policies, AuditLog(f"sqlite:///{folder / 'audit.sqlite'}"), tools)
    timings: dict[str, list[float]] = {
        "raw activity chain": [], "chamberlain graph": [], "chamberlain graph, gate on": [], "in-process LangGraph": [],
    }  # fmt: skip
    try:
        raw_worker = Worker(client, task_queue="bench-raw", workflows=[RawChain], activities=[raw_noop])
        graph_worker = create_worker(client, models=ModelRegistry(), tools=tools, task_queue="bench-graph")
        gated_worker = create_worker(client, models=ModelRegistry(), tools=tools, task_queue="bench-gated", gate=gate)
        async with raw_worker, graph_worker, gated_worker:
            for i in track(range(runs + 1), description="measuring", console=console):
                start = time.perf_counter()
                await client.execute_workflow(
                    RawChain.run, steps, id=f"raw-{i}-{time.time_ns()}", task_queue="bench-raw"
                )
                raw = time.perf_counter() - start
                start = time.perf_counter()
                result = await execute_run(
                    client, spec, {}, run_id=f"graph-{i}-{time.time_ns()}", task_queue="bench-graph"
                )
                graph = time.perf_counter() - start
                assert result.output["n"] == steps
                start = time.perf_counter()
                result = await execute_run(
                    client, spec, {}, run_id=f"gated-{i}-{time.time_ns()}", task_queue="bench-gated"
                )
                gated = time.perf_counter() - start
                assert result.output["n"] == steps
                start = time.perf_counter()
                await run_in_process(spec, {}, models=ModelRegistry(), tools=tools)
                local = time.perf_counter() - start
                if i:  # the first round warms caches and connections
                    for name, seconds in zip(timings, (raw, graph, gated, local), strict=True):
                        timings[name].append(seconds / steps * 1000)
    finally:
        server.stop()
    return timings


def report(timings: dict[str, list[float]], steps: int, console: Console) -> dict[str, Any]:
    baseline = statistics.median(timings["raw activity chain"])
    table = Table("", "median ms/step", "p90 ms/step", "× raw activity", title=f"{steps}-step chain")
    summary: dict[str, Any] = {"steps": steps, "runs": len(timings["raw activity chain"])}
    for name, values in timings.items():
        median, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
        summary[name] = {"median_ms": round(median, 2), "p90_ms": round(p90, 2), "ratio": round(median / baseline, 2)}
        table.add_row(name, f"{median:.2f}", f"{p90:.2f}", f"{median / baseline:.2f}")
    console.print(table)
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in summary if isinstance(summary[k], dict)]
    values = [summary[k]["median_ms"] for k in names]
    fig, ax = plt.subplots(figsize=(7, 3))
    bars = ax.barh(names, values, color=["#888888", "#2b6cb0", "#1a365d", "#9ae6b4"])
    ax.bar_label(bars, labels=[f"{v:.2f} ms  (×{summary[k]['ratio']})" for k, v in zip(names, values, strict=True)])
    ax.set_xlabel("median milliseconds per step (lower is better)")
    ax.set_title(f"Per-step cost, {summary['steps']}-step chain, {summary['runs']} runs, same dev server")
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    timings = asyncio.run(measure(args.steps, args.runs, console))
    summary = report(timings, args.steps, console)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "graph_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart(summary, OUT / "graph_overhead.png")
    console.print(f"wrote {OUT / 'graph_overhead.json'} and graph_overhead.png")


if __name__ == "__main__":
    main()
