"""The permission gate's decision: principal ∩ the agent's grant ∩ Cedar policy.

Cedar answers allow or deny; "needs approval" is what a permit conditioned on
``context.approved`` makes of a request nobody permits yet: the engine asks Cedar again as
if approved by the roles the policy's ``@approvers`` annotation names, and if that is
allowed, the step waits for those approvers instead of failing. A ``forbid`` that matches is
final — no approval lifts it, but a ``@mask("pii:pseudonym")`` annotation on it says a
model call may go ahead with the values of those labels masked (see :mod:`agents.labels`): the
engine asks again without them, and if that is allowed the outcome is "mask".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import cedarpy
from pydantic import BaseModel, Field

from chamberlain.agents._labels import MaskStyle
from chamberlain.workflows._types import Principal

POLICIES = Path(__file__).with_name("policies")
MODEL_ACTION = "model.invoke"  # a model step's action: the one whose data can be masked
CNY_PER_UNIT = {"CNY": 1.0, "HKD": 0.93, "USD": 7.1, "EUR": 7.7}
MAX_AMOUNT = 1e12  # beyond any order in any currency: no money a policy can weigh


class ResourceRef(BaseModel):
    type: str
    id: str
    attributes: dict[str, Any] = {}


class GateRequest(BaseModel):
    """One step's request to act: who, what, on what, with which data."""

    principal: Principal | None
    action: str
    resource: ResourceRef
    grant: list[str] | None = None
    labels: list[str] = []
    tier: str | None = None
    trusted: list[str] | None = Field(None, description="the labels a model is trusted with (models.yaml)")
    approved: bool = False
    approver_roles: list[str] = []
    at: datetime = Field(default_factory=lambda: datetime.now(UTC), description="when the step asks")


class Ticket(BaseModel):
    """An allowed tool step's proof, carried to the effect site: signed over the step, the tool,
    the arguments, the resource decided on, the principal, and the decision the effect site
    records with the effect (who decided, which policies, which decision attempt, whether
    the tool only reads — a read runs as a local activity — and whether the run rewrites the
    step's record from its history if a crash loses it, so the effect site may write it behind)."""

    resource: ResourceRef
    principal: str
    signature: str
    actor: str = ""
    policies: list[str] = []
    attempt: int = 1
    read_only: bool = False
    write_ahead: bool = False

    def signed_fields(self) -> list[Any]:
        """The fields signed besides the call, resource and principal. A ticket with no actor
        was issued before tickets carried the decision, one without ``write_ahead`` before runs
        sealed their records (a run in flight across an upgrade): each is checked as it was
        signed then, and acts as it would have."""
        if not self.actor:
            return []
        return [self.actor, self.policies, self.attempt, self.read_only] + (["write-ahead"] if self.write_ahead else [])


class GateDecision(BaseModel):
    """The gate's answer for one step — allow, deny, needs approval, mask — as the policies
    gave it; for an allowed tool step the gate adds the resource it decided on and the ticket."""

    outcome: Literal["allow", "deny", "needs_approval", "mask"]
    policies: list[str] = []
    reason: str = ""
    approvers: list[str] = []
    masks: dict[str, MaskStyle] = Field({}, description="for 'mask': how to mask the values of each label")
    resource: ResourceRef | None = None
    seal: str | None = None
    ticket: Ticket | None = None
    invalid: bool = Field(False, description="the check itself was malformed (a forged or altered step)")


@dataclass(frozen=True)
class _Policy:
    name: str
    effect: str
    approvers: tuple[str, ...]
    masks: dict[str, str]


class PolicyEngine:
    """Cedar policies from ``*.cedar`` files, parsed once."""

    def __init__(self, texts: Iterable[str]) -> None:
        source = "\n".join(texts)
        self._policies = cedarpy.PolicySet.from_str(source)
        parsed = json.loads(cedarpy.policies_to_json_str(source))["staticPolicies"]
        self._meta = {key: _meta(key, p["effect"], p.get("annotations", {})) for key, p in parsed.items()}
        self.bounded = _bounded(parsed.values())
        """Actions every permit of which limits ``context.amount*`` or asks for an approval: the
        static checks accept an irreversible tool with such an action without an approval node."""

    @classmethod
    def load(cls, *folders: Path) -> PolicyEngine:
        """The ``*.cedar`` files of the shipped policies and of ``folders`` (an app's own)."""
        files = sorted(POLICIES.glob("*.cedar"))
        for folder in folders:
            found = sorted(Path(folder).glob("*.cedar"))
            if not found:
                raise FileNotFoundError(f"no *.cedar policy files in {folder}")
            files += found
        return cls(f.read_text(encoding="utf-8") for f in files)

    def decide(self, request: GateRequest) -> GateDecision:
        if request.grant is not None and request.action not in request.grant:
            return GateDecision(outcome="deny", reason=f"{request.action} is not in the agent's grant")
        first = self._ask(request)
        if first.decision == cedarpy.Decision.Allow:
            return GateDecision(outcome="allow", policies=self._names(first))
        forbidding = [p for p in first.diagnostics.reasons if self._meta[p].effect == "forbid"]
        if forbidding:
            names = sorted(self._meta[p].name for p in forbidding)
            masks = {k: v for p in forbidding for k, v in self._meta[p].masks.items() if k in request.labels}
            if masks and request.action == MODEL_ACTION and (masked := self._masked(request, masks)):
                return masked.model_copy(update={"policies": names + masked.policies})
            return GateDecision(outcome="deny", policies=names, reason=f"forbidden by {', '.join(names)}")
        if not request.approved:
            roles = sorted({r for p in self._meta.values() for r in p.approvers})
            if roles:
                hypothetical = self._ask(request.model_copy(update={"approved": True, "approver_roles": roles}))
                if hypothetical.decision == cedarpy.Decision.Allow:
                    approvers = sorted({r for p in hypothetical.diagnostics.reasons for r in self._meta[p].approvers})
                    return GateDecision(
                        outcome="needs_approval",
                        policies=self._names(hypothetical),
                        approvers=approvers,
                        reason=f"{request.action} needs approval by {', '.join(approvers)}",
                    )
        return GateDecision(outcome="deny", reason=f"no policy permits {request.action} on {request.resource.type}")

    def _masked(self, request: GateRequest, masks: dict[str, str]) -> GateDecision | None:
        """The decision for the request with the ``masks`` labels' values masked, if it is allowed."""
        rest = [label for label in request.labels if label not in masks]
        masked = self.decide(request.model_copy(update={"labels": rest}))
        if masked.outcome != "allow":
            return None
        reason = f"{', '.join(sorted(masks))} masked for {request.action}"
        return GateDecision.model_validate(
            {"outcome": "mask", "masks": masks, "policies": masked.policies, "reason": reason}
        )

    def _names(self, result: Any) -> list[str]:
        return [self._meta[p].name for p in result.diagnostics.reasons]

    def _ask(self, request: GateRequest) -> Any:
        principal = request.principal or Principal(id="anonymous", kind="service")
        kind = "User" if principal.kind == "user" else "Service"
        attributes = request.resource.attributes
        trusted = set(request.labels if request.trusted is None else request.trusted)
        context: dict[str, Any] = {
            "labels": sorted(request.labels),
            "untrusted": sorted(set(request.labels) - trusted),
            "tier": request.tier or "",
            "approved": request.approved,
            "approver_roles": sorted(request.approver_roles),
            "hour": request.at.astimezone(UTC).hour,
            "weekday": request.at.astimezone(UTC).strftime("%a"),
        }
        context.update(_money(attributes))
        acts_for = {"customer": principal.customer} if principal.customer else {}  # `principal has customer`
        entities = [
            {
                "uid": {"type": kind, "id": principal.id},
                "parents": [],
                "attrs": {
                    "roles": principal.roles,
                    "department": principal.department or "",
                    "tenant": principal.tenant or "",
                    "clearance": principal.clearance,
                    **acts_for,
                },
            },
            {
                "uid": {"type": request.resource.type, "id": request.resource.id},
                "parents": [],
                "attrs": {k: v for k, v in attributes.items() if isinstance(v, str | bool | int)},
            },
        ]
        cedar_request = {
            "principal": {"type": kind, "id": principal.id},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": request.resource.type, "id": request.resource.id},
            "context": context,
        }
        return cedarpy.is_authorized(cedar_request, self._policies, entities)


def _money(attributes: dict[str, Any]) -> dict[str, Any]:
    """The context a money resource gives: ``amount_cny`` (this call, rounded up to whole CNY),
    with the order's ``refunded`` also ``amount_cumulative_cny`` (already refunded + this call: what
    limits apply to), and with its ``total`` also ``amount_cents`` and ``refundable_cents`` (exact)."""
    if "amount" not in attributes:
        return {}
    currency = str(attributes.get("currency", "CNY")).upper()
    rate = CNY_PER_UNIT.get(currency)
    amount, refunded, total = (float(attributes.get(key, 0)) for key in ("amount", "refunded", "total"))
    if rate is None or not all(math.isfinite(x) and abs(x) <= MAX_AMOUNT for x in (amount, refunded, total)):
        return {"currency": currency}  # no amount policy can weigh: a limit's condition fails, a refund is refused
    money: dict[str, Any] = {"currency": currency, "amount_cny": math.ceil(amount * rate - 1e-9)}
    if "refunded" in attributes:
        money["amount_cumulative_cny"] = math.ceil((refunded + amount) * rate - 1e-9)
        if "total" in attributes:
            money["amount_cents"] = round(amount * 100)
            money["refundable_cents"] = round((total - refunded) * 100)
    return money


def _meta(key: str, effect: str, annotations: dict[str, str]) -> _Policy:
    """A policy's ID and what its annotations say: ``@approvers("manager, director")``,
    ``@mask("pii:pseudonym, finance:redact")``."""
    approvers = tuple(r.strip() for r in annotations.get("approvers", "").split(",") if r.strip())
    masks = dict(
        (label.strip(), style.strip() or "redact")
        for label, _, style in (m.partition(":") for m in annotations.get("mask", "").split(","))
        if label.strip()
    )
    name = annotations.get("id", key)
    for label, style in masks.items():
        if style not in get_args(MaskStyle):
            choices = ", ".join(get_args(MaskStyle))
            raise ValueError(f"policy {name!r}: @mask style {style!r} for {label!r} is not one of {choices}")
    return _Policy(name=name, effect=effect, approvers=approvers, masks=masks)


def _actions(scope: dict[str, Any]) -> list[str]:
    """The action IDs a policy's action scope names (none for ``action`` alone)."""
    if scope.get("op") == "==":
        return [scope["entity"]["id"]]
    return [e["id"] for e in scope.get("entities", [])]


def _bounded(policies: Iterable[dict[str, Any]]) -> frozenset[str]:
    """Actions some permit names and no permit allows without an amount limit or an approval.
    Permits add up, so one role-only permit (or one whose limit sits in an ``||``) unbounds its action."""
    permits = [p for p in policies if p["effect"] == "permit"]
    named = {action for p in permits for action in _actions(p["action"])}
    open_ = {action for p in permits if not _limits(p) for action in _actions(p["action"]) or named}
    return frozenset(named - open_)


def _limits(policy: dict[str, Any]) -> bool:
    """Whether a ``when`` condition of ``policy`` requires, in one of its ``&&`` parts, an upper
    bound on a ``context.amount*`` attribute or ``context.approved``."""
    return any(
        _limit(part) for c in policy.get("conditions", []) if c["kind"] == "when" for part in _conjuncts(c["body"])
    )


def _conjuncts(expr: dict[str, Any]) -> list[dict[str, Any]]:
    if "&&" in expr:
        return [*_conjuncts(expr["&&"]["left"]), *_conjuncts(expr["&&"]["right"])]
    return [expr]


def _limit(expr: dict[str, Any]) -> bool:
    def context_attr(side: dict[str, Any], prefix: str) -> bool:
        dot = side.get(".", {})
        return dot.get("left") == {"Var": "context"} and str(dot.get("attr", "")).startswith(prefix)

    if context_attr(expr, "approved"):
        return True
    for op, bounded_side in (("<=", "left"), ("<", "left"), (">=", "right"), (">", "right")):
        if op in expr and context_attr(expr[op][bounded_side], "amount"):
            return True
    return False
