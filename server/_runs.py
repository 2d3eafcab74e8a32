"""Durable runs as people look at them: list (from Temporal's visibility store), show (status,
graph, principal, steps with their decisions) — for the ``chamberlain run`` commands and the
``/runs`` API alike.

What a viewer sees is masked by their clearance, as approvals are: a state field whose labels
(declared in the graph, or picked up from a step) lie beyond it shows only ``[label]``, and its
values are redacted wherever else they appear. A viewer of one tenant never sees another
tenant's runs: such a run answers as if it did not exist.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.agents._labels import redact, strings_in
from chamberlain.agents._steps import TokenUsage
from chamberlain.server._approvals import PendingItem
from chamberlain.server._auth import CurrentUser
from chamberlain.server._temporal import TemporalConnection
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._run_index import (
    IndexFeed,
    RunIndex,
    RunRow,
    as_utc,
    graph_version,
    open_progress,
    run_filter,
    seal_progress,
)
from chamberlain.workflows._types import Principal, RunProgress, RunRequest, RunResult, StepRecord

Status = Literal["running", "completed", "failed", "canceled", "terminated", "timed_out", "continued_as_new"]
_VISIBILITY = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "canceled": "Canceled",
    "terminated": "Terminated",
    "timed_out": "TimedOut",
    "continued_as_new": "ContinuedAsNew",
}
STATUSES = tuple(_VISIBILITY)
WORKFLOW_TYPE = "chamberlain.graph"


CLOSED_CACHE = 512  # closed runs whose progress this process keeps (unmasked, in memory only)
_CLOSED: OrderedDict[tuple[str, str | None], RunProgress] = OrderedDict()


class RunNotFound(LookupError):
    """No run with that ID (or none this viewer may see)."""


class StepView(BaseModel):
    step_id: str
    node: str
    updates: dict[str, Any]
    approval: str | None
    routing: list[str]
    model: str | None
    usage: TokenUsage | None = None
    cost: float = 0.0
    started_at: datetime
    ended_at: datetime


class RunSummary(BaseModel):
    run_id: str
    status: str
    started_at: datetime | None
    closed_at: datetime | None


class RunView(RunSummary):
    """One run as one viewer may see it. ``status`` is Temporal's, except that a finished run
    says whether its graph ``completed`` or was ``rejected`` at an approval."""

    graph: str | None
    graph_version: str | None  # the declared version + a hash of the graph's content
    principal: Principal | None
    node: str | None
    steps: list[StepView] | None  # None: no worker answered the progress query
    pending_approval: PendingItem | None
    output: dict[str, Any] | None
    error: str | None


def status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status else "unknown"


def visibility_query(status: str | None) -> str:
    """The visibility query for graph runs, of one status if given (one of :data:`STATUSES`)."""
    query = f'WorkflowType = "{WORKFLOW_TYPE}"'
    if status is not None:
        if status not in _VISIBILITY:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        query += f' AND ExecutionStatus = "{_VISIBILITY[status]}"'
    return query


class ListedRun(RunSummary):
    """A run as ``chamberlain run list`` shows it: with its graph and the graph's version."""

    graph: str | None = None
    graph_version: str | None = None


async def list_runs(client: Client, status: str | None = None, limit: int = 50) -> list[ListedRun]:
    """The newest graph runs first, from the visibility store (eventually consistent), each with
    the graph it started with (the first event of its history, read for the listed runs only)."""
    found = []
    async for execution in client.list_workflows(visibility_query(status), limit=limit):
        status_ = status_name(execution.status)
        found.append(
            ListedRun(
                run_id=execution.id, status=status_, started_at=execution.start_time, closed_at=execution.close_time
            )
        )
    reads = asyncio.Semaphore(16)

    async def graph_of(run: ListedRun) -> None:
        async with reads:
            try:
                request = await _request_of(client, run.run_id)
            except (RPCError, ValueError, KeyError):  # gone since listed, another key or none: no graph shown
                return
        if request is not None:
            run.graph, run.graph_version = request.graph.name, graph_version(request.graph)

    await asyncio.gather(*(graph_of(run) for run in found))
    return found


async def show_run(client: Client, run_id: str, viewer: Principal, index: RunIndex | None = None) -> RunView:
    """A run's status, graph, principal, steps and result, masked for ``viewer``'s clearance.
    :class:`RunNotFound` if there is none ``viewer`` may see. With the run ``index``, a closed
    run's steps come from there when its worker kept them."""
    return (await load_run(client, run_id, viewer, index)).view


@dataclass
class LoadedRun:
    """A run as :func:`load_run` read it: the view, and what it read on the way."""

    view: RunView
    request: RunRequest | None
    progress: RunProgress | None
    events: list[HistoryEvent]  # the run's history, read once (the console's timeline reads it too)


async def load_run(client: Client, run_id: str, viewer: Principal, index: RunIndex | None = None) -> LoadedRun:
    """:func:`show_run`, and what it read: one look at the run (describe), one read of its
    history (start request, decisions, result), and its progress — a running run's from its
    worker's cache, a closed run's kept (in memory, in ``index``) since querying it makes a
    worker replay the whole history."""
    handle = client.get_workflow_handle(run_id, result_type=RunResult)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run {run_id}") from exc
        raise
    if described.workflow_type != WORKFLOW_TYPE:  # answered as no run at all: its ID says nothing of it
        raise RunNotFound(f"no run {run_id}")
    this_run = client.get_workflow_handle(run_id, run_id=described.run_id)
    events = [event async for event in this_run.fetch_history_events()]
    request = await _request_in(client, events)
    owner = request.principal if request else None
    if viewer.tenant is not None and (owner is None or owner.tenant != viewer.tenant):
        raise RunNotFound(f"no run {run_id}")
    status, output, error = status_name(described.status), None, None
    last = events[-1] if events else None
    if described.status == WorkflowExecutionStatus.COMPLETED and last and last.event_type == _COMPLETED:
        payloads = last.workflow_execution_completed_event_attributes.result.payloads
        [result] = await client.data_converter.decode(payloads, [RunResult])
        status, output = result.status, result.output
    elif described.status == WorkflowExecutionStatus.FAILED and last and last.event_type == _FAILED:
        failure = last.workflow_execution_failed_event_attributes.failure
        error = str(await client.data_converter.decode_failure(failure))
    if described.close_time is None:
        progress = await _progress(handle)
    else:
        progress = await _closed_progress(client, handle, (run_id, described.run_id or ""), index)
    masker = _Masker(request, progress, set(viewer.clearance))
    pending = progress.pending_approval if progress and described.close_time is None else None  # closed: abandoned
    view = RunView(
        run_id=run_id,
        status=status,
        started_at=described.start_time,
        closed_at=described.close_time,
        graph=request.graph.name if request else None,
        graph_version=graph_version(request.graph) if request else None,
        principal=owner,
        node=progress.node if progress else None,
        steps=[masker.step(s) for s in progress.steps] if progress else None,
        pending_approval=PendingItem.for_viewer(run_id, pending, viewer, owner.tenant if owner else None)
        if pending
        else None,
        output=masker.fields(output) if output is not None else None,
        error=masker.text(error) if error else None,
    )
    return LoadedRun(view, request, progress, events)


_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
_FAILED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED


async def _closed_progress(
    client: Client, handle: Any, key: tuple[str, str], index: RunIndex | None
) -> RunProgress | None:
    """A closed run's progress, which never changes: kept in this process, else kept in the
    index (by the worker that ran it, or by whoever asked first), else asked of a worker once."""
    progress = _CLOSED.get(key)
    if progress is None and index is not None:
        sealed = await asyncio.to_thread(index.kept_progress, *key)
        progress = await open_progress(client.data_converter, sealed) if sealed else None
    if progress is None:
        progress = await _progress(handle)
        if progress is not None and index is not None:
            sealed = await seal_progress(client.data_converter.payload_codec, progress.model_dump_json())
            await asyncio.to_thread(index.keep_progress, *key, sealed)
    if progress is not None:
        _CLOSED[key] = progress
        while len(_CLOSED) > CLOSED_CACHE:
            _CLOSED.popitem(last=False)
    return progress


async def _request_of(client: Client, run_id: str) -> RunRequest | None:
    """The request the run's current segment started with, from the first event of its history."""
    async for event in client.get_workflow_handle(run_id).fetch_history_events(page_size=1):
        return await _request_in(client, [event])
    return None


async def _request_in(client: Client, events: list[HistoryEvent]) -> RunRequest | None:
    """The request the run's current segment started with (graph, principal): its first event."""
    if not events or events[0].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return None
    payloads = events[0].workflow_execution_started_event_attributes.input.payloads
    [request] = await client.data_converter.decode(payloads, [RunRequest])
    return request if isinstance(request, RunRequest) else None


async def _progress(handle: Any) -> RunProgress | None:
    """The progress query; ``None`` when no worker can answer it (none running for the queue)."""
    try:
        progress: RunProgress = await handle.query(GraphWorkflow.progress, rpc_timeout=timedelta(seconds=5))
        return progress
    except (WorkflowQueryFailedError, RPCError):
        return None


class _Masker:
    """Hides what a viewer's clearance does not cover: labelled fields whole, their values
    inside any other text."""

    def __init__(self, request: RunRequest | None, progress: RunProgress | None, clearance: set[str]) -> None:
        labels: dict[str, set[str]] = {}
        if request is not None:
            for name, field in request.graph.state.items():
                labels.setdefault(name, set()).update(field.labels)
        values: dict[str, set[str]] = {}
        for step in progress.steps if progress else []:
            for name, found in step.labels.items():
                labels.setdefault(name, set()).update(found)
        self.hidden = {name: sorted(ls - clearance) for name, ls in labels.items() if ls - clearance}
        for step in progress.steps if progress else []:
            for name, value in step.updates.items():
                for label in self.hidden.get(name, ()):
                    values.setdefault(label, set()).update(strings_in(value))
        if request is not None:
            for name, value in request.input.items():
                for label in self.hidden.get(name, ()):
                    values.setdefault(label, set()).update(strings_in(value))
        self.sensitive = {label: sorted(v for v in vs if v) for label, vs in values.items()}

    def step(self, record: StepRecord) -> StepView:
        return StepView(
            step_id=record.step_id,
            node=record.node,
            updates=self.fields(record.updates),
            approval=record.approval,
            routing=[self.text(r) for r in record.routing],
            model=record.model,
            usage=record.usage,
            cost=record.cost,
            started_at=record.started_at,
            ended_at=record.ended_at,
        )

    def text(self, value: str) -> str:
        return redact(value, self.sensitive)

    def fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: f"[{','.join(self.hidden[name])}]" if name in self.hidden else self._walk(value)
            for name, value in values.items()
        }

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value


class IndexedRun(RunSummary):
    """A run as the run index lists it."""

    workflow_type: str
    graph: str | None
    graph_version: str | None
    principal: str | None
    department: str | None
    duration_s: float | None
    steps: int
    input_tokens: int
    output_tokens: int
    cost: float
    pending_approval: bool

    @classmethod
    def of(cls, row: RunRow) -> IndexedRun:
        duration = row.duration
        return cls(
            **row.model_dump(include=set(cls.model_fields) - {"duration_s", "started_at", "closed_at"}),
            started_at=as_utc(row.started_at),
            closed_at=as_utc(row.closed_at),
            duration_s=duration.total_seconds() if duration else None,
        )


def runs_router(temporal: TemporalConnection, feed: IndexFeed) -> APIRouter:
    """``GET /runs`` (from the run index) and ``GET /runs/{id}``: the URL a webhook's 202 answers with."""
    router = APIRouter(prefix="/runs", tags=["runs"])

    @router.get("")
    async def runs(
        user: CurrentUser,
        request: Request,
        response: Response,
        status: Annotated[Status | None, Query(description="only runs with this status")] = None,
        graph: Annotated[str | None, Query(description="only runs of this graph")] = None,
        principal: Annotated[str | None, Query(description="only runs started for this principal ID")] = None,
        department: Annotated[str | None, Query(description="only runs of this department")] = None,
        since: Annotated[datetime | None, Query(description="started at or after")] = None,
        until: Annotated[datetime | None, Query(description="started before")] = None,
        after: Annotated[str | None, Query(description="the cursor from the previous page's Link header")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[IndexedRun]:
        """Runs newest first, filtered, a page at a time (the next page's URL in the ``Link``
        header). A viewer with a tenant sees only that tenant's runs."""
        try:
            where = run_filter(user, status=status, graph=graph, principal=principal, department=department)
            where = where.model_copy(update={"started_after": since, "started_before": until})
            found = await feed.page(where, after, limit)
        except ValueError as exc:  # BadCursor too
            raise HTTPException(422, str(exc)) from exc
        if found.after:
            response.headers["Link"] = f'<{request.url.include_query_params(after=found.after)}>; rel="next"'
        return [IndexedRun.of(row) for row in found.rows]

    @router.get("/{run_id}")
    async def run(run_id: str, user: CurrentUser) -> RunView:
        """One run: status, graph, principal, steps with their decisions, result — masked for you."""
        client = await temporal.client()
        try:
            return await show_run(client, run_id, user, feed.index)
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    return router
