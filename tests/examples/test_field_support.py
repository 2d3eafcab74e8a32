"""Field-engineer support end to end on the real dev server: retrieval that only sees what the
asker may read, answers with checked citations, escalation to the private model and then to an
expert on low confidence, and the gate refusing another department's view or a cited secret.
The small model only chooses a passage (the answer is quoted from it); the private model writes.
Scripted models make the runs deterministic; one case runs on the real embedded model."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from temporalio.client import Client, WorkflowHandle

from chamberlain.agents import EmbeddedModelServer, GraphSpec, ModelRegistry, ScriptedChatModel, Tier, load_graph
from chamberlain.examples.field_support import app
from chamberlain.tools.knowledge import POLICIES
from chamberlain.tools.knowledge.quote import sentences
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    Gate,
    GraphWorkflow,
    PolicyEngine,
    Principal,
    RunResult,
    create_worker,
    decide,
    progress,
    start_run,
)

GRAPH = Path(app.__file__).with_name("graph.yaml")
SECRET = b"support-tests-" + b"0123456789abcdef" * 2
FIELD = Principal(id="li.wei", roles=["field-engineer"], department="field-service")
ENGINEER = Principal(id="dr.chen", roles=["engineer"], department="engineering", clearance=["confidential"])
EXPERT = Principal(id="sven", roles=["expert"], department="field-service", clearance=["confidential"])
E5 = "The AW-9 shows E5 after defrost and the unit is from batch 2403. What part do I replace?"
Answer = Callable[[str, list[tuple[int, str]]], dict[str, Any]]


def passages(prompt: str) -> list[tuple[int, str]]:
    """The numbered passages of a prompt: (number, title and text)."""
    found = re.split(r"^\[(\d+)\] ", prompt.split("\n\nQuestion:")[0], flags=re.M)[1:]
    return [(int(n), text.strip()) for n, text in zip(found[::2], found[1::2], strict=True)]


def top(question: str, found: list[tuple[int, str]]) -> dict[str, Any]:
    """A small model that chooses the top-ranked passage."""
    return {"passage": str(found[0][0])}


def last(question: str, found: list[tuple[int, str]]) -> dict[str, Any]:
    """A small model that chooses the lowest-ranked passage (another document, for these questions)."""
    return {"passage": str(found[-1][0])}


def quoting(question: str, found: list[tuple[int, str]]) -> dict[str, Any]:
    """A faithful model: the first passage's first two lines, cited."""
    n, text = found[0]
    return {"answer": " ".join(text.splitlines()[1:3]), "citations": [n]}


def vague(question: str, found: list[tuple[int, str]]) -> dict[str, Any]:
    """A model that answers but says nothing the passages say."""
    return {"answer": "Please contact your supervisor or try restarting things.", "citations": [1]}


def scripted(answer: Answer) -> tuple[ScriptedChatModel, Callable[[], int]]:
    def respond(messages: Sequence[BaseMessage], _kwargs: dict[str, Any]) -> str:
        prompt = str(messages[-1].content)
        return json.dumps(answer(prompt.split("Question: ")[-1], passages(prompt)), ensure_ascii=False)

    model = ScriptedChatModel(respond=respond)
    return model, lambda: len(model.calls)


def models(edge: Answer, private: Answer) -> tuple[ModelRegistry, Callable[[], int], Callable[[], int]]:
    registry = ModelRegistry()
    small, small_calls = scripted(edge)
    large, large_calls = scripted(private)
    registry.register("smollm2-135m", small, Tier.EDGE, trust=["confidential"])
    registry.register("qwen2.5-14b-instruct", large, Tier.PRIVATE, trust=["confidential"])
    return registry, small_calls, large_calls


@dataclass
class Support:
    client: Client
    graph: GraphSpec
    task_queue: str
    audit: AuditLog

    async def ask(
        self, question: str, asker: Principal, *, department: str | None = "", clearance: list[str] | None = None
    ) -> WorkflowHandle[GraphWorkflow, RunResult]:
        """Start a run for ``asker``; the view asked for is the asker's unless given."""
        values = {
            "question": question,
            "department": asker.department if department == "" else department,
            "clearance": asker.clearance if clearance is None else clearance,
        }
        run_id = f"support-{uuid.uuid4().hex[:10]}"
        return await start_run(
            self.client, self.graph, values, run_id=run_id, principal=asker, task_queue=self.task_queue
        )

    def path(self, handle: WorkflowHandle[GraphWorkflow, RunResult]) -> list[str]:
        """The nodes of a run that acted (searched, asked a model, checked), as its audit records say."""
        steps = [r.step_id.split("/") for r in self.audit.records() if r.run_id == handle.id]
        return list(dict.fromkeys(step[1] for step in steps))

    def decisions(self, action: str = "knowledge.read") -> list[tuple[str, str]]:
        """The gate's allow/deny decisions on ``action``, in order, from the audit log."""
        found = [(r.resource, r.decision) for r in self.audit.records() if r.action == action]
        return list(dict.fromkeys(d for d in found if d[1] in ("allow", "deny")))


@asynccontextmanager
async def support(client: Client, registry: ModelRegistry, tmp_path: Path) -> AsyncIterator[Support]:
    tools = app.tools()
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine.load(POLICIES), audit, tools, SECRET)
    task_queue = f"support-{uuid.uuid4().hex[:8]}"
    async with create_worker(client, models=registry, tools=tools, gate=gate, task_queue=task_queue):
        yield Support(client, load_graph(GRAPH, tools=tools), task_queue, audit)


def passages_of(chunk_id: str) -> str:
    """The text of a chunk of the shipped corpus."""
    return app.knowledge().by_id[chunk_id].text


async def expert_answers(handle: WorkflowHandle[GraphWorkflow, RunResult], answer: str) -> str:
    """Wait for the handoff to the expert, answer it, and return what the expert was asked."""
    for _ in range(400):
        if pending := (await progress(handle)).pending_approval:
            assert pending.approvers == ["expert"]
            values = {"answer": answer, "citations": []}
            await decide(
                handle, ApprovalAnswer(step_id=pending.step_id, outcome="approve", approver=EXPERT, values=values)
            )
            return pending.ask
        await asyncio.sleep(0.05)
    raise AssertionError("no handoff to an expert")


async def test_answers_with_citations_from_what_the_asker_may_read(client: Client, tmp_path: Path) -> None:
    registry, small_calls, large_calls = models(top, vague)
    async with support(client, registry, tmp_path) as run:
        result = await (await run.ask(E5, FIELD)).result()
        assert result.end == "done"
        assert {s["document"] for s in result.output["sources"]} == {"sb-2024-07-e5-defrost"}
        assert "4021-18" in result.output["answer"] or "2403" in result.output["answer"]
        assert result.output["confidence"] >= 0.6 and small_calls() == 1 and large_calls() == 0
        # the engineering root-cause analysis is the best match for this question, yet it never reached the run
        assert "rca-e5-ntc-drift" not in json.dumps(result.model_dump(mode="json"))
        assert run.decisions() == [
            ('Knowledge::"field-service"', "allow"),
            ('Knowledge::"sb-2024-07-e5-defrost"', "allow"),
        ]

        engineer = await (await run.ask(E5, ENGINEER)).result()
        assert engineer.end == "done" and engineer.output["sources"][0]["document"] == "rca-e5-ntc-drift"


async def test_chinese_question_answered_from_a_chinese_ticket(client: Client, tmp_path: Path) -> None:
    registry, _, _ = models(top, vague)
    async with support(client, registry, tmp_path) as run:
        result = await (await run.ask("室外机除霜后底盘结冰，风扇被冰顶住了，怎么处理？", FIELD)).result()
    assert result.end == "done" and result.output["sources"][0]["document"] == "ticket-t3311-ice"
    assert "除霜" in result.output["answer"]  # answered in Chinese, quoted from the ticket
    quoted = passages_of(result.output["sources"][0]["chunk_id"])
    assert all(s in quoted for s in sentences(result.output["answer"]))


async def test_a_weak_answer_goes_to_the_private_model(client: Client, tmp_path: Path) -> None:
    """The small model's choice disagrees with the ranking (another document): its quoted answer is
    not confident enough, and the private model writes one."""
    registry, small_calls, large_calls = models(last, quoting)
    async with support(client, registry, tmp_path) as run:
        handle = await run.ask(E5, FIELD)
        result = await handle.result()
        assert run.path(handle) == ["retrieve", "answer", "quote", "answer_private", "recheck"]
    assert result.end == "done_private"
    assert small_calls() == 1 and large_calls() == 1


async def test_weak_answers_end_with_an_expert(client: Client, tmp_path: Path) -> None:
    registry, _, large_calls = models(last, vague)
    async with support(client, registry, tmp_path) as run:
        handle = await run.ask(E5, FIELD)
        ask = await expert_answers(handle, "Replace the NTC with 4021-18 and update to 3.2.1.")
        result = await handle.result()
    assert result.end == "done_expert" and large_calls() == 1
    assert result.output["answer"].startswith("Replace the NTC") and E5 in ask


@pytest.mark.parametrize(
    "question", ["What will the weather be like in Paris tomorrow?", "今年公司年会在哪里举办？"], ids=["en", "zh"]
)
async def test_nothing_relevant_goes_straight_to_an_expert(client: Client, tmp_path: Path, question: str) -> None:
    registry, small_calls, large_calls = models(top, quoting)
    async with support(client, registry, tmp_path) as run:
        handle = await run.ask(question, FIELD)
        await expert_answers(handle, "Not a field-service question.")
        result = await handle.result()
        assert run.path(handle) == ["retrieve", "expert"]
    assert result.output["retrieval_confidence"] < 0.45 and small_calls() == 0 and large_calls() == 0


async def test_another_departments_view_is_refused_by_the_gate(client: Client, tmp_path: Path) -> None:
    """A run started with a view its asker does not have: the gate refuses the search itself."""
    registry, small_calls, _ = models(top, quoting)
    async with support(client, registry, tmp_path) as run:
        handle = await run.ask(E5, FIELD, department="engineering", clearance=["confidential"])
        ask = await expert_answers(handle, "Handled by phone.")
        result = await handle.result()
        assert run.decisions() == [('Knowledge::"engineering"', "deny")]
        assert run.path(handle) == ["retrieve", "expert"] and small_calls() == 0
    assert E5 in ask and "no policy permits knowledge.read" in ask
    assert "Kessler" not in json.dumps(result.model_dump(mode="json"))

    registry, _, _ = models(top, quoting)
    async with support(client, registry, tmp_path / "uncleared") as run:  # own department, clearance claimed
        handle = await run.ask(E5, FIELD, clearance=["confidential"])
        await expert_answers(handle, "Handled by phone.")
        await handle.result()
        assert run.decisions() == [('Knowledge::"field-service"', "deny")]


async def test_a_cited_secret_is_refused_by_the_gate(client: Client, tmp_path: Path) -> None:
    """The private model cites the engineering analysis by its ID (say, a prompt injection told it
    the name): the check of its citations is denied, and the question goes to the expert. (The
    small model cannot cite a document at all: it chooses among the retrieved passages' numbers.)"""

    def injected(question: str, found: list[tuple[int, str]]) -> dict[str, Any]:
        return {"answer": "A recall is planned for batch 2403.", "citations": ["rca-e5-ntc-drift"]}

    registry, _, large_calls = models(last, injected)
    (tmp_path / "cited").mkdir()
    async with support(client, registry, tmp_path / "cited") as run:
        handle = await run.ask(E5, FIELD)
        ask = await expert_answers(handle, "Replace the NTC with 4021-18.")
        result = await handle.result()
        assert ('Knowledge::"rca-e5-ntc-drift"', "deny") in run.decisions()
        assert run.path(handle) == ["retrieve", "answer", "quote", "answer_private", "recheck", "expert"]
    assert result.end == "done_expert" and large_calls() == 1
    assert "recall" not in json.dumps(result.output) and "no policy permits knowledge.read" in ask


@pytest.fixture
def own_embedded_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedModelServer]:
    """The embedded model on a server of its own: no request an earlier test left queued on the
    shared one (llama.cpp answers one at a time, and finishes what a timed-out client asked) delays it."""
    server = EmbeddedModelServer(log_file=tmp_path / "llama.log").start()
    monkeypatch.setenv("CHAMBERLAIN_EMBEDDED_URL", server.base_url)
    yield server
    server.stop()


@pytest.mark.timeout(1200)  # a slow CPU: each model step may use its two minutes twice before a person answers
async def test_one_question_on_the_embedded_model(
    client: Client, own_embedded_model: EmbeddedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real SmolLM2: an answer whose citations are among the allowed passages, or a handoff.
    Its latency (the one-minute target) is printed, not asserted: it depends on the machine's load."""
    monkeypatch.delenv("FIELD_SUPPORT_PRIVATE_URL", raising=False)
    async with support(client, app.models(), tmp_path) as run:
        started = time.monotonic()
        handle = await run.ask(E5, FIELD)
        result_task = asyncio.ensure_future(handle.result())
        latency, handoffs = None, 0
        while not result_task.done():  # an expert answers each handoff, as many as the run makes
            if (await progress(handle)).pending_approval:
                latency = latency or time.monotonic() - started
                await expert_answers(handle, "Replace the NTC sensor with part 4021-18.")
                handoffs += 1
            await asyncio.wait([result_task], timeout=0.2)
        latency = latency or time.monotonic() - started
        result = await result_task
        route = " → ".join(run.path(handle))
    print(f"\nembedded model: {result.end}, {latency:.1f} s to a handoff or the end, {handoffs} handoffs: {route}")
    assert result.end in {"done", "done_private", "done_expert"}
    allowed = {"sb-2024-07-e5-defrost", "aw9-siting", "aw9-error-codes", "aw9-maintenance", "ticket-t3120-dhw"}
    for source in result.output.get("sources", []):
        assert source["document"] in allowed and source["document"] != "rca-e5-ntc-drift"
