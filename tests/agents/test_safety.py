"""Static safety checks when a graph is loaded with its tools and models."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import pytest
from pydantic import BaseModel

from chamberlain.agents import (
    ApprovalAnswer,
    ApprovalRequest,
    ModelRegistry,
    Principal,
    ScriptedChatModel,
    Tier,
    load_graph,
    parse_graph,
    run_in_process,
)
from chamberlain.agents._exceptions import GraphSpecError, GraphWarning
from chamberlain.agents._safety import review_graph
from chamberlain.tools import Effect, ToolContext, ToolRegistry, tool
from chamberlain.tools._business import business_tools
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows._policy import PolicyEngine

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
        f"{tmp_path / 'refund.yaml'}:24: node 'pay' calls irreversible tool 'erp.refund.create' on a path with no "
        "approval since the start or its last call (lookup → draft → pay), and no policy bounds erp.refund.create "
        "— put an approval node (default: reject) right before it, or permit this action in Cedar only under a "
        "limit on context.amount"
    )


def test_an_approval_node_or_a_bounding_policy_satisfies_it(tmp_path: Path, tools: ToolRegistry) -> None:
    approved = REFUND.replace(
        "    next: pay\n",
        "    next: check\n  check:\n    type: approval\n    ask: refund?\n    approvers: [manager]\n    next: pay\n",
    )
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


class Wire(BaseModel):
    to: str
    amount: float


class Sent(BaseModel):
    wire_id: str


WIRES: list[str] = []


@tool("bank.wire", effect=Effect.IRREVERSIBLE, action="bank.wire.send")
async def wire(args: Wire, ctx: ToolContext) -> Sent:
    """Send money; cannot be undone."""
    WIRES.append(ctx.step_id)
    return Sent(wire_id=f"W{len(WIRES)}")


BANK = ToolRegistry([wire])

CARD = """\
name: greeting-card
state:
  n: {type: int, default: 0}
  sent: {}
max_steps: 50
start: card
nodes:
  card:
    type: approval
    ask: Send a greeting card?
    approvers: [manager]
    next: send
    on_reject: done
  send:
    type: tool
    tool: bank.wire
    args: {to: "'printer'", amount: "3.5"}
    output: {sent: result.wire_id, n: n + 1}
    next: again
  again:
    type: route
    next:
      - {when: "n < 5", to: send}
      - to: done
  done: {type: end}
"""


def unsafe(text: str, bounded: Collection[str] = ()) -> list[str]:
    """The safety errors of a graph using the bank's irreversible wire."""
    with pytest.raises(GraphSpecError) as raised:
        parse_graph(text, filename="g.yaml", tools=BANK, review=lambda spec: review_graph(spec, BANK, bounded=bounded))
    return [str(issue) for issue in raised.value.issues]


def safe(text: str, bounded: Collection[str] = ()) -> None:
    parse_graph(text, filename="g.yaml", tools=BANK, review=lambda spec: review_graph(spec, BANK, bounded=bounded))


def approval_then_wire(**approval: str) -> str:
    """A graph: ``check`` (an approval, with ``approval`` keys) then maybe ``pay`` (the wire)."""
    keys = "".join(f"    {k}: {v}\n" for k, v in {"next": "pay", "on_reject": "done", **approval}.items())
    return (
        "name: pay\nstate: {}\nmax_steps: 20\nstart: check\nnodes:\n  check:\n    type: approval\n    ask: Pay?\n"
        f"    approvers: [manager]\n{keys}"
        '  pay:\n    type: tool\n    tool: bank.wire\n    args: {to: "\'x\'", amount: "1"}\n    next: done\n'
        "  done: {type: end}\n"
    )


MESSAGE = (
    "g.yaml:{line}: node 'pay' calls irreversible tool 'bank.wire' on a path with no approval since the start or its "
    "last call ({path}), and no policy bounds bank.wire.send"
)


@pytest.mark.parametrize(
    ("approval", "path"),
    [
        ({"on_reject": "pay", "next": "done"}, "check (reject) → pay"),
        ({"on_changes": "pay"}, "check (changes) → pay"),
        ({"default": "approve", "timeout": "1h"}, "check (approved by its timeout) → pay"),
    ],
)
def test_an_exit_without_a_person_approving_is_a_path_without_approval(approval: dict[str, str], path: str) -> None:
    text = approval_then_wire(**approval)
    line = text.splitlines().index("    tool: bank.wire") + 1
    found = unsafe(text)
    assert [f.split(" — ")[0] for f in found] == [MESSAGE.format(line=line, path=path)]


def test_an_approval_with_default_reject_right_before_the_wire_is_safe() -> None:
    safe(approval_then_wire())
    safe(approval_then_wire(on_changes="check"))  # asking for changes goes back to the same question


def test_one_approval_does_not_cover_a_loop_of_wires() -> None:
    """ "Send a greeting card?" once, then five wires: the loop re-arms the need for approval."""
    assert [f.split(" — ")[0] for f in unsafe(CARD)] == [
        "g.yaml:16: node 'send' calls irreversible tool 'bank.wire' on a path with no approval since the start or "
        "its last call (card → send → again → send), and no policy bounds bank.wire.send"
    ]
    per_wire = CARD.replace("to: send}", "to: card}")  # ask before each wire
    safe(per_wire)


async def test_the_loop_really_sends_five_wires_after_one_approval() -> None:
    """The attack the static check now stops: one yes, five irreversible calls."""
    spec = parse_graph(CARD, tools=BANK)  # without the review, as before
    asked: list[str] = []

    def approve(request: ApprovalRequest) -> ApprovalAnswer:
        asked.append(request.ask)
        return ApprovalAnswer(step_id=request.step.step_id, outcome="approve", approver=Principal(id="boss"))

    WIRES.clear()
    await run_in_process(spec, {}, models=ModelRegistry(), tools=BANK, approve=approve)
    assert (asked, len(WIRES)) == (["Send a greeting card?"], 5)


def test_a_role_only_permit_does_not_bound_an_action() -> None:
    role_only = PolicyEngine(
        ['permit (principal, action == Action::"bank.wire.send", resource) when { principal.roles.contains("cfo") };']
    )
    assert "bank.wire.send" not in role_only.bounded
    assert unsafe(CARD, bounded=role_only.bounded)


@pytest.mark.parametrize(
    ("condition", "bounded"),
    [
        ("context.amount_cny <= 500", True),
        ('principal.roles.contains("treasury") && context.amount < 500', True),
        ("500 >= context.amount_cny", True),
        ("context.approved", True),
        ("context.amount_cny >= 500", False),  # a lower bound limits nothing
        ('context.amount_cny <= 500 || principal.roles.contains("cfo")', False),
        ('principal.department == "finance"', False),
        ("context.hour < 18", False),
    ],
)
def test_only_an_upper_amount_bound_or_an_approval_bounds_an_action(condition: str, bounded: bool) -> None:
    policy = f'permit (principal, action == Action::"bank.wire.send", resource) when {{ {condition} }};'
    assert ("bank.wire.send" in PolicyEngine([policy]).bounded) is bounded


def test_one_open_permit_unbounds_an_action_other_permits_limit() -> None:
    limited = 'permit (principal, action == Action::"bank.wire.send", resource) when { context.amount_cny <= 500 };'
    everyone = 'permit (principal, action, resource) when { principal.roles.contains("cfo") };'
    assert "bank.wire.send" in PolicyEngine([limited]).bounded
    assert "bank.wire.send" not in PolicyEngine([limited, everyone]).bounded
    safe(CARD, bounded=PolicyEngine([limited]).bounded)
