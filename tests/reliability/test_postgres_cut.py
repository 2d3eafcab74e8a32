"""A database connection dropped halfway through a refund's write, on PostgreSQL (the ERP and
the audit log in a schema of their own): the refund's backend is terminated from a second
connection right after it took the money from the payment and before it wrote the refund row
and committed. Nothing of the half-done write survives; the step's retry writes the refund
once, through a fresh connection; the audit log records the step's one effect."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlmodel import Session, col, select
from temporalio.client import Client

from chamberlain.agents import GraphSpec
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Payment, Refund
from chamberlain.workflows import AuditLog, create_worker, start_run
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.workers import gate_for_tests

pytestmark = pytest.mark.chaos

REFUND = GraphSpec.model_validate(
    {
        "name": "refund-on-postgres",
        "state": {"order_id": {"type": "str"}, "amount": {"type": "float"}, "refund_id": {"type": "str"}},
        "start": "refund",
        "nodes": {
            "refund": {
                "type": "tool",
                "tool": "erp.refund.create",
                "args": {"order_id": "order_id", "amount": "amount"},
                "output": {"refund_id": "result.refund_id"},
                "timeout": "10s",
                "retry": {"max_attempts": 5, "initial_interval": "200ms"},
                "next": "done",
            },
            "done": {"type": "end", "output": ["refund_id"]},
        },
    }
)


@dataclass
class Cut:
    """Terminates the backend of the first refund write right after its payment UPDATE, and
    snapshots the order's payment and refunds when the next refund write begins."""

    admin: Engine
    order_id: str
    key: str
    terminated: int | None = None
    seen_by_retry: tuple[float, int] | None = None
    statements: list[str] = field(default_factory=list)

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if self.terminated and self.seen_by_retry is None and statement.lstrip().startswith("SELECT erp_refund"):
            self.seen_by_retry = self.snapshot()

    def after(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.statements.append(statement.split()[0])
        if self.terminated is None and statement.lstrip().startswith("UPDATE erp_payment"):
            pid = conn.connection.dbapi_connection.info.backend_pid
            # Autocommit: within one transaction pg_stat_activity is a snapshot taken at its first
            # read, so a backend still exiting then would look alive for ever.
            with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                for _ in range(100):  # gone for sure before the write goes on
                    alive = other.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
                    if alive.scalar_one() == 0:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError(f"backend {pid} outlived pg_terminate_backend")
            self.terminated = pid

    def snapshot(self) -> tuple[float, int]:
        """The order's refunded amount and the refunds under the step's key, as another session sees them."""
        with self.admin.connect() as other:
            refunded = other.execute(
                text("SELECT sum(refunded) FROM erp_payment WHERE order_id = :o"), {"o": self.order_id}
            ).scalar_one()
            refunds = other.execute(
                text("SELECT count(*) FROM erp_refund WHERE idempotency_key = :k"), {"k": self.key}
            ).scalar_one()
        return float(refunded), int(refunds)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_backend_terminated_mid_refund_leaves_nothing_and_the_retry_refunds_once(
    client: Client, task_queue: str, database_url: str, tmp_path: Path
) -> None:
    erp = EmbeddedErp(database_url)
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=5, orders=20)
    with Session(erp.engine) as session:
        payment = session.exec(select(Payment).where(col(Payment.amount) - col(Payment.refunded) >= 10)).first()
        assert payment is not None
    order_id, before = payment.order_id, payment.refunded
    rid = run_id()
    admin = create_engine(database_url)
    cut = Cut(admin, order_id, f"{rid}/refund/1")
    cut.install(erp.engine)
    tools = business_tools(erp, crm, labels_dir=tmp_path / "labels", today=REFERENCE_DAY)
    audit = AuditLog(database_url)
    gate = gate_for_tests(tools, audit)
    try:
        async with create_worker(client, models=toolbox.models(), tools=tools, gate=gate, task_queue=task_queue):
            handle = await start_run(
                client, REFUND, {"order_id": order_id, "amount": 10.0}, run_id=rid, task_queue=task_queue
            )
            result = await handle.result()
        history = await handle.fetch_history()
    finally:
        admin.dispose()
    assert cut.terminated is not None, cut.statements  # the write was cut after taking the money…
    assert cut.seen_by_retry == (pytest.approx(before), 0)  # …and the retry found none of it
    assert result.status == "completed"
    with Session(erp.engine) as session:
        refunds = session.exec(select(Refund).where(Refund.order_id == order_id)).all()
        refunded = session.exec(select(Payment).where(Payment.order_id == order_id)).one().refunded
    assert [(r.idempotency_key, r.amount) for r in refunds] == [(f"{rid}/refund/1", 10.0)]
    assert result.output["refund_id"] == f"RF{refunds[0].id:06d}" and refunded == pytest.approx(before + 10.0)
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert [s.attempt for s in started] == [2]  # the step failed once, then retried cleanly
    causes, failure = [], started[0].last_failure
    while failure.ByteSize():
        causes.append(failure.application_failure_info.type)
        failure = failure.cause
    assert causes[-2:] == ["OperationalError", "AdminShutdown"], causes  # cut by the terminated backend
    mine = [(r.step_id, r.kind, r.decision) for r in audit.records() if r.run_id == rid]
    assert mine == [
        (f"{rid}/refund/1", "decision", "allow"),  # allowed, did not act: the cut attempt
        (f"{rid}/refund/1", "effect", "allow"),  # the retry's one effect
    ]
    assert str(audit.engine.url).startswith("postgresql") and audit.verify() is None
