"""Prometheus ``GET /metrics``: runs by status and approvals waiting (read from the run index
at scrape time), permission decisions (the audit log), webhook rejections (counted as the
server answers), and — when the worker runs in this process — step latency and tokens
(:mod:`chamberlain.workflows._telemetry`).

Only counts and timings, never a payload, a principal or a run ID: label values are graph
states, sources, activity types, outcomes and model names. Still, for operators and admins only
(a bearer token, which Prometheus sends with ``authorization: {credentials: ...}``): the counts
are reconnaissance, and a scrape lists runs from Temporal and queries the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from chamberlain.server._auth import CurrentUser, require_operator
from chamberlain.workflows._audit import AuditLog, AuditLogNotFound, AuditRecord
from chamberlain.workflows._run_index import STATUSES, IndexFeed, RunIndex, RunRow

OUTCOMES = ("allow", "deny", "needs_approval", "mask")
WEBHOOK_REJECTIONS = Counter(
    "chamberlain_webhook_rejections", "Webhook deliveries refused, by source and HTTP status", ["source", "status"]
)


class IndexCollector(Collector):
    """Runs per status and runs waiting for an approval, counted in the run index per scrape."""

    def __init__(self, index: RunIndex) -> None:
        self.index = index

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily("chamberlain_runs", "Runs in the run index, by status", labels=["status"])
        waiting = GaugeMetricFamily("chamberlain_approvals_waiting", "Running runs parked on an approval")
        with Session(self.index.engine) as session:
            counted = dict(session.exec(select(RunRow.status, func.count()).group_by(RunRow.status)).all())
            parked = session.exec(select(func.count()).where(col(RunRow.pending_approval))).one()
        for status in sorted(set(STATUSES) | set(counted)):
            runs.add_metric([status], counted.get(status, 0))
        waiting.add_metric([], parked)
        yield runs
        yield waiting


class AuditCollector(Collector):
    """Permission decisions by outcome, counted in the audit log per scrape: every worker
    process's gate writes there, so the count is the deployment's, not this process's."""

    def __init__(self, audit_url: str) -> None:
        self.audit_url = audit_url

    def collect(self) -> Iterator[CounterMetricFamily]:
        decisions = CounterMetricFamily("chamberlain_decisions", "Permission decisions, by outcome", labels=["outcome"])
        try:
            log = AuditLog.open(self.audit_url)
        except AuditLogNotFound:
            counted = {}
        else:
            query = select(AuditRecord.decision, func.count()).where(AuditRecord.kind == "decision")
            with Session(log.engine) as session:
                counted = dict(session.exec(query.group_by(AuditRecord.decision)).all())
        for outcome in sorted(set(OUTCOMES) | set(counted)):
            decisions.add_metric([outcome], counted.get(outcome, 0))
        yield decisions


class _CountRejections(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        path = request.url.path
        if path.startswith("/webhooks/") and response.status_code >= 400:
            source = path.removeprefix("/webhooks/").split("/", 1)[0][:64]
            WEBHOOK_REJECTIONS.labels(source, str(response.status_code)).inc()
        return response


def mount_metrics(app: FastAPI, feed: IndexFeed, audit_url: str) -> None:
    """``GET /metrics`` on ``app``: the process's default registry, and this app's run index in
    a registry of its own (several apps in one process each count their own index)."""
    own = CollectorRegistry(auto_describe=False)
    own.register(IndexCollector(feed.index))
    own.register(AuditCollector(audit_url))
    app.add_middleware(_CountRejections)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(user: CurrentUser, request: Request) -> Response:
        require_operator(request, user, "metrics")
        await feed.fresh()  # runs by status as Temporal has them now, not as of the last console visit
        body = generate_latest(REGISTRY) + await asyncio.to_thread(generate_latest, own)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
