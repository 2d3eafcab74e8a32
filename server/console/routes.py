"""The console's pages under ``/console``: sign-in, runs, a run's live timeline, the approvals
inbox and the operations on a run. Every page needs a signed-in user; every form post checks
the session's CSRF token first, then the console role's permission (server-side, whatever
the page showed), and a run is looked up as the viewer may see it (another tenant's: 404).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.server._approvals import PendingItem, check_tenant, may_decide, pending_for
from chamberlain.server._auth import User, UserDirectory
from chamberlain.server._runs import RunNotFound, show_run
from chamberlain.server._settings import ServerSettings
from chamberlain.server._temporal import TemporalConnection
from chamberlain.server.console import charts
from chamberlain.server.console.access import Permission, may, sign_in
from chamberlain.server.console.dashboard import build as build_dashboard
from chamberlain.server.console.errors import ConsoleError, SignInRequired
from chamberlain.server.console.operations import OperationRefused, cancel_run, rerun, retry_from_failure
from chamberlain.server.console.sessions import Sessions, Visitor
from chamberlain.server.console.timeline import AuditReader, timeline
from chamberlain.workflows import ApprovalAnswer, RunResult, decide
from chamberlain.workflows._run_index import STATUSES, IndexFeed, run_filter
from chamberlain.workflows._usage import UsageLedger

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
LIVE_INTERVAL = 0.5  # seconds between looks at a running run
BULK_LIMIT = 100  # runs one bulk operation may touch: more means a filter too wide to mean


def console_router(
    temporal: TemporalConnection,
    settings: ServerSettings,
    sessions: Sessions,
    directory: UserDirectory,
    feed: IndexFeed,
) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    audit = AuditReader(settings.audit_url)
    usage = UsageLedger(settings.usage_url, settings.budgets)

    def signed_in(request: Request) -> tuple[User, Visitor]:
        visitor = sessions.visitor(request)
        if visitor is None or visitor.user is None:
            raise SignInRequired(request.url.path)
        return visitor.user, visitor

    async def posted(request: Request, permission: Permission) -> tuple[User, FormData]:
        form = await request.form()
        visitor = sessions.check_csrf(request, form.get("csrf"))  # before anything else
        if visitor.user is None:
            raise SignInRequired(request.url.path)
        if not may(visitor.user, permission):
            raise ConsoleError(403, f"{visitor.user.id} ({visitor.user.console_role}) may not {permission}")
        return visitor.user, form

    def page(request: Request, name: str, visitor: Visitor, status: int = 200, **context: object) -> HTMLResponse:
        context |= {
            "user": visitor.user,
            "csrf": visitor.csrf,
            "may": may,
            "may_decide": may_decide,
            "temporal_ui": settings.temporal_ui,
        }
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    @router.get("")
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/runs", 303)

    @router.get("/signin")
    async def signin_form(request: Request, next: str = "/console/runs") -> HTMLResponse:
        cookie, visitor = None, sessions.visitor(request)
        if visitor is None:
            cookie, visitor = sessions.open(None)
        response = page(request, "signin.html", Visitor(None, visitor.csrf), next=_local(next), error=None)
        if cookie:
            sessions.attach(request, response, cookie)
        return response

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        form = await request.form()
        sessions.check_csrf(request, form.get("csrf"))
        user = sign_in(directory, str(form.get("user", "")), str(form.get("password", "")))
        if user is None:
            visitor = sessions.visitor(request)
            assert visitor is not None  # check_csrf found it
            context = {"next": _local(str(form.get("next", ""))), "error": "unknown user or wrong password"}
            return page(request, "signin.html", Visitor(None, visitor.csrf), 401, **context)
        response = RedirectResponse(_local(str(form.get("next", ""))), 303)
        sessions.start(request, response, user)  # a fresh nonce: no fixation
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        form = await request.form()
        sessions.check_csrf(request, form.get("csrf"))
        response = RedirectResponse("/console/signin", 303)
        sessions.end(request, response)
        return response

    @router.get("/runs")
    async def runs(
        request: Request,
        status: Annotated[str | None, Query()] = None,
        graph: Annotated[str | None, Query()] = None,
        principal: Annotated[str | None, Query()] = None,
        department: Annotated[str | None, Query()] = None,
        since: Annotated[str | None, Query()] = None,
        until: Annotated[str | None, Query()] = None,
        after: Annotated[str | None, Query()] = None,
    ) -> HTMLResponse:
        user, visitor = signed_in(request)
        asked = dict(status=status, graph=graph, principal=principal, department=department, since=since, until=until)
        filters = {k: v.strip() or None if v else None for k, v in asked.items()}
        try:
            where = run_filter(
                user.principal(),
                status=filters["status"],
                graph=filters["graph"],
                principal=filters["principal"],
                department=filters["department"],
                since=_when("since", filters["since"]),
                until=_when("until", filters["until"]),
            )
            found = await feed.page(where, after)
        except ValueError as exc:  # a bad filter value or cursor, named
            raise ConsoleError(422, str(exc)) from exc
        next_url = None
        if found.after:
            next_url = "/console/runs?" + urlencode({k: v for k, v in filters.items() if v} | {"after": found.after})
        return page(
            request, "runs.html", visitor, rows=found.rows, filters=filters, statuses=STATUSES, next_url=next_url
        )

    @router.get("/dashboard")
    async def dashboard(request: Request, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24) -> HTMLResponse:
        """Decisions, runs, durations, escalations, approval waits, tokens and cost, as charts."""
        user, visitor = signed_in(request)
        index = await feed.fresh()
        figures = await asyncio.to_thread(build_dashboard, index, audit, usage, user.principal(), hours)
        return page(request, "dashboard.html", visitor, d=figures, hours=hours, charts=charts)

    @router.get("/runs/{run_id}")
    async def run(request: Request, run_id: str) -> HTMLResponse:
        user, visitor = signed_in(request)
        return page(request, "run.html", visitor, t=await _timeline(run_id, user), user_principal=user.principal())

    @router.get("/runs/{run_id}/events")
    async def events(request: Request, run_id: str) -> StreamingResponse:
        """Server-sent events: the timeline fragment whenever it changes, then ``done``."""
        user, visitor = signed_in(request)
        await _timeline(run_id, user)  # 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            last = None
            while not await request.is_disconnected():
                current = await _timeline(run_id, user)
                html = TEMPLATES.get_template("_timeline.html").render(
                    t=current,
                    user=user,
                    csrf=visitor.csrf,
                    may=may,
                    may_decide=may_decide,
                    user_principal=user.principal(),
                    temporal_ui=settings.temporal_ui,
                )
                if html != last:
                    yield "event: timeline\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                    last = html
                if current.run.closed_at is not None:
                    yield "event: done\ndata: done\n\n"
                    return
                await asyncio.sleep(LIVE_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @router.post("/runs/{run_id}/cancel")
    async def cancel(request: Request, run_id: str) -> Response:
        user, _ = await posted(request, "operate")
        client = await temporal.client()
        await _visible(run_id, user)
        try:
            await cancel_run(client, run_id, user.principal(), settings.audit_url)
        except OperationRefused as exc:
            raise ConsoleError(409, str(exc)) from exc
        return RedirectResponse(f"/console/runs/{quote(run_id)}", 303)

    @router.post("/runs/{run_id}/retry")
    async def retry(request: Request, run_id: str) -> Response:
        user, _ = await posted(request, "operate")
        client = await temporal.client()
        await _visible(run_id, user)
        try:
            await retry_from_failure(client, run_id, user.principal(), settings.audit_url)
        except OperationRefused as exc:
            raise ConsoleError(409, str(exc)) from exc
        return RedirectResponse(f"/console/runs/{quote(run_id)}", 303)

    @router.post("/runs/{run_id}/rerun")
    async def run_again(request: Request, run_id: str) -> Response:
        """Run a closed run again as a new run, with the input fields ``changes`` (JSON) edited."""
        user, form = await posted(request, "operate")
        try:
            changes = json.loads(str(form.get("changes", "")).strip() or "{}")
        except json.JSONDecodeError as exc:
            example = '{"order_id": "A2"}'
            raise ConsoleError(422, f"changes: not JSON ({exc.msg} at line {exc.lineno}) — e.g. {example}") from exc
        if not isinstance(changes, dict):
            raise ConsoleError(422, 'changes: a JSON object of state fields, e.g. {"order_id": "A2"}')
        client = await temporal.client()
        await _visible(run_id, user)
        try:
            new_id = await rerun(client, run_id, user.principal(), settings.audit_url, changes)
        except OperationRefused as exc:
            raise ConsoleError(409 if "running" in str(exc) else 422, str(exc)) from exc
        await asyncio.to_thread(feed.index.link, new_id, run_id)
        return RedirectResponse(f"/console/runs/{quote(new_id)}", 303)

    @router.post("/runs/bulk")
    async def bulk(request: Request) -> HTMLResponse:
        """Cancel the running, or retry the failed, runs a filter matches (each audited)."""
        user, form = await posted(request, "operate")
        action = str(form.get("action", ""))
        if action not in ("cancel", "retry"):
            raise ConsoleError(422, "action: choose cancel or retry")
        fields = ("graph", "principal", "department", "since", "until")
        asked = {k: str(form.get(k, "")).strip() or None for k in fields}
        try:
            where = run_filter(
                user.principal(),
                status="running" if action == "cancel" else "failed",
                graph=asked["graph"],
                principal=asked["principal"],
                department=asked["department"],
                since=_when("since", asked["since"]),
                until=_when("until", asked["until"]),
            )
        except ValueError as exc:
            raise ConsoleError(422, str(exc)) from exc
        found = await feed.page(where, None, BULK_LIMIT)
        if found.after:
            raise ConsoleError(422, f"more than {BULK_LIMIT} runs match: narrow the filter (graph, department, time)")
        client = await temporal.client()
        results = []
        for row in found.rows:
            try:
                if action == "cancel":
                    await cancel_run(client, row.run_id, user.principal(), settings.audit_url)
                else:
                    await retry_from_failure(client, row.run_id, user.principal(), settings.audit_url)
                results.append((row.run_id, "canceled" if action == "cancel" else "retried from its failed step"))
            except (OperationRefused, RunNotFound) as exc:
                results.append((row.run_id, f"refused: {exc}"))
        visitor = sessions.visitor(request)
        assert visitor is not None
        return page(request, "bulk.html", visitor, action=action, results=results)

    @router.get("/approvals")
    async def approvals(request: Request) -> HTMLResponse:
        user, visitor = signed_in(request)
        return page(request, "approvals.html", visitor, items=await _inbox(user), results=[])

    @router.post("/approvals")
    async def decide_approvals(request: Request) -> Response:
        """Decide one or many pending approvals (``item`` = ``run_id|step_id``), with a reason."""
        user, form = await posted(request, "decide")
        outcome, reason = str(form.get("outcome", "")), str(form.get("reason", "")).strip()
        if outcome not in ("approve", "reject", "request_changes"):
            raise ConsoleError(422, "outcome: choose approve, reject or request_changes")
        if outcome != "approve" and not reason:
            raise ConsoleError(422, f"reason: say why you {outcome.replace('_', ' ')} — the requester reads it")
        items = [str(item) for item in form.getlist("item")]
        if not items:
            raise ConsoleError(422, "item: tick at least one approval")
        client = await temporal.client()
        results = []
        for item in items:
            run_id, _, step_id = item.partition("|")
            handle = client.get_workflow_handle(run_id, result_type=RunResult)
            decision = ApprovalAnswer(step_id=step_id, outcome=outcome, approver=user.principal(), reason=reason)
            try:
                await check_tenant(client, run_id, user.principal())
                await decide(handle, decision)
                results.append((run_id, step_id, "decided: " + outcome.replace("_", " ")))
            except PermissionError:
                results.append((run_id, step_id, "refused: no such run waiting for a decision"))
            except WorkflowUpdateFailedError as exc:
                results.append((run_id, step_id, f"refused: {exc.cause}"))
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                results.append((run_id, step_id, "refused: no such run waiting for a decision"))
        back = str(form.get("back", ""))
        if back.startswith("/console/runs/") and all(r[2].startswith("decided") for r in results):
            return RedirectResponse(back, 303)
        visitor = sessions.visitor(request)
        assert visitor is not None
        status = 200 if any(r[2].startswith("decided") for r in results) else 403
        return page(request, "approvals.html", visitor, status, items=await _inbox(user), results=results)

    async def _timeline(run_id: str, user: User) -> Any:
        try:
            return await timeline(await temporal.client(), run_id, user.principal(), audit, feed.index)
        except RunNotFound as exc:
            raise ConsoleError(404, str(exc)) from exc

    async def _visible(run_id: str, user: User) -> None:
        try:
            await show_run(await temporal.client(), run_id, user.principal(), feed.index)
        except RunNotFound as exc:
            raise ConsoleError(404, str(exc)) from exc

    async def _inbox(user: User) -> list[PendingItem]:
        found, _ = await pending_for(await temporal.client(), user.principal())  # runs no worker answers: left out
        return found

    return router


def _when(field: str, value: str | None) -> datetime | None:
    """A filter's time (``2026-11-30`` or ``2026-11-30T08:00``, UTC unless it says otherwise)."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not a date or time — write it like 2026-11-30T08:00") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _local(url: str) -> str:
    """Only a console path is a place to go back to after signing in (no open redirect)."""
    return url if url.startswith("/console/") and not url.startswith("//") else "/console/runs"
