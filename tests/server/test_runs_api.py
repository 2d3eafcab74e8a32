"""Durable runs as people look at them: `GET /runs`, `GET /runs/{id}` (the URL a webhook's 202
names) and `chamberlain run start|list|show|cancel`, on the real dev server with a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client, WorkflowExecutionStatus

from chamberlain.agents import GraphSpec, load_graph
from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.workflows import ApprovalAnswer, DevServer, Principal, decide, start_run
from chamberlain.workflows._run_index import graph_version
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker, wait_for_approval

ROOT = Path(__file__).parents[2]
CHAMBERLAIN = Path(sys.executable).with_name("chamberlain")
TOKENS = {"maria": "tok-maria", "fang": "tok-fang", "tina": "tok-tina"}
CUSTOMER = "张伟"  # a labelled (pii) value, in non-Latin text
GRAPH = """
name: runs-view
state:
  customer: {type: str, labels: [pii]}
  order_id: {type: str}
  amount: {type: float, default: 0, labels: [financial]}
  note: {type: str}
start: lookup
nodes:
  lookup:
    type: tool
    tool: erp.order
    args: {order_id: order_id}
    output: {amount: result.total, note: "'for ' + customer"}
    next: manager
  manager:
    type: approval
    ask: "Refund {amount}?"
    approvers: [manager]
    timeout: 1h
    default: reject
    next: done
  done:
    type: end
    output: [customer, amount, note]
"""


@pytest.fixture
def graph_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs_view.yaml"
    path.write_text(GRAPH, encoding="utf-8")
    return path


@pytest.fixture
def spec(graph_file: Path) -> GraphSpec:
    return load_graph(graph_file, tools=toolbox.tools())


@pytest.fixture
def api(dev_server: DevServer, tmp_path: Path) -> Iterator[str]:
    users = [
        {"id": "maria", "roles": ["manager"]},
        {"id": "fang", "roles": ["viewer"], "clearance": ["pii", "financial"]},
        {"id": "tina", "roles": ["manager"], "tenant": "other-co"},
    ]
    for user in users:
        user["token_sha256"] = token_digest(TOKENS[str(user["id"])])
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}, allow_unicode=True), encoding="utf-8")
    server = ThreadedServer(create_app(ServerSettings(temporal_address=dev_server.address, users=path))).start()
    yield server.url
    server.stop()


def as_user(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


async def get(url: str, user: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url, headers=as_user(user) if user else {})


async def listed(api: str, run: str, status: str) -> list[dict[str, Any]]:
    """`GET /runs?status=` until the run shows (the visibility store is eventually consistent)."""
    for _ in range(100):
        found = (await get(f"{api}/runs?status={status}", "maria")).json()
        if any(r["run_id"] == run for r in found):
            return found  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run} never listed as {status}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(CHAMBERLAIN), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


async def test_a_run_is_shown_masked_per_viewer_and_scoped_to_its_tenant(
    client: Client, api: str, task_queue: str, spec: GraphSpec
) -> None:
    alice = Principal(id="alice", roles=["customer"])
    async with graph_worker(client, task_queue):
        values = {"customer": CUSTOMER, "order_id": "A1"}
        handle = await start_run(client, spec, values, run_id=run_id(), principal=alice, task_queue=task_queue)
        pending = await wait_for_approval(handle)
        url = f"{api}/runs/{handle.id}"

        assert (await get(url)).status_code == 401
        running = (await get(url, "maria")).json()
        assert running["status"] == "running" and running["graph"] == "runs-view"
        assert running["principal"]["id"] == "alice" and running["pending_approval"]["step_id"] == pending.step_id
        [lookup] = running["steps"]
        assert lookup["node"] == "lookup" and lookup["updates"] == {"amount": "[financial]", "note": "[pii]"}
        assert CUSTOMER not in json.dumps(running, ensure_ascii=False)

        cleared = (await get(url, "fang")).json()
        assert cleared["steps"][0]["updates"]["note"] == f"for {CUSTOMER}"
        assert isinstance(cleared["steps"][0]["updates"]["amount"], float)

        other_tenant = await get(url, "tina")
        assert other_tenant.status_code == 404 and CUSTOMER not in other_tenant.text
        assert (await get(f"{api}/runs/no-such-run", "maria")).status_code == 404

        assert any(r["run_id"] == handle.id for r in await listed(api, handle.id, "running"))
        assert (await get(f"{api}/runs?status=exploded", "maria")).status_code == 422
        assert all(r["run_id"] != handle.id for r in (await get(f"{api}/runs", "tina")).json())

        maria = Principal(id="maria", roles=["manager"])
        await decide(handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=maria))
        await handle.result()
        done = (await get(url, "maria")).json()
        assert done["status"] == "completed" and done["pending_approval"] is None
        assert done["graph_version"] == graph_version(spec)
        assert [s["node"] for s in done["steps"]] == ["lookup", "manager", "done"]
        assert done["steps"][1]["approval"] == "approve"
        assert done["output"]["customer"] == "[pii]" and done["output"]["note"] == "[pii]"
        assert any(r["run_id"] == handle.id for r in await listed(api, handle.id, "completed"))


async def test_cli_starts_lists_shows_and_cancels_a_durable_run(
    client: Client, dev_server: DevServer, task_queue: str, graph_file: Path
) -> None:
    address = ["--address", dev_server.address]
    async with graph_worker(client, task_queue):
        values = json.dumps({"customer": CUSTOMER, "order_id": "A1"})
        who = ["--as", "alice", "--role", "customer"]
        where = ["--task-queue", task_queue, "--app", "tests.support.toolbox", *address]
        started = await asyncio.to_thread(cli, "run", "start", str(graph_file), "--input", values, *who, *where)
        assert started.returncode == 0, started.stderr
        run = started.stdout.split()[1]
        handle = client.get_workflow_handle(run)
        await wait_for_approval(handle)  # type: ignore[arg-type]

        shown = await asyncio.to_thread(cli, "run", "show", run, "--json", *address)
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        assert view["status"] == "running" and view["principal"]["id"] == "alice"
        version = graph_version(load_graph(graph_file, tools=toolbox.tools()))  # declared "1" + a content hash
        assert view["graph_version"] == version and version.startswith("1+")
        table = await asyncio.to_thread(cli, "run", "show", run, *address)
        assert f"v{version}" in table.stdout, table.stdout
        assert view["steps"][0]["updates"]["note"] == "[pii]"  # the CLI masks too, unless --clearance
        cleared_run = await asyncio.to_thread(cli, "run", "show", run, "--json", "--clearance", "pii", *address)
        cleared = json.loads(cleared_run.stdout)
        assert cleared["steps"][0]["updates"]["note"] == f"for {CUSTOMER}"

        for _ in range(100):
            listing = await asyncio.to_thread(cli, "run", "list", "--status", "running", "--json", *address)
            if run in [r["run_id"] for r in json.loads(listing.stdout)]:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"{run} never listed")
        [ours] = [r for r in json.loads(listing.stdout) if r["run_id"] == run]
        assert (ours["graph"], ours["graph_version"]) == (view["graph"], version)
        table = await asyncio.to_thread(cli, "run", "list", "--status", "running", *address)
        assert version in table.stdout, table.stdout

        cancelled = await asyncio.to_thread(cli, "run", "cancel", run, *address)
        assert cancelled.returncode == 0, cancelled.stderr
        for _ in range(100):
            if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
                break
            await asyncio.sleep(0.1)
        shown = json.loads((await asyncio.to_thread(cli, "run", "show", run, "--json", *address)).stdout)
        assert shown["status"] == "canceled"

    missing = await asyncio.to_thread(cli, "run", "show", "no-such-run", *address)
    assert missing.returncode == 1 and missing.stderr.startswith("error no run no-such-run")
    assert "Traceback" not in missing.stderr


async def test_cli_refuses_to_start_a_graph_whose_tool_the_app_lacks(dev_server: DevServer, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(GRAPH.replace("tool: erp.order", "tool: erp.ordr"), encoding="utf-8")
    done = await asyncio.to_thread(
        cli, "run", "start", str(path), "--app", "tests.support.toolbox", "--address", dev_server.address
    )
    assert done.returncode == 1 and "unknown tool 'erp.ordr'" in done.stderr and "erp.order" in done.stderr
    assert "Traceback" not in done.stderr
