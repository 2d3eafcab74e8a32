"""The permission gate: one wrapper around every executor, and it fails closed.

Words used here, one per idea:

- a **decision** (:class:`GateDecision`) is the policy's answer for one step — allow, deny,
  needs approval — recorded in the audit log;
- the agent's **grant** is the list of actions its graph declares (``GraphSpec.grant``);
- a **ticket** (:class:`Ticket`) is what an allowed tool step carries to where its effect
  happens: the resource it was decided on and for whom, signed with the deployment's key
  (``CHAMBERLAIN_GRANT_SECRET``). The effect site refuses a call without a valid ticket for
  exactly its step, tool and arguments, so a forged or altered call cannot act.

:class:`GatedExecutor` wraps any :class:`~agents.steps.StepExecutor`, in the manner of
pydantic-ai's ``ApprovalRequiredToolset``: decide → (standing approval, or ask through the
inner executor) → decide again with the approver → attach the ticket → act. In the Temporal
workflow ``decide`` is a local activity (recorded in history, replay-safe); in-process it is
:meth:`Gate.check` itself. Model steps are permitted where the cascade picks the model —
:meth:`Gate.model_permit`, in the model activity or the in-process executor.

Nothing configured means nothing runs: a :class:`Gate` needs policies, an audit log and a
shared key; :meth:`Gate.development` is the one announced exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import default as default_converter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from chamberlain.agents._exceptions import PermissionDenied
from chamberlain.agents._labels import Masking
from chamberlain.agents._models import Permit, RegisteredModel
from chamberlain.agents._spec import (
    AgentNode,
    ApprovalNode,
    ClassifyNode,
    GraphSpec,
    MapNode,
    ModelNode,
    SubgraphNode,
    ToolNode,
)
from chamberlain.agents._steps import (
    ApprovalAnswer,
    ApprovalRequest,
    ClassifyCall,
    ClassifyReply,
    GraphCall,
    GraphReply,
    ModelCall,
    ModelReply,
    StepExecutor,
    ToolCall,
    ToolFailure,
    ToolReply,
)
from chamberlain.agents._tooling import call_tool
from chamberlain.tools._adapter import Effect, Resource
from chamberlain.tools._exceptions import ToolInputInvalid
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._audit import AuditEntry, AuditLog, GroupCommit, digest
from chamberlain.workflows._policy import MODEL_ACTION, GateDecision, GateRequest, PolicyEngine, ResourceRef, Ticket
from chamberlain.workflows._types import Principal

GRANT_SECRET_ENV = "CHAMBERLAIN_GRANT_SECRET"
GRANT_SECRET_FILE = "grant-secret"
MIN_SECRET_LENGTH = 32
TICKET_HEADER = "chamberlain-ticket"
TOOL_ACTIVITY = "chamberlain.tool_step"
log = logging.getLogger("chamberlain.gate")


class GateNotConfigured(ValueError):
    """A setting the gate cannot run without is missing: the worker or run refuses to start."""


class NoValidTicket(PermissionError):
    """A tool call reached its effect site without a valid ticket for exactly these arguments."""


# -- what crosses the boundaries ----------------------------------------------------------------


class GateCheck(BaseModel):
    """One decision to take. ``resource``/``seal``: the step's resource as an earlier decision
    of the same step resolved it, so a re-decision does not read it again."""

    call: ToolCall
    principal: Principal | None
    grant: list[str] | None
    labels: list[str] = []
    approver: Principal | None = None
    attempt: int = 1
    resource: ResourceRef | None = None
    seal: str | None = None
    write_ahead: bool = False  # the run seals its steps' records (:meth:`Gate.seal`): effects may write behind
    effects_of: list[str] = []  # tools whose effects the run has yet to learn: the answer says them


class ActedStep(BaseModel):
    """A tool step as the run's history knows it — its call, its ticket, whether the tool
    acted (None: the run does not know, its activity failed or timed out) — from which
    :meth:`Gate.seal` rewrites a record a crash lost. No ticket: the step was decided in its
    tool's activity, which failed; the seal looks for the ticket it held."""

    call: ToolCall
    ticket: Ticket | None
    acted: bool | None


class DecidedStep(BaseModel):
    """A tool step's decision and, if the gate acted at once, its reply (None when it did not):
    a read acts in its decision's local activity, a write in its tool's own activity."""

    decision: GateDecision
    reply: ToolReply | None = None
    effects: dict[str, str] = {}  # what each tool of ``GateCheck.effects_of`` does, as this worker offers it


current_ticket: ContextVar[Ticket | None] = ContextVar("chamberlain_ticket", default=None)
"""The ticket of the tool call under way: set by :class:`GatedExecutor` around the inner call,
and at the effect site by the activity interceptor that read it from the header."""


def _forget_ticket(carried: Token[Ticket | None]) -> None:
    """Unset the ticket a step carried. When the SDK evicts a cached run, it closes the step's
    coroutine in another context, where the ticket was never set: nothing to unset there."""
    with contextlib.suppress(ValueError):
        current_ticket.reset(carried)


# -- the deployment's key -------------------------------------------------------------------------


def grant_secret(value: str | bytes | None = None, *, setting: str = GRANT_SECRET_ENV) -> bytes:
    """The key tickets are signed with: ``value``, else ``$CHAMBERLAIN_GRANT_SECRET``. Every
    worker of a deployment must share it, so a run resumed on another worker keeps its tickets;
    there is no per-process fallback."""
    raw = value if value is not None else os.environ.get(GRANT_SECRET_ENV)
    fix = (
        "give every worker the same random value: `python -c 'import secrets; print(secrets.token_hex(32))'` "
        "(a worker joining `chamberlain dev`'s stack takes the stack's: "
        '`CHAMBERLAIN_GRANT_SECRET="$(cat .chamberlain/grant-secret)"`)'
    )
    if not raw:
        raise GateNotConfigured(f"{setting} is not set: the permission gate signs tickets with it; {fix}")
    key = raw.encode() if isinstance(raw, str) else raw
    if len(key) < MIN_SECRET_LENGTH:
        raise GateNotConfigured(f"{setting} is too short ({len(key)} < {MIN_SECRET_LENGTH} characters); {fix}")
    return key


def persisted_secret(folder: Path) -> bytes:
    """A key generated once and kept in ``folder`` (mode 0600), for an embedded stack whose
    restarted worker must keep it; refuses a key file others can read."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GRANT_SECRET_FILE
    if not path.exists():
        draft = folder / f".{GRANT_SECRET_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(draft, path)  # atomic: of two processes starting at once, one key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise GateNotConfigured(f"{path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")
    return grant_secret(path.read_text(encoding="utf-8").strip(), setting=str(path))


# -- the gate -------------------------------------------------------------------------------------


class Gate:
    """Policy decisions with their audit records, for the tools and models of one deployment.

    Where the run's history is the write-ahead log (the durable engine, :class:`GateCheck`
    ``write_ahead``), a step's record is written behind — queued, committed within 50 ms with
    whatever else arrived — and the run seals its steps before it parks, continues or ends
    (:meth:`seal`): a record a crash lost is rewritten from history then. Elsewhere (the
    in-process engine) every record commits before its step completes."""

    def __init__(
        self,
        policies: PolicyEngine,
        audit: AuditLog,
        tools: ToolRegistry,
        secret: bytes | None,
        *,
        development: bool = False,
    ) -> None:
        if not isinstance(policies, PolicyEngine):
            raise GateNotConfigured("the permission gate has no Cedar policies: pass PolicyEngine.load(<folder>)")
        if not isinstance(audit, AuditLog):
            raise GateNotConfigured("the permission gate has no audit log: pass AuditLog(<database URL>)")
        self.policies, self.audit, self.tools = policies, audit, tools
        self.commits = GroupCommit(audit)
        self.secret = grant_secret(secret or b"", setting=f"{GRANT_SECRET_ENV} (the gate's secret)")
        self.is_development = development
        self._pseudonym_key = hmac.new(self.secret, b"pseudonyms", hashlib.sha256).digest()

    @classmethod
    def development(cls, tools: ToolRegistry, folder: Path, policies: PolicyEngine | None = None) -> Gate:
        """An explicit development gate: the shipped policies (or ``policies``), an audit log and
        a key generated once in ``folder``. Announced with a warning every time it starts."""
        log.warning(
            "DEVELOPMENT permission gate: audit log and grant key in %s; not for production "
            "(set %s and an audit URL instead)",
            folder,
            GRANT_SECRET_ENV,
        )
        audit = AuditLog(f"sqlite:///{folder / 'audit.sqlite'}")
        return cls(policies or PolicyEngine.load(), audit, tools, persisted_secret(folder), development=True)

    async def record(self, entry: AuditEntry) -> None:
        """Append to the audit log off the event loop, returning once committed; concurrent
        steps share a commit (group commit)."""
        await self.commits.append(entry)

    def _sign(
        self, purpose: str, call: ToolCall, resource: ResourceRef, principal: str = "", more: list[Any] | None = None
    ) -> str:
        parts = [purpose, call.step.step_id, call.tool, call.args, resource.model_dump(mode="json"), principal]
        parts += more or []
        return hmac.new(self.secret, digest(parts).encode(), hashlib.sha256).hexdigest()

    async def _resource(self, check: GateCheck) -> ResourceRef:
        """The step's resource: the one an earlier decision of this step sealed, else read now."""
        known, seal = check.resource, check.seal
        if known is not None and seal is not None and hmac.compare_digest(seal, self._sign("seal", check.call, known)):
            return known
        return resource_ref(await self.tools[check.call.tool].resource_of(check.call.args))

    async def check(self, check: GateCheck) -> GateDecision:
        """Decide a tool step and sign a ticket if it is allowed. A refusal or a request for
        approval is recorded now; an allowance travels in the ticket and is recorded once, with
        its effect, where the tool acts (:meth:`act`) — one audit record per allowed step."""
        decision, refusal = await self._decide(check)
        if refusal is not None:
            await self.record(refusal)
        return self._sealed(check.call, decision)

    def _sealed(self, call: ToolCall, decision: GateDecision) -> GateDecision:
        """The decision with its resource sealed: a re-decision of the step (after an approval)
        takes the resource from it rather than reading it again. A step acted on at once needs none."""
        if decision.resource is None:  # the check was malformed: nothing was read
            return decision
        return decision.model_copy(update={"seal": self._sign("seal", call, decision.resource)})

    async def _decide(self, check: GateCheck) -> tuple[GateDecision, AuditEntry | None]:
        """The decision (its resource not sealed yet), and the record of a refusal or a request
        for approval, not yet written."""
        call = check.call
        adapter = self.tools[call.tool]
        try:
            resource = await self._resource(check)
        except ToolInputInvalid as exc:  # arguments the model may correct: not a policy matter yet
            return GateDecision(outcome="deny", reason=str(exc), invalid=True), None
        labels = sorted({*check.labels, *(label for ls in adapter.labels.values() for label in ls)})
        request = GateRequest(
            principal=check.principal,
            action=adapter.policy_action,
            resource=resource,
            grant=check.grant,
            labels=labels,
            approved=check.approver is not None,
            approver_roles=check.approver.roles if check.approver else [],
        )
        decision = self.policies.decide(request)
        principal = who(check.principal)
        actor = principal + (f" approved by {who(check.approver)}" if check.approver else "")
        ticket, refusal = None, None
        if decision.outcome == "allow":
            ticket = Ticket(
                resource=resource,
                principal=principal,
                signature="",
                actor=actor,
                policies=decision.policies,
                attempt=check.attempt,
                read_only=adapter.effect is Effect.READ,
                write_ahead=check.write_ahead,
            )
            ticket.signature = self._sign("ticket", call, resource, principal, ticket.signed_fields())
        else:
            refusal = AuditEntry(
                run_id=call.step.run_id,
                step_id=call.step.step_id,
                attempt=check.attempt,
                kind="decision",
                principal=actor,
                action=request.action,
                resource=_named(resource),
                args=call.args,
                decision=decision.outcome,
                policies=decision.policies,
                **money(resource.attributes),
            )
        return decision.model_copy(update={"resource": resource, "ticket": ticket}), refusal

    async def decide_and_act(self, check: GateCheck, attempt: int, *, writes: bool = False) -> DecidedStep:
        """Decide a tool step and, if it is allowed, act at once: a read (one local activity for a
        read step), and with ``writes`` a write too (one activity for a write step). A write's
        ticket is held — committed — before its tool acts, and a retry acts on the held ticket
        rather than deciding again on a resource the first attempt's effect may have changed."""
        decision = await self._held(check.call) if writes and attempt > 1 else None
        held = decision is not None
        if decision is None:
            decision, refusal = await self._decide(check)
            # Another attempt of this step (one that outlived its timeout) may have held a ticket
            # and acted since this one looked: then its effect is what this decision refused.
            earlier = await self._held(check.call) if writes and refusal is not None else None
            if earlier is not None:
                decision, held = earlier, True
            elif refusal is not None:
                await self.record(refusal)
        ticket = decision.ticket
        if decision.outcome != "allow" or ticket is None or not (ticket.read_only or writes):
            return DecidedStep(decision=self._sealed(check.call, decision))
        if not ticket.read_only and not held:
            mine = ticket.model_dump_json()
            kept = await asyncio.to_thread(self.audit.hold, check.call.step.run_id, check.call.step.step_id, mine)
            if kept != mine:  # an attempt that outlived its timeout held one first: act on that
                ticket = self.admit(check.call, Ticket.model_validate_json(kept))
                decision = decision.model_copy(update={"ticket": ticket})
        return DecidedStep(decision=decision, reply=await self._act(check.call, ticket, attempt))

    async def _held(self, call: ToolCall) -> GateDecision | None:
        """The allowance an earlier attempt of this step held, if it reached that far."""
        kept = (await asyncio.to_thread(self.audit.held, [call.step.step_id])).get(call.step.step_id)
        if kept is None:
            return None
        ticket = self.admit(call, Ticket.model_validate_json(kept))
        return GateDecision(outcome="allow", policies=ticket.policies, resource=ticket.resource, ticket=ticket)

    def admit(self, call: ToolCall, ticket: Ticket | None) -> Ticket:
        """At the effect site: the call's ticket, if it is valid for exactly this call."""
        if ticket is None or not hmac.compare_digest(
            ticket.signature, self._sign("ticket", call, ticket.resource, ticket.principal, ticket.signed_fields())
        ):
            raise NoValidTicket(f"step {call.step.step_id}: no valid ticket for {call.tool} with these arguments")
        return ticket

    async def act(self, call: ToolCall, ticket: Ticket | None, attempt: int) -> ToolReply:
        """Where a tool's effect happens, in either engine: admit, act, and record the step once —
        its allowance and, if the tool acted, its effect (``kind="effect"``; ``"decision"`` when
        the tool refused or failed). The record is keyed by the step and its decision, not by the
        activity's attempt, so a retry after a crash that followed the record writes no second one.
        A ticket issued ``write_ahead`` has its record written behind (the run seals it); any
        other's is committed before the step completes."""
        return await self._act(call, self.admit(call, ticket), attempt)

    async def _act(self, call: ToolCall, admitted: Ticket, attempt: int) -> ToolReply:
        """:meth:`act` with a ticket admitted already (or just signed, by this gate, for this call)."""
        reply: ToolReply | None = None
        try:
            reply = await call_tool(self.tools, call, attempt)
        finally:
            entry = self._record_of(call, admitted, acted=reply is not None and reply.error is None)
            if admitted.write_ahead and reply is not None:  # the run learns of the step, and seals it
                self.commits.append_behind(entry)
            else:
                await self.record(entry)
        return reply

    async def seal(self, steps: list[ActedStep]) -> int:
        """Return once the record of every step in ``steps`` is committed, rewriting from the
        run's history any that a crash lost before its commit; how many were rewritten. Only a
        step whose ticket is valid is written; any other is refused after the valid ones. The
        tickets the steps' writes held are released then: the run has their results, and no
        attempt of them is retried."""
        entries, refused, writes = [], [], []
        unknown = [step.call.step.step_id for step in steps if step.ticket is None]
        held = await asyncio.to_thread(self.audit.held, unknown) if unknown else {}
        for step in steps:
            ticket = step.ticket
            if ticket is None:
                kept = held.get(step.call.step.step_id)
                if kept is None:  # decided in its tool's activity, which failed before it held a ticket
                    continue
                ticket = Ticket.model_validate_json(kept)
            try:
                entries.append(self._record_of(step.call, self.admit(step.call, ticket), step.acted))
            except NoValidTicket as exc:
                refused.append(exc)
                continue
            if not ticket.read_only:
                writes.append(step.call.step.step_id)
        await self.commits.drain()  # what this worker queued commits now; what is still missing was lost
        missing = await asyncio.to_thread(self.audit.missing, entries)
        if missing:
            log.warning("audit: %d record(s) of run %s rewritten from its history", len(missing), missing[0].run_id)
            await asyncio.gather(*(self.record(entry) for entry in missing))
        if writes:
            await asyncio.to_thread(self.audit.release, writes)
        if refused:
            raise refused[0]
        return len(missing)

    def _record_of(self, call: ToolCall, ticket: Ticket, acted: bool | None) -> AuditEntry:
        return AuditEntry(
            run_id=call.step.run_id,
            step_id=call.step.step_id,
            attempt=ticket.attempt,
            kind="effect" if acted else "decision",
            principal=ticket.actor or ticket.principal,
            action=self.tools[call.tool].policy_action,
            resource=_named(ticket.resource),
            args=call.args,
            decision="allow",
            policies=ticket.policies,
            **money(ticket.resource.attributes),
        )

    async def drain(self) -> None:
        """Return once every audit record queued so far is committed (a worker stopping)."""
        await self.commits.drain()

    def model_permit(self, principal: Principal | None) -> Permit:
        """The check ``call_model`` makes for the model its cascade picked: may this model
        receive this call's data — as it is, masked, or not at all?"""

        async def permit(model: RegisteredModel, call: ModelCall) -> str | Masking | None:
            request = GateRequest(
                principal=principal,
                action=MODEL_ACTION,
                resource=ResourceRef(type="Model", id=model.name),
                labels=call.labels,
                tier=model.tier.value,
                trusted=sorted(model.trust),
            )
            decision = self.policies.decide(request)
            await self.record(
                AuditEntry(
                    run_id=call.step.run_id,
                    step_id=model_step_id(call),
                    kind="decision",
                    principal=who(principal),
                    action=MODEL_ACTION,
                    resource=f'Model::"{model.name}"',
                    args={"labels": call.labels, "masked": sorted(decision.masks)},
                    decision=decision.outcome,
                    policies=decision.policies,
                )
            )
            if decision.outcome == "mask":
                return Masking(decision.masks, key=self._pseudonym_key)
            return None if decision.outcome == "allow" else f"denied by policy ({decision.reason})"

        return permit


def model_step_id(call: ModelCall) -> str:
    """A model call's ID in the audit log: ``node/visit/attempt``; an agent's turn ``node/visit/turn/model/attempt``,
    apart from the IDs of the calls it asks for (``node/visit/turn/call``)."""
    return f"{call.step.step_id}{'/model' if call.step.within else ''}/{call.attempt}"


def resource_ref(resource: Resource) -> ResourceRef:
    """A resource as decisions and tickets carry it: plain JSON values, so its signature
    survives the trip through history and headers."""
    ref = ResourceRef(type=resource.type, id=resource.id, attributes=dict(resource.attributes))
    return ResourceRef.model_validate(ref.model_dump(mode="json"))


def money(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The amount and currency a resource declares, for its audit records."""
    if "amount" not in attributes:
        return {}
    return {"amount": float(attributes["amount"]), "currency": str(attributes.get("currency", "CNY"))}


def _named(resource: ResourceRef) -> str:
    return f'{resource.type}::"{resource.id}"'


def who(principal: Principal | None) -> str:
    """A principal as the audit log names it: ``User::maria``, ``Service::helpdesk``."""
    if principal is None:
        return "anonymous"
    return f"{'User' if principal.kind == 'user' else 'Service'}::{principal.id}"


# -- the wrapper ------------------------------------------------------------------------------------

Decide = Callable[[GateCheck], Awaitable[GateDecision]]
DecideStep = Callable[[GateCheck, "ToolNode | AgentNode"], Awaitable[DecidedStep]]


class GatedExecutor:
    """Any :class:`~agents.steps.StepExecutor` behind the permission gate.

    A tool call is decided first; needs-approval is answered by the standing approval (the
    graph's own approval node passed last, used once) or by asking the policy's approvers
    through the inner executor, then decided again with the approver's roles. Only an allowed
    call goes on, carrying its ticket. Deterministic: safe inside a workflow."""

    def __init__(
        self,
        inner: StepExecutor,
        decide: Decide,
        *,
        principal: Principal | None,
        graph: GraphSpec,
        ceiling: list[str] | None = None,
        decide_and_act: DecideStep | None = None,
        write_ahead: bool = False,
    ) -> None:
        self.inner, self.decide, self.principal, self.graph = inner, decide, principal, graph
        self.decide_and_act = decide_and_act  # a tool step's first decision, acting at once where it can
        self.write_ahead = write_ahead  # the run seals its steps' records: keep them in ``acted``
        self.acted: list[ActedStep] = []  # allowed tool steps not yet sealed
        self._standing: Principal | None = None  # who approved at the last approval node, if it approved
        # A child run's grant stays within its parent's (``ceiling``), whatever its own spec says.
        own = graph.grant if graph.grant is not None else ceiling
        self.grant = own if ceiling is None or own is None else [a for a in own if a in ceiling]

    async def run_graph(self, call: GraphCall, node: SubgraphNode | MapNode) -> GraphReply:
        """A child run, refused when its graph asks for more than this run's grant; it carries
        this grant as its ceiling, so its gate denies anything outside it too."""
        if self.grant is not None:
            outside = sorted(set(call.graph.grant or ["<everything: no grant>"]) - set(self.grant))
            if outside:
                raise PermissionDenied(
                    f"step {call.step.step_id}: graph '{call.graph.name}' asks for {', '.join(outside)}, "
                    f"outside this run's grant"
                )
        return await self.inner.run_graph(call.model_copy(update={"grant": self.grant}), node)

    async def call_model(self, call: ModelCall, node: ModelNode | ClassifyNode | AgentNode) -> ModelReply:
        return await self.inner.call_model(call, node)

    async def classify(self, call: ClassifyCall, node: ClassifyNode) -> ClassifyReply:
        return await self.inner.classify(call, node)

    async def request_approval(self, request: ApprovalRequest, node: ApprovalNode) -> ApprovalAnswer:
        decision = await self.inner.request_approval(request, node)
        if isinstance(self.graph.nodes.get(request.step.node), ApprovalNode):  # not a person answering for a model
            self._standing = decision.approver if decision.outcome == "approve" else None
        return decision

    async def call_tool(self, call: ToolCall, node: ToolNode | AgentNode) -> ToolReply:
        """An approver may edit the arguments (``values={"args": {...}}``): the edited call is
        decided again, with the approver, and is the one that runs; the reply names its arguments."""
        check = GateCheck(
            call=call, principal=self.principal, grant=self.grant, labels=call.labels, write_ahead=self.write_ahead
        )
        asked = call
        if self.decide_and_act is not None:
            try:
                decided = await self.decide_and_act(check, node)
            except BaseException:  # it may have held a ticket and acted: the seal looks for it
                self._acted(call, None, None)
                raise
            if decided.reply is not None and decided.decision.ticket is not None:  # allowed, and acted: done
                self._acted(call, decided.decision.ticket, decided.reply)
                return decided.reply
            verdict = decided.decision
        else:
            verdict = await self.decide(check)
        if verdict.invalid:
            return ToolReply(error=ToolFailure(kind="ToolInputInvalid", message=verdict.reason))
        check = check.model_copy(update={"resource": verdict.resource, "seal": verdict.seal})
        if verdict.outcome == "needs_approval" and self._standing is not None:
            standing, self._standing = self._standing, None  # the graph's approval node asked already
            check = check.model_copy(update={"approver": standing, "attempt": check.attempt + 1})
            approved = await self.decide(check)
            verdict = approved if approved.outcome == "allow" else verdict
        if verdict.outcome == "needs_approval":
            ask = f"{call.step.node}: {verdict.reason}"
            if isinstance(node, AgentNode):  # the model chose this call: show the approver what it asked for
                ask += f" — {call.tool} {json.dumps(call.args, ensure_ascii=False, default=str)}"
            approval = ApprovalNode(type="approval", ask=ask, approvers=verdict.approvers)
            request = ApprovalRequest(step=call.step, ask=approval.ask, approvers=approval.approvers)
            decision = await self.inner.request_approval(request, approval)
            if decision.outcome != "approve" or decision.approver is None:
                said = f" ({decision.by}: {decision.reason})" if decision.reason else ""
                message = f"{verdict.reason}: not approved{said}"
                return ToolReply(error=ToolFailure(kind="PermissionDenied", message=message))
            update: dict[str, Any] = {"approver": decision.approver, "attempt": check.attempt + 1}
            if isinstance(edited := (decision.values or {}).get("args"), dict):
                call = call.model_copy(update={"args": edited})
                update |= {"call": call, "resource": None, "seal": None}  # its resource is read anew
            check = check.model_copy(update=update)
            verdict = await self.decide(check)
            if verdict.invalid:
                return ToolReply(error=ToolFailure(kind="ToolInputInvalid", message=verdict.reason), args=call.args)
        edited = call.args if call is not asked else None
        if verdict.outcome != "allow" or verdict.ticket is None:
            return ToolReply(error=ToolFailure(kind="PermissionDenied", message=verdict.reason), args=edited)
        carried = current_ticket.set(verdict.ticket)
        reply = None
        try:
            reply = await self.inner.call_tool(call, node)
        finally:
            _forget_ticket(carried)
            self._acted(call, verdict.ticket, reply)
        return reply.model_copy(update={"args": edited}) if edited is not None else reply

    def _acted(self, call: ToolCall, ticket: Ticket | None, reply: ToolReply | None) -> None:
        if self.write_ahead:
            acted = None if reply is None else reply.error is None
            self.acted.append(ActedStep(call=call, ticket=ticket, acted=acted))


# -- carrying the ticket from the workflow to the activity --------------------------------------


class TicketInterceptor(Interceptor):
    """Puts the ticket of a tool call in its activity's header, and hands it to the activity
    where it executes (which admits it: :meth:`Gate.act`)."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowTickets

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ReceiveTicket(next)


class _WorkflowTickets(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_AttachTicket(outbound))


class _AttachTicket(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_ticket(input.activity, input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_ticket(input.activity, input.headers)
        return super().start_local_activity(input)


def _with_ticket(activity: str, headers: Mapping[str, Payload]) -> Mapping[str, Payload]:
    ticket = current_ticket.get()
    if activity != TOOL_ACTIVITY or ticket is None:
        return headers
    payload = default_converter().payload_converter.to_payloads([ticket.model_dump_json()])[0]
    return {**headers, TICKET_HEADER: payload}


class _ReceiveTicket(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        header = input.headers.get(TICKET_HEADER)
        text = default_converter().payload_converter.from_payloads([header], [str])[0] if header else None
        try:
            ticket = Ticket.model_validate_json(text) if text else None
        except ValidationError:  # a mangled header is no ticket: the effect site refuses the call
            ticket = None
        carried = current_ticket.set(ticket)
        try:
            return await super().execute_activity(input)
        finally:
            current_ticket.reset(carried)
