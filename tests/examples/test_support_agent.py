"""The support agent end to end on the embedded model: SmolLM2-135M chooses the tools, each call
through the gate; when its choice fails validation even after a repair turn, the cascade hands
the turn to the larger private model (scripted here: no GPU server on a test machine)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from temporalio.client import Client

from chamberlain.agents import EmbeddedModelServer, ModelCatalog, ModelRegistry, ScriptedChatModel, Tier, load_graph
from chamberlain.agents._safety import review_graph
from chamberlain.examples.support_agent import app
from chamberlain.workflows import AuditLog, Gate, PolicyEngine, Principal, create_worker, start_run
from tests.conftest import run_id
from tests.support.workers import TEST_SECRET

HELPDESK = Principal(id="helpdesk", kind="service", roles=["support"])


def larger_model(messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
    """What a capable private model does: order, policy, proposal when allowed, answer."""
    ask = next(m.text for m in messages if isinstance(m, HumanMessage))
    found = re.search(r"A\d{4}", ask)
    order_id = found.group(0) if found else ""
    seen = {m.name: json.loads(m.text) for m in messages if isinstance(m, ToolMessage) and m.text.startswith("{")}

    def call(tool: str, **args: Any) -> AIMessage:
        return AIMessage("", tool_calls=[{"name": tool, "args": args, "id": f"big-{len(messages)}"}])

    if "support.order" not in seen:
        return call("support.order", order_id=order_id)
    if "support.policy" not in seen:
        return call("support.policy", order_id=order_id)
    returnable = seen["support.policy"]["returnable"]
    if returnable and "support.propose_return" not in seen:
        return call("support.propose_return", order_id=order_id, amount=seen["support.order"]["total"], reason=ask)
    decision = "propose_return" if returnable else "decline"
    return call("final_answer", decision=decision, reply=f"{decision} for {order_id}")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the embedded model on 2 shared cores: minutes per turn under load
async def test_the_support_agent_on_the_embedded_model_proposes_one_return(
    client: Client,
    embedded_model: EmbeddedModelServer,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUPPORT_AGENT_DB", str(tmp_path / "support.sqlite"))
    tools = app.tools()
    policies = PolicyEngine.load(app.POLICIES)
    spec = load_graph(app.GRAPH, tools=tools, review=lambda s: review_graph(s, tools, bounded=policies.bounded))
    models = ModelRegistry.from_catalog(ModelCatalog.load(app.MODELS), embedded_url=embedded_model.base_url)
    models.register("private-large", ScriptedChatModel(respond=larger_model), Tier.PRIVATE, trust=["pii"])
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(policies, audit, tools, TEST_SECRET)
    rid, message = run_id(), "I want to return order A1001, the shoes do not fit."
    async with create_worker(client, models=models, tools=tools, gate=gate, task_queue=task_queue):
        handle = await start_run(
            client, spec, {"message": message}, run_id=rid, principal=HELPDESK, task_queue=task_queue
        )
        result = await handle.result()
    records = [r for r in audit.records() if r.run_id == rid]
    asked = [(r.step_id.removeprefix(f"{rid}/"), r.resource) for r in records if r.action == "model.invoke"]
    print("\n".join(f"{step} {model}" for step, model in asked))
    assert result.status == "completed" and result.output["decision"] in ("propose_return", "decline", "answered")
    proposals = app.proposals()
    assert len(proposals) <= 1 and all(p[1] == "A1001" and p[0].startswith(f"{rid}/support/1/") for p in proposals)
    # each turn asks the small model first; the larger one only as the cascade's second attempt
    assert asked and all(
        model == 'Model::"smollm2-135m"' if step.endswith("/model/0") else model == 'Model::"private-large"'
        for step, model in asked
    )
    calls = [r for r in records if r.action != "model.invoke"]
    assert all(re.fullmatch(rf"{rid}/support/1/\d+/\d+", r.step_id) for r in calls)
