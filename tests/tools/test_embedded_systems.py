"""The embedded CRM and ERP, on SQLite and on PostgreSQL: reads, exactly-once writes,
race-free refunds, the return policy, labels and restocking."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from chamberlain.tools import ToolContext, ToolInputInvalid, ToolRejected
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import SINGLES_DAY, seed
from chamberlain.tools.crm.contract import TicketRequest
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.contract import LineView, OrderView, RefundRequest, ReturnLine, RmaRequest
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Inventory, Order, Refund
from chamberlain.tools.returns.policy import ReturnPolicy, ReturnRequest, evaluate

Systems = tuple[EmbeddedErp, EmbeddedCrm]


@pytest.fixture
def systems(database_url: str) -> Systems:
    erp = EmbeddedErp(database_url)
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=60, orders=400)
    return erp, crm


async def test_seed_is_deterministic_and_realistic(systems: Systems, tmp_path: Path) -> None:
    erp, crm = systems
    again = EmbeddedErp(f"sqlite:///{tmp_path / 'again.sqlite'}")
    seed(again, EmbeddedCrm(again.engine), customers=60, orders=400)
    first, second = await erp.get_order("A1123"), await again.get_order("A1123")
    assert first.model_dump(exclude={"placed_at", "delivered_at"}) == second.model_dump(
        exclude={"placed_at", "delivered_at"}
    )
    with Session(erp.engine) as session:
        orders = session.exec(select(Order)).all()
    assert len(orders) == 400 and {o.currency for o in orders} == {"CNY", "HKD"}
    assert sum(o.promotion == SINGLES_DAY for o in orders) > 60
    names = [(await crm.get_customer(f"C{10000 + i}")).name for i in range(60)]
    assert any(ord(n[0]) > 0x4E00 for n in names) and any(n[0].isascii() for n in names)


async def test_refunds_are_exactly_once_per_key(systems: Systems) -> None:
    erp, _ = systems
    order = await erp.get_order("A1010")
    first = await erp.refund(RefundRequest(order_id=order.id, amount=10), "run-1/refund/1")
    again = await erp.refund(RefundRequest(order_id=order.id, amount=10), "run-1/refund/1")
    assert first == again and (await erp.get_order(order.id)).refunded == pytest.approx(10)


async def test_a_refund_above_what_was_paid_is_refused(systems: Systems) -> None:
    erp, _ = systems
    order = await erp.get_order("A1011")
    with pytest.raises(ToolRejected, match=f"exceeds the {order.paid:.2f} still refundable"):
        await erp.refund(RefundRequest(order_id=order.id, amount=order.paid + 1), "run-2/refund/1")


async def test_concurrent_refunds_never_exceed_the_payment(systems: Systems) -> None:
    erp, _ = systems
    order = await erp.get_order("A1012")
    part = round(order.paid * 0.4, 2)
    results = await asyncio.gather(
        *(erp.refund(RefundRequest(order_id=order.id, amount=part), f"run-{i}/refund/1") for i in range(8)),
        return_exceptions=True,
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    assert len(succeeded) == 2 and all(isinstance(r, ToolRejected) for r in results if isinstance(r, BaseException))
    after = await erp.get_order(order.id)
    assert after.refunded == pytest.approx(2 * part) and after.refunded <= after.paid
    with Session(erp.engine) as session:
        assert len(session.exec(select(Refund).where(Refund.order_id == order.id)).all()) == 2


async def test_returns_authorize_once_restock_once_and_refuse_over_returns(systems: Systems) -> None:
    erp, _ = systems
    order = await erp.get_order("A1013")
    line = order.lines[0]
    request = RmaRequest(
        order_id=order.id,
        lines=[ReturnLine(line_no=line.line_no, quantity=1)],
        reason="broken",
        condition="damaged_on_arrival",
        refund_amount=line.unit_price,
    )
    rma = await erp.authorize_return(request, "run-3/authorize/1")
    assert await erp.authorize_return(request, "run-3/authorize/1") == rma
    with pytest.raises(ToolRejected, match=f"line {line.line_no} of order {order.id} cannot return"):
        too_many = request.model_copy(update={"lines": [ReturnLine(line_no=line.line_no, quantity=line.quantity)]})
        await erp.authorize_return(too_many, "run-4/authorize/1")

    def stock() -> int:
        with Session(erp.engine) as session:
            row = session.get(Inventory, (line.sku, order.warehouse))
            assert row is not None
            return row.on_hand

    before = stock()
    received = await erp.receive_return(rma.rma, "run-3/receive/1")
    await erp.receive_return(rma.rma, "run-3/receive/2")  # a second receipt of the same parcel
    assert received.status == "received" and stock() == before + 1


async def test_tickets_are_exactly_once_per_key(systems: Systems) -> None:
    _, crm = systems
    request = TicketRequest(customer_id="C10001", subject="Broken blender", note="photo attached")
    assert await crm.open_ticket(request, "run-5/ticket/1") == await crm.open_ticket(request, "run-5/ticket/1")
    with pytest.raises(ToolRejected, match="no customer C99999"):
        await crm.open_ticket(request.model_copy(update={"customer_id": "C99999"}), "run-6/ticket/1")


async def returnable_order(erp: EmbeddedErp, policy: ReturnPolicy, promotion: str | None) -> tuple[OrderView, LineView]:
    with Session(erp.engine) as session:
        ids = session.exec(select(Order.id).where(Order.promotion == promotion, Order.status == "delivered")).all()
    for order_id in ids:
        order = await erp.get_order(order_id)
        for line in order.lines:
            if line.category not in policy.excluded_categories:
                return order, line
    raise AssertionError("the seed has no returnable order")


async def test_the_return_policy_reads_its_rules_from_configuration(systems: Systems) -> None:
    erp, _ = systems
    policy = ReturnPolicy.load()
    promo, line = await returnable_order(erp, policy, SINGLES_DAY)
    plain, plain_line = await returnable_order(erp, policy, None)
    assert promo.delivered_at and plain.delivered_at

    def ask(order: OrderView, line: LineView, condition: str = "opened") -> ReturnRequest:
        return ReturnRequest(
            order_id=order.id, lines=[ReturnLine(line_no=line.line_no, quantity=1)], condition=condition
        )

    day_20 = promo.delivered_at.replace(tzinfo=UTC) + timedelta(days=20)
    decision = evaluate(policy, promo, ask(promo, line), today=day_20)  # inside 11.11's 30-day window
    assert decision.eligible and decision.refund_amount == pytest.approx(round(line.unit_price * 0.9, 2))
    plain_day_20 = plain.delivered_at.replace(tzinfo=UTC) + timedelta(days=20)
    assert any(
        "7-day return window ended" in r for r in evaluate(policy, plain, ask(plain, plain_line), plain_day_20).reasons
    )
    used = evaluate(policy, promo, ask(promo, line, "used"), today=day_20)
    assert not used.eligible and "items in condition 'used' cannot be returned" in used.reasons
    excluded = next((x for x in promo.lines + plain.lines if x.category in policy.excluded_categories), None)
    if excluded is not None:
        owner = promo if excluded in promo.lines else plain
        reasons = evaluate(policy, owner, ask(owner, excluded, "unopened"), today=owner.delivered_at).reasons  # type: ignore[arg-type]
        assert f"line {excluded.line_no} ({excluded.name}) is {excluded.category}, which cannot be returned" in reasons


async def test_bad_arguments_name_the_field_and_write_nothing(systems: Systems, tmp_path: Path) -> None:
    erp, crm = systems
    tools = business_tools(erp, crm, labels_dir=tmp_path)
    with pytest.raises(ToolInputInvalid, match=r"erp.refund.create: amount: Input should be greater than 0 \(got -5\)"):
        await tools.invoke("erp.refund.create", {"order_id": "A1014", "amount": -5}, ToolContext("s", "run-7/refund/1"))
    assert (await erp.get_order("A1014")).refunded == 0
