"""The embedded ERP on SQLModel: SQLite by default, PostgreSQL by URL, same code.

Every write is exactly-once per idempotency key (a unique column, checked and written in
the write's own transaction), and refunds cannot exceed what was paid even when two run
at once: the refund is a single conditional ``UPDATE … WHERE refunded + amount <= amount``,
atomic in both databases, not a check followed by a write. A refund pinned to the refunded
amount it was decided on adds ``AND refunded = expected`` to that same UPDATE, so of two
refunds decided at once on one order only the first happens (limits are cumulative).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from chamberlain.tools._database import open_engine
from chamberlain.tools._exceptions import ToolRejected
from chamberlain.tools.erp.contract import (
    CENT,
    LineView,
    OrderStatusView,
    OrderView,
    RefundRequest,
    RefundView,
    ReturnLine,
    RmaRequest,
    RmaView,
    StockView,
)
from chamberlain.tools.erp.models import (
    Inventory,
    Order,
    OrderLine,
    Payment,
    Product,
    Refund,
    ReturnAuthorization,
    ReturnRefund,
    Shipment,
    Warehouse,
)


def rma_number(rma_id: int) -> str:
    return f"RMA{rma_id:06d}"


def _rma_id(rma: str) -> int:
    if not re.fullmatch(r"RMA[0-9]{1,9}", rma):  # ASCII digits only: "RMA٣" is no other return's number
        raise ToolRejected(f"{rma!r} is not an RMA number (RMA and six digits)")
    return int(rma[3:])


class EmbeddedErp:
    """The ERP of the demos and tests; ``url`` is any SQLAlchemy URL."""

    def __init__(self, url: str | Engine) -> None:
        self.engine = open_engine(url) if isinstance(url, str) else url

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    # -- reads ---------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> OrderView:
        return await asyncio.to_thread(self._get_order, order_id)

    def _get_order(self, order_id: str) -> OrderView:
        with Session(self.engine) as session:
            order = session.get(Order, order_id)
            if order is None:
                raise ToolRejected(f"no order {order_id}")
            rows = session.exec(
                select(OrderLine, Product)
                .join(Product)
                .where(OrderLine.order_id == order_id)
                .order_by(OrderLine.line_no)  # type: ignore[arg-type]
            ).all()
            payments = session.exec(select(Payment).where(Payment.order_id == order_id)).all()
            warehouse = session.get(Warehouse, order.warehouse)
            return OrderView(
                **order.model_dump(exclude={"id"}),
                id=order.id,
                return_to=warehouse.address if warehouse else order.warehouse,
                paid=sum(p.amount for p in payments),
                refunded=sum(p.refunded for p in payments),
                lines=[
                    LineView(
                        line_no=line.line_no,
                        sku=line.sku,
                        name=product.name,
                        category=product.category,
                        quantity=line.quantity,
                        unit_price=line.unit_price,
                        returned_quantity=line.returned_quantity,
                    )
                    for line, product in rows
                ],
            )

    async def get_stock(self, sku: str, warehouse: str) -> StockView:
        return await asyncio.to_thread(self._get_stock, sku, warehouse)

    def _get_stock(self, sku: str, warehouse: str) -> StockView:
        with Session(self.engine) as session:
            row = session.exec(
                select(Inventory, Product).join(Product).where(Inventory.sku == sku, Inventory.warehouse == warehouse)
            ).first()
            if row is None:
                raise ToolRejected(f"warehouse {warehouse} keeps no stock of SKU {sku}")
            stock, product = row
            return StockView(sku=sku, name=product.name, warehouse=warehouse, on_hand=stock.on_hand)

    async def order_status(self, order_id: str) -> OrderStatusView:
        return await asyncio.to_thread(self._order_status, order_id)

    def _order_status(self, order_id: str) -> OrderStatusView:
        with Session(self.engine) as session:
            order = session.get(Order, order_id)
            if order is None:
                raise ToolRejected(f"no order {order_id}")
            shipment = session.exec(
                select(Shipment).where(Shipment.order_id == order_id).order_by(col(Shipment.shipped_at).desc())
            ).first()
            lines = session.exec(
                select(OrderLine).where(OrderLine.order_id == order_id).order_by(col(OrderLine.line_no))
            ).all()
            return OrderStatusView(
                order_id=order.id,
                status=order.status,
                placed_at=order.placed_at,
                delivered_at=order.delivered_at,
                carrier=shipment.carrier if shipment else None,
                tracking=shipment.tracking if shipment else None,
                shipped_at=shipment.shipped_at if shipment else None,
                open_lines=[
                    ReturnLine(line_no=line.line_no, quantity=line.quantity - line.returned_quantity)
                    for line in lines
                    if line.quantity > line.returned_quantity
                ],
            )

    async def cancel_order(self, order_id: str, idempotency_key: str) -> OrderStatusView:
        return await asyncio.to_thread(self._cancel_order, order_id)

    def _cancel_order(self, order_id: str) -> OrderStatusView:
        """One conditional UPDATE placed → cancelled: a retry, or a second request, finds it cancelled."""
        with Session(self.engine) as session:
            session.execute(
                update(Order).where(col(Order.id) == order_id, col(Order.status) == "placed").values(status="cancelled")
            )
            session.commit()
        status = self._order_status(order_id)
        if status.status != "cancelled":
            raise ToolRejected(
                f"order {order_id} is {status.status}, so it can no longer be cancelled: "
                "once it is delivered it can be returned"
            )
        return status

    async def get_return(self, rma: str) -> RmaView:
        return await asyncio.to_thread(self._get_return, rma)

    def _get_return(self, rma: str) -> RmaView:
        with Session(self.engine) as session:
            row = session.get(ReturnAuthorization, _rma_id(rma))
            if row is None:
                raise ToolRejected(f"no return authorisation {rma}")
            return _rma_view(row)

    async def find_return(self, idempotency_key: str) -> RmaView | None:
        return await asyncio.to_thread(self._find_return, idempotency_key)

    def _find_return(self, key: str) -> RmaView | None:
        with Session(self.engine) as session:
            row = session.exec(select(ReturnAuthorization).where(ReturnAuthorization.idempotency_key == key)).first()
            return _rma_view(row) if row else None

    # -- writes --------------------------------------------------------------------------------

    async def refund(self, request: RefundRequest, idempotency_key: str) -> RefundView:
        return await asyncio.to_thread(self._refund, request, idempotency_key)

    async def refund_return(self, rma: str, expected_refunded: float | None, idempotency_key: str) -> RefundView:
        found = await self.get_return(rma)
        request = RefundRequest(
            order_id=found.order_id,
            amount=found.refund_amount,
            reason=f"return {found.rma}",
            expected_refunded=expected_refunded,
        )
        return await asyncio.to_thread(self._refund, request, idempotency_key, _rma_id(found.rma))

    def _refund(self, request: RefundRequest, key: str, rma_id: int | None = None) -> RefundView:
        """A refund — of a return, once per return, if ``rma_id`` names it — in one transaction."""
        with Session(self.engine) as session:
            if existing := session.exec(select(Refund).where(Refund.idempotency_key == key)).first():
                return _refund_view(existing)
            if rma_id is not None and session.get(ReturnRefund, rma_id) is not None:
                raise ToolRejected(f"return {rma_number(rma_id)} was refunded already")
            payment = session.exec(select(Payment).where(Payment.order_id == request.order_id)).first()
            if payment is None or payment.id is None:
                raise ToolRejected(f"order {request.order_id} has no payment to refund")
            conditions = [
                col(Payment.id) == payment.id,
                col(Payment.refunded) + request.amount <= col(Payment.amount) + 1e-6,
            ]
            if request.expected_refunded is not None:  # pinned: only if nothing was refunded since the decision
                conditions.append(func.abs(col(Payment.refunded) - request.expected_refunded) < CENT)
            taken = session.execute(
                update(Payment).where(*conditions).values(refunded=col(Payment.refunded) + request.amount)
            )
            if taken.rowcount == 0:  # type: ignore[attr-defined]
                session.rollback()
                raise ToolRejected(self._refused(request))
            refund = Refund(
                order_id=request.order_id,
                payment_id=payment.id,
                amount=request.amount,
                currency=payment.currency,
                reason=request.reason,
                idempotency_key=key,
                created_at=datetime.now(UTC),
            )
            session.add(refund)
            if rma_id is not None:
                session.add(ReturnRefund(rma_id=rma_id, refund_key=key))
            try:
                session.commit()
            except IntegrityError:  # the same key won a race (theirs answers), or the return was refunded
                session.rollback()
                if rma_id is not None and not self._refunded_with(key):
                    raise ToolRejected(f"return {rma_number(rma_id)} was refunded already") from None
                return self._refund_by_key(key)
            session.refresh(refund)
            return _refund_view(refund)

    def _refused(self, request: RefundRequest) -> str:
        """Why a refund's conditional update took no row: the order changed since the decision,
        or the refund exceeds what is left."""
        with Session(self.engine) as session:
            payments = session.exec(select(Payment).where(Payment.order_id == request.order_id)).all()
            refunded, left = sum(p.refunded for p in payments), sum(p.amount - p.refunded for p in payments)
        expected = request.expected_refunded
        if expected is not None and abs(refunded - expected) >= CENT:
            return (
                f"order {request.order_id} had {refunded:.2f} refunded, not the {expected:.2f} this refund was "
                "decided on (another refund came first): look the order up again and decide anew"
            )
        return f"refund of {request.amount} on order {request.order_id} exceeds the {left:.2f} still refundable"

    def _refunded_with(self, key: str) -> bool:
        with Session(self.engine) as session:
            return session.exec(select(Refund).where(Refund.idempotency_key == key)).first() is not None

    def _refund_by_key(self, key: str) -> RefundView:
        with Session(self.engine) as session:
            return _refund_view(session.exec(select(Refund).where(Refund.idempotency_key == key)).one())

    async def authorize_return(self, request: RmaRequest, idempotency_key: str) -> RmaView:
        return await asyncio.to_thread(self._authorize_return, request, idempotency_key)

    def _authorize_return(self, request: RmaRequest, key: str) -> RmaView:
        with Session(self.engine) as session:
            if existing := session.exec(
                select(ReturnAuthorization).where(ReturnAuthorization.idempotency_key == key)
            ).first():
                return _rma_view(existing)
            for line in request.lines:
                taken = session.execute(
                    update(OrderLine)
                    .where(
                        col(OrderLine.order_id) == request.order_id,
                        col(OrderLine.line_no) == line.line_no,
                        col(OrderLine.returned_quantity) + line.quantity <= col(OrderLine.quantity),
                    )
                    .values(returned_quantity=col(OrderLine.returned_quantity) + line.quantity)
                )
                if taken.rowcount == 0:  # type: ignore[attr-defined]
                    session.rollback()
                    raise ToolRejected(
                        f"line {line.line_no} of order {request.order_id} cannot return {line.quantity} more"
                    )
            order = session.get(Order, request.order_id)
            row = ReturnAuthorization(
                currency=order.currency if order else "CNY",
                order_id=request.order_id,
                lines=json.dumps([line.model_dump() for line in request.lines]),
                reason=request.reason,
                condition=request.condition,
                refund_amount=request.refund_amount,
                idempotency_key=key,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return _rma_view(
                    session.exec(select(ReturnAuthorization).where(ReturnAuthorization.idempotency_key == key)).one()
                )
            session.refresh(row)
            return _rma_view(row)

    async def receive_return(self, rma: str, idempotency_key: str) -> RmaView:
        return await asyncio.to_thread(self._receive_return, rma)

    def _receive_return(self, rma: str) -> RmaView:
        """Restock once: only the transition authorized → received adds inventory."""
        with Session(self.engine) as session:
            received = session.execute(
                update(ReturnAuthorization)
                .where(col(ReturnAuthorization.id) == _rma_id(rma), col(ReturnAuthorization.status) == "authorized")
                .values(status="received")
            )
            row = session.get(ReturnAuthorization, _rma_id(rma))
            if row is None:
                raise ToolRejected(f"no return authorisation {rma}")
            if received.rowcount:  # type: ignore[attr-defined]
                order = session.get(Order, row.order_id)
                assert order is not None
                for line in json.loads(row.lines):
                    sku = session.get(OrderLine, (row.order_id, line["line_no"])).sku  # type: ignore[union-attr]
                    session.execute(
                        update(Inventory)
                        .where(col(Inventory.sku) == sku, col(Inventory.warehouse) == order.warehouse)
                        .values(on_hand=col(Inventory.on_hand) + line["quantity"])
                    )
            session.commit()
            session.refresh(row)
            return _rma_view(row)


def _refund_view(refund: Refund) -> RefundView:
    return RefundView(
        refund_id=f"RF{refund.id:06d}",
        order_id=refund.order_id,
        amount=refund.amount,
        currency=refund.currency,
        created_at=refund.created_at,
    )


def _rma_view(row: ReturnAuthorization) -> RmaView:
    assert row.id is not None
    return RmaView(
        rma=rma_number(row.id),
        order_id=row.order_id,
        lines=[ReturnLine(**x) for x in json.loads(row.lines)],
        reason=row.reason,
        condition=row.condition,
        refund_amount=row.refund_amount,
        currency=row.currency,
        status=row.status,
        created_at=row.created_at,
    )
