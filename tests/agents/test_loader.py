"""Each bad graph gives its exact message, with file, line and suggestion."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from chamberlain.agents import GraphSpec, GraphSpecError, ModelNode, SpecIssue, ToolNode, load_graph, parse_graph
from chamberlain.agents._loader import check_graph
from tests.support import toolbox

TOOLS = toolbox.tools()

GOOD = """\
name: returns
state:
  order_id: {type: str}
  amount: {type: float}
  intent: {type: str}
start: classify
nodes:
  classify:
    type: model
    prompt: "Classify {order_id}"
    output:
      intent: {type: str, enum: [refund, other]}
    next: triage
  triage:
    type: route
    next:
      - {when: "intent == 'refund'", to: refund}
      - to: done
  refund:
    type: tool
    tool: erp.refund
    args: {order_id: order_id, amount: amount}
    timeout: 5s
    next: done
  done:
    type: end
"""


def errors(text: str) -> list[str]:
    with pytest.raises(GraphSpecError) as caught:
        parse_graph(textwrap.dedent(text), filename="returns.yaml", tools=TOOLS)
    return [str(issue) for issue in caught.value.issues]


def test_a_good_graph_loads_with_typed_fields() -> None:
    spec = parse_graph(GOOD, filename="returns.yaml", tools=TOOLS)
    refund = spec.nodes["refund"]
    assert isinstance(refund, ToolNode) and refund.timeout == timedelta(seconds=5)
    assert isinstance(spec.nodes["classify"], ModelNode)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "tool: erp.refund",
            "tool: erp.refundz",
            ["returns.yaml:21: node 'refund' uses unknown tool 'erp.refundz' — did you mean 'erp.refund'?"],
        ),
        (
            "args: {order_id: order_id,",
            "args: {order_id: order_idd,",
            [
                "returns.yaml:22: expression 'order_idd' reads unknown state field 'order_idd'"
                " — did you mean 'order_id'?"
            ],
        ),
        (
            "      - to: done\n",
            "      - to: dne\n",
            ["returns.yaml:18: unknown node 'dne' — did you mean 'done'?"],
        ),
        (
            '"Classify {order_id}"',
            '"Classify {order}"',
            ["returns.yaml:10: prompt uses unknown state field 'order' — did you mean 'order_id'?"],
        ),
        (
            "      intent: {type: str, enum",
            "      intnt: {type: str, enum",
            ["returns.yaml:12: output writes unknown state field 'intnt' — did you mean 'intent'?"],
        ),
        (
            "    timeout: 5s\n",
            "    tmeout: 5s\n",
            ["returns.yaml:23: unknown key 'tmeout' — did you mean 'timeout'?"],
        ),
        (
            "    type: route\n",
            "    type: rout\n",
            ["returns.yaml:15: unknown node type 'rout' — did you mean 'route'?"],
        ),
        (
            "    type: route\n",
            "    type: fork\n",
            [
                "returns.yaml:15: unknown node type 'fork' — use one of: "
                "model, classify, tool, route, approval, agent, subgraph, map, end"
            ],
        ),
        (
            "      - to: done\n",
            "",
            ["returns.yaml:16: node 'triage' has no default branch — end the list with a branch that has no 'when'"],
        ),
        (
            "  done:\n    type: end\n",
            "",
            [
                "returns.yaml:18: unknown node 'done'",
                "returns.yaml:24: unknown node 'done'",
                "returns.yaml:7: graph has no end node — add a node with 'type: end'",
            ],
        ),
        (
            "{when: \"intent == 'refund'\", to: refund}",
            "{when: \"__import__('os')\", to: refund}",
            [
                "returns.yaml:17: \"__import__('os')\" calls __import__(), which is not allowed"
                " (allowed: abs, float, int, len, lower, max, min, round, str, upper)"
            ],
        ),
        (
            "    next: triage\n",
            "    next: triage\n  orphan:\n    type: route\n    next: [{to: done}]\n",
            ["returns.yaml:14: node 'orphan' is unreachable from 'classify'"],
        ),
        (
            "    next: done\n  done:",
            "    next: classify\n  done:",
            ["returns.yaml:8: cycle classify → triage → refund → classify is unbounded — set 'max_steps' on the graph"],
        ),
        (
            "    next: done\n  done:",
            "    next: done\n    next: classify\n  done:",
            [
                "returns.yaml:25: duplicate key 'nodes.refund.next' (first at line 24); YAML would keep only the last"
                " — remove one of them, or merge them into one"
            ],
        ),
        (
            "  refund:\n    type: tool",
            "  triage:\n    type: route\n    next: [{to: refund}]\n  refund:\n    type: tool",
            [
                "returns.yaml:19: duplicate key 'nodes.triage' (first at line 14); YAML would keep only the last"
                " — remove one of them, or merge them into one"
            ],
        ),
        (
            "args: {order_id: order_id, amount: amount}",
            "args: {order_id: order_id, amout: amount}",
            [
                "returns.yaml:22: node 'refund' passes argument 'amout', which tool 'erp.refund' does not take"
                " — did you mean 'amount'?",
                "returns.yaml:22: node 'refund' does not pass 'amount', which tool 'erp.refund' requires"
                " — add 'amount: <expression>' under 'args'",
            ],
        ),
        (
            "args: {order_id: order_id, amount: amount}",
            "args: {order_id: order_id, amount: amount, note: order_id}",
            [
                "returns.yaml:22: node 'refund' passes argument 'note', which tool 'erp.refund' does not take"
                " — it takes: amount, order_id"
            ],
        ),
        (
            "    timeout: 5s\n",
            "    timeout: 5s\n    output: {intent: result.refund_idd}\n",
            [
                "returns.yaml:24: expression 'result.refund_idd' reads 'result.refund_idd', but tool 'erp.refund'"
                " returns no 'refund_idd' — did you mean 'refund_id'?"
            ],
        ),
        (
            "    timeout: 5s\n",
            "    timeout: 5s\n    output: {intent: \"'refunded ' + str(result['nope'])\"}\n",
            [
                "returns.yaml:24: expression \"'refunded ' + str(result['nope'])\" reads 'result.nope', but tool"
                " 'erp.refund' returns no 'nope' — it returns: amount, refund_id"
            ],
        ),
        (
            "intent: {type: str, enum: [refund, other]}",
            'intent: {type: str, pattern: "^A[0-9{4}$"}',
            [
                "returns.yaml:12: pattern '^A[0-9{4}$' of output 'intent' is not a valid regular expression:"
                " unclosed character class"
            ],
        ),
        (
            "intent: {type: str, enum: [refund, other]}",
            'intent: {type: str, pattern: "^(?!A)[0-9]+$"}',  # Python's re takes it; the run-time engine does not
            [
                "returns.yaml:12: pattern '^(?!A)[0-9]+$' of output 'intent' is not a valid regular expression:"
                " look-around, including look-ahead and look-behind, is not supported"
            ],
        ),
    ],
)
def test_bad_graph_reports_exact_errors(old: str, new: str, expected: list[str]) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new)
    assert errors(text) == expected


def test_a_cycle_is_fine_with_a_bound() -> None:
    text = GOOD.replace("    next: done\n  done:", "    next: classify\n  done:") + "max_steps: 20\n"
    assert parse_graph(text, tools=TOOLS).max_steps == 20


def test_a_node_that_cannot_end_is_reported() -> None:
    text = GOOD.replace("    next: done\n  done:", "    next: refund\n  done:") + "max_steps: 20\n"
    assert "returns.yaml:19: node 'refund' can never reach an end node" in errors(text)


def test_yaml_syntax_error_names_the_line() -> None:
    assert errors("name: x\nstate: {a: [1, 2}\n") == [
        "returns.yaml:2: not valid YAML: expected ',' or ']', but got '}'"
    ]


def test_missing_keys_are_named() -> None:
    assert errors("name: x\nstate: {}\nnodes: {}\n") == ["returns.yaml:1: missing required key 'start'"]


def test_tools_are_not_checked_without_a_registry(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(GOOD.replace("erp.refund", "anything.goes"))
    assert load_graph(path).nodes["refund"].tool == "anything.goes"  # type: ignore[union-attr]


def test_python_built_graphs_get_the_same_checks() -> None:
    spec = parse_graph(GOOD, tools=TOOLS)
    broken = spec.model_copy(update={"start": "clasify"})
    with pytest.raises(GraphSpecError, match=r"<graph> \(start\): unknown node 'clasify' — did you mean 'classify'\?"):
        check_graph(broken)


def test_a_duplicate_key_in_non_latin_text_is_named_with_both_lines() -> None:
    text = GOOD.replace("  intent: {type: str}\n", "  intent: {type: str}\n  备注: {type: str}\n  备注: {type: int}\n")
    assert errors(text) == [
        "returns.yaml:7: duplicate key 'state.备注' (first at line 6); YAML would keep only the last"
        " — remove one of them, or merge them into one"
    ]


def test_a_valid_pattern_in_non_latin_text_loads() -> None:
    text = GOOD.replace("enum: [refund, other]}", r'pattern: "^\\p{Han}+$"}')
    classify = parse_graph(text, tools=TOOLS).nodes["classify"]
    assert isinstance(classify, ModelNode) and classify.output and classify.output["intent"].pattern == r"^\p{Han}+$"


def test_tool_names_alone_check_names_but_not_arguments() -> None:
    text = GOOD.replace("amount: amount}", "amout: amount}")
    assert parse_graph(text, tools=set(TOOLS)).nodes["refund"].args == {"order_id": "order_id", "amout": "amount"}  # type: ignore[union-attr]


def test_check_graph_runs_the_review_like_the_loader() -> None:
    spec = parse_graph(GOOD, tools=TOOLS)

    def review(checked: GraphSpec) -> list[SpecIssue]:
        return [SpecIssue("refunds need a second look", ("nodes", "refund", "tool"))]

    with pytest.raises(GraphSpecError, match=r"<graph> \(nodes.refund.tool\): refunds need a second look"):
        check_graph(spec, tools=TOOLS, review=review)
    with pytest.raises(GraphSpecError, match=r"returns.yaml:21: refunds need a second look"):
        parse_graph(GOOD, filename="returns.yaml", tools=TOOLS, review=review)
    broken = spec.model_copy(update={"start": "clasify"})
    with pytest.raises(GraphSpecError, match="unknown node 'clasify'"):
        check_graph(broken, review=review)  # the review sees only specs that pass the cross-reference checks
