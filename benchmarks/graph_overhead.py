"""Per-step cost of a Chamberlain graph step, gate on, versus a raw Temporal activity chain.

Everything runs on one embedded dev server (tuned as `chamberlain dev` starts it), in one
process, interleaved run by run. The gate is on as deployments run it — Cedar decision,
hash-chained audit log in SQLite, ticket checked where the tool acts, a shared grant key —
because there is no other way to run a graph. Rows:

- raw activity chain (the baseline) and raw local-activity chain (no graph, no gate);
- the graph with a writing tool (an activity per step, its effect audited);
- the graph with a read-only tool: reads in a row, taken together in one local activity;
- the same, each read alone in its own local activity (as a read between other steps is);
- the same graph in process, gate on, no durable engine (the floor).

    python -m benchmarks.graph_overhead [--steps 20] [--runs 10] [--out DIR] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from benchmarks.baseline import RawChain, RawLocalChain, raw_worker
from benchmarks.output import add_arguments, save, stamp_figure
from benchmarks.stack import chain, gate, models, tools
from chamberlain.agents import GraphSpec
from chamberlain.workflows import DevServer, GraphWorkflow, RunRequest, create_worker
from chamberlain.workflows._local import run_gated_in_process

BASELINE = "raw activity chain"
RAW = "bench-raw"
ROWS = (
    BASELINE,
    "raw local-activity chain",
    "graph, gate on, write tool",
    "graph, gate on, read-only tool, in a row",
    "graph, gate on, read-only tool, each alone",
    "in process, gate on (no durability)",
)


async def measure(steps: int, runs: int, console: Console) -> dict[str, list[float]]:
    registry = tools()
    writes, reads = chain(steps), chain(steps, "bench.read")
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "bench.db")
    client = await server.start()
    checks = gate(folder, registry)
    timings: dict[str, list[float]] = {name: [] for name in ROWS}
    try:
        gated = create_worker(client, models=models(), tools=registry, task_queue="bench-gated", gate=checks)
        async with raw_worker(client, RAW), gated:

            async def graph(spec: GraphSpec, tag: str, read_ahead: bool = True) -> None:
                request = RunRequest(graph=spec, read_ahead=read_ahead)
                run = f"{tag}-{time.time_ns()}"
                result = await client.execute_workflow(GraphWorkflow.run, request, id=run, task_queue="bench-gated")
                assert result.output["n"] == steps, result

            async def in_process() -> None:
                outcome = await run_gated_in_process(writes, {}, gate=checks, models=models())
                assert outcome.output["n"] == steps, outcome

            rounds = (
                lambda: client.execute_workflow(RawChain.run, steps, id=f"r{time.time_ns()}", task_queue=RAW),
                lambda: client.execute_workflow(RawLocalChain.run, steps, id=f"l{time.time_ns()}", task_queue=RAW),
                lambda: graph(writes, "write"),
                lambda: graph(reads, "read"),
                lambda: graph(reads, "alone", read_ahead=False),
                in_process,
            )
            for i in track(range(runs + 1), description="graph overhead", console=console):
                for name, one in zip(ROWS, rounds, strict=True):
                    start = time.perf_counter()
                    await one()
                    if i:  # the first round warms caches and connections
                        timings[name].append((time.perf_counter() - start) / steps * 1000)
    finally:
        server.stop()
    return timings


def report(timings: dict[str, list[float]], steps: int, console: Console) -> dict[str, Any]:
    baseline = statistics.median(timings[BASELINE])
    table = Table("", "median ms/step", "p90 ms/step", "× raw activity", title=f"{steps}-step chain")
    summary: dict[str, Any] = {"steps": steps, "runs": len(timings[BASELINE]), "rows": {}}
    for name, values in timings.items():
        median, p90 = statistics.median(values), statistics.quantiles(values, n=10)[-1]
        summary["rows"][name] = {
            "median_ms": round(median, 2),
            "p90_ms": round(p90, 2),
            "ratio": round(median / baseline, 2),
        }
        table.add_row(name, f"{median:.2f}", f"{p90:.2f}", f"{median / baseline:.2f}")
    read = summary["rows"]["graph, gate on, read-only tool, in a row"]["median_ms"]
    alone = summary["rows"]["graph, gate on, read-only tool, each alone"]["median_ms"]
    summary["read_step_speedup_vs_activity"] = round(baseline / read, 2)
    summary["lone_read_step_speedup_vs_activity"] = round(baseline / alone, 2)
    console.print(table)
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names, values = list(rows), [rows[k]["median_ms"] for k in rows]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    bars = ax.barh(names, values, color=["#888888", "#bbbbbb", "#1a365d", "#2b6cb0", "#63b3ed", "#9ae6b4"])
    ax.bar_label(bars, labels=[f"{v:.2f} ms  (×{rows[k]['ratio']})" for k, v in zip(names, values, strict=True)])
    ax.set_xlabel("median milliseconds per step (lower is better)")
    ax.set_title(f"Per-step cost, {summary['steps']}-step chain, {summary['runs']} runs, same dev server", fontsize=10)
    ax.invert_yaxis()
    ax.set_xlim(0, max(values) * 1.6)
    stamp_figure(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    timings = asyncio.run(measure(args.steps, args.runs, console))
    folder = save("graph_overhead", report(timings, args.steps, console), args, chart)
    console.print(f"wrote {folder / 'graph_overhead.json'}")


if __name__ == "__main__":
    main()
