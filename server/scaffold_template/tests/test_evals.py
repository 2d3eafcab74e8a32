"""The evaluation: every case of ``evals/cases.jsonl`` (one webhook event and what should come of
it) runs through the webhook source's mapping and the refund graph, behind the permission gate.

Add a line for every case a customer brings you; ``python -m pytest tests/test_evals.py`` runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chamberlain.agents import ApprovalAnswer, ApprovalRequest, RunFailed
from chamberlain.server import SourceCatalog, WebhookSource
from chamberlain.workflows import Principal, run_gated_in_process

from myproject import app

ROOT = Path(__file__).parents[1]
CASES = [json.loads(line) for line in (ROOT / "evals" / "cases.jsonl").read_text("utf-8").splitlines() if line.strip()]


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> WebhookSource:
    monkeypatch.setenv("MYPROJECT_HELPDESK_SECRET", "only-needed-to-load-the-source")
    return SourceCatalog.load(ROOT / "myproject" / "webhooks.yaml").sources[0]


def manager_rejects(request: ApprovalRequest) -> ApprovalAnswer:
    manager = Principal(id="maria", roles=["manager"])
    return ApprovalAnswer(step_id=request.step.step_id, outcome="reject", approver=manager)


async def outcome(source: WebhookSource, event: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """What the run made of ``event``: its status, its output and the failure's kind."""
    values, principal = source.run_input(source.payload_model.model_validate(event))
    tools = app.tools()
    try:
        result = await run_gated_in_process(
            app.refund_graph(),
            values,
            gate=app.gate(tools),
            models=app.models(),
            principal=principal,
            approve=manager_rejects,
        )
    except RunFailed as exc:
        return "failed", {}, type(exc).__name__
    return result.status, result.output, ""


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
async def test_case(case: dict[str, Any], source: WebhookSource) -> None:
    status, output, error = await outcome(source, case["event"])
    expect = case["expect"]
    assert status == expect["status"], (output, error)
    assert {k: output.get(k) for k in expect.get("output", {})} == expect.get("output", {})
    assert error == expect.get("error", "")
