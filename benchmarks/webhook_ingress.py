"""Signed-webhook ingress against Temporal's own start_workflow, in the same run.

    python -m benchmarks.webhook_ingress [--requests 400] [--concurrency 16] [--out DIR] [--write]

Both start the same graph run on the same tuned dev server: the baseline calls
``client.start_workflow`` directly; the ingress path is an HTTP POST with an HMAC signature
to the Chamberlain server on loopback (verification, validation, mapping, then the same
start). Rounds alternate; each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from benchmarks.output import add_arguments, save, stamp_figure
from chamberlain.agents import GraphSpec
from chamberlain.server._http import BackgroundServer, ServerSettings, create_app
from chamberlain.server._signatures import sign
from chamberlain.workflows import DevServer, GraphWorkflow, RunRequest

SECRET = "bench-secret"
GRAPH = {
    "name": "ping",
    "state": {"n": {"type": "int", "default": 0}},
    "start": "route",
    "nodes": {"route": {"type": "route", "next": [{"to": "done"}]}, "done": {"type": "end"}},
}


class Ping(BaseModel):
    n: int


async def _timed(calls: list[Any], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Any) -> None:
        async with gate:
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return len(calls) / (time.perf_counter() - start), latencies


async def measure(requests: int, concurrency: int, rounds: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    (folder / "graph.json").write_text(json.dumps(GRAPH))
    os.environ["BENCH_SECRET"] = SECRET
    sources = folder / "webhooks.yaml"
    sources.write_text(f"""
sources:
  - name: bench
    secrets: [env:BENCH_SECRET]
    signature: {{scheme: hmac-sha256, header: X-Signature, encoding: hex}}
    event_id: {{json: id}}
    payload: benchmarks.webhook_ingress:Ping
    graph: {folder / "graph.json"}
    input: {{n: payload.n}}
    task_queue: bench
""")
    server = DevServer(folder / "bench.db")
    client = await server.start()
    http = BackgroundServer(create_app(ServerSettings(temporal_address=server.address, webhooks=sources))).start()
    spec = GraphSpec.model_validate(GRAPH)
    results: dict[str, list[tuple[float, list[float]]]] = {"start_workflow (baseline)": [], "signed webhook → 202": []}
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as web:

            def direct(i: int) -> Any:
                request = RunRequest(graph=spec, input={"n": i})
                return lambda: client.start_workflow(
                    GraphWorkflow.run, request, id=f"direct-{uuid.uuid4().hex}", task_queue="bench"
                )

            def webhook(i: int) -> Any:
                body = json.dumps({"id": uuid.uuid4().hex, "n": i}).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-Signature": sign(SECRET.encode(), body, scheme="hmac-sha256"),
                }

                async def post() -> None:
                    response = await web.post(f"{http.url}/webhooks/bench", content=body, headers=headers)
                    assert response.status_code == 202, response.text

                return post

            await _timed([direct(i) for i in range(50)], concurrency)  # warm both paths
            await _timed([webhook(i) for i in range(50)], concurrency)
            for _ in range(rounds):
                results["start_workflow (baseline)"].append(
                    await _timed([direct(i) for i in range(requests)], concurrency)
                )
                results["signed webhook → 202"].append(await _timed([webhook(i) for i in range(requests)], concurrency))
    finally:
        http.stop()
        server.stop()
    summary: dict[str, Any] = {"requests": requests, "concurrency": concurrency, "rounds": rounds}
    for name, measured in results.items():
        latencies = [x for _, lat in measured for x in lat]
        quantiles = statistics.quantiles(latencies, n=100)
        summary[name] = {
            "per_second": round(statistics.median(rate for rate, _ in measured), 1),
            "p50_ms": round(quantiles[49], 1),
            "p99_ms": round(quantiles[98], 1),
        }
    base, ingress = summary["start_workflow (baseline)"], summary["signed webhook → 202"]
    summary["throughput_ratio"] = round(ingress["per_second"] / base["per_second"], 2)
    return summary


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = ["start_workflow (baseline)", "signed webhook → 202"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    rates = [summary[n]["per_second"] for n in names]
    bars = left.barh(names, rates, color=["#888888", "#2b6cb0"])
    left.bar_label(bars, labels=[f"{r:.0f}/s" for r in rates])
    left.set_xlim(0, max(rates) * 1.35)
    left.set_title("runs started per second", fontsize=10)
    left.invert_yaxis()
    for i, n in enumerate(names):
        right.plot([summary[n]["p50_ms"], summary[n]["p99_ms"]], [i, i], marker="o", color=["#888888", "#2b6cb0"][i])
        right.annotate(
            f"p50 {summary[n]['p50_ms']} / p99 {summary[n]['p99_ms']} ms",
            (summary[n]["p99_ms"], i),
            textcoords="offset points",
            xytext=(6, -3),
            fontsize=8,
        )
    right.set_yticks([0, 1], ["", ""])
    right.set_ylim(1.5, -0.5)
    right.set_xlim(0, max(summary[n]["p99_ms"] for n in names) * 1.9)
    right.set_title("latency to accepted (ms)", fontsize=10)
    fig.suptitle(
        f"{summary['requests']} requests × {summary['rounds']} rounds, concurrency {summary['concurrency']}",
        fontsize=10,
    )
    stamp_figure(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args(argv)
    console = Console()
    with console.status("measuring"):
        summary = asyncio.run(measure(args.requests, args.concurrency, args.rounds))
    table = Table("path", "runs/s", "p50 ms", "p99 ms")
    for name in ("start_workflow (baseline)", "signed webhook → 202"):
        table.add_row(
            name, str(summary[name]["per_second"]), str(summary[name]["p50_ms"]), str(summary[name]["p99_ms"])
        )
    console.print(table)
    console.print(f"ingress throughput = {summary['throughput_ratio']} × start_workflow")
    save("webhook_ingress", summary, args, chart)


if __name__ == "__main__":
    main()
