"""The permission gate, before every tool and model step, and again where the effect happens.

Before a tool step the workflow runs :meth:`Gate.check` as a local activity — its decision
is recorded in history, so replays reuse it — and the decision is appended to the audit
log. An allowed step carries a grant: an HMAC over the step, the tool and the arguments'
digest, passed to the tool activity in a header; the activity refuses a call without a
valid grant for exactly those arguments, so a forged or altered activity call cannot act.
Model steps are checked in the model activity, against the model the cascade picked.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from functools import cache
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import default as default_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from chamberlain.agents.labels import Masking
from chamberlain.agents.models import Permit, RegisteredModel
from chamberlain.agents.steps import ModelCall, ToolCall
from chamberlain.tools.exceptions import ToolInputInvalid
from chamberlain.tools.registry import ToolRegistry
from chamberlain.workflows.audit import AuditEntry, AuditLog, digest
from chamberlain.workflows.policy import MODEL_ACTION, GateDecision, GateRequest, PolicyEngine, ResourceRef
from chamberlain.workflows.types import Principal

GRANT_HEADER = "chamberlain-grant"
TOOL_ACTIVITY = "chamberlain.tool_step"


class GateCheck(BaseModel):
    call: ToolCall
    principal: Principal | None
    grant: list[str] | None
    labels: list[str] = []
    approver: Principal | None = None


class GateVerdict(GateDecision):
    token: str | None = None
    invalid: bool = False


def grant_secret() -> bytes:
    """The key grants are signed with; every worker of a deployment must share it
    (``CHAMBERLAIN_GRANT_SECRET``). Without it, a random key good for this process only."""
    configured = os.environ.get("CHAMBERLAIN_GRANT_SECRET")
    return configured.encode() if configured else _process_secret()


@cache
def _process_secret() -> bytes:
    return secrets.token_bytes(32)


def grant_token(secret: bytes, call: ToolCall) -> str:
    return hmac.new(secret, f"{call.step.step_id}|{call.tool}|{digest(call.args)}".encode(), hashlib.sha256).hexdigest()


class Gate:
    """Policy decisions with their audit records, for the tools and models of one worker."""

    def __init__(
        self, policies: PolicyEngine, audit: AuditLog, tools: ToolRegistry, secret: bytes | None = None
    ) -> None:
        self.policies, self.audit, self.tools = policies, audit, tools
        self.secret = secret or grant_secret()
        self._pseudonym_key = hmac.new(self.secret, b"pseudonyms", hashlib.sha256).digest()

    async def record(self, entry: AuditEntry) -> None:
        """Append to the audit log off the event loop (a committed write)."""
        await asyncio.to_thread(self.audit.append, entry)

    async def check(self, check: GateCheck) -> GateVerdict:
        call = check.call
        adapter = self.tools[call.tool]
        try:
            resource = await adapter.resource_of(call.args)
        except ToolInputInvalid as exc:  # arguments the model may correct: not a policy matter yet
            return GateVerdict(outcome="deny", reason=str(exc), invalid=True)
        labels = sorted({*check.labels, *(label for ls in adapter.labels.values() for label in ls)})
        request = GateRequest(
            principal=check.principal, action=adapter.policy_action,
            resource=ResourceRef(type=resource.type, id=resource.id, attributes=dict(resource.attributes)),
            grant=check.grant, labels=labels, approved=check.approver is not None,
            approver_roles=check.approver.roles if check.approver else [],
        )  # fmt: skip
        decision = self.policies.decide(request)
        actor = who(check.principal) + (f" approved by {who(check.approver)}" if check.approver else "")
        await self.record(
            AuditEntry(
                run_id=call.step.run_id, step_id=call.step.step_id, attempt=2 if check.approver else 1, kind="decision",
                principal=actor, action=request.action, resource=f'{resource.type}::"{resource.id}"', args=call.args,
                decision=decision.outcome, policies=decision.policies,
            )
        )  # fmt: skip
        token = grant_token(self.secret, call) if decision.outcome == "allow" else None
        return GateVerdict(**decision.model_dump(), token=token)

    def model_permit(self, principal: Principal | None) -> Permit:
        """The check ``call_model`` makes for the model its cascade picked: may this model
        receive this call's data — as it is, masked, or not at all?"""

        async def permit(model: RegisteredModel, call: ModelCall) -> str | Masking | None:
            request = GateRequest(
                principal=principal, action=MODEL_ACTION, resource=ResourceRef(type="Model", id=model.name),
                labels=call.labels, tier=model.tier.value, trusted=sorted(model.trust),
            )  # fmt: skip
            decision = self.policies.decide(request)
            await self.record(
                AuditEntry(
                    run_id=call.step.run_id, step_id=f"{call.step.step_id}/{call.attempt}", kind="decision",
                    principal=who(principal), action=MODEL_ACTION, resource=f'Model::"{model.name}"',
                    args={"labels": call.labels, "masked": sorted(decision.masks)}, decision=decision.outcome,
                    policies=decision.policies,
                )
            )  # fmt: skip
            if decision.outcome == "mask":
                return Masking(decision.masks, key=self._pseudonym_key)
            return None if decision.outcome == "allow" else f"denied by policy ({decision.reason})"

        return permit

    async def record_effect(self, call: ToolCall, principal: Principal | None, attempt: int) -> None:
        adapter = self.tools[call.tool]
        resource = await adapter.resource_of(call.args)
        await self.record(
            AuditEntry(
                run_id=call.step.run_id, step_id=call.step.step_id, attempt=attempt, kind="effect",
                principal=who(principal), action=adapter.policy_action,
                resource=f'{resource.type}::"{resource.id}"', args=call.args, decision="done",
            )
        )  # fmt: skip


def who(principal: Principal | None) -> str:
    """A principal as the audit log names it: ``User::maria``, ``Service::helpdesk``."""
    if principal is None:
        return "anonymous"
    return f"{'User' if principal.kind == 'user' else 'Service'}::{principal.id}"


# -- carrying the grant from the workflow to the activity ---------------------------------------


class GrantInterceptor(Interceptor):
    """Adds the step's grant to tool activities' headers, and checks it where they execute."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowGrants

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CheckGrant(next, self.secret) if self.secret is not None else next


class _WorkflowGrants(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_AttachGrant(outbound))


class _AttachGrant(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        if input.activity == TOOL_ACTIVITY and input.args:
            grants: dict[str, str] = getattr(workflow.instance(), "grants", {})
            call = input.args[0]
            if token := grants.get(call.step.step_id):
                payload = default_converter().payload_converter.to_payloads([token])[0]
                input.headers = {**input.headers, GRANT_HEADER: payload}
        return super().start_activity(input)


class _CheckGrant(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, secret: bytes) -> None:
        super().__init__(next)
        self.secret = secret

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type == TOOL_ACTIVITY:
            header: Payload | None = input.headers.get(GRANT_HEADER)
            token = default_converter().payload_converter.from_payloads([header], [str])[0] if header else None
            call = input.args[0]
            if not token or not hmac.compare_digest(token, grant_token(self.secret, call)):
                raise ApplicationError(
                    f"step {call.step.step_id}: no valid grant for {call.tool} with these arguments",
                    type="PermissionDenied", non_retryable=True,
                )  # fmt: skip
        return await super().execute_activity(input)
