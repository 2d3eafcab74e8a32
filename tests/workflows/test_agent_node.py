"""The agent node under Temporal: each turn a model activity, each call the model asks for decided by
the gate (a local activity, in history) and run as its own activity ``node/visit/turn/call`` — the
idempotency key — so a replayed or retried run never repeats a call, and a worker killed between
a tool's effect and its activity's completion does not pay twice."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier
from chamberlain.tools._seed import seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Refund
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    DevServer,
    Gate,
    PolicyEngine,
    create_worker,
    decide,
    start_run,
)
from tests.agents.test_agent_node import CUSTOMER, MANAGER, POLICY, agent_graph, call, final, results
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import TEST_SECRET, wait_for_approval
from tests.workflows.test_chaos import spawn_worker, wait_for_effect


def worker(client: Client, task_queue: str, model: ScriptedChatModel, audit: AuditLog) -> Worker:
    tools = toolbox.tools()
    models = ModelRegistry()
    models.register("agent", model, Tier.PRIVATE)
    gate = Gate(PolicyEngine([POLICY]), audit, tools, TEST_SECRET)
    return create_worker(client, models=models, tools=tools, gate=gate, task_queue=task_queue)


def audited(audit: AuditLog, rid: str) -> list[tuple[str, str, str]]:
    return [(r.step_id.removeprefix(f"{rid}/"), r.kind, r.decision) for r in audit.records() if r.run_id == rid]


async def test_a_denied_call_returns_to_the_model_which_recovers(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        if not done:
            return call("test.count", n=1)
        return call("erp.order", "c2", order_id="A1") if len(done) == 1 else final(done[0])

    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    async with worker(client, task_queue, ScriptedChatModel(respond=respond), audit):
        handle = await start_run(
            client, agent_graph(), {"request": "A1?"}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        result = await handle.result()
        activities = [
            e.activity_task_scheduled_event_attributes.activity_id
            async for e in handle.fetch_history_events()
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
    assert result.status == "completed" and result.output["summary"].startswith("refused (PermissionDenied)")
    assert toolbox.effects("count") == [] and toolbox.effects("order") == [("order", f"{rid}/agent/1/2/1")]
    # a turn per model activity (the read-only call may run as a local activity: not listed here)
    assert [a for a in activities if a.endswith("/model")] == ["agent/1/1/model", "agent/1/2/model", "agent/1/3/model"]
    records = audited(audit, rid)
    assert ("agent/1/1/1", "decision", "deny") in records
    assert [s for s, kind, _ in records if kind == "effect"] == ["agent/1/2/1"]
    assert ("agent/1/3/model/0", "decision", "allow") in records  # the turn's model permit, apart from its calls


async def test_an_approval_with_edited_arguments_runs_the_edited_call_exactly_once(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        return final(done[0]) if done else call("erp.refund", order_id="A1", amount=100.0)

    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    async with worker(client, task_queue, ScriptedChatModel(respond=respond), audit):
        handle = await start_run(
            client, agent_graph(), {"request": "退货 A1"}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        pending = await wait_for_approval(handle)
        assert pending.step_id == f"{rid}/agent/1/1/1" and '"amount": 100.0' in pending.ask
        edited = {"args": {"order_id": "A1", "amount": 40.0}}
        await decide(
            handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=MANAGER, values=edited)
        )
        result = await handle.result()
    assert json.loads(result.output["summary"])["amount"] == 40.0
    assert toolbox.effects("refund") == [("refund", f"{rid}/agent/1/1/1")]  # once, with the edited amount
    effects = [r for r in audit.records() if r.run_id == rid and r.kind == "effect"]
    assert [(r.amount, r.principal) for r in effects] == [(40.0, "Service::helpdesk approved by User::mei")]
    decided = [r for r in audit.records() if r.run_id == rid and r.kind == "decision" and r.action != "model.invoke"]
    assert (100.0, "needs_approval") in [(r.amount, r.decision) for r in decided]  # what the model asked


async def test_two_calls_in_one_turn_are_two_steps_and_a_rejection_reaches_the_model(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A turn asking for two refunds parks twice, each approval routed to its own call."""

    def respond(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        done = results(messages)
        if done:
            return final(" | ".join(done))
        two = [
            {"name": "erp.refund", "args": {"order_id": "A1", "amount": 60.0}, "id": "a"},
            {"name": "erp.refund", "args": {"order_id": "A2", "amount": 70.0}, "id": "b"},
        ]
        return AIMessage("", tool_calls=two)

    audit, rid = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}"), run_id()
    async with worker(client, task_queue, ScriptedChatModel(respond=respond), audit):
        handle = await start_run(
            client, agent_graph(), {"request": "two"}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        first = await wait_for_approval(handle)
        assert first.step_id == f"{rid}/agent/1/1/1" and "A1" in first.ask
        await decide(handle, ApprovalAnswer(step_id=first.step_id, outcome="approve", approver=MANAGER))
        for _ in range(100):
            second = await wait_for_approval(handle)
            if second.step_id != first.step_id:
                break
        assert second.step_id == f"{rid}/agent/1/1/2" and "A2" in second.ask
        no = ApprovalAnswer(step_id=second.step_id, outcome="reject", approver=MANAGER, reason="A2 was never paid")
        await decide(handle, no)
        result = await handle.result()
    assert toolbox.effects("refund") == [("refund", f"{rid}/agent/1/1/1")]
    assert "R-A1" in result.output["summary"] and "not approved (mei: A2 was never paid)" in result.output["summary"]


async def test_bounds_end_the_run_with_a_clear_reason(client: Client, task_queue: str, tmp_path: Path) -> None:
    model = ScriptedChatModel(respond=lambda messages, kwargs: call("erp.order", order_id=f"A{len(messages)}"))
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    async with worker(client, task_queue, model, audit):
        handle = await start_run(
            client,
            agent_graph(bounds={"max_turns": 2}),
            {"request": "loop"},
            run_id=run_id(),
            principal=CUSTOMER,
            task_queue=task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert getattr(cause, "type", None) == "StepLimitExceeded" and "max_turns=2" in str(cause)
    assert len(toolbox.effects("order")) == 2


async def test_a_worker_killed_between_the_refund_and_its_completion_refunds_once(
    client: Client, dev_server: DevServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call the model chose is its own activity: the retry on a new worker carries the same
    ticket and idempotency key, so the ERP pays once and the model sees one refund."""
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    erp = EmbeddedErp(url)
    seed(erp, EmbeddedCrm(erp.engine), customers=20, orders=50)
    monkeypatch.setenv("CHAMBERLAIN_TEST_ERP", url)
    views = {f"A{1001 + i}": await erp.get_order(f"A{1001 + i}") for i in range(30)}
    order = next(o for o, v in views.items() if v.paid - v.refunded >= 10)
    before = (await erp.get_order(order)).refunded
    spec = GraphSpec.model_validate(
        {
            "name": "agent-refund",
            "grant": ["erp.refund.create"],
            "state": {"request": {}, "summary": {}},
            "start": "agent",
            "nodes": {
                "agent": {
                    "type": "agent",
                    "instructions": "Refund what is asked.",
                    "prompt": "{request}",
                    "tools": ["test.refund_then_stall"],
                    "output": {"summary": {}},
                    "model": "scripted-agent",
                    "next": "done",
                },
                "done": {"type": "end"},
            },
        }
    )
    rid, key = run_id(), ""
    first = spawn_worker(dev_server.address, task_queue)
    try:
        handle = await start_run(client, spec, {"request": f"refund {order} 10.0"}, run_id=rid, task_queue=task_queue)
        key = f"{rid}/agent/1/1/1"
        await wait_for_effect("refund-written", key)
    finally:
        first.kill()
        first.wait()
    second = spawn_worker(dev_server.address, task_queue)
    try:
        result = await handle.result()
    finally:
        second.kill()
        second.wait()
    assert result.status == "completed"
    assert Counter(s for _, s in toolbox.effects("refund-written")) == {key: 2}  # the call ran twice…
    with Session(erp.engine) as session:
        refunds = session.exec(select(Refund).where(col(Refund.order_id) == order)).all()
    assert [r.idempotency_key for r in refunds if r.idempotency_key.startswith(rid)] == [key]  # …and paid once
    assert (await erp.get_order(order)).refunded == pytest.approx(before + 10.0)
    assert json.loads(result.output["summary"])["order_id"] == order
