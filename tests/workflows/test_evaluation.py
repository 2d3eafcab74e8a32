"""The evaluation harness: cases scored field by field, record and replay of tool answers with no
writes, McNemar's exact test and thresholds — and a shadow replay on the real dev server: a run
recorded with one model configuration, replayed with another, changes nothing in the ERP and
says where the outcomes differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlmodel import Session, select
from temporalio.client import Client

from chamberlain.agents import load_graph
from chamberlain.tools import Effect, ToolContext, ToolRegistry, ToolRejected, tool
from chamberlain.tools._recording import NotRecorded, Recording, RecordingError, RecordingTools, ReplayingTools
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Order, Refund, ReturnAuthorization
from chamberlain.workflows import PolicyEngine
from chamberlain.workflows._audit import AuditLog
from chamberlain.workflows.evaluation import (
    Case,
    CaseFileError,
    Outcome,
    Subject,
    Summary,
    Tape,
    below,
    evaluate,
    load_cases,
    mcnemar_exact,
    results,
    score,
    sqlite_store,
    summarize,
)
from chamberlain.workflows.evaluation.cases import same
from tests.support import evaluation as shop

# -- cases and scoring -------------------------------------------------------------------------------


def test_case_file_errors_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    good = {"id": "退货-1", "input": {"message": "hi"}, "expect": {}}
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r"cases.jsonl:2: not JSON"):
        load_cases(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "expect": {}}) + "\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r":2: case: Value error, give exactly one of 'event'"):
        load_cases(path)
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n", encoding="utf-8")
    with pytest.raises(CaseFileError, match=r":3: case ID '退货-1' is used on line 1 too"):
        load_cases(path)
    with pytest.raises(CaseFileError, match="no such case file"):
        load_cases(tmp_path / "missing.jsonl")


def test_fields_are_scored_as_a_person_reads_them() -> None:
    case = Case(
        id="c",
        input={},
        expect={
            "order_id": None,
            "lines": [{"line_no": 2, "quantity": 1}, {"line_no": 1, "quantity": 2}],
            "refund_total": 129.0,
            "escalate": True,
            "decision": "done",
            "intent": "Return",
            "must_not": ["erp.order.cancel"],
            "effects": ["returns.refund"],
        },
    )
    outcome = Outcome(
        case="c",
        status="completed",
        end="done",
        escalations=["manager"],
        refund_total=129.004,
        effects=["returns.rma.create", "erp.refund.create"],
        tools=["returns.authorize", "returns.refund"],
        state={
            "order_id": "none",
            "intent": "return",
            "lines": [{"line_no": 1, "quantity": 2}, {"line_no": 2, "quantity": 1}],
        },
    )
    assert all(score(case, outcome).values()), score(case, outcome)
    cancelled = outcome.model_copy(update={"effects": ["erp.order.cancel"], "tools": [], "escalations": []})
    wrong = {k for k, ok in score(case, cancelled).items() if not ok}
    assert wrong == {"must_not", "escalate", "effects"}
    assert not same(True, 1) and not same(1, True) and not same(None, False)
    assert not same([1, 1], [1, 2]) and same("A1002", " a1002 ") and not same(200, "two hundred")


def test_cited_documents_are_scored_as_one_of_the_good_ones_and_never_a_forbidden_one() -> None:
    """``any_of``/``none_of`` over a list field's items (``sources.document``); a passage
    (``doc#2``) counts as its document."""
    case = Case(
        id="q",
        input={},
        expect={
            "sources.document": {"any_of": ["sb-e5", "error-codes"], "none_of": ["rca-secret"]},
            "retrieved": {"none_of": ["rca-secret"]},
            "language": {"any_of": ["zh", "en"]},
        },
    )
    cited = [{"chunk_id": "error-codes#2", "document": "error-codes", "title": "Error codes"}]
    state = {"sources": cited, "retrieved": ["error-codes#2", "sb-e5#1"], "language": "zh"}
    outcome = Outcome(case="q", status="completed", end="done", state=state)
    assert score(case, outcome) == dict.fromkeys(case.expect, True)

    leaked = {**state, "retrieved": ["rca-secret#1", "error-codes#2"]}  # a forbidden passage retrieved
    cited_other = {**state, "sources": [{"chunk_id": "faq#1", "document": "faq", "title": "FAQ"}]}
    nothing = {**state, "sources": [], "language": "fr"}
    assert score(case, outcome.model_copy(update={"state": leaked}))["retrieved"] is False
    assert score(case, outcome.model_copy(update={"state": cited_other}))["sources.document"] is False
    assert {k for k, ok in score(case, outcome.model_copy(update={"state": nothing})).items() if not ok} == {
        "sources.document",
        "language",
    }


def test_mcnemar_exact_and_thresholds() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(6, 0) == mcnemar_exact(0, 6)
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(2, 10) == pytest.approx(2 * sum(__import__("math").comb(12, k) for k in range(3)) / 4096)
    summary = Summary(
        config="a",
        cases=10,
        accuracy=0.8,
        fields={"intent": 0.9},
        by_lang={},
        escalation_rate=0.3,
        denials=0,
        failed=0,
        latency_p50=1.0,
        latency_p95=2.5,
        tokens_per_case=100,
        cost_per_case=0.0,
    )
    assert below(summary, {"min_accuracy": 0.8, "min_intent": 0.9, "max_p95": 2.5}) == []
    misses = below(summary, {"min_accuracy": 0.85, "max_escalation_rate": 0.2, "min_order_id": 0.5})
    assert misses[0] == "a: accuracy 0.8 is below 0.85" and "escalation_rate 0.3 is above 0.2" in misses[1]
    assert "no field 'order_id' was scored" in misses[2]


# -- record and replay, without Temporal --------------------------------------------------------------


class Ask(BaseModel):
    order_id: str


class Answer(BaseModel):
    value: str


def counting_tools(calls: list[str]) -> ToolRegistry:
    @tool("shop.read")
    async def read(args: Ask, ctx: ToolContext) -> Answer:
        calls.append(f"read {args.order_id}")
        return Answer(value=f"status of {args.order_id}")

    @tool("shop.refund", effect=Effect.IRREVERSIBLE)
    async def refund(args: Ask, ctx: ToolContext) -> Answer:
        calls.append(f"refund {args.order_id}")
        if args.order_id == "A0000":
            raise ToolRejected("nothing to refund")
        return Answer(value=f"refunded {args.order_id}")

    return ToolRegistry([read, refund])


async def test_replay_answers_from_the_recording_and_never_writes(tmp_path: Path) -> None:
    calls: list[str] = []
    recording = Recording(tmp_path / "tape.jsonl")
    live = RecordingTools(counting_tools(calls), recording)
    at = ToolContext(step_id="run-1/refund/1", idempotency_key="k")
    assert (await live.invoke("shop.refund", {"order_id": "订单-1"}, at))["value"] == "refunded 订单-1"
    with pytest.raises(ToolRejected):
        await live.invoke("shop.refund", {"order_id": "A0000"}, ToolContext("run-1/refund/2", "k2"))
    await live.invoke("shop.read", {"order_id": "A1"}, ToolContext("run-1/read/1", "k3"))
    assert len(calls) == 3

    calls.clear()
    tape = Recording.load(tmp_path / "tape.jsonl")
    replay = ReplayingTools(counting_tools(calls), tape)
    assert (await replay.invoke("shop.refund", {"order_id": "订单-1"}, at))["value"] == "refunded 订单-1"
    with pytest.raises(ToolRejected, match="nothing to refund"):
        await replay.invoke("shop.refund", {"order_id": "A0000"}, ToolContext("run-1/refund/2", "k2"))
    # the same call reached by another node still answers from the recording
    assert (await replay.invoke("shop.read", {"order_id": "A1"}, ToolContext("run-1/other/1", "k")))["value"]
    with pytest.raises(NotRecorded, match=r"no write shop\.refund"):  # another order: never written live
        await replay.invoke("shop.refund", {"order_id": "A2"}, at)
    with pytest.raises(NotRecorded, match="no write"):  # another run: its calls are not this run's
        await replay.invoke("shop.refund", {"order_id": "订单-1"}, ToolContext("run-2/refund/1", "k"))
    with pytest.raises(NotRecorded, match=r"no read shop\.read.*or allow live reads"):
        await replay.invoke("shop.read", {"order_id": "A9"}, ToolContext("run-1/read/1", "k"))
    assert calls == []

    reads = ReplayingTools(counting_tools(calls), tape, live_reads=True)
    assert (await reads.invoke("shop.read", {"order_id": "A9"}, ToolContext("run-1/read/1", "k")))["value"]
    with pytest.raises(NotRecorded):
        await reads.invoke("shop.refund", {"order_id": "A2"}, at)
    assert calls == ["read A9"] and reads.missing == ['shop.read({"order_id": "A9"}) at run-1/read/1']


def test_a_broken_recording_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tape.jsonl"
    path.write_text('{"kind": "call", "run": "r"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(RecordingError, match=r"tape.jsonl:2: an entry needs 'kind' and 'run'"):
        Recording.load(path)
    with pytest.raises(RecordingError, match="no such recording"):
        Recording.load(tmp_path / "none.jsonl")


# -- shadow replay on the dev server -------------------------------------------------------------------


def erp_writes(folder: Path) -> tuple[int, int, list[str]]:
    """Refunds, return authorizations and cancelled orders in every case store under ``folder``."""
    refunds = rmas = 0
    cancelled: list[str] = []
    for store in folder.glob("*/store.sqlite"):
        with Session(EmbeddedErp(f"sqlite:///{store}").engine) as session:
            refunds += len(session.exec(select(Refund)).all())
            rmas += len(session.exec(select(ReturnAuthorization)).all())
            cancelled += [o.id for o in session.exec(select(Order).where(Order.status == "cancelled")).all()]
    return refunds, rmas, cancelled


async def test_a_replay_with_another_model_writes_nothing_and_says_what_changed(client: Client, tmp_path: Path) -> None:
    store = sqlite_store(shop.evaluation_tools, tmp_path / "template")
    (tmp_path / "pick").mkdir()
    picking = store(tmp_path / "pick")
    orders = await shop.pick_orders(picking, f"sqlite:///{tmp_path / 'pick' / 'store.sqlite'}")
    cases = [Case.model_validate(c) for c in shop.cases(orders)]
    graph = load_graph(shop.GRAPH, tools=picking)
    policies = PolicyEngine.load()

    def subject(name: str, models: object) -> Subject:
        return Subject(name=name, graph=graph, models=models, policies=policies, store=store)  # type: ignore[arg-type]

    tape = tmp_path / "tape.jsonl"
    recorded = await evaluate(
        client, subject("recorded", shop.reader()), cases, tmp_path, Tape("record", Recording(tape))
    )
    assert [o.end for o in recorded] == ["done", "done", "declined"], [o.error for o in recorded]
    assert all(all(score(c, o).values()) for c, o in zip(cases, recorded, strict=True))
    assert recorded[1].escalations == ["manager"] and recorded[0].tokens > 0
    refunds, rmas, _ = erp_writes(tmp_path / "recorded")
    assert (refunds, rmas) == (2, 2)  # recording ran live: the check below can see writes

    # the same model, replayed: the same outcome, money and all — and not one write
    again = await evaluate(
        client, subject("again", shop.reader()), cases, tmp_path, Tape("replay", Recording.load(tape))
    )
    assert erp_writes(tmp_path / "again") == (0, 0, [])
    assert all(not r.differs for r in results(cases, again, Recording.load(tape).outcomes()))
    assert again[0].refund_total == recorded[0].refund_total > 0

    # another model: a cancellation it was never recorded making fails the run; a misread order is denied
    shadow = Tape("replay", Recording.load(tape))
    replayed = await evaluate(client, subject("shadow", shop.misreader()), cases, tmp_path, shadow)
    assert erp_writes(tmp_path / "shadow") == (0, 0, [])
    small, large, late = results(cases, replayed, Recording.load(tape).outcomes())
    assert small.outcome.status == "failed" and "recording holds no write erp.order.cancel" in str(small.outcome.error)
    assert {"status", "decision", "effects", "refund_total"} <= set(small.differs)
    assert large.outcome.end == "declined" and large.outcome.denials >= 1
    assert {"decision", "escalate", "effects", "refund_total", "denials", "order_id"} <= set(large.differs)
    assert late.differs == [] and late.correct
    summary = summarize("shadow", [small, large, late])
    assert summary.differing == 2 and summary.accuracy == pytest.approx(1 / 3, abs=1e-3) and summary.failed == 1
    for audit in (tmp_path / "shadow").glob("*/audit.sqlite"):  # nothing done that the recording lacks
        done = [r.action for r in AuditLog(f"sqlite:///{audit}").records() if r.kind == "effect"]
        assert "erp.order.cancel" not in done


async def test_a_run_that_outlives_its_time_is_stopped_and_counted_as_failed(client: Client, tmp_path: Path) -> None:
    store = sqlite_store(shop.evaluation_tools, tmp_path / "template")
    graph = load_graph(shop.GRAPH, tools=store(tmp_path))
    subject = Subject(name="slow", graph=graph, models=shop.reader(), policies=PolicyEngine.load(), store=store)
    case = Case(id="订单-慢", input={"message": "return A1001", "customer_id": "C10001"})
    (outcome,) = await evaluate(client, subject, [case], tmp_path, timeout=1e-9)
    assert outcome.status == "failed" and outcome.error == "EvaluationAborted: no result after 1e-09 s"
