"""Parked runs: N graph runs waiting for a manager's approval — the worker's resident memory,
and the time to approve them all through the HTTP API until every run has completed —
against N raw Temporal workflows waiting for an update, approved by direct updates. Each
kind runs on its own fresh worker process with its default cache: the graph worker keeps
at most ``MAX_CACHED_WORKFLOWS`` runs (500) and replays an evicted run from history when its
approval arrives, so the approve-all time includes those replays; the raw worker keeps
Temporal's default of 1,000.

    python -m benchmarks.parked [--runs 1000] [--concurrency 32] [--out DIR] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowHandle

from benchmarks.baseline import RawParked
from benchmarks.output import add_arguments, save, stamp_figure
from benchmarks.stack import parked_graph, rss_mb, spawn
from chamberlain.server._auth import token_digest
from chamberlain.server._http import BackgroundServer, ServerSettings, create_app
from chamberlain.workflows import DevServer, GraphWorkflow, progress, start_run
from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV

TOKEN = "bench-manager-token"
BASELINE = "raw workflows, update"
GRAPH = "graph runs, gate on, approved through the API"


async def gather_limited(count: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``one(i)`` for every i, ``concurrency`` at a time; the seconds it took."""
    slots = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with slots:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(run(i) for i in range(count)))
    return time.perf_counter() - start


async def parked_graph_runs(client: Client, api: str, folder: Path, runs: int, concurrency: int) -> dict[str, float]:
    worker = spawn(client.service_client.config.target_host, "bench-parked", folder)
    spec, tag = parked_graph(), time.time_ns()
    ids = [f"parked-{tag}-{i}" for i in range(runs)]
    try:
        idle = rss_mb(worker.pid)

        async def park(i: int) -> None:
            handle = await start_run(client, spec, {"order_id": f"A{i:04d}"}, run_id=ids[i], task_queue="bench-parked")
            while (await progress(handle)).pending_approval is None:
                await asyncio.sleep(0.2)

        parking = await gather_limited(runs, concurrency, park)
        parked = rss_mb(worker.pid)
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as web:

            async def approve(i: int) -> None:
                body = {"step_id": f"{ids[i]}/approve/1", "outcome": "approve", "reason": "bench"}
                response = await web.post(f"{api}/api/approvals/{ids[i]}", json=body)
                assert response.status_code == 200, response.text
                result = await client.get_workflow_handle_for(GraphWorkflow.run, ids[i]).result()
                assert result.status == "completed", result

            approving = await gather_limited(runs, concurrency, approve)
    finally:
        worker.kill()
        worker.wait()
    return {"idle_rss_mb": idle, "parked_rss_mb": parked, "park_seconds": parking, "approve_seconds": approving}


async def parked_raw_runs(client: Client, folder: Path, runs: int, concurrency: int) -> dict[str, float]:
    worker = spawn(client.service_client.config.target_host, "bench-parked-raw", folder, "raw")
    tag = time.time_ns()
    try:
        idle = rss_mb(worker.pid)
        handles: dict[int, WorkflowHandle[Any, Any]] = {}

        async def park(i: int) -> None:
            handles[i] = await client.start_workflow(RawParked.run, id=f"raw-{tag}-{i}", task_queue="bench-parked-raw")
            await handles[i].query("__stack_trace")  # answered once the worker holds the run

        parking = await gather_limited(runs, concurrency, park)
        parked = rss_mb(worker.pid)

        async def approve(i: int) -> None:
            await handles[i].execute_update(RawParked.approve)
            assert await handles[i].result() == 1

        approving = await gather_limited(runs, concurrency, approve)
    finally:
        worker.kill()
        worker.wait()
    return {"idle_rss_mb": idle, "parked_rss_mb": parked, "park_seconds": parking, "approve_seconds": approving}


async def measure(runs: int, concurrency: int, console: Console) -> dict[str, dict[str, float]]:
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "bench.db")
    client = await server.start()
    users = folder / "users.yaml"
    manager = {"id": "mgr", "roles": ["manager"], "token_sha256": token_digest(TOKEN)}
    users.write_text(yaml.safe_dump({"users": [manager]}))
    os.environ[PAYLOAD_KEYS_ENV] = server.payload_keys()  # the HTTP server's client reads the stack's payloads
    settings = ServerSettings(temporal_address=server.address, users=users, data=folder / "data")
    http = BackgroundServer(create_app(settings)).start()
    try:
        with console.status(f"{runs} raw workflows parked, then updated"):
            raw = await parked_raw_runs(client, folder, runs, concurrency)
        with console.status(f"{runs} graph runs parked at an approval, then approved through the API"):
            graph = await parked_graph_runs(client, http.url, folder, runs, concurrency)
    finally:
        http.stop()
        server.stop()
    return {BASELINE: raw, GRAPH: graph}


def report(measured: dict[str, dict[str, float]], runs: int, console: Console) -> dict[str, Any]:
    base = measured[BASELINE]
    summary: dict[str, Any] = {"runs": runs, "rows": {}}
    table = Table("", "idle RSS MB", f"RSS with {runs} parked", "park s", "approve all s", "× raw (approve)")
    for name, m in measured.items():
        row = {k: round(v, 1) for k, v in m.items()}
        row["approve_ratio"] = round(m["approve_seconds"] / base["approve_seconds"], 2)
        row["rss_ratio"] = round(m["parked_rss_mb"] / base["parked_rss_mb"], 2)
        summary["rows"][name] = row
        table.add_row(
            name,
            f"{row['idle_rss_mb']}",
            f"{row['parked_rss_mb']}",
            f"{row['park_seconds']}",
            f"{row['approve_seconds']}",
            f"{row['approve_ratio']}",
        )
    console.print(table)
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.6))
    for ax, key, label in ((left, "parked_rss_mb", "worker RSS, MB"), (right, "approve_seconds", "approve all, s")):
        values = [rows[n][key] for n in names]
        bars = ax.barh(names if ax is left else ["", ""], values, color=["#888888", "#2b6cb0"])
        ax.bar_label(bars, labels=[f"{v:.0f}" if key.endswith("mb") else f"{v:.1f}" for v in values])
        ax.set_xlim(0, max(values) * 1.35)
        ax.set_title(label, fontsize=10)
        ax.invert_yaxis()
    fig.suptitle(f"{summary['runs']} runs parked at once (lower is better)", fontsize=10)
    stamp_figure(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    measured = asyncio.run(measure(args.runs, args.concurrency, console))
    folder = save("parked", report(measured, args.runs, console), args, chart)
    console.print(f"wrote {folder / 'parked.json'}")


if __name__ == "__main__":
    main()
