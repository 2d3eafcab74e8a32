"""The console's runs page and run detail with 10,000 runs in the index, against a bare handler
on the same server, in the same run.

    python -m benchmarks.console [--runs 10000] [--requests 200] [--write]

A tuned dev server and a worker (the gate on, feeding the run index) run 40 real returns
graphs to completion, so a run detail reads a real run (describe, its history once, its
steps, audit records); while measuring, a worker in its own process answers any progress
query, as deployed. The SQL run index then holds 10,000 runs (the real ones plus synthetic
rows spread over 30 days, graphs, departments, principals and statuses). A signed-in
operator fetches, one request at a time, over loopback HTTP: ``/bench/bare`` (a handler that
returns a fixed page: the server's own floor), the runs page unfiltered, filtered (department
and status) and its second page, each of 39 runs' detail once (first view: the steps the
worker kept in the index when the run finished, nothing cached in the server), and one run's
detail again and again. Each figure is the p50/p95 of its requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi.responses import HTMLResponse
from rich.console import Console
from rich.table import Table

from benchmarks import stack
from benchmarks.output import add_arguments, save, stamp_figure
from chamberlain.server._http import BackgroundServer, ServerSettings, create_app
from chamberlain.server.console import hash_password
from chamberlain.workflows import DevServer, Principal, create_worker, start_run
from chamberlain.workflows._run_index import RunFilter, RunIndex, RunRow, sync_from_visibility

PASSWORD = "bench-password"
GOAL_MS = 200.0
PATHS = (
    "bare handler",
    "runs page",
    "runs page, filtered",
    "runs page 2",
    "run detail, first view",
    "run detail, again",
)
REAL_RUNS = 40


def synthetic(count: int, now: datetime) -> list[RunRow]:
    rng = random.Random(12)
    graphs, departments = ["returns", "triage", "refund", "b2b-order"], ["support", "sales", "finance", "客服"]
    statuses = ["completed"] * 8 + ["failed", "running"]
    rows = []
    for i in range(count):
        started = now - timedelta(seconds=rng.uniform(60, 30 * 86400))
        status = rng.choice(statuses)
        steps = rng.randint(2, 12)
        closed = None if status == "running" else started + timedelta(seconds=rng.uniform(1, 90))
        row = RunRow(
            run_id=f"synthetic-{i:05d}",
            status=status,
            graph=rng.choice(graphs),
            graph_version="1",
            principal=f"customer-{rng.randint(1, 800)}",
            department=rng.choice(departments),
            started_at=started,
            closed_at=closed,
            steps=steps,
            input_tokens=steps * 180,
            output_tokens=steps * 40,
            cost=steps * 0.0004,
        )
        rows.append(row)
    return rows


async def _timed(http: httpx.AsyncClient, url: str, requests: int) -> list[float]:
    latencies = []
    for _ in range(requests):
        start = time.perf_counter()
        response = await http.get(url)
        latencies.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    return latencies


async def _fetch_all(url: str, runs: list[str], requests: int) -> dict[str, list[float]]:
    """Sign in as an operator, warm every path, then time each path's requests one at a time;
    a run's first view once per run (nothing cached), then one run again and again."""
    latencies: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        form = await http.get("/console/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        credentials = {"csrf": csrf[1], "user": "olga", "password": PASSWORD}
        signed = await http.post("/console/signin", data=credentials)
        assert signed.status_code == 303, signed.text
        first = await http.get("/console/runs")
        after = re.search(r'href="/console/runs\?after=([^"]+)"', first.text)
        assert after is not None, "the runs page has no next page"
        urls = {
            "bare handler": "/bench/bare",
            "runs page": "/console/runs",
            "runs page, filtered": "/console/runs?department=finance&status=failed",
            "runs page 2": "/console/runs?after=" + after[1].replace("&amp;", "&"),
            "run detail, again": f"/console/runs/{runs[0]}",
        }
        for path in urls.values():
            await _timed(http, path, 10)  # warm
        for name, path in urls.items():
            latencies[name] = await _timed(http, path, requests)
        first = [await _timed(http, f"/console/runs/{run}", 1) for run in runs[1:]]
        latencies["run detail, first view"] = [ms for [ms] in first]
    return latencies


async def measure(runs: int, requests: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    server = DevServer(folder / "bench.db")  # the name benchmarks.stack derives the payload keys from
    client = await server.start()
    os.environ["CHAMBERLAIN_PAYLOAD_KEYS"] = server.payload_keys()  # the HTTP server reads what the worker wrote
    index = RunIndex(f"sqlite:///{folder / 'runs.sqlite'}")
    tools = stack.tools()
    users = folder / "users.yaml"
    user = {"id": "olga", "roles": ["ops"], "console_role": "operator", "password_argon2": hash_password(PASSWORD)}
    users.write_text(yaml.safe_dump({"users": [user]}), encoding="utf-8")
    audit = f"sqlite:///{folder / 'audit.sqlite'}"
    settings = ServerSettings(temporal_address=server.address, users=users, data=folder, runs=index.url, audit=audit)
    gate = stack.gate(folder, tools)
    worker = create_worker(client, models=stack.models(), tools=tools, gate=gate, task_queue="bench", run_index=index)
    app = create_app(settings)

    @app.get("/bench/bare")
    async def bare() -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>bare</title><p>ok</p>")

    http_server = BackgroundServer(app).start()
    try:
        async with worker:  # in this process, feeding the index as the runs go
            customer = Principal(id="customer-1", roles=["customer"], department="support")
            graph, options = stack.returns_graph(), {"principal": customer, "task_queue": "bench"}
            handles = [
                await start_run(client, graph, {"order_id": f"A{i}"}, run_id=f"real-{uuid.uuid4().hex}", **options)
                for i in range(REAL_RUNS)
            ]
            for handle in handles:
                await handle.result()
        await asyncio.sleep(1.5)  # visibility catches up
        await sync_from_visibility(client, index)
        index.add(*synthetic(runs - len(handles), datetime.now(UTC)))
        # While measuring, the worker answering run detail's progress query runs in its own process, as deployed.
        process = stack.spawn(server.address, "bench", folder)
        try:
            latencies = await _fetch_all(http_server.url, [h.id for h in handles], requests)
        finally:
            process.kill()
            process.wait()
        indexed = len(index.page(RunFilter(), limit=runs + 1).rows)
    finally:
        http_server.stop()
        server.stop()
    summary: dict[str, Any] = {"runs_indexed": indexed, "requests": requests, "goal_p95_ms": GOAL_MS}
    for name in PATHS:
        q = statistics.quantiles(latencies[name], n=100)
        summary[name] = {"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1)}
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.8))
    for i, name in enumerate(PATHS):
        p50, p95 = summary[name]["p50_ms"], summary[name]["p95_ms"]
        color = "#888888" if name == "bare handler" else "#2b6cb0"
        ax.plot([p50, p95], [i, i], marker="o", color=color)
        ax.annotate(f"p50 {p50} / p95 {p95} ms", (p95, i), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.axvline(GOAL_MS, color="#c53030", linestyle="--", linewidth=1)
    ax.annotate("goal p95", (GOAL_MS, -0.45), fontsize=7, color="#c53030")
    ax.set_yticks(range(len(PATHS)), PATHS)
    ax.set_ylim(len(PATHS) - 0.5, -0.6)
    ax.set_xlim(0, max(GOAL_MS, max(summary[n]["p95_ms"] for n in PATHS)) * 1.5)
    ax.set_xlabel("ms per request, one at a time")
    title = f"console with {summary['runs_indexed']:,} runs in the index, {summary['requests']} requests each"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    stamp_figure(fig, summary)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    add_arguments(parser)
    args = parser.parse_args()
    console = Console()
    with console.status("measuring"):
        summary = asyncio.run(measure(args.runs, args.requests))
    table = Table("path", "p50 ms", "p95 ms")
    for name in PATHS:
        table.add_row(name, str(summary[name]["p50_ms"]), str(summary[name]["p95_ms"]))
    console.print(table)
    folder = save("console", summary, args, chart)
    console.print(f"{summary['runs_indexed']} runs indexed; results in {folder}")


if __name__ == "__main__":
    main()
