"""The Cedar policies, decision by decision: allow, needs approval, deny."""

from __future__ import annotations

from chamberlain.workflows import GateRequest, PolicyEngine, Principal, ResourceRef

from myproject import app

ENGINE = PolicyEngine.load(app.POLICIES)
OWNER = Principal(id="helpdesk:C10002", kind="service", roles=["helpdesk"], customer="C10002")
STRANGER = Principal(id="helpdesk:C10001", kind="service", roles=["helpdesk"], customer="C10001")


def refund(amount: float, refunded: float = 0.0) -> GateRequest:
    attributes = {"owner": "C10002", "total": 450.0, "refunded": refunded, "currency": "CNY", "amount": amount}
    resource = ResourceRef(type="Order", id="A1002", attributes={**attributes, "pinned": True})
    return GateRequest(principal=OWNER, action="myproject.refund.create", resource=resource)


def test_a_small_refund_is_allowed() -> None:
    assert ENGINE.decide(refund(60)).outcome == "allow"


def test_small_refunds_add_up_to_an_approval() -> None:
    decision = ENGINE.decide(refund(60, refunded=60))  # 120 on the order in all
    assert decision.outcome == "needs_approval" and decision.approvers == ["manager"]


def test_never_past_what_is_left() -> None:
    assert ENGINE.decide(refund(100, refunded=400)).outcome == "deny"


def test_another_customers_order_is_denied() -> None:
    request = refund(10).model_copy(update={"principal": STRANGER})
    assert ENGINE.decide(request).outcome == "deny"
