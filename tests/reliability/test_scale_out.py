"""Scale-out on one engine: two worker processes and two HTTP servers against one Temporal
server, the audit log and run index in one PostgreSQL. 100 signed webhooks, each delivered to
one server and again to the other; one worker SIGKILLed halfway. Every event yields exactly
one run, and every run completes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server._signatures import sign
from chamberlain.workflows import DevServer, GraphWorkflow
from tests.conftest import POSTGRES_URL
from tests.support.servers import ThreadedServer
from tests.support.workers import audit_log

pytestmark = pytest.mark.chaos
ROOT = Path(__file__).parents[2]
SECRET = b"scale-out-secret-" + b"y" * 20
EVENTS = int(os.environ.get("SCALE_EVENTS", "100"))


@pytest.fixture
def postgres() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def sources(folder: Path, task_queue: str) -> Path:
    path = folder / "webhooks.yaml"
    path.write_text(f"""
sources:
  - name: hub
    secrets: [env:SCALE_HUB_SECRET]
    signature: {{scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: hex, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    graph: {ROOT / "tests" / "graphs" / "loop.yaml"}
    input: {{limit: payload.limit}}
    task_queue: {task_queue}
""")
    return path


async def stuck(client: Client, handles: list[Any]) -> str:
    """Which runs have not completed, and the last events of the first of them."""
    running = [h for h in handles if (await h.describe()).status != WorkflowExecutionStatus.COMPLETED]
    if not running:
        return "all completed"
    events = [e async for e in running[0].fetch_history_events()]
    tail = [f"{e.event_id}:{EventType.Name(e.event_type)}" for e in events[-8:]]
    return f"{len(running)} runs not completed, e.g. {running[0].id}: {tail}"


def spawn(address: str, task_queue: str, env: dict[str, str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", address, task_queue],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


async def test_two_workers_two_servers_one_worker_killed_one_run_per_event(
    client: Client,
    dev_server: DevServer,
    task_queue: str,
    tmp_path: Path,
    postgres: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCALE_HUB_SECRET", SECRET.decode())
    monkeypatch.setenv("CHAMBERLAIN_TEST_AUDIT", postgres)
    hooks = sources(tmp_path, task_queue)
    servers = [
        ThreadedServer(
            create_app(
                ServerSettings(
                    temporal_address=dev_server.address,
                    webhooks=hooks,
                    data=tmp_path / name,
                    audit=postgres,
                    runs=postgres,
                )
            )
        ).start()
        for name in ("a", "b")
    ]
    workers = [spawn(dev_server.address, task_queue, {"CHAMBERLAIN_TEST_AUDIT": postgres}) for _ in range(2)]
    run_ids: dict[str, set[str]] = {}
    try:
        async with httpx.AsyncClient(timeout=60) as web:

            async def deliver(i: int) -> None:
                event = f"evt-{i}-事件"  # a non-Latin event ID
                body = json.dumps({"id": event, "limit": 1 + i % 3, "customer": "C1"}).encode()
                signature = sign(SECRET, body, scheme="hmac-sha256", prefix="sha256=")
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                for server in (servers[i % 2], servers[(i + 1) % 2]):  # to one server, then again to the other
                    response = await web.post(f"{server.url}/webhooks/hub", content=body, headers=headers)
                    assert response.status_code == 202, response.text
                    run_ids.setdefault(event, set()).add(response.json()["run_id"])

            await asyncio.wait_for(asyncio.gather(*(deliver(i) for i in range(EVENTS // 2))), 120)
            workers[0].kill()  # SIGKILL halfway: its runs move to the other worker
            workers[0].wait()
            await asyncio.gather(*(deliver(i) for i in range(EVENTS // 2, EVENTS)))
        assert len(run_ids) == EVENTS and all(len(ids) == 1 for ids in run_ids.values())  # a duplicate joins its run
        handles = [client.get_workflow_handle_for(GraphWorkflow.run, ids.pop()) for ids in run_ids.values()]
        try:
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 180)
        except TimeoutError:
            raise AssertionError(await stuck(client, handles)) from None
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        for server in servers:
            server.stop()
    assert [r.status for r in results] == ["completed"] * EVENTS
    runs = [w async for w in client.list_workflows(f'TaskQueue="{task_queue}"')]
    assert len(runs) == EVENTS and {w.status for w in runs} == {WorkflowExecutionStatus.COMPLETED}
    audit = audit_log()
    assert str(audit.engine.url).startswith("postgresql") and audit.verify() is None
    effects = [r.step_id for r in audit.records() if r.kind == "effect"]
    assert len(effects) == len(set(effects)) == sum(1 + i % 3 for i in range(EVENTS))  # one per counting step
