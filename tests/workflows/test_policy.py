"""Every shipped policy, decision by decision: allow, deny, needs approval."""

from __future__ import annotations

from datetime import datetime

import pytest

from chamberlain.workflows._policy import POLICIES, GateRequest, PolicyEngine, ResourceRef
from chamberlain.workflows._types import Principal

ENGINE = PolicyEngine.load()
SUPPORT = Principal(id="li", roles=["support"], department="support")
FINANCE = Principal(id="fang", roles=["analyst"], department="finance")
HELPDESK = Principal(id="helpdesk", kind="service", roles=["helpdesk"])
CUSTOMER = Principal(id="c1", kind="service", roles=["customer"])
OWNER = "C10012"
ACTS_FOR_OWNER = Principal(id="helpdesk:C10012", kind="service", roles=["helpdesk"], customer=OWNER)
ACTS_FOR_OTHER = Principal(id="helpdesk:C10353", kind="service", roles=["helpdesk"], customer="C10353")


def order(
    amount: float | None = None,
    currency: str = "CNY",
    *,
    refunded: float = 0.0,
    total: float = 5000.0,
    pinned: bool = True,
    owner: str | None = OWNER,
    kind: str = "Order",
) -> ResourceRef:
    """An order (or a return) as the business adapters describe it: owner, total, refunded so far."""
    attributes: dict[str, object] = {"currency": currency, "total": total, "refunded": refunded}
    if owner is not None:
        attributes["owner"] = owner
    if amount is not None:
        attributes |= {"amount": amount, "pinned": pinned}
    return ResourceRef(type=kind, id="A1002" if kind == "Order" else "RMA000001", attributes=attributes)


def customer(owner: str | None) -> ResourceRef:
    return ResourceRef(type="Customer", id="C10012", attributes={"owner": owner} if owner else {})


FINANCE_DATA = {"labels": ["finance"]}
SHIPPED = {
    "support-refunds-up-to-200-cny",
    "approved-refunds",
    "no-refund-without-the-order-amounts",
    "no-refund-beyond-what-is-left",
    "customers-only-their-own-records",
    "reads-for-everyone-in-the-tenant",
    "finance-data-for-finance-only",
    "models-by-default",
    "no-pii-to-external-models",
    "pii-masked-for-untrusted-models",
    "finance-data-only-to-trusted-models",
    "returns-for-support-and-helpdesk",
    "return-refunds-within-the-policy-amount",
}
MODEL = ResourceRef(type="Model", id="m")
MANAGER_APPROVED = {"approved": True, "approver_roles": ["manager"]}
CASES = [
    # policy, principal, action, resource, extra, outcome, approvers
    ("support-refunds-up-to-200-cny", SUPPORT, "erp.refund.create", order(200), {}, "allow", []),
    ("support-refunds-up-to-200-cny (HKD)", SUPPORT, "erp.refund.create", order(210, "HKD"), {}, "allow", []),
    ("approved-refunds: above 200", SUPPORT, "erp.refund.create", order(200.01), {}, "needs_approval", ["manager"]),
    (
        "approved-refunds: approved",
        SUPPORT,
        "erp.refund.create",
        order(5000),
        {"approved": True, "approver_roles": ["manager"]},
        "allow",
        [],
    ),
    (
        "approved-refunds: wrong approver",
        SUPPORT,
        "erp.refund.create",
        order(5000),
        {"approved": True, "approver_roles": ["viewer"]},
        "deny",
        [],
    ),
    ("customers cannot refund alone", CUSTOMER, "erp.refund.create", order(10), {}, "needs_approval", ["manager"]),
    (
        "limits are cumulative: the second part of a split refund",
        SUPPORT,
        "erp.refund.create",
        order(119.2, refunded=119.2),
        {},
        "needs_approval",
        ["manager"],
    ),
    (
        "limits are cumulative: in CNY",
        SUPPORT,
        "erp.refund.create",
        order(100, "HKD", refunded=116),
        {},
        "needs_approval",
        ["manager"],
    ),
    (
        "an unpinned refund is not decided alone",
        SUPPORT,
        "erp.refund.create",
        order(10, pinned=False),
        {},
        "needs_approval",
        ["manager"],
    ),
    ("no-refund-without-the-order-amounts", SUPPORT, "erp.refund.create", order(), {}, "deny", []),
    (
        "no-refund-without-the-order-amounts: no refunded",
        SUPPORT,
        "erp.refund.create",
        ResourceRef(type="Order", id="A1002", attributes={"amount": 10, "total": 50}),
        MANAGER_APPROVED,
        "deny",
        [],
    ),
    (
        "no-refund-beyond-what-is-left",
        SUPPORT,
        "erp.refund.create",
        order(50.01, refunded=4950),
        MANAGER_APPROVED,
        "deny",
        [],
    ),
    (
        "no refund beyond: the rest to the cent",
        SUPPORT,
        "erp.refund.create",
        order(50, refunded=4950),
        MANAGER_APPROVED,
        "allow",
        [],
    ),
    ("customers-only-their-own-records", ACTS_FOR_OTHER, "erp.order.read", order(), {}, "deny", []),
    ("own records: an order", ACTS_FOR_OWNER, "erp.order.read", order(), {}, "allow", []),
    (
        "own records: an order with no owner fails closed",
        ACTS_FOR_OWNER,
        "erp.order.read",
        order(owner=None),
        {},
        "deny",
        [],
    ),
    ("own records: another's return", ACTS_FOR_OTHER, "returns.label.create", order(kind="Return"), {}, "deny", []),
    (
        "own records: another's return refunded",
        ACTS_FOR_OTHER,
        "erp.refund.create",
        order(10, kind="Return"),
        MANAGER_APPROVED,
        "deny",
        [],
    ),
    (
        "own records: own return refunded",
        ACTS_FOR_OWNER,
        "erp.refund.create",
        order(10, kind="Return"),
        {},
        "allow",
        [],
    ),
    ("own records: another's customer record", ACTS_FOR_OTHER, "crm.customer.read", customer(OWNER), {}, "deny", []),
    ("own records: a ticket naming no owner", ACTS_FOR_OWNER, "crm.ticket.create", customer(None), {}, "deny", []),
    ("own records: own ticket", ACTS_FOR_OWNER, "crm.ticket.create", customer(OWNER), {}, "allow", []),
    ("own records: models are no record", ACTS_FOR_OTHER, "model.invoke", MODEL, {"tier": "edge"}, "allow", []),
    ("own records: staff act for no customer", SUPPORT, "erp.order.read", order(owner="C99999"), {}, "allow", []),
    ("reads-for-everyone-in-the-tenant", CUSTOMER, "erp.order.read", order(), {}, "allow", []),
    ("finance-data-for-finance-only: support", SUPPORT, "erp.order.read", order(), {"labels": ["finance"]}, "deny", []),
    ("finance-data-for-finance-only: finance", FINANCE, "erp.order.read", order(), FINANCE_DATA, "allow", []),
    ("models-by-default", CUSTOMER, "model.invoke", MODEL, {"tier": "edge", "labels": ["pii"]}, "allow", []),
    (
        "no-pii-to-external-models",
        SUPPORT,
        "model.invoke",
        MODEL,
        {"tier": "external", "labels": ["pii"], "trusted": ["pii"]},
        "mask",
        [],
    ),
    ("external models get unlabelled data", SUPPORT, "model.invoke", MODEL, {"tier": "external"}, "allow", []),
    (
        "pii-masked-for-untrusted-models",
        SUPPORT,
        "model.invoke",
        MODEL,
        {"tier": "edge", "labels": ["pii"], "trusted": []},
        "mask",
        [],
    ),
    (
        "pii: trusted models see it",
        SUPPORT,
        "model.invoke",
        MODEL,
        {"tier": "private", "labels": ["pii"], "trusted": ["pii"]},
        "allow",
        [],
    ),
    (
        "finance-data-only-to-trusted-models",
        FINANCE,
        "model.invoke",
        MODEL,
        {"tier": "private", "labels": ["finance", "pii"], "trusted": ["pii"]},
        "deny",
        [],
    ),
    (
        "finance: a trusted model",
        FINANCE,
        "model.invoke",
        MODEL,
        {"tier": "private", "labels": ["finance"], "trusted": ["finance"]},
        "allow",
        [],
    ),
    ("returns-for-support-and-helpdesk", HELPDESK, "returns.rma.create", order(), {}, "allow", []),
    ("returns: not for customers", CUSTOMER, "returns.rma.create", order(), {}, "deny", []),
    (
        "return-refunds-within-the-policy-amount",
        HELPDESK,
        "erp.refund.create",
        order(150, kind="Return"),
        {},
        "allow",
        [],
    ),
    (
        "return refunds above it need a manager",
        HELPDESK,
        "erp.refund.create",
        order(900, kind="Return"),
        {},
        "needs_approval",
        ["manager"],
    ),
    (
        "return refunds: three parts of 119.20, the second",
        HELPDESK,
        "erp.refund.create",
        order(119.2, kind="Return", refunded=119.2),
        {},
        "needs_approval",
        ["manager"],
    ),
]


@pytest.mark.parametrize(
    ("case", "principal", "action", "resource", "extra", "outcome", "approvers"), CASES, ids=[c[0] for c in CASES]
)
def test_shipped_policies(
    case: str,
    principal: Principal,
    action: str,
    resource: ResourceRef,
    extra: dict[str, object],
    outcome: str,
    approvers: list[str],
) -> None:
    decision = ENGINE.decide(GateRequest(principal=principal, action=action, resource=resource, **extra))  # type: ignore[arg-type]
    assert (decision.outcome, decision.approvers) == (outcome, approvers), decision.reason
    if case in SHIPPED:  # a case named after a policy: the decision names that policy
        assert case in decision.policies


def test_every_shipped_policy_has_a_case() -> None:
    assert {c[0].split(":")[0].split(" (")[0] for c in CASES} >= SHIPPED


def test_the_grant_bounds_every_principal() -> None:
    request = GateRequest(principal=SUPPORT, action="erp.refund.create", resource=order(10), grant=["erp.order.read"])
    decision = ENGINE.decide(request)
    assert (decision.outcome, decision.reason) == ("deny", "erp.refund.create is not in the agent's grant")


def test_a_forbid_names_its_policy() -> None:
    request = GateRequest(
        principal=FINANCE,
        action="model.invoke",
        resource=ResourceRef(type="Model", id="m"),
        tier="private",
        labels=["finance"],
        trusted=[],
    )
    assert ENGINE.decide(request).policies == ["finance-data-only-to-trusted-models"]


def test_a_mask_says_how_and_names_the_policies_that_asked_for_it() -> None:
    request = GateRequest(
        principal=SUPPORT,
        action="model.invoke",
        resource=ResourceRef(type="Model", id="gpt"),
        tier="external",
        labels=["pii", "financial"],
        trusted=[],
    )
    decision = ENGINE.decide(request)
    assert (decision.outcome, decision.masks) == ("mask", {"pii": "pseudonym"})
    assert decision.policies == ["no-pii-to-external-models", "pii-masked-for-untrusted-models", "models-by-default"]


def test_a_mask_that_would_not_be_enough_is_a_deny() -> None:
    request = GateRequest(
        principal=FINANCE,
        action="model.invoke",
        resource=ResourceRef(type="Model", id="gpt"),
        tier="external",
        labels=["pii", "finance"],
        trusted=[],
    )
    assert ENGINE.decide(request).outcome == "deny"


def test_an_unknown_mask_style_is_refused_when_policies_load() -> None:
    text = '@id("p")\n@mask("pii:blur")\nforbid (principal, action, resource);'
    with pytest.raises(
        ValueError, match="policy 'p': @mask style 'blur' for 'pii' is not one of redact, pseudonym, last4"
    ):
        PolicyEngine([text])


def test_time_and_currency_are_in_the_context() -> None:
    office_hours = """
    @id("refunds-in-office-hours")
    forbid (principal, action == Action::"erp.refund.create", resource)
    unless { context.hour >= 8 && context.hour < 20 && context.weekday != "Sun" && context.currency != "EUR" };
    """
    engine = PolicyEngine([*(f.read_text() for f in sorted(POLICIES.glob("*.cedar"))), office_hours])

    def at(when: str, currency: str = "CNY") -> str:
        request = GateRequest(
            principal=SUPPORT,
            action="erp.refund.create",
            resource=order(150, currency),
            at=datetime.fromisoformat(when),
        )
        return engine.decide(request).outcome

    assert at("2026-11-25T10:00:00+00:00") == "allow"  # a Wednesday morning
    assert at("2026-11-25T03:00:00+00:00") == "deny"
    assert at("2026-11-29T10:00:00+00:00") == "deny"  # a Sunday
    assert at("2026-11-25T18:30:00+08:00") == "allow"  # 10:30 UTC
    assert at("2026-11-25T10:00:00+00:00", "EUR") == "deny"


def test_a_customer_is_named_or_absent() -> None:
    with pytest.raises(ValueError, match="customer"):
        Principal(id="x", customer="")


def test_the_money_context_counts_what_was_refunded() -> None:
    from chamberlain.workflows._policy import _money

    assert _money({"amount": 100, "currency": "HKD", "refunded": 116.0, "total": 300.0}) == {
        "currency": "HKD",
        "amount_cny": 93,
        "amount_cumulative_cny": 201,
        "amount_cents": 10000,
        "refundable_cents": 18400,
    }
    assert _money({"amount": 10}) == {"currency": "CNY", "amount_cny": 10}
    assert _money({"owner": "C1"}) == {}
