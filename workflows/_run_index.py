"""The run index: one SQL row per run, so listing and filtering 10,000+ runs is one indexed
query — never a scan of histories.

Two feeds write it, each the only one that knows its part, and both are idempotent:

- :class:`RunIndexInterceptor` on the worker counts each model, classify and tool step as it
  completes (tokens, cost, principal), once per activity ID: a retried or redelivered
  activity is not counted twice. When a graph run finishes it keeps the run's steps (what
  its ``progress`` query answers, sealed by the deployment's payload codec), so showing a
  closed run never makes a worker replay its history.
- :func:`sync_from_visibility` reads Temporal's visibility store for runs started or closed
  since the last look (every workflow type, so a business's own workflows are listed too),
  reads a new graph run's start request once (graph, version, principal, department), and
  marks the runs whose approval is pending.

SQLModel: SQLite by default, PostgreSQL by URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, Index, desc, func, tuple_, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, create_engine, select
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import FailureError
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from chamberlain.agents._exceptions import AgentError
from chamberlain.agents._spec import GraphSpec
from chamberlain.agents._steps import ModelReply
from chamberlain.workflows._codec import EncryptionCodec
from chamberlain.workflows._types import Principal, RunProgress, RunRequest

GRAPH_TYPE = "chamberlain.graph"
PENDING_QUERY = 'ChamberlainApproval = "pending" AND ExecutionStatus = "Running"'
OVERLAP = timedelta(seconds=30)  # visibility is eventually consistent: look back this far again
START_READS = 16  # start requests read at once while indexing
STEP_ACTIVITIES = {"chamberlain.model_step", "chamberlain.classify_step", "chamberlain.tool_step"}
KEEP_PROGRESS = "chamberlain.keep_progress"  # the extern function a finishing run hands its steps to
log = logging.getLogger(__name__)


def graph_version(spec: GraphSpec) -> str:
    """Which graph a run uses: its declared ``version``, then a short hash of its content
    (``1+3f2a9c1e``). Two runs showing the same string ran the same graph, even where
    someone changed the graph and forgot to bump ``version``."""
    content = json.dumps(spec.model_dump(mode="json", exclude={"schema_"}), sort_keys=True, ensure_ascii=False)
    return f"{spec.version}+{hashlib.sha256(content.encode()).hexdigest()[:8]}"


class RunRow(SQLModel, table=True):
    """One run as the runs page lists it."""

    __tablename__ = "run_index"
    __table_args__ = (Index("run_index_newest", "started_at", "run_id"),)

    run_id: str = Field(primary_key=True)
    workflow_type: str = Field(default=GRAPH_TYPE, index=True)
    status: str = Field(default="running", index=True)
    graph: str | None = Field(default=None, index=True)
    graph_version: str | None = None
    principal: str | None = Field(default=None, index=True)
    tenant: str | None = Field(default=None, index=True)
    department: str | None = Field(default=None, index=True)
    started_at: datetime | None = Field(default=None, index=True)
    closed_at: datetime | None = None
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    pending_approval: bool = Field(default=False, index=True)
    rerun_of: str | None = None  # the run this one re-runs with edited input

    @property
    def duration(self) -> timedelta | None:
        return self.closed_at - self.started_at if self.closed_at and self.started_at else None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CountedStep(SQLModel, table=True):
    """Which activities were counted already: the index counts each once."""

    __tablename__ = "run_index_steps"

    run_id: str = Field(primary_key=True)
    activity_id: str = Field(primary_key=True)


class KeptProgress(SQLModel, table=True):
    """A finished graph run's steps, as its ``progress`` query would answer: showing a closed
    run reads this instead of making a worker replay the whole history."""

    __tablename__ = "run_index_progress"

    run_id: str = Field(primary_key=True)
    temporal_run_id: str = Field(primary_key=True)  # a reset or continued run is another
    payload: bytes  # a Temporal payload through the deployment's codec: state values stay encrypted at rest


STATUSES = tuple(s.name.lower() for s in WorkflowExecutionStatus)


class RunFilter(BaseModel):
    """What the runs page and ``GET /runs`` filter on; ``tenant`` confines a viewer to theirs."""

    status: str | None = None
    graph: str | None = None
    principal: str | None = None
    department: str | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    tenant: str | None = None


def run_filter(
    viewer: Principal,
    *,
    status: str | None = None,
    graph: str | None = None,
    principal: str | None = None,
    department: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> RunFilter:
    """What ``viewer`` asked for, within their tenant; ``ValueError`` naming the field for a bad value."""
    if status and status not in STATUSES:
        raise ValueError(f"status: unknown {status!r}, use one of {', '.join(STATUSES)}")
    if since and until and since >= until:
        raise ValueError("since: must be before until")
    return RunFilter(
        status=status or None,
        graph=graph or None,
        principal=principal or None,
        department=department or None,
        started_after=since,
        started_before=until,
        tenant=viewer.tenant,
    )


@dataclass
class RunPage:
    rows: list[RunRow]
    after: str | None  # the cursor of the next page; None: this is the last


class BadCursor(ValueError):
    """A page cursor that this index did not hand out."""


class RunIndex:
    """The ``run_index`` table: written by the feeds, read a page at a time, newest first."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)
        SQLModel.metadata.create_all(
            self.engine,
            tables=[RunRow.__table__, CountedStep.__table__, KeptProgress.__table__],  # type: ignore[attr-defined]
        )

    def add(self, *rows: RunRow) -> None:
        """Insert rows outright (the benchmark's fixtures, a re-run's link)."""
        with Session(self.engine) as session:
            session.add_all(rows)
            session.commit()

    def get(self, run_id: str) -> RunRow | None:
        with Session(self.engine) as session:
            return session.get(RunRow, run_id)

    def seen(self, runs: list[tuple[WorkflowExecution, RunRequest | None]]) -> None:
        """Record what visibility (and, once, the start request) says of runs, in one commit;
        never touches the step counts the worker keeps."""
        with Session(self.engine) as session:
            rows = {
                row.run_id: row
                for row in session.exec(select(RunRow).where(col(RunRow.run_id).in_([e.id for e, _ in runs])))
            }
            for execution, request in runs:
                row = rows.setdefault(execution.id, RunRow(run_id=execution.id))
                row.workflow_type = execution.workflow_type
                row.status = execution.status.name.lower() if execution.status else "unknown"
                row.started_at = as_utc(execution.start_time)
                row.closed_at = as_utc(execution.close_time)
                if execution.close_time is not None:
                    row.pending_approval = False
                if request is not None:
                    row.graph, row.graph_version = request.graph.name, graph_version(request.graph)
                    if request.principal is not None:
                        row.principal, row.tenant = request.principal.id, request.principal.tenant
                        row.department = request.principal.department
                session.add(row)
            session.commit()

    def link(self, run_id: str, rerun_of: str) -> None:
        """Mark ``run_id`` as a re-run of ``rerun_of`` (visibility may not have shown it yet)."""
        with Session(self.engine) as session:
            row = session.get(RunRow, run_id) or RunRow(run_id=run_id)
            row.rerun_of = rerun_of
            session.add(row)
            session.commit()

    def count_step(
        self, run_id: str, activity_id: str, *, input_tokens: int = 0, output_tokens: int = 0, cost: float = 0.0
    ) -> bool:
        """Count one completed step activity of a run; ``False`` if it was counted already."""
        with Session(self.engine) as session:
            session.add(CountedStep(run_id=run_id, activity_id=activity_id))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return False
            changed = session.execute(
                update(RunRow)
                .where(col(RunRow.run_id) == run_id)
                .values(
                    steps=RunRow.steps + 1,
                    input_tokens=RunRow.input_tokens + input_tokens,
                    output_tokens=RunRow.output_tokens + output_tokens,
                    cost=RunRow.cost + cost,
                )
            )
            if changed.rowcount == 0:  # type: ignore[attr-defined]  # the worker got there before visibility
                row = RunRow(run_id=run_id, steps=1, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)
                session.add(row)
            session.commit()
        return True

    def keep_progress(self, run_id: str, temporal_run_id: str, payload: bytes) -> None:
        """Keep a finished run's sealed progress (again: the newer answer wins)."""
        with Session(self.engine) as session:
            session.merge(KeptProgress(run_id=run_id, temporal_run_id=temporal_run_id, payload=payload))
            session.commit()

    def kept_progress(self, run_id: str, temporal_run_id: str) -> bytes | None:
        with Session(self.engine) as session:
            kept = session.get(KeptProgress, (run_id, temporal_run_id))
            return kept.payload if kept else None

    def mark_pending(self, run_ids: set[str]) -> None:
        """Exactly ``run_ids`` wait for an approval now."""
        with Session(self.engine) as session:
            session.execute(
                update(RunRow)
                .where(col(RunRow.pending_approval), col(RunRow.run_id).not_in(run_ids))
                .values(pending_approval=False)
            )
            if run_ids:
                session.execute(update(RunRow).where(col(RunRow.run_id).in_(run_ids)).values(pending_approval=True))
            session.commit()

    def known(self, run_ids: list[str]) -> set[str]:
        """Of ``run_ids``, those visibility has shown before (their start request was read then)."""
        with Session(self.engine) as session:
            query = select(RunRow.run_id).where(col(RunRow.run_id).in_(run_ids), col(RunRow.started_at).is_not(None))
            return set(session.exec(query).all())

    def latest(self) -> datetime | None:
        """The newest start or close time indexed: where the next visibility look begins."""
        with Session(self.engine) as session:
            newest = session.exec(select(func.max(RunRow.started_at), func.max(RunRow.closed_at))).one()
        found = [as_utc(t) for t in newest if t is not None]
        return max(t for t in found if t is not None) if found else None

    def page(self, where: RunFilter, after: str | None = None, limit: int = 25) -> RunPage:
        """Runs matching ``where``, newest first; ``after`` is a cursor from the previous page."""
        query = select(RunRow)
        for name in ("status", "graph", "principal", "department", "tenant"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(getattr(RunRow, name) == value)
        if where.started_after is not None:
            query = query.where(col(RunRow.started_at) >= as_utc(where.started_after))
        if where.started_before is not None:
            query = query.where(col(RunRow.started_at) < as_utc(where.started_before))
        if after is not None:
            started, run_id = _parse_cursor(after)
            query = query.where(tuple_(RunRow.started_at, RunRow.run_id) < tuple_(started, run_id))
        query = query.order_by(desc(col(RunRow.started_at)), desc(col(RunRow.run_id))).limit(limit + 1)
        with Session(self.engine) as session:
            rows = list(session.exec(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more and rows else None
        at = as_utc(last.started_at) if last else None
        return RunPage(rows, f"{at.isoformat()}|{last.run_id}" if last and at else None)

    def rows(self, since: datetime | None = None) -> list[RunRow]:
        """Every run started since ``since`` (the dashboard's window)."""
        query = select(RunRow)
        if since is not None:
            query = query.where(col(RunRow.started_at) >= as_utc(since))
        with Session(self.engine) as session:
            return list(session.exec(query).all())


def as_utc(value: datetime | None) -> datetime | None:
    """A time in UTC (one without a zone is taken to be UTC already)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    started, sep, run_id = cursor.partition("|")
    try:
        when = datetime.fromisoformat(started)
    except ValueError:
        when = None
    if not sep or when is None:
        raise BadCursor(f"after: {cursor!r} is not a cursor this index handed out — start from the first page")
    return as_utc(when) or when, run_id


async def sync_from_visibility(client: Client, index: RunIndex, since: datetime | None = None) -> datetime | None:
    """Bring ``index`` up to date with the runs started or closed since ``since`` (default: a
    little before the newest time it holds); answer where the next look starts."""
    since = since if since is not None else index.latest()
    query = "" if since is None else _changed_since(since - OVERLAP)
    newest = since
    batch: list[WorkflowExecution] = []
    async for execution in client.list_workflows(query or None, page_size=1000):
        batch.append(execution)
        if len(batch) == 200:
            await _index_batch(client, index, batch)
            batch = []
        for when in (execution.start_time, execution.close_time):
            if when is not None and (newest is None or when > newest):
                newest = when
    await _index_batch(client, index, batch)
    with contextlib.suppress(RPCError):  # without the ChamberlainApproval attribute no run can be waiting
        index.mark_pending({execution.id async for execution in client.list_workflows(PENDING_QUERY)})
    return newest


def _changed_since(when: datetime) -> str:
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f'StartTime >= "{stamp}" OR CloseTime >= "{stamp}"'


async def _index_batch(client: Client, index: RunIndex, batch: list[WorkflowExecution]) -> None:
    """Index a page of runs; the start requests of those it has not seen are read concurrently
    (one history call each: a new replica's first look at a busy namespace reads thousands)."""
    known = index.known([e.id for e in batch if e.workflow_type == GRAPH_TYPE])
    unseen = [e for e in batch if e.workflow_type == GRAPH_TYPE and e.id not in known]
    turns = asyncio.Semaphore(START_READS)

    async def read(execution: WorkflowExecution) -> RunRequest | None:
        async with turns:
            try:
                return await _start_request(client, execution)
            except (ValueError, KeyError):  # another key, no key (KeyError: unknown encoding) or an older
                return None  # shape: listed without its graph

    requests = dict(zip((id(e) for e in unseen), await asyncio.gather(*map(read, unseen)), strict=True))
    await asyncio.to_thread(index.seen, [(execution, requests.get(id(execution))) for execution in batch])


async def _start_request(client: Client, execution: WorkflowExecution) -> RunRequest | None:
    """A graph run's start request: the first event of its history, read once per run."""
    handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
    async for event in handle.fetch_history_events(page_size=1):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [request] = await client.data_converter.decode(payloads, [RunRequest])
            return request
        break
    return None


async def seal_progress(codec: PayloadCodec | None, progress_json: str) -> bytes:
    """A run's progress (as JSON) as the payload Temporal would hold, through ``codec``."""
    payload = Payload(metadata={"encoding": b"json/plain"}, data=progress_json.encode())
    if codec is not None:
        [payload] = await codec.encode([payload])
    return payload.SerializeToString()


async def open_progress(converter: DataConverter, sealed: bytes) -> RunProgress | None:
    """What :func:`seal_progress` kept, read with ``converter``; None if it cannot (another key)."""
    try:
        [progress] = await converter.decode([Payload.FromString(sealed)], [RunProgress])
    except (ValueError, KeyError):  # another key, no key (unknown encoding), a validation error
        return None
    return progress if isinstance(progress, RunProgress) else None


class RunIndexInterceptor(Interceptor):
    """Counts a graph run's steps, tokens and cost in the index as its activities complete, and
    keeps a finished run's steps. ``codec`` seals them (default: the keys in
    ``CHAMBERLAIN_PAYLOAD_KEYS``, as the worker's own); it must be the one the readers' clients use."""

    def __init__(self, index: RunIndex, codec: PayloadCodec | None = None) -> None:
        self.index = index
        self.codec = codec if codec is not None else EncryptionCodec.from_env()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-index")

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountSteps(next, self.index)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        input.unsafe_extern_functions[KEEP_PROGRESS] = self._keep
        return _KeepProgress

    def _keep(self, run_id: str, temporal_run_id: str, progress_json: str) -> None:
        """Called on a finishing run's workflow thread: hand the write to a thread of its own,
        so the run neither waits for the database nor fails with it."""
        self._writer.submit(self._write, run_id, temporal_run_id, progress_json)

    def _write(self, run_id: str, temporal_run_id: str, progress_json: str) -> None:
        try:
            sealed = asyncio.run(seal_progress(self.codec, progress_json))
            self.index.keep_progress(run_id, temporal_run_id, sealed)
        except SQLAlchemyError as exc:  # not kept: showing the run asks a worker instead
            log.warning("run index: could not keep the steps of %s: %s", run_id, exc)


class _KeepProgress(WorkflowInboundInterceptor):
    """Hands a graph run's steps to the index as the run finishes — completed, failed or
    canceled — live only: a replay (a query, a recovered worker) hands nothing."""

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await super().execute_workflow(input)
        except (FailureError, AgentError, asyncio.CancelledError):
            _hand_over()
            raise
        _hand_over()
        return result


def _hand_over() -> None:
    info = workflow.info()
    if info.workflow_type != GRAPH_TYPE or workflow.unsafe.is_replaying():
        return
    progress: RunProgress = workflow.instance().progress()  # what the run's progress query answers
    workflow.extern_functions()[KEEP_PROGRESS](info.workflow_id, info.run_id, progress.model_dump_json())


class _CountSteps(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, index: RunIndex) -> None:
        super().__init__(next)
        self.index = index

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        info = activity.info()
        if info.workflow_type == GRAPH_TYPE and info.activity_type in STEP_ACTIVITIES and not info.is_local:
            reply = result if isinstance(result, ModelReply) else ModelReply(model="")
            await asyncio.to_thread(
                self.index.count_step,
                info.workflow_id or "",
                info.activity_id,
                input_tokens=reply.usage.input_tokens,
                output_tokens=reply.usage.output_tokens,
                cost=reply.cost,
            )
        return result


class IndexFeed:
    """The index as a reader needs it: brought up to date from visibility before a read, at
    most once per ``interval`` seconds (one visibility query when nothing changed)."""

    def __init__(self, index: RunIndex, connect: Callable[[], Awaitable[Client]], interval: float = 1.0) -> None:
        self.index, self.connect, self.interval = index, connect, interval
        self._since: datetime | None = None
        self._synced = float("-inf")
        self._lock: asyncio.Lock | None = None

    async def fresh(self) -> RunIndex:
        if time.monotonic() - self._synced >= self.interval:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if time.monotonic() - self._synced >= self.interval:
                    self._since = await sync_from_visibility(await self.connect(), self.index, self._since)
                    self._synced = time.monotonic()
        return self.index

    async def page(self, where: RunFilter, after: str | None = None, limit: int = 25) -> RunPage:
        """One page of runs matching ``where``, newest first (``BadCursor`` for a foreign ``after``)."""
        index = await self.fresh()
        return await asyncio.to_thread(index.page, where, after, limit)
