"""Completed runs per second: a returns-shaped graph (8 steps, scripted model, gate on) on one
worker process, against raw Temporal workflows with the same number of activities (7) on
one worker process, rounds alternating on the same dev server.

    python -m benchmarks.throughput [--runs 100] [--rounds 2] [--concurrency 50] [--out DIR] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from benchmarks.baseline import RawChain
from benchmarks.output import add_arguments, save, stamp_figure
from benchmarks.stack import RETURNS_ACTIVITIES, returns_graph, spawn
from chamberlain.workflows import DevServer, start_run

BASELINE = f"raw workflow, {RETURNS_ACTIVITIES} activities"
GRAPH = "returns graph, 8 steps, gate on"


async def completed_per_second(runs: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with slots:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(runs)))
    return runs / (time.perf_counter() - start)


async def measure(runs: int, rounds: int, concurrency: int, console: Console) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "bench.db")
    client: Client = await server.start()
    spec, tag = returns_graph(), time.time_ns()
    workers = [spawn(server.address, "bench-graph", folder), spawn(server.address, "bench-raw", folder, "raw")]
    rates: dict[str, list[float]] = {BASELINE: [], GRAPH: []}

    async def raw(i: int) -> None:
        await client.execute_workflow(RawChain.run, RETURNS_ACTIVITIES, id=f"raw-{tag}-{i}", task_queue="bench-raw")

    async def graph(i: int) -> None:
        handle = await start_run(
            client, spec, {"message": "退货 return A1002"}, run_id=f"g-{tag}-{i}", task_queue="bench-graph"
        )
        result = await handle.result()
        assert result.status == "completed" and result.output["reply"], result

    try:
        await completed_per_second(10, concurrency, raw)  # warm both workers
        await completed_per_second(10, concurrency, lambda i: graph(10_000 + i))
        for r in range(rounds):
            with console.status(f"throughput, round {r + 1} of {rounds}"):
                first = 20 + r * runs
                rates[BASELINE].append(await completed_per_second(runs, concurrency, lambda i, f=first: raw(f + i)))
                rates[GRAPH].append(await completed_per_second(runs, concurrency, lambda i, f=first: graph(f + i)))
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        server.stop()
    return rates


def report(rates: dict[str, list[float]], runs: int, concurrency: int, console: Console) -> dict[str, Any]:
    base = statistics.median(rates[BASELINE])
    summary: dict[str, Any] = {"runs": runs, "rounds": len(rates[BASELINE]), "concurrency": concurrency, "rows": {}}
    table = Table("", "completed runs/s", "× raw")
    for name, values in rates.items():
        median = statistics.median(values)
        summary["rows"][name] = {"per_second": round(median, 1), "ratio": round(median / base, 2)}
        table.add_row(name, f"{median:.1f}", f"{median / base:.2f}")
    console.print(table)
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names, values = list(rows), [rows[k]["per_second"] for k in rows]
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    bars = ax.barh(names, values, color=["#888888", "#2b6cb0"])
    ax.bar_label(bars, labels=[f"{v:.1f}/s  (×{rows[k]['ratio']})" for k, v in zip(names, values, strict=True)])
    ax.set_xlim(0, max(values) * 1.45)
    ax.set_xlabel("completed runs per second, one worker (higher is better)")
    ax.set_title(
        f"Throughput, {summary['runs']} runs × {summary['rounds']} rounds, {summary['concurrency']} at once",
        fontsize=10,
    )
    ax.invert_yaxis()
    stamp_figure(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=50)
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    rates = asyncio.run(measure(args.runs, args.rounds, args.concurrency, console))
    folder = save("throughput", report(rates, args.runs, args.concurrency, console), args, chart)
    console.print(f"wrote {folder / 'throughput.json'}")


if __name__ == "__main__":
    main()
