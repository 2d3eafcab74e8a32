"""Signed webhook ingress: exactly one run per event, and accepted means durable.

Checks run cheapest and safest first — size, content type, signature over the raw bytes
(nothing unauthenticated is parsed), JSON, the payload model, the event ID — and a request
that fails any of them starts nothing. The run's workflow ID is derived from the source
and the event ID, so duplicate or concurrent deliveries join one run. 202 is answered only
after Temporal accepted the start; if Temporal is away the answer is 503 with
``Retry-After``, and the sender's retry will succeed.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from chamberlain.agents.exceptions import ExpressionError
from chamberlain.server.signatures import SignatureError, verify
from chamberlain.server.sources import SourceCatalog, WebhookSource
from chamberlain.server.temporal import TemporalConnection, TemporalUnavailable
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.types import RunRequest

log = logging.getLogger("chamberlain.webhooks")
RETRY_AFTER_SECONDS = 5


def run_id_for(source: str, event_id: str) -> str:
    """The workflow ID of an event: stable, so every delivery of it finds the same run."""
    return f"{source}-{re.sub(r'[^A-Za-z0-9_.:-]', '_', event_id)[:200]}"


class Ingress:
    def __init__(self, sources: SourceCatalog, temporal: TemporalConnection, console_url: str) -> None:
        self.sources, self.temporal, self.console_url = sources, temporal, console_url.rstrip("/")
        self.rejected: Counter[tuple[str, int]] = Counter()
        self.accepted: Counter[str] = Counter()

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/webhooks/{source}", self.receive, methods=["POST"], status_code=202)
        router.add_api_route("/api/webhooks/stats", self.stats, methods=["GET"])
        return router

    async def stats(self) -> dict[str, object]:
        return {
            "accepted": dict(self.accepted),
            "rejected": [{"source": s, "status": code, "count": n} for (s, code), n in sorted(self.rejected.items())],
        }

    def _reject(
        self, source: str, status: int, reason: object, size: int, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """Count and log the rejection — never the secret, never the body."""
        self.rejected[(source, status)] += 1
        log.warning(
            "webhook %s rejected with %d: %s (%d bytes)",
            source,
            status,
            reason if status != 422 else "invalid payload",
            size,
        )
        return JSONResponse({"detail": reason}, status_code=status, headers=headers)

    async def receive(self, source: str, request: Request) -> JSONResponse:
        spec = self.sources.get(source)
        if spec is None:
            return self._reject(source, 404, f"no webhook source {source!r}", 0)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > spec.max_body:
            return self._reject(source, 413, f"body over {spec.max_body} bytes", int(declared))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > spec.max_body:
                return self._reject(source, 413, f"body over {spec.max_body} bytes", len(body))
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return self._reject(source, 415, "content type must be application/json", len(body))
        sig = spec.signature
        try:
            verify(spec.secret_values(), bytes(body), request.headers.get(sig.header), scheme=sig.scheme,
                   encoding=sig.encoding, prefix=sig.prefix, tolerance=sig.tolerance.total_seconds())  # fmt: skip
        except SignatureError as exc:
            return self._reject(source, 401, str(exc), len(body))
        return await self._accept(spec, bytes(body), request)

    async def _accept(self, spec: WebhookSource, body: bytes, request: Request) -> JSONResponse:
        try:
            raw = json.loads(body)
            payload = spec.payload_model.model_validate(raw)
        except json.JSONDecodeError as exc:
            return self._reject(
                spec.name, 422, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", len(body)
            )
        except ValidationError as exc:  # field names and messages only: values may be personal data
            problems = [{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()]
            return self._reject(spec.name, 422, problems, len(body))
        event_id = spec.event_id.find(request.headers, raw if isinstance(raw, dict) else {})
        if not event_id:
            where = spec.event_id.header or spec.event_id.json_path
            return self._reject(spec.name, 422, f"no event ID (expected in {where})", len(body))
        try:
            values, principal = spec.run_input(payload)
        except ExpressionError as exc:
            return self._reject(spec.name, 422, f"payload does not map to the run's input: {exc}", len(body))
        run_id = run_id_for(spec.name, event_id)
        unavailable = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        try:
            client = await self.temporal.client()
            await client.start_workflow(
                GraphWorkflow.run,
                RunRequest(graph=spec.spec, input=values, principal=principal),
                id=run_id,
                task_queue=spec.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=timedelta(seconds=5),
            )
        except WorkflowAlreadyStartedError:
            pass  # this event's run already finished: the delivery is a duplicate, same answer
        except (TemporalUnavailable, RPCError) as exc:
            log.error(
                "webhook %s: event %s not accepted, Temporal unavailable: %s", spec.name, event_id, type(exc).__name__
            )
            return self._reject(spec.name, 503, "Temporal is unavailable; retry later", len(body), unavailable)
        self.accepted[spec.name] += 1
        return JSONResponse(
            {"run_id": run_id, "url": f"{self.console_url}/runs/{run_id}", "source": spec.name, "event_id": event_id},
            status_code=202,
        )
