"""The SQL run index: filters and pages on SQLite and PostgreSQL, counts a step once however
often its activity is delivered, and is fed by real runs (worker interceptor + visibility) on
the real dev server — a parked approval marked, then cleared; another tenant's runs hidden."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server._runs import show_run
from chamberlain.workflows import ApprovalAnswer, DevServer, Principal, create_worker, decide, start_run
from chamberlain.workflows._run_index import (
    BadCursor,
    RunFilter,
    RunIndex,
    RunRow,
    graph_version,
    sync_from_visibility,
)
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import chat_models, graph
from tests.support.servers import ThreadedServer
from tests.support.workers import gate_for_tests, wait_for_approval

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
CUSTOMER = "张伟"  # a principal ID in non-Latin script


def fixture_rows() -> list[RunRow]:
    return [
        RunRow(
            run_id=f"r{i:03d}",
            status="failed" if i % 5 == 0 else "completed",
            graph="refund" if i % 2 else "triage",
            graph_version="2",
            principal=CUSTOMER if i % 3 == 0 else "bob",
            tenant="acme" if i < 40 else "other-co",
            department="support" if i % 4 else "sales",
            started_at=T0 + timedelta(minutes=i),
            closed_at=T0 + timedelta(minutes=i, seconds=30),
            steps=3,
        )
        for i in range(50)
    ]


def test_filters_and_pages_cover_each_run_once(database_url: str) -> None:
    index = RunIndex(database_url)
    index.add(*fixture_rows())
    where = RunFilter(graph="refund", principal=CUSTOMER, tenant="acme")
    seen, after = [], None
    while True:
        page = index.page(where, after, limit=2)
        seen += [r.run_id for r in page.rows]
        if page.after is None:
            break
        after = page.after
    expected = [f"r{i:03d}" for i in reversed(range(40)) if i % 2 and i % 3 == 0]
    assert seen == expected  # newest first, no run twice, none missed
    window = RunFilter(
        department="sales", started_after=T0 + timedelta(minutes=10), started_before=T0 + timedelta(minutes=20)
    )
    assert [r.run_id for r in index.page(window).rows] == ["r016", "r012"]
    assert {r.tenant for r in index.page(RunFilter(tenant="other-co"), limit=100).rows} == {"other-co"}
    assert index.page(RunFilter(status="failed", tenant="other-co")).rows[0].run_id == "r045"
    with pytest.raises(BadCursor, match="after"):
        index.page(where, "r001")


def test_a_step_delivered_twice_counts_once(database_url: str) -> None:
    index = RunIndex(database_url)
    assert index.count_step("early", "reply/1", input_tokens=10, output_tokens=5, cost=0.5)  # before visibility
    assert not index.count_step("early", "reply/1", input_tokens=10, output_tokens=5, cost=0.5)  # redelivered
    assert index.count_step("early", "summarize/1", input_tokens=1, output_tokens=1)
    row = index.get("early")
    assert row is not None and (row.steps, row.tokens, row.cost) == (2, 17, 0.5)
    assert index.count_step("other", "reply/1")  # the same activity ID in another run is another step


def users_file(tmp_path: Path) -> Path:
    users = [
        {"id": "maria", "roles": ["manager"], "token_sha256": token_digest("tok-maria")},
        {"id": "tina", "roles": ["manager"], "tenant": "other-co", "token_sha256": token_digest("tok-tina")},
    ]
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": users}), encoding="utf-8")
    return path


async def test_real_runs_feed_the_index_and_the_runs_api(
    dev_server: DevServer, client: Client, task_queue: str, tmp_path: Path
) -> None:
    index = RunIndex(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    customer = Principal(id=CUSTOMER, roles=["customer"], department="support", tenant="acme")
    async with indexing_worker(client, task_queue, index):
        chat = await start_run(
            client,
            graph("chat"),
            {"history": ["Where is my order A1?"]},
            run_id=run_id(),
            principal=customer,
            task_queue=task_queue,
        )
        await chat.result()
        parked = await start_run(
            client, graph("approval"), {}, run_id=run_id(), principal=customer, task_queue=task_queue
        )
        pending = await wait_for_approval(parked)
        await synced(client, index, parked.id, lambda row: row.pending_approval)

        row = index.get(chat.id)
        assert row is not None
        assert (row.status, row.graph, row.graph_version) == ("completed", "chat", graph_version(graph("chat")))
        assert (row.principal, row.department, row.tenant) == (CUSTOMER, "support", "acme")
        assert row.steps == 2 and row.tokens > 0  # two model calls, each counted once
        assert row.duration is not None and row.duration > timedelta(0)

        settings = ServerSettings(
            temporal_address=dev_server.address, users=users_file(tmp_path), data=tmp_path, runs=index.url
        )
        server = ThreadedServer(create_app(settings)).start()
        try:
            async with httpx.AsyncClient(base_url=server.url) as http:
                maria = {"Authorization": "Bearer tok-maria"}
                found = (
                    await http.get("/runs", params={"principal": CUSTOMER, "graph": "approval"}, headers=maria)
                ).json()
                assert [r["run_id"] for r in found] == [parked.id] and found[0]["pending_approval"] is True
                first = await http.get("/runs", params={"department": "support", "limit": 1}, headers=maria)
                assert len(first.json()) == 1 and 'rel="next"' in first.headers["link"]
                tina_token = {"Authorization": "Bearer tok-tina"}
                tina = await http.get("/runs", params={"principal": CUSTOMER}, headers=tina_token)
                assert tina.status_code == 200 and tina.json() == []  # another tenant's runs are not listed
                bad = await http.get("/runs", params={"after": "nonsense"}, headers=maria)
                assert bad.status_code == 422 and "after" in bad.text
        finally:
            server.stop()

        await decide(
            parked,
            ApprovalAnswer(
                step_id=pending.step_id,
                outcome="approve",
                approver=Principal(id="maria", roles=["manager"], tenant="acme"),
            ),
        )
        await parked.result()
        await synced(client, index, parked.id, lambda row: row.status == "completed" and not row.pending_approval)


def test_a_graph_version_names_the_content_too() -> None:
    chat = graph("chat")
    edited = chat.model_copy(update={"description": chat.description + " (edited)"})
    assert graph_version(chat).startswith("1+") and graph_version(chat) == graph_version(graph("chat"))
    assert graph_version(edited) != graph_version(chat)  # changed without bumping `version`: still told apart
    assert graph_version(chat.model_copy(update={"version": "2"})).startswith("2+")


async def test_a_finished_run_keeps_its_steps_sealed_and_shows_them_with_no_worker(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Showing a closed run must not make a worker replay its history: the worker kept its
    steps in the index as it finished, encrypted like its history."""
    index = RunIndex(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    customer = Principal(id=CUSTOMER, roles=["customer"], department="support")
    async with indexing_worker(client, task_queue, index):
        chat = await start_run(
            client,
            graph("chat"),
            {"history": ["Where is my order A1?"]},
            run_id=run_id(),
            principal=customer,
            task_queue=task_queue,
        )
        await chat.result()
    temporal_run = (await chat.describe()).run_id
    assert temporal_run is not None
    for _ in range(50):  # the worker writes from a thread of its own, off the run's path
        sealed = index.kept_progress(chat.id, temporal_run)
        if sealed:
            break
        await asyncio.sleep(0.1)
    assert sealed is not None and b"Where is my order" not in sealed  # encrypted at rest

    view = await show_run(client, chat.id, Principal(id="olga", roles=["ops"]), index)  # no worker is running
    assert view.status == "completed" and view.graph_version == graph_version(graph("chat"))
    assert view.steps is not None and [s.node for s in view.steps] == ["reply", "summarize", "done"]


def indexing_worker(client: Client, task_queue: str, index: RunIndex) -> Worker:
    """A worker of the chat graph's tools and scripted models that feeds ``index``."""
    models, _ = chat_models()
    tools = toolbox.tools()
    return create_worker(
        client, models=models, tools=tools, gate=gate_for_tests(tools), task_queue=task_queue, run_index=index
    )


async def synced(client: Client, index: RunIndex, run: str, ready: object) -> RunRow:
    """Sync from visibility until ``ready(row)`` (visibility is eventually consistent)."""
    assert callable(ready)
    for _ in range(100):
        await sync_from_visibility(client, index)
        row = index.get(run)
        if row is not None and ready(row):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run}: the index never caught up: {index.get(run)}")


async def test_a_run_this_process_cannot_decrypt_is_listed_without_its_graph(
    client: Client, dev_server: DevServer, task_queue: str, tmp_path: Path
) -> None:
    """A console without the payload keys (or with other ones) lists every run; the runs it
    cannot read show no graph — one foreign run must not break the runs page."""
    assert client.data_converter.payload_codec is not None  # the tests' runs are encrypted
    encrypted = await start_run(client, graph("chat"), {"history": ["hi"]}, run_id=run_id(), task_queue=task_queue)
    keyless = await Client.connect(dev_server.address, data_converter=DataConverter(PydanticPayloadConverter))
    index = RunIndex(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    row = await synced(keyless, index, encrypted.id, lambda row: True)
    assert row.status == "running" and row.graph is None
    await encrypted.terminate()
