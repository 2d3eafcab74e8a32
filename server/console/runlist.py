"""The runs page's rows: graph runs from Temporal's visibility store, newest first, filtered
by status in the visibility query and by graph and principal on each run's start request,
paginated by start time (``before``: the oldest start shown so far).

Graph and principal are not search attributes yet, so those filters read one history
event per run looked at, up to :data:`SCAN_LIMIT` runs per page — fine for hundreds of runs,
not for the issue's 10,000 (that needs the SQL run index, not built here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import Client

from chamberlain.server.runs import _request_of, status_name, visibility_query
from chamberlain.workflows import Principal

SCAN_LIMIT = 500


@dataclass
class Row:
    run_id: str
    status: str
    graph: str | None
    principal: str | None
    department: str | None
    started_at: datetime | None
    closed_at: datetime | None

    @property
    def duration(self) -> timedelta | None:
        return self.closed_at - self.started_at if self.closed_at and self.started_at else None


@dataclass
class RunPage:
    rows: list[Row]
    before: datetime | None  # where the next page starts; None: this is the last


async def run_page(
    client: Client,
    viewer: Principal,
    *,
    status: str | None = None,
    graph: str | None = None,
    principal: str | None = None,
    before: datetime | None = None,
    limit: int = 25,
) -> RunPage:
    """One page of the runs ``viewer`` may see (their tenant's only, if they have one)."""
    query = visibility_query(status)  # ValueError for an unknown status
    if before is not None:
        query += f' AND StartTime < "{before.isoformat()}"'
    rows: list[Row] = []
    scanned, last_start = 0, None
    async for execution in client.list_workflows(query, page_size=limit):
        scanned += 1
        last_start = execution.start_time
        request = await _request_of(client, execution.id)
        owner = request.principal if request else None
        hidden = viewer.tenant is not None and (owner is None or owner.tenant != viewer.tenant)
        other_graph = bool(graph) and (request is None or request.graph.name != graph)
        other_principal = bool(principal) and (owner is None or owner.id != principal)
        if not (hidden or other_graph or other_principal):
            rows.append(
                Row(
                    run_id=execution.id,
                    status=status_name(execution.status),
                    graph=request.graph.name if request else None,
                    principal=owner.id if owner else None,
                    department=owner.department if owner else None,
                    started_at=execution.start_time,
                    closed_at=execution.close_time,
                )
            )
        if len(rows) == limit or scanned == SCAN_LIMIT:
            return RunPage(rows, last_start)
    return RunPage(rows, None)
