"""Reads in a row go ahead in one local activity, and do exactly what single steps do: the
same decisions (another customer's order refused once, a read that needs approval parked),
the same labels (personal data found on the way masked for an external model), the same
step limits, one record per step, a history that replays."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError

from chamberlain.agents import GraphSpec, run_in_process
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    Gate,
    PolicyEngine,
    Principal,
    create_worker,
    decide,
    execute_run,
    progress,
    start_run,
)
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import TEST_SECRET, audit_log, graph_worker, wait_for_approval
from tests.workflows.test_data_labels import external, models  # noqa: F401  (the external model's fixture)
from tests.workflows.test_graph_workflow import local_activities
from tests.workflows.test_replay import replayer

ALICE = Principal(id="alice", roles=["support"])
MARIA = Principal(id="maria", roles=["manager"])


def counting(steps: int, **spec: Any) -> GraphSpec:
    """``steps`` reads in a row, each adding one."""
    nodes: dict[str, Any] = {
        f"s{i}": {
            "type": "tool",
            "tool": "test.count",
            "args": {"n": "n"},
            "output": {"n": "result.n"},
            "next": f"s{i + 1}",
        }
        for i in range(steps)
    }
    nodes[f"s{steps}"] = {"type": "end"}
    return GraphSpec.model_validate(
        {"name": "counting", "state": {"n": {"type": "int", "default": 0}}, "start": "s0", "nodes": nodes, **spec}
    )


def reads(*chain: tuple[str, str, dict[str, str]], end: dict[str, Any] | None = None, **state: Any) -> GraphSpec:
    """Tool nodes in a row — (node, tool, args), each writing its result to a field of its
    name — then ``end`` (an end node unless given), and a ``refused`` end for a refusal."""
    nodes: dict[str, Any] = {}
    names = [name for name, _, _ in chain]
    for (name, tool, args), after in zip(chain, [*names[1:], "last"], strict=True):
        nodes[name] = {"type": "tool", "tool": tool, "args": args, "output": {name: "result"}, "next": after}
        nodes[name] |= {"on_error": "refused", "error": "why"}
    nodes["last"] = end or {"type": "end"}
    nodes["refused"] = {"type": "end"}
    fields = {name: {"type": "dict"} for name in names} | {"why": {}, "reply": {}} | state
    return GraphSpec.model_validate({"name": "reads", "state": fields, "start": names[0], "nodes": nodes})


@pytest.fixture
def shop(tmp_path: Path) -> tuple[EmbeddedErp, EmbeddedCrm]:
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=5, orders=12)
    return erp, crm


def records(audit: AuditLog, rid: str) -> list[tuple[str, str, str]]:
    return [(r.step_id.removeprefix(f"{rid}/"), r.kind, r.decision) for r in audit.records() if r.run_id == rid]


async def test_reads_in_a_row_take_one_local_activity_and_do_what_single_steps_do(
    client: Client, task_queue: str
) -> None:
    spec, rid = counting(6), run_id()
    async with graph_worker(client, task_queue):
        handle = await start_run(client, spec, {}, run_id=rid, task_queue=task_queue)
        result = await handle.result()
        steps = (await progress(handle)).steps
    in_process = await run_in_process(spec, {}, models=toolbox.models(), tools=toolbox.tools())
    assert result.output == in_process.output == {"n": 6}
    # All six in one local activity, which also tells the run which of its tools write.
    assert local_activities(await handle.fetch_history()) == ["chamberlain.read_ahead", "chamberlain.audit_seal"]
    assert [s.step_id for s in steps] == [f"{rid}/s{i}/1" for i in range(7)]
    assert [s.updates for s in steps[:6]] == [{"n": i} for i in range(1, 7)]
    mine = [effect for effect in toolbox.effects("count") if effect[1].startswith(f"{rid}/")]
    assert Counter(mine) == {("count", f"{rid}/s{i}/1"): 1 for i in range(6)}
    assert records(audit_log(), rid) == [(f"s{i}/1", "effect", "allow") for i in range(6)]
    assert (await replayer(client.data_converter).replay_workflow(await handle.fetch_history())).replay_failure is None


async def test_a_read_ahead_stops_at_another_customers_order_and_the_run_goes_on_from_that_one_refusal(
    client: Client, task_queue: str, shop: tuple[EmbeddedErp, EmbeddedCrm], tmp_path: Path
) -> None:
    """A customer's channel reads its own order and its own record in a row, then an order of
    another customer: the read-ahead stops there, and the run takes that refusal as decided —
    not asked twice, not recorded twice, the order never read."""
    erp, crm = shop
    mine = await erp.get_order("A1000")
    theirs = next(
        o for o in [await erp.get_order(f"A{1000 + i}") for i in range(12)] if o.customer_id != mine.customer_id
    )
    customer = Principal(id="webhook:shop", kind="service", roles=["customer"], customer=mine.customer_id)
    tools = business_tools(erp, crm, today=REFERENCE_DAY)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    spec = reads(
        ("status", "erp.order.status", {"order_id": "'A1000'"}),
        ("profile", "crm.customer.get", {"customer_id": f"'{mine.customer_id}'"}),
        ("order", "erp.order.get", {"order_id": f"'{theirs.id}'"}),
        ("stock", "erp.stock.get", {"sku": "'SKU-1'"}),
    )
    rid = run_id()
    gate = Gate(PolicyEngine.load(), audit, tools, TEST_SECRET)
    async with create_worker(client, models=toolbox.models(), tools=tools, task_queue=task_queue, gate=gate):
        handle = await start_run(client, spec, {}, run_id=rid, task_queue=task_queue, principal=customer)
        result = await handle.result()
    assert result.end == "refused" and "customers-only-their-own-records" in result.output["why"]
    assert result.output["profile"]["id"] == mine.customer_id
    assert local_activities(await handle.fetch_history()) == ["chamberlain.read_ahead", "chamberlain.audit_seal"]
    assert records(audit, rid) == [
        ("status/1", "effect", "allow"),
        ("profile/1", "effect", "allow"),
        ("order/1", "decision", "deny"),
    ]


async def test_personal_data_found_by_a_read_ahead_reaches_an_external_model_only_masked(
    client: Client,
    task_queue: str,
    shop: tuple[EmbeddedErp, EmbeddedCrm],
    external: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The customer's record (a Chinese address among it) is read in a read-ahead; its labels
    come back with it, so the external model that drafts from it sees pseudonyms only."""
    erp, crm = shop
    order = await erp.get_order("A1001")
    person = await crm.get_customer(order.customer_id)
    personal = [person.name, person.email, person.phone, person.address]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in person.address)  # non-Latin script among it
    draft = {
        "type": "model",
        "model": "external-model",
        "write": "reply",
        "prompt": "Write to {profile} about {order}.",
        "next": "done",
    }
    spec = reads(
        ("status", "erp.order.status", {"order_id": "'A1001'"}),
        ("profile", "crm.customer.get", {"customer_id": f"'{order.customer_id}'"}),
        ("order", "erp.order.status", {"order_id": "'A1001'"}),
        end=draft,
    )
    spec = GraphSpec.model_validate(spec.model_dump() | {"nodes": {**spec.nodes, "done": {"type": "end"}}})
    tools = business_tools(erp, crm, today=REFERENCE_DAY)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine.load(), audit, tools, TEST_SECRET)
    rid = run_id()
    async with create_worker(
        client, models=models(external, person.email), tools=tools, task_queue=task_queue, gate=gate
    ):
        handle = await start_run(client, spec, {}, run_id=rid, task_queue=task_queue, principal=ALICE)
        result = await handle.result()
    assert result.status == "completed" and result.output["reply"]
    assert "chamberlain.read_ahead" in local_activities(await handle.fetch_history())
    sent = external.received_text()
    assert [value for value in personal if value in sent] == []
    assert "PII_" in sent


APPROVED_ORDER_READS = """
@id("everything-else") permit (principal, action, resource) unless { action == Action::"erp.order.read" };
@id("order-reads-approved") @approvers("manager")
permit (principal, action == Action::"erp.order.read", resource)
when { context.approved && context.approver_roles.contains("manager") };
"""


async def test_a_read_ahead_that_meets_a_read_needing_approval_parks_the_run_once(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    spec = reads(
        ("one", "test.count", {"n": "1"}),
        ("two", "test.count", {"n": "2"}),
        ("order", "erp.order", {"order_id": "'A7'"}),
        ("three", "test.count", {"n": "3"}),
    )
    tools = toolbox.tools()
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine([APPROVED_ORDER_READS]), audit, tools, TEST_SECRET)
    rid = run_id()
    async with create_worker(client, models=toolbox.models(), tools=tools, task_queue=task_queue, gate=gate):
        handle = await start_run(client, spec, {}, run_id=rid, task_queue=task_queue, principal=ALICE)
        ask = await wait_for_approval(handle)
        assert ask.step_id == f"{rid}/order/1" and ask.approvers == ["manager"]
        assert toolbox.effects("order") == []
        await decide(handle, ApprovalAnswer(step_id=ask.step_id, outcome="approve", approver=MARIA))
        result = await handle.result()
    assert result.status == "completed" and result.output["order"]["order_id"] == "A7"
    assert toolbox.effects("order") == [("order", f"{rid}/order/1")]
    assert [r for r in records(audit, rid) if r[0] == "order/1"] == [
        ("order/1", "decision", "needs_approval"),
        ("order/1", "approval", "approve"),
        ("order/1", "effect", "allow"),
    ]
    local = Counter(local_activities(await handle.fetch_history()))
    assert local["chamberlain.read_ahead"] == 1 and local["chamberlain.gate"] == 1  # decided once, then approved


async def test_step_limits_hold_across_a_read_ahead(client: Client, task_queue: str) -> None:
    rid, segmented = run_id(), run_id()
    async with graph_worker(client, task_queue):
        with pytest.raises(WorkflowFailureError) as failed:
            await execute_run(client, counting(8, max_steps=5), {}, run_id=rid, task_queue=task_queue)
        result = await execute_run(
            client, counting(7), {}, run_id=segmented, task_queue=task_queue, steps_per_segment=3
        )
    assert "reached max_steps=5 at node 's5'" in str(failed.value.cause)
    assert Counter(toolbox.effects("count")) == {
        **{("count", f"{rid}/s{i}/1"): 1 for i in range(5)},
        **{("count", f"{segmented}/s{i}/1"): 1 for i in range(7)},
    }
    assert result.output == {"n": 7} and result.steps == 8 and result.segments == 3


async def test_a_read_that_outlasts_its_timeout_in_a_read_ahead_is_taken_again_by_the_run(
    client: Client, task_queue: str
) -> None:
    """The backend hangs the first time the third read asks: the read-ahead gives up on it at
    the node's timeout and stops there; the run takes that read under its own retry policy."""
    spec = reads(
        ("one", "test.count", {"n": "1"}),
        ("two", "test.count", {"n": "2"}),
        ("stalls", "test.peek", {"seconds": "30"}),
        ("three", "test.count", {"n": "3"}),
    )
    nodes = {**spec.nodes, "stalls": spec.nodes["stalls"].model_copy(update={"timeout": timedelta(seconds=1)})}
    spec = spec.model_copy(update={"nodes": nodes})
    rid = run_id()
    async with graph_worker(client, task_queue):
        handle = await start_run(client, spec, {}, run_id=rid, task_queue=task_queue)
        result = await handle.result()
    assert result.status == "completed" and result.output["three"] == {"n": 4}
    assert toolbox.effects("peek").count(("peek", f"{rid}/stalls/1")) == 2  # cut off once, then read
    assert local_activities(await handle.fetch_history()) == [
        "chamberlain.read_ahead",  # two, and gives up on the third at its timeout
        "chamberlain.gate_read",  # the run takes the third itself
        "chamberlain.gate_read",  # the fourth leads to no other read: its own local activity
        "chamberlain.audit_seal",
    ]
    assert [r for r in records(audit_log(), rid) if r[0] == "stalls/1"] == [
        ("stalls/1", "decision", "allow"),  # allowed, not acted: the read was cut off
        ("stalls/1", "effect", "allow"),
    ]
