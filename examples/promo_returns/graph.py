"""The promo-returns graph written in Python: the same spec as ``graph.yaml``, built with
:mod:`chamberlain.agents._builder` (``graph().build(tools=app.tools())``).

Promo-season returns: "return what I bought in the big sale" — and everything else a customer
writes to the helpdesk in the sale. The intent is the nearest labelled exemplar's (WordLlama):
trusted when its margin over the next class is clear, else a person in the support queue
decides; the small model only extracts (order, lines, quantities, condition, reason), and what
it read is held against what the message states in so many words (``text.stated``): an order ID
the message does not contain is cleared (never guessed), a count of items the customer wrote is
the one returned (never shrunk), and legal action or a payment dispute makes it a complaint for
a person, however the classifier read it.
Complaints, non-delivery claims, exchanges and other questions go to the support queue too:
the run parks with a summary and resumes with the agent's reply. Status and cancellation go
to the ERP. Returns: an order ID the customer did not write is never acted
on (the run asks for it); the lines ("everything" → every line's quantity left) and the
policy (window, 11.11 rules, categories, condition, quantities) are decided by tools; a
manager approves when the order's refunds would pass 200; RMA, label, refund (pinned to what
the order had refunded when evaluated), a CRM note, and a reply in the customer's language.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel

from chamberlain.agents import FieldType, Graph, Labels, OutputField, When


class PromoState(BaseModel):
    """What a run knows: the customer's message in, then what the readers and the tools found."""

    message: Annotated[str, Labels("pii")]
    customer_id: str | None = None
    language: str = "en"
    intent: str | None = None
    margin: float = 0
    min_margin: float = 0.03
    order_id: str | None = None
    everything: bool = False
    line_no: int = 1
    quantity: int = 1
    threat: bool = False
    unclear: bool = False
    condition: str = "unopened"
    reason: str = ""
    order_status: str | None = None
    lines: list[Any] = []
    eligible: bool = False
    reasons: list[Any] = []
    refund_amount: Annotated[float, Labels("financial")] = 0
    refunded: Annotated[float, Labels("financial")] = 0
    currency: str = "CNY"
    rma: str | None = None
    label: str | None = None
    refund_id: str | None = None
    facts: str = ""
    reply: Annotated[str | None, Labels("pii")] = None
    error: str | None = None
    question: str = (
        "Which order is this about? Please send its number (A and four digits). 请提供订单号（A 加四位数字）。"
    )


INTENTS = {
    "return": [
        "I want to return the item and get my money back",
        "please refund me, I am sending it back",
        "return everything from my order",
        "我要退货退款",
        "买的东西不想要了，申请退货",
        "两件都退了吧",
        "the box is still sealed, please take it back and refund me",
        "这个订单的商品我要退回去",
        "订单里的衣服不合适，还没拆封，帮我退掉",
        "收到就是坏的，给我退钱",
        "没拆封，申请退款",
    ],
    "exchange": [
        "can I swap it for a different size",
        "I want to exchange it for another colour",
        "能换个尺码吗",
        "想换一个颜色",
    ],
    "status": [
        "where is my parcel",
        "when will my order be delivered",
        "what is the tracking number of my order",
        "我的快递到哪了",
        "订单什么时候发货",
    ],
    "cancel": [
        "cancel my order please",
        "I changed my mind, do not ship it",
        "帮我取消订单",
        "不要了，取消这个订单",
    ],
    "complaint": [
        "I was charged twice, I want to speak to a manager",
        "this is unacceptable, I am filing a complaint",
        "your service is terrible",
        "我要投诉",
        "重复扣款了，找你们经理",
        "I will take legal action if this is not fixed",
        "I am disputing the payment with my bank",
        "再不解决我就起诉你们",
        "我要去12315举报你们",
    ],
    "non_delivery": [
        "the courier says delivered but I never got it",
        "tracking shows delivered, nothing arrived",
        "my parcel never came",
        "显示已签收但是我没收到",
        "快递说送到了，根本没有",
    ],
    "other": [
        "do you sell replacement filters",
        "what are your opening hours",
        "do you ship to Hong Kong",
        "你们有卖替换滤芯吗",
        "发票怎么开",
        "can the refund be paid to a different card",
        "退款能打到另一张银行卡吗",
    ],
}

# What the model read counts only where the customer wrote it: a line — else line 1; "everything"
# and the quantity as the message states them (``text.stated``).
ORDER_LINES = """\
(result.open_lines if everything else [{'line_no': line_no if 'line ' + str(line_no) in lower(message) \
or '第' + str(line_no) in message else 1,
       'quantity': quantity}])"""


def graph() -> Graph:
    """A customer's message to the helpdesk, from its intent to the refund, the answer or a person."""
    g = Graph(
        "promo-returns",
        state=PromoState,
        description="a customer's message to the helpdesk, from its intent to the refund, the answer or a person",
        max_steps=25,
    )
    g.tool(  # counted characters, not a model: the reply goes out in it
        "language",
        tool="text.language",
        args={"text": "message"},
        output={"language": "result.language"},
        next="classify",
    )
    g.classify("classify", input="message", write="intent", margin="margin", classes=INTENTS, next="understand")
    g.model(  # extraction only: the intent is the classifier's
        "understand",
        tier="edge",
        system=(
            "Read the customer's message to a shop. Answer in JSON: order_id (the order number exactly as"
            " written, A and four digits, or none); everything (true if they want to return all items of the"
            " order); line_no (the order line, 1 unless they say); quantity (how many items, 1 unless they say,"
            ' 2 for "both" or "two"); condition (unopened, opened, damaged_on_arrival, wrong_item or used);'
            " reason (a few words)."
        ),
        prompt="{message}",
        output={
            "order_id": OutputField(pattern="^(A[0-9]{4}|none)$"),
            "everything": OutputField(type=FieldType.BOOL),
            "line_no": OutputField(type=FieldType.INT),
            "quantity": OutputField(type=FieldType.INT),
            "condition": OutputField(enum=["unopened", "opened", "damaged_on_arrival", "wrong_item", "used"]),
            "reason": OutputField(max_length=80),
        },
        next="stated",
    )
    g.tool(  # the model's reading held against what the message says in so many words
        "stated",
        tool="text.stated",
        args={"text": "message", "order_id": "order_id"},
        output={
            "order_id": "result.order_id",  # null unless the message contains it: never a guessed identifier
            "quantity": "result.quantity if result.quantity else 1",  # "return 10" is 10, never the model's 1
            "everything": "everything and result.everything",  # the model's "everything" only where the message says it
            "threat": "result.threat",
            "unclear": "result.unclear",  # "don't cancel", two orders, two counts: a person reads it
            "intent": "'complaint' if result.threat else intent",  # legal action, a chargeback: a person answers
        },
        next="triage",
    )
    g.route(
        "triage",
        [
            When("margin < min_margin", "support"),  # an unsure classifier (two classes close): a person
            When("unclear or language == 'other'", "support"),  # a script the helpdesk does not write in, too
            When("intent in ['complaint', 'non_delivery', 'exchange', 'other']", "support"),
            When("order_id == None", "ask_order"),  # the message names no order
            When("intent == 'status'", "status"),
            When("intent == 'cancel'", "cancel"),
        ],
        default="lookup",
    )
    g.approval(
        "support",
        ask=(
            '[{language}] customer {customer_id}, order {order_id}: "{message}" —'
            " read as {intent} (classifier margin {margin}; threat or dispute: {threat}). Reply to the customer."
        ),
        approvers=["support"],
        escalate_to=["supervisor"],
        timeout="8h",
        output={"reply": OutputField(max_length=2000)},
        next="answered",
        on_reject="closed",
    )
    g.tool(
        "status",
        tool="erp.order.status",
        args={"order_id": "order_id"},
        output={
            "order_status": "result.status",
            "facts": (
                "'order ' + order_id + ' is ' + result.status + ', sent with ' + str(result.carrier) +"
                " ' (tracking ' + str(result.tracking) + ')' +"
                " (', delivered ' + str(result.delivered_at) if result.delivered_at else '')"
            ),
        },
        on_error="declined",
        error="error",
        next="reply",
    )
    g.tool(
        "cancel",
        tool="erp.order.cancel",
        args={"order_id": "order_id"},
        output={"order_status": "result.status", "facts": "'order ' + order_id + ' is cancelled'"},
        on_error="declined",  # shipped already, or not this customer's order
        error="error",
        next="reply",
    )
    g.tool(
        "lookup",
        tool="erp.order.status",
        args={"order_id": "order_id"},
        output={"order_status": "result.status", "lines": ORDER_LINES},
        on_error="declined",  # no such order, or not this customer's
        error="error",
        next="evaluate",
    )
    g.tool(
        "evaluate",
        tool="returns.evaluate",
        args={"order_id": "order_id", "lines": "lines", "condition": "condition"},
        output={
            "eligible": "result.eligible",
            "reasons": "result.reasons",
            "refund_amount": "result.refund_amount",
            "refunded": "result.refunded",
            "currency": "result.currency",
        },
        on_error="declined",
        error="error",
        next="decide",
    )
    g.route(
        "decide",
        [When("eligible and refunded + refund_amount > 200", "manager"), When("eligible", "authorize")],
        default="declined",
    )
    g.approval(
        "manager",
        ask="Refund {refund_amount} {currency} for order {order_id} (already refunded: {refunded})?",
        approvers=["manager"],
        escalate_to=["director"],
        timeout="4h",
        next="authorize",
        on_reject="declined",
    )
    g.tool(
        "authorize",
        tool="returns.authorize",
        args={
            "order_id": "order_id",
            "lines": "lines",
            "condition": "condition",
            "reason": "reason if reason else message",
        },
        output={"rma": "result.rma"},
        on_error="declined",
        error="error",
        next="label",
    )
    g.tool("label", tool="returns.label", args={"rma": "rma"}, output={"label": "result.path"}, next="refund")
    g.tool(
        "refund",
        tool="returns.refund",
        args={"rma": "rma", "expected_refunded": "refunded"},
        output={
            "refund_id": "result.refund_id",
            "facts": (
                "'return ' + rma + ' of order ' + order_id + ' accepted; refund ' + str(result.amount) + ' ' +"
                " result.currency + ' to the original payment; return label attached'"
            ),
        },
        on_error="declined",  # e.g. another refund on the order came first, or not approved
        error="error",
        next="note",
    )
    g.tool(
        "note",
        tool="crm.ticket.open",
        args={"customer_id": "customer_id", "order_id": "order_id", "subject": "'Return ' + rma", "note": "facts"},
        on_error="reply",  # the refund stands; a missing note is noted in `error`
        error="error",
        next="reply",
    )
    g.model(
        "reply",
        tier="edge",
        system=(
            "You answer a shop's customer. Write a short, polite reply in {language} (zh: Chinese, en: English)"
            " that tells them exactly this and nothing more: {facts}."
        ),
        prompt="{message}",
        write="reply",
        next=[When("intent == 'status'", "told_status"), When("intent == 'cancel'", "cancelled"), "done"],
    )
    g.end(
        "done",
        output=["intent", "order_id", "lines", "refund_amount", "rma", "label", "refund_id", "facts", "reply"],
    )
    g.end("told_status", output=["intent", "order_id", "order_status", "facts", "reply"])
    g.end("cancelled", output=["intent", "order_id", "order_status", "facts", "reply"])
    g.end("answered", output=["intent", "margin", "order_id", "reply"])
    g.end("closed", output=["intent", "margin", "order_id"])
    g.end("ask_order", output=["intent", "question"])
    g.end("declined", output=["intent", "order_id", "reasons", "error", "rma"])
    return g
