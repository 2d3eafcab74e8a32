"""Model usage is recorded once per step, and a department over its budget stops a run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from chamberlain.agents import ModelRegistry, ScriptedChatModel, Tier
from chamberlain.workflows import Principal, create_worker, execute_run
from chamberlain.workflows._usage import UsageEntry, UsageLedger, UsageRecord
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.workers import gate_for_tests


@pytest.fixture
def ledger_db(database_url: str) -> Iterator[tuple[UsageLedger, str]]:
    department = f"dept-{uuid.uuid4().hex[:8]}"  # PostgreSQL is shared: keep each test's rows apart
    yield UsageLedger(database_url, budgets={department: 0.0001}), department


def models() -> ModelRegistry:
    registry = ModelRegistry()
    model = ScriptedChatModel(replies=['{"order_id": "A1002"}'])
    registry.register("edge", model, Tier.EDGE, trust=["pii"], cost_per_1k_input=1.0, cost_per_1k_output=1.0)
    return registry


def test_recording_is_idempotent_per_step(ledger_db: tuple[UsageLedger, str]) -> None:
    ledger, department = ledger_db
    entry = UsageEntry(
        step_id=f"{uuid.uuid4()}/x/1",
        run_id="r",
        principal="p",
        department=department,
        model="m",
        input_tokens=10,
        output_tokens=5,
        cost=0.00005,
    )
    first = ledger.record(entry)
    again = ledger.record(entry)  # a retried activity
    assert first.spent == again.spent == pytest.approx(0.00005) and first.exceeded is None
    with Session(ledger.engine) as session:
        assert len(session.exec(select(UsageRecord).where(UsageRecord.department == department)).all()) == 1


async def test_a_department_over_budget_stops_the_run(
    client: Client, task_queue: str, ledger_db: tuple[UsageLedger, str]
) -> None:
    ledger, department = ledger_db
    spec = graph("extract")
    principal = Principal(id="wang", department=department)
    tools = toolbox.tools()
    async with create_worker(
        client, models=models(), tools=tools, gate=gate_for_tests(tools), task_queue=task_queue, usage=ledger
    ):
        with pytest.raises(WorkflowFailureError) as caught:
            await execute_run(
                client, spec, {"message": "A1002"}, run_id=run_id(), task_queue=task_queue, principal=principal
            )
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "BudgetExceeded"
    assert f"department {department} spent" in cause.message
    with Session(ledger.engine) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.department == department)).all()
    assert [(r.principal, r.model) for r in rows] == [("wang", "edge")] and rows[0].input_tokens > 0
