"""Static safety checks when a graph is loaded with its tools and models."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import pytest

from chamberlain.agents import ModelRegistry, ScriptedChatModel, Tier, load_graph
from chamberlain.agents.exceptions import GraphSpecError, GraphWarning
from chamberlain.agents.safety import review_graph
from chamberlain.tools import ToolRegistry
from chamberlain.tools.business import business_tools
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows.policy import PolicyEngine

REFUND = """\
name: refund
state:
  customer_id: {}
  customer: {type: dict}
  order_id: {}
  amount: {type: float}
  reply: {}
start: lookup
nodes:
  lookup:
    type: tool
    tool: crm.customer.get
    args: {customer_id: customer_id}
    output: {customer: result}
    next: draft
  draft:
    type: model
    model: gpt-outside
    prompt: "Greet {customer}"
    write: reply
    next: pay
  pay:
    type: tool
    tool: erp.refund.create
    args: {order_id: order_id, amount: amount}
    next: done
  done: {type: end}
"""


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> ToolRegistry:
    erp = EmbeddedErp(f"sqlite:///{tmp_path_factory.mktemp('safety') / 'erp.sqlite'}")
    return business_tools(erp, EmbeddedCrm(erp.engine))


def external_models() -> ModelRegistry:
    models = ModelRegistry()
    models.register("gpt-outside", ScriptedChatModel(replies=[]), Tier.EXTERNAL)
    return models


def load(tmp_path: Path, text: str, tools: ToolRegistry, bounded: Collection[str] = ()) -> list[str]:
    path = tmp_path / "refund.yaml"
    path.write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GraphWarning)
        load_graph(path, tools=tools, review=lambda spec: review_graph(spec, tools, external_models(), bounded))
    return [str(w.message) for w in caught]


def test_an_irreversible_tool_without_approval_or_policy_bound_fails_the_load(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    with pytest.raises(GraphSpecError) as raised:
        load(tmp_path, REFUND, tools)
    assert str(raised.value) == (
        f"{tmp_path / 'refund.yaml'}:24: node 'pay' calls irreversible tool 'erp.refund.create' on a path without an "
        "approval node (lookup → draft → pay), and no policy bounds erp.refund.create — add an approval node "
        "before it, or a Cedar policy with a condition on this action"
    )


def test_an_approval_node_or_a_bounding_policy_satisfies_it(tmp_path: Path, tools: ToolRegistry) -> None:
    approved = REFUND.replace("    next: pay\n", "    next: check\n  check:\n    type: approval\n"
                              "    ask: refund?\n    approvers: [manager]\n    next: pay\n")  # fmt: skip
    load(tmp_path, approved, tools)
    assert "erp.refund.create" in PolicyEngine.load().bounded  # support-refunds-up-to-200-cny has a condition
    load(tmp_path, REFUND, tools, bounded=PolicyEngine.load().bounded)


def test_personal_data_flowing_to_an_untrusted_model_is_a_warning_with_its_line(
    tmp_path: Path, tools: ToolRegistry
) -> None:
    found = load(tmp_path, REFUND, tools, bounded=["erp.refund.create"])
    assert found == [
        f"{tmp_path / 'refund.yaml'}:16: node 'draft' may send pii data (from customer) to external model "
        "'gpt-outside', which is not trusted with it: the gate will mask it or skip the model"
    ]
