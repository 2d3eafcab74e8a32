"""Signed webhook ingress: exactly one run per event, and accepted means durable.

Checks run cheapest and safest first — size, content type, signature over the raw bytes
(nothing unauthenticated is parsed), JSON within limits, the payload model, the event ID,
the principal — and a request that fails any of them starts nothing and gets a 4xx: bad
input never causes a 5xx, only an unreachable Temporal does (503).

The run's workflow ID is an injective encoding of the source and the event ID —
``webhook:{source}:{percent-encoded event ID}`` (a source name has no ``:``; ``%`` itself is
encoded) — so two events never share a run, and duplicate or concurrent deliveries of one
event join the same run. A delivery whose event ID has a run already but whose content differs
(another input or principal) is refused with 409, not joined: the run would never see it, and the
sender must hear that it was not taken. Nothing is truncated or hashed: an ID that would not fit in
Temporal's workflow-ID limit is refused with 400. 202 is answered only after Temporal
accepted the start; if Temporal is away the answer is 503 with ``Retry-After``, and the
sender's retry will succeed.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.server._auth import CurrentUser, require_operator
from chamberlain.server._jsonbody import BodyError, parse_json
from chamberlain.server._signatures import SignatureError
from chamberlain.server._sources import PayloadError, SourceCatalog, WebhookSource
from chamberlain.server._temporal import TemporalConnection, TemporalUnavailable
from chamberlain.workflows._audit import digest
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._types import RunRequest

log = logging.getLogger("chamberlain.webhooks")
RETRY_AFTER_SECONDS = 5
MAX_RUN_ID_LENGTH = 1000
"""Temporal's default ``limit.maxIDLength`` for workflow IDs (bytes; ours are ASCII)."""
EVENT_DIGEST = "chamberlain.event_digest"
"""The memo key of a webhook run's content digest: a later delivery of its event is compared with it."""


def run_id_for(source: str, event_id: str) -> str:
    """The workflow ID of an event: stable, so every delivery of it finds the same run, and
    injective, so no two events (or sources) ever share one."""
    return f"webhook:{source}:{quote(event_id, safe='')}"


class Rejected(Exception):
    """A request that starts nothing: its status and a reason safe to show and log."""

    def __init__(self, status: int, reason: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


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

    async def stats(self, user: CurrentUser, request: Request) -> dict[str, object]:
        """Counts of accepted and rejected deliveries, for operators and admins: which sources
        are probed and how is reconnaissance for an attacker."""
        require_operator(request, user, "webhook statistics")
        return {
            "accepted": dict(self.accepted),
            "rejected": [{"source": s, "status": code, "count": n} for (s, code), n in sorted(self.rejected.items())],
        }

    async def receive(self, source: str, request: Request) -> JSONResponse:
        size = 0
        try:
            spec = self.sources.get(source)
            if spec is None:
                raise Rejected(404, f"no webhook source {source!r}")
            body = await _read(request, spec.max_body)
            size = len(body)
            return await self._accept(spec, body, request)
        except Rejected as rejected:
            return self._reject(source, rejected, size)

    def _reject(self, source: str, rejected: Rejected, size: int) -> JSONResponse:
        """Count and log the rejection — never the secret, never the body."""
        self.rejected[(source, rejected.status)] += 1
        reason = rejected.reason if rejected.status != 422 else "invalid payload"
        log.warning("webhook %s rejected with %d: %s (%d bytes)", source, rejected.status, reason, size)
        return JSONResponse({"detail": rejected.reason}, status_code=rejected.status, headers=rejected.headers)

    async def _accept(self, spec: WebhookSource, body: bytes, request: Request) -> JSONResponse:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            raise Rejected(415, "content type must be application/json")
        where = spec.event.where
        signed_id = _utf8_header(request, spec.event.header) if spec.event.header else None
        try:
            secrets = spec.secret_values()
        except ValueError as exc:  # its secret went away while the server runs: nothing is checked, so nothing starts
            log.error("%s", exc)
            raise Rejected(503, "this source's secret is not configured: try again later") from exc
        try:
            spec.signature.verify(secrets, body, request.headers, signed_id)
        except SignatureError as exc:
            raise Rejected(401, str(exc)) from exc
        try:
            raw = parse_json(body, max_depth=spec.max_depth, max_number_length=spec.max_number_length)
        except BodyError as exc:
            raise Rejected(400, str(exc)) from exc
        found = signed_id if spec.event.header else spec.event.find(raw)
        event_id = str(found) if found is not None else ""
        if not event_id:
            raise Rejected(422, f"no event ID (expected in {where}, a string or an integer)")
        run_id = run_id_for(spec.name, event_id)
        if len(run_id) > MAX_RUN_ID_LENGTH:
            raise Rejected(
                400,
                f"event ID in {where} is too long: {len(run_id)} characters as a run ID, at most {MAX_RUN_ID_LENGTH}"
                " (non-ASCII characters count 9 each) — send a shorter ID",
            )
        try:
            payload = spec.payload_model.model_validate(raw)
        except ValidationError as exc:  # field names and messages only: values may be personal data
            problems = [{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()]
            raise Rejected(422, problems) from exc
        try:
            values, principal = spec.run_input(payload)
        except PayloadError as exc:
            raise Rejected(422, str(exc)) from exc
        await self._start(spec, RunRequest(graph=spec.spec, input=values, principal=principal), run_id)
        self.accepted[spec.name] += 1
        return JSONResponse(
            {
                "run_id": run_id,
                "url": f"{self.console_url}/runs/{quote(run_id, safe=':')}",
                "source": spec.name,
                "event_id": event_id,
            },
            status_code=202,
        )

    async def _start(self, spec: WebhookSource, request: RunRequest, run_id: str) -> None:
        """Start the event's run, or join it if a delivery of the same event already did."""
        principal = request.principal.model_dump(mode="json") if request.principal else None
        content = digest({"input": request.input, "principal": principal})  # what the run acts on, and for whom
        try:
            client = await self.temporal.client()
            try:
                await client.start_workflow(
                    GraphWorkflow.run,
                    request,
                    id=run_id,
                    task_queue=spec.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    memo={EVENT_DIGEST: content},
                    rpc_timeout=timedelta(seconds=5),
                )
            except WorkflowAlreadyStartedError:  # a delivery of this event started its run already
                description = await client.get_workflow_handle(run_id).describe(rpc_timeout=timedelta(seconds=5))
                earlier = await description.memo_value(EVENT_DIGEST, None)
                if earlier is not None and earlier != content:  # (runs started before the memo are joined)
                    raise Rejected(
                        409,
                        f"run {run_id} was started by an earlier delivery of this event, with other content: "
                        "send other content under a new event ID",
                    ) from None
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:  # the request, not the service: a retry cannot help
                raise Rejected(400, f"Temporal refused the run: {exc.message}") from exc
            raise _unavailable(spec.name, run_id, exc) from exc
        except TemporalUnavailable as exc:
            raise _unavailable(spec.name, run_id, exc) from exc


def _unavailable(source: str, run_id: str, exc: Exception) -> Rejected:
    log.error("webhook %s: run %s not started, Temporal unavailable: %s", source, run_id, type(exc).__name__)
    return Rejected(503, "Temporal is unavailable; retry later", {"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 12 or int(declared) > limit):
        raise Rejected(413, f"body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise Rejected(413, f"body over {limit} bytes")
    except ClientDisconnect as exc:
        raise Rejected(400, "the sender disconnected before the body ended") from exc
    return bytes(body)


def _utf8_header(request: Request, name: str) -> str | None:
    """A header's value as the sender wrote it (HTTP carries bytes; Starlette decodes them as Latin-1)."""
    value = request.headers.get(name)
    try:
        return None if value is None else value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, f"header {name} is not UTF-8 — send the event ID as UTF-8") from exc
