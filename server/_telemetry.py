"""Traces on the server side: a span per webhook delivery, current while the ingress starts
the run, so Temporal's tracing interceptor on the server's client carries it into the
workflow, its activities and model calls — one trace per event. Off unless tracing is
configured (see :mod:`chamberlain.workflows._telemetry`)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from chamberlain.workflows._telemetry import tracer


class _TraceWebhooks(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        found = tracer()
        if found is None or not request.url.path.startswith("/webhooks/"):
            return await call_next(request)
        source = request.url.path.removeprefix("/webhooks/").split("/", 1)[0][:64]
        attributes = {
            "http.request.method": request.method,
            "http.route": "/webhooks/{source}",
            "chamberlain.source": source,
        }
        kind = trace.SpanKind.SERVER
        with found.start_as_current_span(f"webhook {source}", kind=kind, attributes=attributes) as span:
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.StatusCode.ERROR)
            return response


def trace_webhooks(app: FastAPI) -> None:
    app.add_middleware(_TraceWebhooks)
