"""Each bad graph gives its exact message, with file, line and suggestion."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from chamberlain.agents import GraphSpecError, ModelNode, ToolNode, load_graph, parse_graph
from chamberlain.agents.loader import check_graph
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
            ["returns.yaml:15: unknown node type 'rout' — use one of: model, tool, route, approval, end"],
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
