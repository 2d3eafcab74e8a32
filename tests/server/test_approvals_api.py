"""The approvals API and `chamberlain approve`, as authenticated users, over one update."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client

from chamberlain.server._approvals import PendingItem
from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.workflows import DevServer, GraphWorkflow, Principal, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker

ROOT = Path(__file__).parents[2]
TOKENS = {"alice": "tok-alice", "maria": "tok-maria", "victor": "tok-victor", "fang": "tok-fang"}


@pytest.fixture
def api(dev_server: DevServer, tmp_path: Path) -> Iterator[str]:
    users = [
        {"id": "alice", "roles": ["manager"], "token_sha256": token_digest(TOKENS["alice"])},
        {"id": "maria", "roles": ["manager"], "department": "support", "token_sha256": token_digest(TOKENS["maria"])},
        {"id": "victor", "roles": ["viewer"], "token_sha256": token_digest(TOKENS["victor"])},
        {"id": "fang", "roles": ["viewer"], "clearance": ["financial"], "token_sha256": token_digest(TOKENS["fang"])},
    ]
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}))
    server = ThreadedServer(create_app(ServerSettings(temporal_address=dev_server.address, users=path))).start()
    yield server.url
    server.stop()


def as_user(name: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"} if name else {}


async def listed(api: str, run: str, viewer: str = "maria") -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        for _ in range(100):  # the visibility store is eventually consistent
            response = await http.get(f"{api}/api/approvals", headers=as_user(viewer))
            found = [item for item in response.json() if item["run_id"] == run]
            if found:
                return found[0]
            await asyncio.sleep(0.1)
    raise AssertionError(f"{run} never listed")


async def test_decisions_go_through_the_update_with_the_callers_identity(
    client: Client, api: str, task_queue: str
) -> None:
    alice = Principal(id="alice", roles=["manager"])
    async with graph_worker(client, task_queue):
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=alice, task_queue=task_queue)
        pending = await listed(api, handle.id)
        assert (
            pending["approvers"] == ["manager"]
            and pending["ask"] == "Refund 500.0?"
            and pending["requested_by"] == "alice"
        )
        decision = {"step_id": pending["step_id"], "outcome": "approve"}
        async with httpx.AsyncClient() as http:
            url = f"{api}/api/approvals/{handle.id}"
            assert (await http.post(url, json=decision)).status_code == 401
            as_requester = await http.post(url, json=decision, headers=as_user("alice"))
            assert (
                as_requester.status_code == 403 and "may not approve their own request" in as_requester.json()["detail"]
            )
            as_viewer = await http.post(url, json=decision, headers=as_user("victor"))
            assert as_viewer.status_code == 403 and "victor lacks every approver role" in as_viewer.json()["detail"]
            approved = await http.post(url, json=decision, headers=as_user("maria"))
            assert approved.status_code == 200 and approved.json()["approver"] == "maria"
        result = await handle.result()
    assert result.status == "completed" and toolbox.effects("refund")


async def test_the_cli_decides_through_the_api(client: Client, api: str, task_queue: str) -> None:
    async with graph_worker(client, task_queue):
        handle = await start_run(
            client, graph("approval"), {}, run_id=run_id(), principal=Principal(id="alice"), task_queue=task_queue
        )
        pending = await listed(api, handle.id)
        cli = [sys.executable, "-c", "from chamberlain.server._cli import main; main()"]
        command = [*cli, "approve", handle.id, str(pending["step_id"]), "--reject", "--reason", "no", "--url", api]
        env = {**os.environ, "CHAMBERLAIN_TOKEN": TOKENS["maria"]}
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"outcome":"reject"' in done.stdout.replace(" ", "")
        result = await handle.result()
    assert result.status == "rejected" and not toolbox.effects("refund")


async def test_only_the_approvals_approvers_list_it_and_they_see_it_unmasked(
    client: Client, api: str, task_queue: str
) -> None:
    spec = graph("approval")
    spec.state["amount"].labels = ["financial"]
    spec.state["order"] = spec.state["refund_id"].model_copy(update={"labels": ["pii"]})
    spec.nodes["manager"].ask = "Refund {amount} for order {order}?"  # type: ignore[union-attr]
    alice = Principal(id="alice", roles=["manager"])
    values = {"amount": 1299.0, "order": "A1002 王伟"}
    async with graph_worker(client, task_queue):
        handle = await start_run(client, spec, values, run_id=run_id(), principal=alice, task_queue=task_queue)
        seen = await listed(api, handle.id, "maria")  # an approver, with no clearance at all
        lists = {viewer: await approvals(api, viewer) for viewer in ("alice", "victor", "fang")}
        pending = (await handle.query(GraphWorkflow.progress)).pending_approval
        await handle.terminate()
    assert seen["ask"] == "Refund 1299.0 for order A1002 王伟?" and "sensitive" not in seen
    # the requester (four-eyes) and users without an approver role do not see it, cleared or not
    assert {viewer: [item for item in found if item["run_id"] == handle.id] for viewer, found in lists.items()} == {
        "alice": [],
        "victor": [],
        "fang": [],
    }
    assert pending is not None  # shown elsewhere (the runs API), it is masked beyond the viewer's clearance
    masked = {
        name: PendingItem.for_viewer(
            handle.id, pending, Principal(id=name, roles=["viewer"], clearance=clearance), None
        ).ask
        for name, clearance in (("victor", []), ("fang", ["financial"]))
    }
    assert masked == {"victor": "Refund [financial] for order [pii]?", "fang": "Refund 1299.0 for order [pii]?"}
    assert PendingItem.for_viewer(handle.id, pending, alice, None).ask == "Refund [financial] for order [pii]?"


async def approvals(api: str, viewer: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{api}/api/approvals", headers=as_user(viewer))
    assert response.status_code == 200
    return list(response.json())
