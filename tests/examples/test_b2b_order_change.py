"""The B2B order change end to end on the real dev server (the timeout on the time-skipping one):
a business's own workflow, two gated graphs as child runs, a confirmation signal — sent directly
and through the signed webhook — and one idempotent ERP write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import BaseMessage
from rich.console import Console
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from chamberlain.agents import EmbeddedModelServer, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.agents._spec import ToolNode
from chamberlain.examples.b2b_order_change import app, starter
from chamberlain.examples.b2b_order_change.activities import notify_customer, sent_to
from chamberlain.examples.b2b_order_change.graphs import COMMIT, DRAFT
from chamberlain.examples.b2b_order_change.webhook import SIGNATURE_HEADER, confirmations_app, signature_for
from chamberlain.examples.b2b_order_change.workflow import (
    ID_PREFIX,
    ChangeOutcome,
    Confirmation,
    OrderChange,
    OrderChangeWorkflow,
    change_workflow_id,
)
from chamberlain.tools.erp.models import Inventory, OrderLine
from chamberlain.workflows import DevServer, create_worker
from tests.conftest import run_id
from tests.support.servers import serving

SECRET = b"portal-secret-for-tests-0123456789"


@pytest.fixture(autouse=True)
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAMBERLAIN_DATA", str(tmp_path))
    monkeypatch.setenv("B2B_ERP", f"sqlite:///{tmp_path / 'erp.sqlite'}")


def echoing_models(prompts: list[str] | None = None) -> ModelRegistry:
    """A scripted model that words the reply by repeating the facts it was given."""

    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> str:
        prompt = str(messages[-1].content)
        if prompts is not None:
            prompts.append(prompt)
        return f"Dear customer — {prompt}"

    registry = ModelRegistry()
    registry.register("scripted-edge", ScriptedChatModel(respond=respond), Tier.EDGE)
    return registry


@asynccontextmanager
async def worker(client: Client, task_queue: str, models: ModelRegistry | None = None) -> AsyncIterator[None]:
    tools = app.tools()
    async with create_worker(
        client,
        models=models or echoing_models(),
        tools=tools,
        gate=app.gate(tools),
        task_queue=task_queue,
        workflows=[OrderChangeWorkflow],
        activities=[notify_customer],
    ):
        yield


async def start(client: Client, task_queue: str, **change: Any) -> WorkflowHandle[OrderChangeWorkflow, ChangeOutcome]:
    request = OrderChange(**{"customer_id": "C20001", "order_id": "B2001", "line_no": 1, **change})
    return await client.start_workflow(
        OrderChangeWorkflow.run, request, id=change_workflow_id(run_id()), task_queue=task_queue
    )


async def drafted(handle: WorkflowHandle[OrderChangeWorkflow, ChangeOutcome]) -> str:
    """The draft the customer was sent, once the drafting graph finished."""
    for _ in range(400):
        if text := await handle.query(OrderChangeWorkflow.draft):
            return text
        await asyncio.sleep(0.05)
    raise AssertionError("no draft")


def answer(customer_id: str, accepted: bool, event_id: str = "") -> Confirmation:
    return Confirmation(customer_id=customer_id, accepted=accepted, event_id=event_id)


def line(order_id: str, line_no: int) -> int:
    with Session(app.prepare().engine) as session:
        found = session.get(OrderLine, (order_id, line_no))
        assert found is not None
        return found.quantity


def on_hand(sku: str) -> int:
    with Session(app.prepare().engine) as session:
        found = session.get(Inventory, (sku, "SH1"))
        assert found is not None
        return found.on_hand


def changes() -> list[app.OrderChangeRecord]:
    with Session(app.prepare().engine) as session:
        return list(session.exec(select(app.OrderChangeRecord)).all())


def test_the_graphs_use_only_the_apps_tools_and_declare_their_grants() -> None:
    from chamberlain.agents import load_graph

    tools = app.tools()
    for spec, path in ((DRAFT, "graph.yaml"), (COMMIT, "commit.yaml")):
        load_graph(Path(app.__file__).with_name(path), tools=tools)  # raises on an unknown tool or argument
        used = {tools[node.tool].policy_action for node in spec.nodes.values() if isinstance(node, ToolNode)}
        assert used == set(spec.grant or [])


async def test_confirmed_twice_commits_once(client: Client, task_queue: str) -> None:
    prompts: list[str] = []
    async with worker(client, task_queue, echoing_models(prompts)):
        handle = await start(client, task_queue, quantity=160)
        draft = await drafted(handle)
        assert "from 100 to 160" in draft and draft.startswith("Dear customer")
        await handle.signal(OrderChangeWorkflow.confirm, answer("C20002", True, "x"))
        for event in ("e1", "e2"):  # the portal delivered the confirmation twice
            await handle.signal(OrderChangeWorkflow.confirm, answer("C20001", True, event))
        outcome = await handle.result()
    assert outcome.status == "committed" and outcome.change_id is not None
    assert outcome.ignored == ["x"]  # another customer's answer counted for nothing
    assert (line("B2001", 1), on_hand("BOLT-M8")) == (160, 500 - 60)
    [record] = changes()
    assert (record.old_quantity, record.new_quantity) == (100, 160)
    assert record.idempotency_key.startswith(f"{handle.id}/commit/")  # derived from the workflow ID
    assert [key.rsplit("/", 1)[1] for key, _ in sent_to("C20001")] == ["draft", "outcome"]
    assert len(prompts) == 1  # one model call: the wording of the draft


async def test_declined_cancels_and_writes_nothing(client: Client, task_queue: str) -> None:
    async with worker(client, task_queue):
        handle = await start(client, task_queue, quantity=120)
        await drafted(handle)
        await handle.signal(OrderChangeWorkflow.confirm, answer("C20001", False))
        await handle.signal(OrderChangeWorkflow.confirm, answer("C20001", True))
        outcome = await handle.result()
    assert (outcome.status, outcome.reason) == ("cancelled", "declined")  # the first answer counts
    assert changes() == [] and (line("B2001", 1), on_hand("BOLT-M8")) == (100, 500)
    with pytest.raises(RPCError, match=r"not found"):  # no commit graph ever ran
        await client.get_workflow_handle(f"{handle.id}/commit").describe()


async def test_no_answer_within_the_time_cancels(time_skipping: WorkflowEnvironment, task_queue: str) -> None:
    client = time_skipping.client
    async with worker(client, task_queue):
        handle = await start(client, task_queue, quantity=120)
        outcome = await handle.result()  # the test server skips the two days
    assert (outcome.status, outcome.reason) == ("cancelled", "no answer within 2 days, 0:00:00")
    assert "Dear customer" in sent_to("C20001")[0][1]  # the draft went out before the wait
    assert changes() == [] and line("B2001", 1) == 100


async def test_not_enough_stock_says_so_and_commits_nothing(client: Client, task_queue: str) -> None:
    async with worker(client, task_queue):
        handle = await start(client, task_queue, customer_id="C20002", order_id="B2002", quantity=10)
        outcome = await handle.result()  # no wait for an answer: there is nothing to confirm
    assert (outcome.status, outcome.available) == ("unavailable", 3)
    assert "from 2 to 10, but only 3 are in stock" in outcome.message
    assert changes() == [] and (line("B2002", 1), on_hand("PUMP-200")) == (2, 3)


async def test_a_draft_that_drops_the_numbers_is_replaced_by_the_plain_facts(client: Client, task_queue: str) -> None:
    registry = ModelRegistry()
    registry.register("scripted-edge", ScriptedChatModel(replies=["您好，我们很乐意为您修改订单！"]), Tier.EDGE)
    async with worker(client, task_queue, registry):
        handle = await start(client, task_queue, customer_id="C20002", order_id="B2002", quantity=3)
        draft = await drafted(handle)
        await handle.signal(OrderChangeWorkflow.confirm, answer("C20002", True))
        outcome = await handle.result()
    assert draft == "Order B2002, line 1 (PUMP-200): 2 → 3 units — we have the stock. Please confirm the change."
    assert outcome.status == "committed" and on_hand("PUMP-200") == 2


async def test_another_customers_order_is_refused(client: Client, task_queue: str) -> None:
    """C20002 asks to change C20001's order: the gate refuses the order read, nothing further runs."""
    async with worker(client, task_queue):
        handle = await start(client, task_queue, customer_id="C20002", order_id="B2001", quantity=1)
        outcome = await handle.result()
    assert outcome.status == "refused" and "customers-only-their-own-records" in outcome.reason
    assert outcome.available is None and changes() == [] and line("B2001", 1) == 100
    assert [text for _, text in sent_to("C20001")] == []  # the owner's data never reached anyone


async def test_a_shipped_order_or_a_missing_line_is_refused(client: Client, task_queue: str) -> None:
    async with worker(client, task_queue):
        shipped = await (await start(client, task_queue, order_id="B2003", quantity=60)).result()
        missing = await (await start(client, task_queue, line_no=7, quantity=60)).result()
    assert shipped.status == "refused" and "B2003 is shipped" in shipped.message
    assert missing.status == "refused" and missing.message == "Order B2001 has no line 7 (it has 2)."
    assert changes() == []


async def test_confirmation_through_the_signed_webhook(client: Client, task_queue: str) -> None:
    """The portal's webhook signals the run: a forged or foreign-workflow request does nothing, a
    repeated delivery is accepted again and commits once, a finished run answers 404."""

    def post(http: httpx.Client, body: dict[str, Any], secret: bytes = SECRET) -> httpx.Response:
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {SIGNATURE_HEADER: signature_for(secret, raw), "content-type": "application/json"}
        return http.post("/confirmations", content=raw, headers=headers)

    async with worker(client, task_queue):
        handle = await start(client, task_queue, line_no=2, quantity=3)  # two more pumps: 3 in stock
        await drafted(handle)
        request_id = handle.id.removeprefix(ID_PREFIX)
        body = {"event_id": "evt-确认-1", "request_id": request_id, "customer_id": "C20001", "accepted": True}
        with serving(confirmations_app(client, [SECRET])) as url, httpx.Client(base_url=url) as http:
            forged = await asyncio.to_thread(post, http, body, b"not-the-portal-secret-0123456789")
            assert forged.status_code == 401
            for other in (f"{request_id}/draft", f"../{request_id}", handle.id):  # a child run, another workflow
                foreign = await asyncio.to_thread(post, http, {**body, "request_id": other})
                assert foreign.status_code == 422, other
            first = await asyncio.to_thread(post, http, body)
            again = await asyncio.to_thread(post, http, body)
            assert (first.status_code, again.status_code) == (202, 202)
            outcome = await handle.result()
            late = await asyncio.to_thread(post, http, body)
            assert late.status_code == 404
    assert outcome.status == "committed" and len(changes()) == 1
    assert (line("B2001", 2), on_hand("PUMP-200")) == (3, 1)


async def test_the_starter_runs_end_to_end_on_the_embedded_model(
    dev_server: DevServer, embedded_model: EmbeddedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    console = Console(record=True, width=120)
    outcomes = await starter.main(console)
    assert [o.status for o in outcomes] == ["committed", "cancelled", "unavailable"]
    assert (line("B2001", 1), line("B2001", 2), on_hand("BOLT-M8")) == (160, 1, 440)
    text = console.export_text()
    assert "the customer confirms: webhook 202" in text and "chain intact" in text
