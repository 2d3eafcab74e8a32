"""The permission gate's decision: principal ∩ the agent's grant ∩ Cedar policy.

Cedar answers allow or deny; "needs approval" is what a permit conditioned on
``context.approved`` makes of a request nobody permits yet: the engine asks Cedar again as
if approved by the roles the policy's ``@approvers`` annotation names, and if that is
allowed, the step waits for those approvers instead of failing. A ``forbid`` that matches is
final — no approval lifts it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cedarpy
from pydantic import BaseModel

from workflows.types import Principal

POLICIES = Path(__file__).with_name("policies")
CNY_PER_UNIT = {"CNY": 1.0, "HKD": 0.93, "USD": 7.1, "EUR": 7.7}


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
    approved: bool = False
    approver_roles: list[str] = []


class GateDecision(BaseModel):
    outcome: Literal["allow", "deny", "needs_approval"]
    policies: list[str] = []
    reason: str = ""
    approvers: list[str] = []


@dataclass(frozen=True)
class _Policy:
    name: str
    effect: str
    approvers: tuple[str, ...]


class PolicyEngine:
    """Cedar policies from ``*.cedar`` files, parsed once."""

    def __init__(self, texts: Iterable[str]) -> None:
        source = "\n".join(texts)
        self._policies = cedarpy.PolicySet.from_str(source)
        parsed = json.loads(cedarpy.policies_to_json_str(source))["staticPolicies"]
        self._meta = {
            key: _Policy(
                name=p.get("annotations", {}).get("id", key),
                effect=p["effect"],
                approvers=tuple(
                    r.strip() for r in p.get("annotations", {}).get("approvers", "").split(",") if r.strip()
                ),
            )
            for key, p in parsed.items()
        }

    @classmethod
    def load(cls, folder: Path = POLICIES) -> PolicyEngine:
        files = sorted(folder.glob("*.cedar"))
        if not files:
            raise FileNotFoundError(f"no *.cedar policy files in {folder}")
        return cls(f.read_text(encoding="utf-8") for f in files)

    def decide(self, request: GateRequest) -> GateDecision:
        if request.grant is not None and request.action not in request.grant:
            return GateDecision(outcome="deny", reason=f"{request.action} is not in the agent's grant")
        first = self._ask(request)
        if first.decision == cedarpy.Decision.Allow:
            return GateDecision(outcome="allow", policies=self._names(first))
        forbidding = [p for p in first.diagnostics.reasons if self._meta[p].effect == "forbid"]
        if forbidding:
            names = [self._meta[p].name for p in forbidding]
            return GateDecision(outcome="deny", policies=names, reason=f"forbidden by {', '.join(names)}")
        if not request.approved:
            roles = sorted({r for p in self._meta.values() for r in p.approvers})
            if roles:
                hypothetical = self._ask(request.model_copy(update={"approved": True, "approver_roles": roles}))
                if hypothetical.decision == cedarpy.Decision.Allow:
                    approvers = sorted({r for p in hypothetical.diagnostics.reasons for r in self._meta[p].approvers})
                    return GateDecision(
                        outcome="needs_approval", policies=self._names(hypothetical), approvers=approvers,
                        reason=f"{request.action} needs approval by {', '.join(approvers)}",
                    )  # fmt: skip
        return GateDecision(outcome="deny", reason=f"no policy permits {request.action} on {request.resource.type}")

    def _names(self, result: Any) -> list[str]:
        return [self._meta[p].name for p in result.diagnostics.reasons]

    def _ask(self, request: GateRequest) -> Any:
        principal = request.principal or Principal(id="anonymous", kind="service")
        kind = "User" if principal.kind == "user" else "Service"
        attributes = request.resource.attributes
        context: dict[str, Any] = {
            "labels": sorted(request.labels),
            "tier": request.tier or "",
            "approved": request.approved,
            "approver_roles": sorted(request.approver_roles),
        }
        if "amount" in attributes:
            rate = CNY_PER_UNIT.get(str(attributes.get("currency", "CNY")), 1.0)
            context["amount_cny"] = math.ceil(float(attributes["amount"]) * rate - 1e-9)
        entities = [
            {"uid": {"type": kind, "id": principal.id}, "parents": [],
             "attrs": {"roles": principal.roles, "department": principal.department or ""}},
            {"uid": {"type": request.resource.type, "id": request.resource.id}, "parents": [],
             "attrs": {k: v for k, v in attributes.items() if isinstance(v, str | bool | int)}},
        ]  # fmt: skip
        cedar_request = {
            "principal": {"type": kind, "id": principal.id},
            "action": {"type": "Action", "id": request.action},
            "resource": {"type": request.resource.type, "id": request.resource.id},
            "context": context,
        }
        return cedarpy.is_authorized(cedar_request, self._policies, entities)
