"""Attacks on the audit's write-ahead (f1b64b9): a tool step's record is committed behind and
the run seals its steps before it parks, continues as new, fails or ends. Each test here
tries one way a record could be lost, written twice, or never sealed; those that found a
hole were marked ``xfail(strict=True)`` until fixed; one limitation stays marked (a terminated run)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier, parse_graph
from chamberlain.agents._steps import StepContext, ToolCall
from chamberlain.tools import ToolContext, ToolRegistry, ToolUnavailable, tool
from chamberlain.workflows import (
    ApprovalAnswer,
    DevServer,
    Gate,
    GraphWorkflow,
    PolicyEngine,
    create_worker,
    decide,
    start_run,
)
from chamberlain.workflows._activities import GraphActivities
from chamberlain.workflows._audit import AuditEntry, AuditLog
from chamberlain.workflows._gate import ActedStep, GateCheck
from tests.agents.test_agent_node import CUSTOMER, MANAGER, POLICY
from tests.agents.test_map_tool import BIG, ITEMS, YAML, answer
from tests.conftest import run_id
from tests.reliability.test_effect_once import lose_records_then_stall, spawn
from tests.support import toolbox
from tests.support.workers import TEST_SECRET, audit_log, gate_for_tests, wait_for_approval
from tests.workflows.test_map_tool import next_pending

pytestmark = pytest.mark.chaos
REFUND = {"order_id": "A1", "amount": 5.0}


def records_of(rid: str, log: AuditLog | None = None) -> list[tuple[str, str]]:
    return sorted((r.step_id, r.kind) for r in (log or audit_log()).records() if r.run_id == rid)


@pytest.mark.xfail(
    strict=True,
    reason="a terminated run never seals: records a killed worker did not commit are lost for good "
    "(documented in docs/security.md, 'Audit log')",
)
async def test_a_terminated_run_keeps_the_records_of_its_completed_steps(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    rid, handle = await lose_records_then_stall(dev_server.address, task_queue, client)
    await handle.terminate("operator")
    worker = spawn(dev_server.address, task_queue)  # a live worker: nothing left to run the seal
    try:
        await asyncio.sleep(2)
    finally:
        worker.kill()
        worker.wait()
    assert records_of(rid) == [(f"{rid}/lookup/1", "effect"), (f"{rid}/refund/1", "effect")]


async def test_a_cancelled_run_keeps_the_records_of_its_completed_steps(
    client: Client, dev_server: DevServer, task_queue: str
) -> None:
    rid, handle = await lose_records_then_stall(dev_server.address, task_queue, client)
    worker = spawn(dev_server.address, task_queue)
    try:
        for _ in range(600):  # the stall's retry runs on the live worker
            if toolbox.effects("start").count(("start", f"{rid}/stall/1")) == 2:
                break
            await asyncio.sleep(0.1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        assert isinstance(caught.value.cause, CancelledError)  # cancelled, not a failed step
    finally:
        worker.kill()
        worker.wait()
    assert (f"{rid}/refund/1", "effect") in records_of(rid)


class Broken(BaseModel):
    order_id: str


@tool("test.broken_read")
async def broken_read(args: Broken, ctx: ToolContext) -> Broken:
    """A read whose backend is down on every attempt."""
    raise ToolUnavailable(f"{args.order_id}: backend down")


BROKEN_READ = GraphSpec.model_validate(
    {
        "name": "broken-read",
        "state": {"order_id": {"type": "str", "default": "A1005"}},
        "start": "read",
        "nodes": {
            "read": {
                "type": "tool",
                "tool": "test.broken_read",
                "args": {"order_id": "order_id"},
                "retry": {"max_attempts": 1},
                "next": "done",
            },
            "done": {"type": "end", "output": ["order_id"]},
        },
    }
)


async def test_the_record_of_a_read_that_raised_is_durable_once_the_run_has_failed(
    client: Client, task_queue: str
) -> None:
    tools = ToolRegistry([toolbox.get_order, toolbox.refund, broken_read])
    gate = gate_for_tests(tools)
    gate.commits.behind = 3600  # behind records commit only when drained: a crash now loses them
    rid = run_id()
    async with create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue):
        handle = await start_run(client, BROKEN_READ, {}, run_id=rid, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert records_of(rid) == [(f"{rid}/read/1", "decision")]


@pytest.fixture
def log(database_url: str) -> Iterator[AuditLog]:
    audit = AuditLog(database_url)
    yield audit
    audit.engine.dispose()


def entry(step: str, kind: str = "effect", attempt: int = 1) -> AuditEntry:
    return AuditEntry(
        run_id="r",
        step_id=f"r/{step}",
        attempt=attempt,
        kind=kind,
        principal="p",
        action="a",
        resource="x",
        decision="allow",
    )


def test_missing_names_exactly_the_uncommitted_records(log: AuditLog) -> None:
    """On SQLite and PostgreSQL: by step, kind and attempt, never by step alone."""
    log.append_many([entry("a/1"), entry("b/1", "decision")])
    asked = [entry("a/1"), entry("a/1", attempt=2), entry("b/1"), entry("b/1", "decision"), entry("c/1")]
    assert [(e.step_id, e.kind, e.attempt) for e in log.missing(asked)] == [
        ("r/a/1", "effect", 2),
        ("r/b/1", "effect", 1),
        ("r/c/1", "effect", 1),
    ]
    assert log.missing([]) == []


async def decided_refund(log: AuditLog) -> tuple[Any, ToolCall, Any]:
    gate = gate_for_tests(toolbox.tools(), log)
    call = ToolCall(step=StepContext(run_id="r", node="pay", visit=1), tool="erp.refund", args=REFUND)
    decided = await gate.check(GateCheck(call=call, principal=None, grant=None, write_ahead=True))
    assert decided.ticket is not None
    return gate, call, decided.ticket


async def test_a_seal_refuses_a_forged_step_once_not_forever(tmp_path: Any) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate, call, ticket = await decided_refund(log)
    forged = ActedStep(call=call.model_copy(update={"args": {**REFUND, "amount": 500.0}}), ticket=ticket, acted=True)
    activities = GraphActivities(toolbox.models(), gate.tools, gate=gate)
    with pytest.raises(ApplicationError) as caught:
        await activities.seal_audit([forged])
    assert caught.value.non_retryable


async def test_a_seal_never_writes_a_second_record_for_a_step(tmp_path: Any) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate, call, ticket = await decided_refund(log)
    reply = await gate.act(call, ticket, attempt=1)
    await gate.drain()
    assert reply.error is None and [(r.step_id, r.kind) for r in log.records()] == [("r/pay/1", "effect")]
    await gate.seal([ActedStep(call=call, ticket=ticket, acted=False)])
    assert [(r.step_id, r.kind) for r in log.records()] == [("r/pay/1", "effect")]


async def test_two_workers_sealing_one_run_at_once_write_each_record_once(tmp_path: Any) -> None:
    """Two workers' seals of the same lost records race (a replayed local activity on a second
    worker while the first still runs): the head row serializes them, the key dedupes them."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    gate, call, ticket = await decided_refund(AuditLog(url))
    gate.commits.behind = 3600
    await gate.act(call, ticket, attempt=1)  # queued, never committed: the worker "dies"
    steps = [ActedStep(call=call, ticket=ticket, acted=True)]
    first, second = gate_for_tests(toolbox.tools(), AuditLog(url)), gate_for_tests(toolbox.tools(), AuditLog(url))
    rewritten = await asyncio.gather(first.seal(steps), second.seal(steps))
    assert sorted(rewritten) in ([0, 1], [1, 1])  # both may find it missing; one writes it
    log = AuditLog(url)
    assert [(r.step_id, r.kind) for r in log.records()] == [("r/pay/1", "effect")]
    assert log.verify() is None


async def test_no_record_waits_for_a_person_in_a_map_over_a_tool(client: Client, task_queue: str) -> None:
    """A map of 20 refunds, two of which wait for a manager, on a worker whose records written
    behind commit only when drained (a crash would lose them): while the first approval is
    pending and the 18 small refunds are done, each of their records is committed."""
    tools = toolbox.tools()
    models = ModelRegistry()
    models.register("agent", ScriptedChatModel(replies=["unused"]), Tier.PRIVATE)
    gate = Gate(PolicyEngine([POLICY]), audit_log(), tools, TEST_SECRET)
    gate.commits.behind = 3600
    rid = run_id()
    small = sorted(f"{rid}/fan/1/{i}" for i in range(1, 21) if i not in BIG)
    async with create_worker(client, models=models, tools=tools, gate=gate, task_queue=task_queue):
        handle = await start_run(
            client, parse_graph(YAML), {"items": ITEMS}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
        for _ in range(600):
            if len(toolbox.effects("refund")) == len(small):
                break
            await asyncio.sleep(0.05)
        seen = {(await wait_for_approval(handle)).step_id}
        while_waiting = sorted(step for step, kind in records_of(rid) if kind == "effect" and step in small)
        seen.clear()
        for _ in BIG:
            pending = await next_pending(handle, seen)
            seen.add(pending.step_id)
            await decide(handle, answer(pending.step_id, pending.step_id.removeprefix(f"{rid}/")))
        await handle.result()
    effects = [step for step, kind in records_of(rid) if kind == "effect"]
    assert len(effects) == len(set(effects)) == 19  # after the run: each once (the end's seal)
    assert while_waiting == small


SLOW_ONCE = GraphSpec.model_validate(
    {
        "name": "slow-once",
        "state": {"label": {"type": "str", "default": "x"}},
        "start": "slow",
        "nodes": {
            "slow": {
                "type": "tool",
                "tool": "test.slow",
                "args": {"seconds": "2"},
                "timeout": "1s",
                "retry": {"max_attempts": 1},
                "next": "done",
            },
            "done": {"type": "end", "output": ["label"]},
        },
    }
)


async def test_no_record_says_a_step_that_timed_out_after_acting_did_not_act(client: Client, task_queue: str) -> None:
    tools = toolbox.tools()
    gate = gate_for_tests(tools)
    rid = run_id()
    async with create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue):
        handle = await start_run(client, SLOW_ONCE, {}, run_id=rid, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        for _ in range(100):
            if ("done", f"{rid}/slow/1") in toolbox.effects("done"):
                break
            await asyncio.sleep(0.1)
        await gate.drain()
    records = records_of(rid)
    assert ("done", f"{rid}/slow/1") in toolbox.effects("done")  # the tool did act, after the timeout
    # the seal, not knowing whether it acted, recorded the allowance; the late effect follows it
    assert records == [(f"{rid}/slow/1", "decision"), (f"{rid}/slow/1", "effect")]
    seqs = {r.kind: r.seq for r in audit_log().records() if r.step_id == f"{rid}/slow/1"}
    assert seqs["decision"] < seqs["effect"]


LOOKUP_THEN_ASK_IN_A_CHILD = GraphSpec.model_validate(
    {
        "name": "lookup-then-ask",
        "grant": ["erp.order.read"],
        "state": {"order_id": {"type": "str", "default": "A1005"}, "total": {"type": "float"}},
        "start": "lookup",
        "graphs": {
            "ask": {
                "name": "ask",
                "grant": ["erp.order.read"],
                "state": {"note": {"type": "str", "default": "-"}},
                "start": "manager",
                "nodes": {
                    "manager": {"type": "approval", "ask": "Go on?", "approvers": ["manager"], "next": "done"},
                    "done": {"type": "end"},
                },
            }
        },
        "nodes": {
            "lookup": {
                "type": "tool",
                "tool": "erp.order",
                "args": {"order_id": "order_id"},
                "output": {"total": "result.total"},
                "next": "sub",
            },
            "sub": {"type": "subgraph", "graph": "ask", "input": {}, "output": {}, "next": "done"},
            "done": {"type": "end", "output": ["total"]},
        },
    }
)


async def test_no_record_of_a_parent_waits_for_a_person_in_its_child(client: Client, task_queue: str) -> None:
    tools = toolbox.tools()
    gate = gate_for_tests(tools)
    gate.commits.behind = 3600  # behind records commit only when drained: a crash now loses them
    rid = run_id()
    async with create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue):
        handle = await start_run(client, LOOKUP_THEN_ASK_IN_A_CHILD, {}, run_id=rid, task_queue=task_queue)
        child = client.get_workflow_handle_for(GraphWorkflow.run, f"{rid}/sub/1")
        for _ in range(600):  # the child starts once the lookup is done
            try:
                pending = await wait_for_approval(child)
                break
            except RPCError:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the child run never started")
        while_waiting = records_of(rid)
        await decide(child, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=MANAGER))
        await handle.result()
    assert records_of(rid) == [(f"{rid}/lookup/1", "effect")]  # after the run: once (the end's seal)
    assert while_waiting == [(f"{rid}/lookup/1", "effect")]
