"""The dashboard's figures for one window of time: permission decisions (from the audit log),
runs, durations, escalations and approval waits (from the run index and the audit log),
tokens and cost per run, graph, model and department with department budgets (the run index
and the usage ledger).

A viewer with a tenant sees only their tenant's runs and what those runs did; department
budgets span tenants, so only viewers without one see them.

Two figures are defined here, as the data allows: a run *escalated* when it reached a person
(a needs-approval decision or an approval record); an approval's *wait* runs from the audit
record before it in the same run (or the run's start) to the decision.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from chamberlain.server.console.timeline import AuditReader
from chamberlain.workflows import Principal
from chamberlain.workflows._run_index import RunIndex, RunRow, as_utc
from chamberlain.workflows._usage import DepartmentSpend, UsageLedger, UsageRecord

OUTCOMES = ("allow", "deny", "needs_approval", "mask")
NO_DEPARTMENT = "(none)"


@dataclass
class Spend:
    name: str
    runs: int = 0
    tokens: int = 0
    cost: float = 0.0


@dataclass
class Dashboard:
    since: datetime
    buckets: list[str]  # hour labels, oldest first
    decisions_over_time: dict[str, list[int]]  # outcome -> count per bucket
    decisions_by: dict[str, dict[str, Counter[str]]]  # "action"|"department"|"policy" -> name -> outcome counts
    runs_per_hour: list[int]
    runs: int
    duration_p50_s: float | None
    duration_p95_s: float | None
    escalation_rate: float | None
    approval_wait_p50_s: float | None
    approval_wait_p95_s: float | None
    approvals: int
    by_graph: list[Spend]
    by_department: list[Spend]
    by_model: list[Spend]
    top_runs: list[RunRow]
    budgets: list[DepartmentSpend] = field(default_factory=list)


def build(
    index: RunIndex, audit: AuditReader, usage: UsageLedger, viewer: Principal, hours: int, now: datetime | None = None
) -> Dashboard:
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    since = now - timedelta(hours=hours)
    rows = [r for r in index.rows(since) if viewer.tenant is None or r.tenant == viewer.tenant]
    runs = {r.run_id: r for r in rows}
    records = [r for r in audit.since(since) if viewer.tenant is None or r.run_id in runs]
    buckets = [since + timedelta(hours=h) for h in range(hours)]

    def bucket(when: datetime | None) -> int | None:
        at = as_utc(when)
        return int((at - since).total_seconds() // 3600) if at and since <= at < now else None

    over_time = {outcome: [0] * hours for outcome in OUTCOMES}
    by: dict[str, dict[str, Counter[str]]] = {name: defaultdict(Counter) for name in ("action", "department", "policy")}
    escalated: set[str] = set()
    waits: list[float] = []
    last_at: dict[str, datetime] = {}
    for record in records:
        at = as_utc(record.at)
        if record.kind == "decision" and record.decision in OUTCOMES:
            i = bucket(at)
            if i is not None:
                over_time[record.decision][i] += 1
            row = runs.get(record.run_id)
            by["action"][record.action][record.decision] += 1
            by["department"][(row.department if row else None) or NO_DEPARTMENT][record.decision] += 1
            for policy in filter(None, record.policies.split(",")):
                by["policy"][policy][record.decision] += 1
            if record.decision == "needs_approval":
                escalated.add(record.run_id)
        elif record.kind == "approval":
            escalated.add(record.run_id)
            row = runs.get(record.run_id)
            before = [t for t in (last_at.get(record.run_id), as_utc(row.started_at) if row else None) if t]
            if before and at:
                waits.append((at - max(before)).total_seconds())
        if at:
            last_at[record.run_id] = at
    per_hour = [0] * hours
    for row in rows:
        i = bucket(row.started_at)
        if i is not None:
            per_hour[i] += 1
    durations = [d.total_seconds() for r in rows if (d := r.duration) is not None]
    return Dashboard(
        since=since,
        buckets=[f"{b:%m-%d %H:00}" for b in buckets],
        decisions_over_time=over_time,
        decisions_by={k: dict(sorted(v.items(), key=lambda kv: -sum(kv[1].values()))) for k, v in by.items()},
        runs_per_hour=per_hour,
        runs=len(rows),
        duration_p50_s=_quantile(durations, 50),
        duration_p95_s=_quantile(durations, 95),
        escalation_rate=len(escalated & set(runs)) / len(rows) if rows else None,
        approval_wait_p50_s=_quantile(waits, 50),
        approval_wait_p95_s=_quantile(waits, 95),
        approvals=len(waits),
        by_graph=_spend(rows, lambda r: r.graph or r.workflow_type),
        by_department=_spend(rows, lambda r: r.department or NO_DEPARTMENT),
        by_model=_models(usage, since, None if viewer.tenant is None else set(runs)),
        top_runs=sorted(rows, key=lambda r: -r.cost)[:10],
        budgets=[usage.spend(d) for d in sorted(usage.budgets)] if viewer.tenant is None else [],
    )


def _quantile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _spend(rows: list[RunRow], key: Callable[[RunRow], str]) -> list[Spend]:
    found: dict[str, Spend] = {}
    for row in rows:
        name = key(row)
        spend = found.setdefault(name, Spend(name))
        spend.runs, spend.tokens, spend.cost = spend.runs + 1, spend.tokens + row.tokens, spend.cost + row.cost
    return sorted(found.values(), key=lambda s: (-s.cost, -s.tokens))


def _models(usage: UsageLedger, since: datetime, run_ids: set[str] | None) -> list[Spend]:
    """Tokens and cost per model from the usage ledger (only ``run_ids``' usage, if given)."""
    tokens = func.sum(UsageRecord.input_tokens + UsageRecord.output_tokens)
    query = select(UsageRecord.model, func.count(func.distinct(UsageRecord.run_id)), tokens, func.sum(UsageRecord.cost))
    query = query.where(col(UsageRecord.at) >= since)
    if run_ids is not None:
        query = query.where(col(UsageRecord.run_id).in_(run_ids or {""}))
    with Session(usage.engine) as session:
        found = session.exec(query.group_by(UsageRecord.model)).all()
    return sorted((Spend(m, int(n), int(t or 0), float(c or 0)) for m, n, t, c in found), key=lambda s: -s.cost)
