"""The customer's confirmation, as the B2B portal posts it: a signed webhook that signals the
change's run.

Chamberlain's webhook ingress (``server/_ingress.py``) starts graph runs; it does not signal a
run already under way. So this scenario carries its own small endpoint, built from the same
parts: the body is verified first (Stripe-style ``t=…,v1=…`` over ``"{t}.{body}"`` with a
five-minute tolerance against replays, any of several secrets), parsed within limits, and only
a run of this workflow may be signalled: the body names the change request, and its run ID is
derived here — never taken from the body, which could name a graph's child run or another workflow.

The signal is durable once accepted (202); a repeated delivery signals again and the workflow
keeps the first answer. A run that ended, or never existed, answers 404.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.examples.b2b_order_change.workflow import Confirmation, OrderChangeWorkflow, change_workflow_id
from chamberlain.server import SignatureError, sign, verify

SECRET_ENV = "B2B_PORTAL_SECRET"
SIGNATURE_HEADER = "Portal-Signature"
MAX_BODY = 16_384


class ConfirmationPosted(BaseModel):
    event_id: str = Field(min_length=1, max_length=100)
    request_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$", description="the change request's ID")
    customer_id: str = Field(min_length=1, max_length=64)
    accepted: bool


def portal_secrets() -> list[bytes]:
    """``$B2B_PORTAL_SECRET`` (comma-separated while rotating); refuses to serve without one."""
    raw = os.environ.get(SECRET_ENV, "")
    secrets = [s.strip().encode() for s in raw.split(",") if s.strip()]
    if not secrets:
        raise ValueError(f"{SECRET_ENV} is not set: the portal signs its confirmations with it")
    return secrets


def signature_for(secret: bytes, body: bytes) -> str:
    """The header value the portal sends with ``body`` (for the starter and tests)."""
    return sign(secret, body, scheme="stripe")


def confirmations_app(client: Client, secrets: Sequence[bytes]) -> FastAPI:
    if not secrets:
        raise ValueError("confirmations need at least one portal secret")
    app = FastAPI(title="B2B order change confirmations")

    @app.post("/confirmations", status_code=202)
    async def confirm(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _answer(413, f"body over {MAX_BODY} bytes")
        try:
            verify(list(secrets), body, request.headers.get(SIGNATURE_HEADER), scheme="stripe")
        except SignatureError as exc:
            return _answer(401, str(exc))
        try:
            posted = ConfirmationPosted.model_validate_json(body)
        except ValidationError as exc:
            return _answer(422, [{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()])
        change = change_workflow_id(posted.request_id)  # never a workflow ID from the body: no child run, no other type
        answer = Confirmation(customer_id=posted.customer_id, accepted=posted.accepted, event_id=posted.event_id)
        try:
            await client.get_workflow_handle(change).signal(OrderChangeWorkflow.confirm, answer)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return _answer(404, f"no open order change {posted.request_id}")
            return _answer(503, "Temporal is unavailable; retry later", retry_after="5")
        return _answer(202, "accepted", request_id=posted.request_id, event_id=posted.event_id)

    return app


def _answer(status: int, detail: object, **extra: str) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)
