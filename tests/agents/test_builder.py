"""Graphs written in Python: the same checked spec as YAML, errors at the line of the call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from chamberlain.agents import (
    FieldType,
    GraphSpec,
    GraphSpecError,
    Message,
    OutputField,
    dump_graph,
    load_graph,
    parse_graph,
    review_graph,
)
from chamberlain.agents._builder import Graph, Labels, When, state_fields
from chamberlain.examples.quickstart import app as quickstart
from tests.support import toolbox

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "examples/quickstart/graph.yaml"
HERE = Path(__file__).name


class Triage(BaseModel):
    message: Annotated[str, Labels("pii")]
    intent: str | None = None
    order_id: str | None = None
    amount: Annotated[float, Labels("financial")] = 0
    refunded: Annotated[float, Labels("financial")] = 0
    refund_id: str | None = None
    reply: str | None = None
    error: str | None = None
    question: str = "Which order is this about? Please send its number (A and four digits)."


def quickstart_graph() -> Graph:
    """examples/quickstart/graph.yaml, written in Python."""
    g = Graph("support-triage", state=Triage, description="classify a customer message and refund an order when asked")
    g.classify(
        "intent",
        input="message",
        write="intent",
        classes={
            "refund": [
                *["I want a refund", "please refund my order", "return this item it is broken", "money back"],
                *["我要退货", "退款"],
            ],
            "status": [
                *["where is my order", "has my parcel shipped", "when will it arrive", "track my package"],
                "我的快递到哪了",
            ],
            "other": ["hello", "do you sell gift cards", "change my address", "你们几点开门"],
        },
        next=[When("intent == 'other'", "done"), "extract"],
    )
    g.model(
        "extract",
        tier="edge",
        system="Extract the order ID from the customer message, or none if it names no order. Answer in JSON.",
        prompt="{message}",
        output={"order_id": OutputField(pattern="^(A[0-9]{4}|none)$")},
        next=[When("order_id == 'none' or order_id not in message", "ask_order"), "triage"],
        timeout="30s",
    )
    g.route("triage", [When("intent == 'refund'", "lookup")], default="status")
    g.tool(
        "lookup",
        tool="shop.order",
        args={"order_id": "order_id"},
        output={
            "amount": "result.total - result.refunded",
            "refunded": "result.refunded",
            "reply": "'Order ' + result.order_id + ' was refunded in full already (' + str(result.refunded) + ' CNY)'",
        },
        on_error="refused",
        error="error",
        next=[When("amount <= 0", "already_refunded"), When("refunded + amount > 200", "manager"), "refund"],
    )
    g.approval(
        "manager",
        ask="Refund {amount} CNY on order {order_id}?",
        approvers=["manager"],
        escalate_to=["director"],
        timeout="1h",
        next="refund",
        on_reject="done",
    )
    g.tool(
        "refund",
        tool="shop.refund",
        args={"order_id": "order_id", "amount": "amount", "expected_refunded": "refunded"},
        output={"refund_id": "result.refund_id", "reply": "'Refunded ' + str(result.amount) + ' CNY'"},
        on_error="refused",
        error="error",
        next="done",
        retry={"max_attempts": 5, "initial_interval": "500ms"},
    )
    g.tool(
        "status",
        tool="shop.order",
        args={"order_id": "order_id"},
        output={"reply": "'Order ' + result.order_id + ' is ' + result.status"},
        on_error="refused",
        error="error",
        next="done",
    )
    g.end("done", output=["intent", "order_id", "amount", "refund_id", "reply"])
    g.end("ask_order", output=["intent", "question"])
    g.end("already_refunded", output=["intent", "order_id", "refunded", "reply"])
    g.end("refused", output=["intent", "order_id", "error"])
    return g


def test_the_quickstart_built_in_python_equals_the_yaml_one() -> None:
    tools = quickstart.tools()
    built = quickstart_graph().build(tools=tools)
    from_yaml = load_graph(QUICKSTART, tools=tools)
    assert built == from_yaml.model_copy(update={"schema_": None})  # the file also names its schema


def test_state_fields_come_from_the_model_with_their_labels() -> None:
    class State(BaseModel):
        note: Annotated[str, Labels("pii", "confidential")] | None = Field(None, description="what the customer said")
        lines: list[dict[str, Any]] = []
        history: list[Message] = []
        seen: Annotated[bool, Labels("internal")] = False

    fields = state_fields(State)
    assert {name: (f.type, f.labels, f.default) for name, f in fields.items()} == {
        "note": (FieldType.STR, ["pii", "confidential"], None),
        "lines": (FieldType.LIST, [], []),
        "history": (FieldType.MESSAGES, [], []),
        "seen": (FieldType.BOOL, ["internal"], False),
    }
    assert fields["note"].description == "what the customer said"


def test_a_state_type_a_graph_cannot_hold_is_named() -> None:
    class State(BaseModel):
        when: complex

    with pytest.raises(GraphSpecError, match=r"state field 'when' of State has type <class 'complex'>"):
        state_fields(State)


def line_of(marker: str) -> int:
    """The line of this file holding ``marker``."""
    return next(i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1) if marker in line)


def test_a_bad_reference_points_at_the_call_that_declared_the_node() -> None:
    g = Graph("g", state=Triage)
    g.route("triage", [When("intent == 'refund'", "dne")], default="done")  # marker: bad-route
    g.end("done")
    with pytest.raises(GraphSpecError) as raised:
        g.build()
    assert [str(i) for i in raised.value.issues] == [
        f"{__file__}:{line_of('marker: bad-route')}: unknown node 'dne' — did you mean 'done'?"
    ]


def test_a_misspelt_option_fails_at_its_call() -> None:
    g = Graph("g", state=Triage)
    with pytest.raises(GraphSpecError) as raised:
        g.tool("lookup", tool="shop.order", next="done", tmeout="5s")  # marker: bad-option
    assert [str(i) for i in raised.value.issues] == [
        f"{__file__}:{line_of('marker: bad-option')}: unknown key 'tmeout' — did you mean 'timeout'?"
    ]


def test_a_node_declared_twice_is_an_error_not_a_silent_replacement() -> None:
    g = Graph("g", state=Triage)
    g.route("triage", [When("intent == 'refund'", "done")], default="done")  # marker: first
    first = rf"first at .*{HERE}:{line_of('marker: first')}"
    with pytest.raises(GraphSpecError, match=rf"node 'triage' is declared twice \({first}\)"):
        g.route("triage", [], default="done")


def test_build_runs_the_tool_checks_and_the_review_like_the_loader() -> None:
    g = Graph("g", state=Triage)
    g.tool("pay", tool="test.refund_then_stall", args={"order_id": "order_id", "amount": "amount"}, next="done")
    g.end("done")
    tools = toolbox.tools()
    with pytest.raises(GraphSpecError, match=r"calls irreversible tool 'test.refund_then_stall'"):
        g.build(tools=tools, review=lambda spec: review_graph(spec, tools))
    assert g.build(tools=tools).start == "pay"  # without the review: only the cross-reference checks
    g2 = Graph("g", state=Triage)
    g2.tool("pay", tool="test.refund_then_stall", args={"order": "order_id", "amount": "amount"}, next="done")
    g2.end("done")
    with pytest.raises(GraphSpecError, match=r"passes argument 'order', which tool .* does not take — did you mean"):
        g2.build(tools=tools)


@pytest.mark.parametrize("path", [*sorted((ROOT / "tests/graphs").glob("*.yaml")), QUICKSTART], ids=lambda p: p.name)
def test_export_reads_back_to_the_same_spec(path: Path) -> None:
    spec = load_graph(path)
    text = dump_graph(spec)
    assert parse_graph(text) == spec
    assert "\\u" not in text  # non-Latin text stays readable


def test_export_writes_durations_as_an_author_would() -> None:
    text = dump_graph(quickstart_graph().build())
    assert "timeout: 30s" in text and "timeout: 1h" in text and "initial_interval: 500ms" in text
    assert "我要退货" in text
    assert text.index("type: classify") < text.index("input: message")  # the node's kind comes first


def test_a_python_built_spec_is_the_same_data_as_yaml() -> None:
    spec = quickstart_graph().build()
    assert isinstance(spec, GraphSpec)
    assert GraphSpec.model_validate_json(spec.model_dump_json(by_alias=True)) == spec  # crosses Temporal as JSON


def test_classify_margin_and_approval_output_are_keywords_of_their_nodes() -> None:
    """An unsure classifier's margin goes to the state; the approver's reply is a typed field."""
    g = Graph("g", state=Triage)
    g.classify("intent", input="message", write="intent", margin="amount", classes={"a": ["x"], "b": ["y"]}, next="ask")
    g.approval("ask", ask="Reply to {message}", approvers=["support"], output={"reply": {"maxLength": 20}}, next="done")
    g.end("done")
    spec = g.build()
    classify, ask = spec.nodes["intent"], spec.nodes["ask"]
    assert classify.type == "classify" and classify.margin == "amount"
    assert ask.type == "approval" and ask.output == {"reply": OutputField(max_length=20)}
    assert parse_graph(dump_graph(spec)) == spec
    with pytest.raises(GraphSpecError, match=r"ask\.output\.reply\.maxLength"):
        Graph("g", state=Triage).approval("ask", ask="?", approvers=["a"], output={"reply": {"maxLength": 0}}, next="d")
