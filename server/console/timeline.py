"""One run's timeline as the console draws it: the steps the runs API shows (masked for the
viewer), each with the permission decisions and effects the audit log holds for it, the
approvals with who decided and why (the ``decide`` updates in the run's history), and the
activity attempts that failed or were retried.

Everything a viewer reads passes the same masking as the runs API: text from history (an
approver's reason, an error message) is redacted of the run's labelled values beyond the
viewer's clearance, and an audited amount shows only to viewers cleared for ``financial``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from chamberlain.server._runs import RunView, StepView, _Masker, load_run
from chamberlain.workflows import ApprovalAnswer, AuditLog, Principal
from chamberlain.workflows._audit import AuditLogNotFound, AuditRecord
from chamberlain.workflows._run_index import RunIndex


@dataclass
class Approval:
    step_id: str
    approver: str
    outcome: str
    reason: str
    at: datetime | None


@dataclass
class Attempt:
    """An activity that failed, or succeeded only after retries."""

    activity: str
    attempt: int
    outcome: str  # completed | failed | timed out
    error: str
    at: datetime | None


@dataclass
class StepCard:
    step: StepView
    audit: list[AuditRecord] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)

    @property
    def latency_ms(self) -> int:
        return int((self.step.ended_at - self.step.started_at).total_seconds() * 1000)


@dataclass
class Timeline:
    run: RunView
    steps: list[StepCard]
    current: list[AuditRecord]  # audit records of the step under way (no finished step yet)
    current_approvals: list[Approval]
    attempts: list[Attempt]
    operations: list[AuditRecord]
    show_amounts: bool


class AuditReader:
    """Read-only access to the audit log, opened on first use (it may not exist yet)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._log: AuditLog | None = None

    def records(self, run_id: str) -> list[AuditRecord]:
        return self._read(select(AuditRecord).where(AuditRecord.run_id == run_id).order_by(col(AuditRecord.seq)))

    def since(self, when: datetime) -> list[AuditRecord]:
        """Every record from ``when`` on, in log order (the dashboard's window)."""
        return self._read(select(AuditRecord).where(col(AuditRecord.at) >= when).order_by(col(AuditRecord.seq)))

    def _read(self, query: Any) -> list[AuditRecord]:
        if self._log is None:
            try:
                self._log = AuditLog.open(self.url)
            except AuditLogNotFound:
                return []
        with Session(self._log.engine) as session:
            return list(session.exec(query))


async def timeline(
    client: Client, run_id: str, viewer: Principal, audit: AuditReader, index: RunIndex | None = None
) -> Timeline:
    """The run's timeline for ``viewer``; :class:`~chamberlain.server._runs.RunNotFound` as the
    runs API. One read of the run's history serves both (a closed run's steps come from ``index``)."""
    loaded = await load_run(client, run_id, viewer, index)  # status, masked steps, tenant check
    run = loaded.view
    approvals, attempts = await _history(client, loaded.events)
    masker = _Masker(loaded.request, loaded.progress, set(viewer.clearance))
    for item in approvals:
        item.reason = masker.text(item.reason)
    for attempt in attempts:
        attempt.error = masker.text(attempt.error)
    records = await asyncio.to_thread(audit.records, run_id)
    cards = [StepCard(step) for step in run.steps or []]
    current: list[AuditRecord] = []
    current_approvals: list[Approval] = []
    for record in records:
        if record.kind == "operation":
            continue
        card = _card_of(cards, record.step_id)
        (card.audit if card else current).append(record)
    for item in approvals:
        card = _card_of(cards, item.step_id)
        (card.approvals if card else current_approvals).append(item)
    return Timeline(
        run=run,
        steps=cards,
        current=current,
        current_approvals=current_approvals,
        attempts=attempts,
        operations=[r for r in records if r.kind == "operation"],
        show_amounts="financial" in viewer.clearance,
    )


def _card_of(cards: list[StepCard], step_id: str) -> StepCard | None:
    return next((c for c in cards if step_id == c.step.step_id or step_id.startswith(c.step.step_id + "/")), None)


async def _history(client: Client, events: list[HistoryEvent]) -> tuple[list[Approval], list[Attempt]]:
    """One pass over the run's history: the decisions taken, the failed or retried activities."""
    approvals: list[Approval] = []
    scheduled: dict[int, str] = {}
    started: dict[int, int] = {}
    attempts: list[Attempt] = []
    for event in events:
        at = event.event_time.ToDatetime() if event.HasField("event_time") else None
        match event.event_type:
            case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                accepted = event.workflow_execution_update_accepted_event_attributes.accepted_request.input
                if accepted.name == "decide":
                    [answer] = await client.data_converter.decode(accepted.args.payloads, [ApprovalAnswer])
                    approvals.append(Approval(answer.step_id, answer.by, answer.outcome, answer.reason, at))
            case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attributes = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = f"{attributes.activity_type.name} {attributes.activity_id}"
            case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = event.activity_task_started_event_attributes
                started[attrs.scheduled_event_id] = attrs.attempt
            case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                key = event.activity_task_completed_event_attributes.scheduled_event_id
                if started.get(key, 1) > 1:
                    attempts.append(Attempt(scheduled.get(key, "?"), started[key], "completed", "", at))
            case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
                failed = event.activity_task_failed_event_attributes
                key, message = failed.scheduled_event_id, _message(failed.failure)
                attempts.append(Attempt(scheduled.get(key, "?"), started.get(key, 1), "failed", message, at))
            case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                key = event.activity_task_timed_out_event_attributes.scheduled_event_id
                message = _message(event.activity_task_timed_out_event_attributes.failure)
                attempts.append(Attempt(scheduled.get(key, "?"), started.get(key, 1), "timed out", message, at))
    return approvals, attempts


def _message(failure: Failure) -> str:
    """A failure's message with its causes (the activity's own error is usually the cause)."""
    parts, current = [], failure
    while current.message:
        parts.append(current.message)
        if not current.HasField("cause"):
            break
        current = current.cause
    return ": ".join(parts)
