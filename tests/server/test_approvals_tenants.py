"""Approvals across tenants and with a run nobody answers for: the attacker's tests.

An approver of one tenant neither lists nor decides another tenant's approval — not through
the API, not in the console, not by sending the workflow update directly; and one paused run
whose worker is gone never fails the inbox of everyone else."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from temporalio.client import Client, WorkflowUpdateFailedError

from chamberlain.server._approvals import UNAVAILABLE_HEADER
from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server.console import hash_password
from chamberlain.workflows import ApprovalAnswer, DevServer, Principal, decide, progress, start_run
from tests.conftest import run_id
from tests.support.graphs import graph
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker

PASSWORD = "pässwörd 密码"
USERS = {"mgr_acme": "acme", "mgr_globex": "globex", "mgr_none": None}


@pytest.fixture
def api(dev_server: DevServer, tmp_path: Path) -> Iterator[str]:
    secret = hash_password(PASSWORD)
    users = [
        {
            "id": name,
            "roles": ["manager"],
            "tenant": tenant,
            "console_role": "approver",
            "token_sha256": token_digest(f"tok-{name}"),
            "password_argon2": secret,
        }
        for name, tenant in USERS.items()
    ]
    (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": users}))
    settings = ServerSettings(temporal_address=dev_server.address, users=tmp_path / "users.yaml", data=tmp_path / "d")
    server = ThreadedServer(create_app(settings)).start()
    yield server.url
    server.stop()


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{user}"}


async def listed(http: httpx.AsyncClient, user: str, run: str) -> list[dict[str, Any]]:
    """The caller's approvals once ``run`` is in the visibility store (listed to its tenant)."""
    for _ in range(100):
        response = await http.get("/api/approvals", headers=bearer(user))
        assert response.status_code == 200, response.text
        if any(item["run_id"] == run for item in response.json()):
            return list(response.json())
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run} never listed to {user}")


async def console_client(url: str, user: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=url)
    form = await http.get("/console/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    signed = await http.post("/console/signin", data={"csrf": csrf[1], "user": user, "password": PASSWORD})
    assert signed.status_code == 303, signed.text
    return http


async def test_an_approver_of_another_tenant_neither_lists_nor_decides(
    client: Client, api: str, task_queue: str
) -> None:
    gina = Principal(id="gina", roles=["manager"], tenant="globex")
    async with graph_worker(client, task_queue), httpx.AsyncClient(base_url=api) as http:
        globex = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=gina, task_queue=task_queue)
        theirs = await listed(http, "mgr_globex", globex.id)
        step = next(item["step_id"] for item in theirs if item["run_id"] == globex.id)
        for outsider in ("mgr_acme", "mgr_none"):  # another tenant, and no tenant at all
            mine = (await http.get("/api/approvals", headers=bearer(outsider))).json()
            assert [item for item in mine if item["run_id"] == globex.id] == []
            refused = await http.post(
                f"/api/approvals/{quote(globex.id, safe='')}",
                json={"step_id": step, "outcome": "approve"},
                headers=bearer(outsider),
            )
            assert refused.status_code == 404, refused.text

        console = await console_client(api, "mgr_acme")
        inbox = await console.get("/console/approvals")
        assert inbox.status_code == 200 and globex.id not in inbox.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', inbox.text)
        assert csrf
        posted = await console.post(
            "/console/approvals", data={"csrf": csrf[1], "outcome": "approve", "item": f"{globex.id}|{step}"}
        )
        await console.aclose()
        assert posted.status_code == 403 and "refused: no such run" in posted.text

        # straight to Temporal, around the API: the workflow's validator refuses it too
        forged = ApprovalAnswer(
            step_id=step, outcome="approve", approver=Principal(id="mgr_acme", roles=["manager"], tenant="acme")
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused_update:
            await decide(globex, forged)
        assert "not of the run's tenant globex" in str(refused_update.value.cause)
        assert (await progress(globex)).pending_approval is not None  # nothing decided

        approved = await http.post(
            f"/api/approvals/{quote(globex.id, safe='')}",
            json={"step_id": step, "outcome": "approve"},
            headers=bearer("mgr_globex"),
        )
        assert approved.status_code == 200, approved.text
        assert (await globex.result()).status == "completed"


async def test_a_run_whose_worker_is_gone_is_reported_not_a_500(client: Client, api: str, task_queue: str) -> None:
    alice, bob = Principal(id="alice", roles=["manager"]), Principal(id="bob", roles=["manager"])
    gone_queue = task_queue + "-gone"
    async with graph_worker(client, gone_queue):
        gone = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=bob, task_queue=gone_queue)
        while not (await progress(gone)).pending_approval:
            await asyncio.sleep(0.1)
    # that worker is stopped, as after a crash: its run waits with nobody to answer a query
    async with graph_worker(client, task_queue), httpx.AsyncClient(base_url=api, timeout=60) as http:
        live = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=alice, task_queue=task_queue)
        for _ in range(100):
            response = await http.get("/api/approvals", headers=bearer("mgr_none"))
            assert response.status_code == 200, response.text
            if any(item["run_id"] == live.id for item in response.json()) and UNAVAILABLE_HEADER in response.headers:
                break
            await asyncio.sleep(0.1)
        await live.terminate()
    await gone.terminate()
    assert quote(gone.id, safe="") in response.headers[UNAVAILABLE_HEADER].split(",")
    assert [item["run_id"] for item in response.json() if item["run_id"] in (live.id, gone.id)] == [live.id]
