"""Model usage per step, run, principal and department, and department budgets.

Each model call's tokens and cost are written once, by the model activity that made the call
(keyed by the call's ID, ``node/visit/attempt``, so a retried activity cannot count twice; runs
started before that wrote one row per step, keyed by the step's ID) to a SQLModel table —
SQLite by default, PostgreSQL by URL. Writing answers with the department's spend this month,
so the workflow can stop or escalate a run when its department is over budget.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, create_engine, select

from chamberlain.agents._steps import Principal, TokenUsage


class UsageRecord(SQLModel, table=True):
    __tablename__ = "model_usage"

    step_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    principal: str | None = Field(default=None, index=True)
    department: str | None = Field(default=None, index=True)
    model: str
    input_tokens: int
    output_tokens: int
    cost: float
    at: datetime = Field(default_factory=lambda: datetime.now(UTC), index=True)


class UsageEntry(BaseModel):
    step_id: str
    run_id: str
    principal: str | None
    department: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost: float

    @classmethod
    def of(
        cls, step_id: str, run_id: str, principal: Principal | None, model: str, usage: TokenUsage, cost: float
    ) -> UsageEntry:
        """Usage charged to ``principal`` and their department."""
        return cls(
            step_id=step_id,
            run_id=run_id,
            principal=principal.id if principal else None,
            department=principal.department if principal else None,
            model=model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost=cost,
        )


class DepartmentSpend(BaseModel):
    department: str | None
    spent: float
    limit: float | None

    @property
    def exceeded(self) -> str | None:
        if self.limit is not None and self.spent > self.limit:
            return f"department {self.department} spent {self.spent:.4f} > {self.limit} this month"
        return None


class UsageLedger:
    """The usage table, and the department budgets (cost per calendar month) checked against it."""

    def __init__(
        self, url: str = "sqlite:///.chamberlain/usage.sqlite", budgets: dict[str, float] | None = None
    ) -> None:
        self.engine: Engine = create_engine(url)
        self.budgets = budgets or {}
        SQLModel.metadata.create_all(self.engine, tables=[UsageRecord.__table__])  # type: ignore[attr-defined]

    def record(self, entry: UsageEntry) -> DepartmentSpend:
        with Session(self.engine) as session:
            session.add(UsageRecord(**entry.model_dump()))
            try:
                session.commit()
            except IntegrityError:  # this step was recorded already: a retry, not new usage
                session.rollback()
        return self.spend(entry.department)

    def spend(self, department: str | None) -> DepartmentSpend:
        limit = self.budgets.get(department) if department else None
        if department is None:
            return DepartmentSpend(department=None, spent=0.0, limit=None)
        month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        with Session(self.engine) as session:
            query = select(func.coalesce(func.sum(UsageRecord.cost), 0.0)).where(
                UsageRecord.department == department, UsageRecord.at >= month
            )
            spent = float(session.exec(query).one())
        return DepartmentSpend(department=department, spent=spent, limit=limit)
