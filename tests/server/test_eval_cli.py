"""``chamberlain eval`` as a user runs it: a real process, a 3-case file on the real dev server with
scripted models — record, replay with another model side by side, thresholds as the exit code;
the shipped field-support cases, each run as its asker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import BaseMessage

from chamberlain.agents import ModelRegistry, ScriptedChatModel, Tier
from chamberlain.workflows import DevServer
from tests.support import evaluation as shop

ROOT = Path(__file__).parents[2]
CLI = [str(Path(sys.executable).with_name("chamberlain"))]
APP = "tests.support.evaluation"
GRAPH = "tests/graphs/eval_returns.yaml"


def chamberlain(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHAMBERLAIN_APP": APP, "COLUMNS": "220"}
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


async def three_cases(tmp_path: Path) -> Path:
    """The case file, for orders picked from the same deterministic seed the CLI's stores get."""
    url = f"sqlite:///{tmp_path / 'pick.sqlite'}"
    orders = await shop.pick_orders(shop.evaluation_tools(url), url)
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in shop.cases(orders)), encoding="utf-8")
    return path


async def test_eval_records_replays_with_another_model_and_exits_on_thresholds(
    dev_server: DevServer, tmp_path: Path
) -> None:
    cases = await three_cases(tmp_path)
    tape, report, png = tmp_path / "tape.jsonl", tmp_path / "live.json", tmp_path / "chart.png"
    common = ["--graph", GRAPH, "--address", dev_server.address, "--app", APP]
    live = await asyncio.to_thread(
        chamberlain,
        "eval",
        str(cases),
        *common,
        "--models",
        f"{APP}:reader",
        "--record",
        str(tape),
        "--json",
        str(report),
        "--chart",
        str(png),
        "--min-accuracy",
        "1.0",
        "--min-field",
        "intent=1",
        "--work",
        str(tmp_path / "live"),
    )
    assert live.returncode == 0, live.stdout + live.stderr
    assert "accuracy (all fields)" in live.stdout and "100%" in live.stdout
    found = json.loads(report.read_text(encoding="utf-8"))
    summary = found["summaries"][0]
    assert summary["accuracy"] == 1.0 and summary["escalation_rate"] == 0.3333 and summary["cases"] == 3
    assert summary["tokens_per_case"] > 0 and summary["latency_p95"] >= summary["latency_p50"] > 0
    assert {r["case"]: r["outcome"]["end"] for r in found["cases"]["reader"]} == {
        "small": "done",
        "large": "done",
        "late": "declined",
    }
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert {json.loads(line)["kind"] for line in tape.read_text(encoding="utf-8").splitlines()} == {
        "call",
        "resource",
        "outcome",
    }

    compared = tmp_path / "compared.json"
    shadow = await asyncio.to_thread(
        chamberlain,
        "eval",
        str(cases),
        *common,
        "--compare",
        f"{APP}:reader",
        f"{APP}:misreader",
        "--replay",
        str(tape),
        "--json",
        str(compared),
        "--min-accuracy",
        "0.9",
    )
    assert shadow.returncode == 1, shadow.stdout + shadow.stderr
    assert "below threshold misreader: accuracy 0.3333 is below 0.9" in " ".join(shadow.stdout.split())
    assert "reader" not in shadow.stdout.split("below threshold", 1)[1].replace("misreader", "")
    assert "McNemar exact p = 0.5" in shadow.stdout
    assert "run failed: NotRecorded: replay: the recording holds no write erp.order.cancel" in shadow.stdout
    assert "Traceback" not in shadow.stderr
    both = json.loads(compared.read_text(encoding="utf-8"))
    assert both["comparison"]["only_a_right"] == ["small", "large"] and both["comparison"]["only_b_right"] == []
    differs = {r["case"]: r["differs"] for r in both["cases"]["misreader"]}
    assert differs["late"] == [] and "decision" in differs["large"] and "status" in differs["small"]
    assert all(r["differs"] == [] for r in both["cases"]["reader"])  # the same model replays the same outcomes


def test_eval_mistakes_are_one_line_naming_the_file_line_or_flag(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "a", "input": {"message": "hi"}}\n{"id": "b", "input": {}, "expekt": {}}\n')
    done = chamberlain("eval", str(cases), "--graph", GRAPH, "--models", f"{APP}:reader")
    assert done.returncode == 1 and "cases.jsonl:2: expekt: Extra inputs are not permitted" in done.stderr
    assert "Traceback" not in done.stderr

    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "input": {"message": "hi"}}\n')
    done = chamberlain("eval", str(good), "--graph", GRAPH, "--min-field", "intent")
    assert done.returncode == 1 and "--min-field 'intent': write FIELD=SHARE" in done.stderr
    (tmp_path / "tape.jsonl").write_text("")
    done = chamberlain(
        "eval", str(good), "--graph", GRAPH, "--models", f"{APP}:reader", "--record", str(tmp_path / "tape.jsonl")
    )
    assert done.returncode == 1 and "exists — remove it or record to a new file" in done.stderr
    done = chamberlain("eval", str(good), "--models", f"{APP}:reader")
    assert done.returncode == 1 and "--graph: the cases give the graph's input directly" in done.stderr
    events = tmp_path / "events.jsonl"
    events.write_text('{"id": "e", "event": {"message": "hi"}}\n')
    done = chamberlain("eval", str(events), "--models", f"{APP}:reader")
    assert done.returncode == 1 and "webhooks.yaml does not exist — pass --sources" in done.stderr


def quoting(messages: list[BaseMessage], _kwargs: dict[str, object]) -> str:
    """A faithful model: the first numbered passage's first lines, citing it (or, asked to choose
    a passage, choosing it)."""
    prompt = str(messages[-1].content)
    found = re.split(r"^\[(\d+)\] ", prompt.split("\n\nQuestion:")[0], flags=re.M)[1:]
    answer = " ".join(found[1].strip().splitlines()[1:3]) if found else ""
    cited = [int(found[0])] if found else []
    return json.dumps({"answer": answer, "citations": cited, "passage": found[0] if found else "1"}, ensure_ascii=False)


def quoting_models() -> ModelRegistry:
    """Both of the field-support scenario's models, quoting (``--models`` target)."""
    models = ModelRegistry()
    models.register("smollm2-135m", ScriptedChatModel(respond=quoting), Tier.EDGE, trust=["confidential"])
    models.register("qwen2.5-14b-instruct", ScriptedChatModel(respond=quoting), Tier.PRIVATE, trust=["confidential"])
    return models


async def eval_field_support(
    cases: str, dev_server: DevServer, report: Path, tmp_path: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    """``chamberlain eval`` of field-support cases on the scenario's graph and app, its report in ``report``."""
    graph, app = "examples/field_support/graph.yaml", "chamberlain.examples.field_support.app"
    return await asyncio.to_thread(
        chamberlain,
        "eval",
        cases,
        "--graph",
        graph,
        "--app",
        app,
        *more,
        "--address",
        dev_server.address,
        "--json",
        str(report),
        "--work",
        str(tmp_path / "work"),
    )


async def test_eval_scores_the_shipped_field_support_cases_per_asker(dev_server: DevServer, tmp_path: Path) -> None:
    """Each case's asker is the run's principal (department, clearance): a document the asker may
    not read is never retrieved nor cited, in all 30 cases; the engineer cleared for it cites it."""
    report = tmp_path / "support.json"
    quoting = ("--models", "tests.server.test_eval_cli:quoting_models")
    done = await eval_field_support("examples/field_support/cases.jsonl", dev_server, report, tmp_path, *quoting)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(report.read_text(encoding="utf-8"))
    cases = {c["case"]: c for c in found["cases"]["quoting_models"]}
    assert len(cases) == 30 and found["summaries"][0]["fields"]["retrieved"] == 1.0
    forbidden = [c for c in cases.values() if "retrieved" in c["scores"]]  # the cases naming one
    assert len(forbidden) == 7 and all(c["scores"]["retrieved"] for c in forbidden)
    assert all(c["outcome"]["status"] == "completed" for c in cases.values())
    secret = "rca-e5-ntc-drift"  # engineering's confidential root cause: dr.chen may read it, li.wei may not
    assert secret in [s["document"] for s in cases["support-22"]["outcome"]["state"]["sources"]]
    assert not any(secret in chunk for chunk in cases["support-23"]["outcome"]["state"]["retrieved"])
    assert cases["support-29"]["outcome"]["escalations"] == ["expert"]  # the weather: nothing to retrieve


def garbling_models() -> ModelRegistry:
    """Both models answer what no schema accepts, so each cascade reaches a person."""
    models = ModelRegistry()
    for name, tier in (("smollm2-135m", Tier.EDGE), ("qwen2.5-14b-instruct", Tier.PRIVATE)):
        models.register(name, ScriptedChatModel(respond=lambda _m, _k: "no JSON here"), tier, trust=["confidential"])
    return models


async def test_eval_answers_a_cascade_that_reaches_a_person_with_its_output(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """A model step whose cascade ends with ``human`` asks a person for the model's output: the
    harness answers with values fitting it (the first passage, here), and the run goes on (to the
    quoted answer from that passage)."""
    report = tmp_path / "garbled.json"
    garbling = ("--models", "tests.server.test_eval_cli:garbling_models", "--limit", "1")
    done = await eval_field_support("examples/field_support/cases.jsonl", dev_server, report, tmp_path, *garbling)
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = json.loads(report.read_text(encoding="utf-8"))["cases"]["garbling_models"]
    outcome = case["outcome"]
    assert (outcome["status"], outcome["end"], outcome["error"]) == ("completed", "done", None)
    assert outcome["escalations"] == ["answer"]
    assert outcome["state"]["passage"] == "1" and outcome["state"]["citations"] == [1]


@pytest.mark.slow
async def test_eval_runs_shipped_promo_cases_on_the_embedded_model(
    dev_server: DevServer, embedded_model: object, tmp_path: Path
) -> None:
    """CI's subset of the shipped cases (the whole file: docs/evaluation.md): the real graph, the
    scenario's policies and a fresh seeded store per case, on SmolLM2-135M."""
    report = tmp_path / "promo.json"
    done = await asyncio.to_thread(
        chamberlain,
        "eval",
        "examples/promo_returns/cases.jsonl",
        "--app",
        "chamberlain.examples.promo_returns.app",
        "--limit",
        "2",
        "--address",
        dev_server.address,
        "--json",
        str(report),
        "--work",
        str(tmp_path / "work"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(report.read_text(encoding="utf-8"))
    cases = found["cases"]["promo_returns"]
    assert [c["case"] for c in cases] == ["return-1", "return-2"]
    assert [c["outcome"]["error"] for c in cases] == [None, None]
    assert found["summaries"][0]["tokens_per_case"] > 0 and set(cases[0]["scores"]) >= {"intent", "decision"}


@pytest.mark.slow
async def test_eval_runs_shipped_field_support_cases_on_the_embedded_model(
    dev_server: DevServer, embedded_model: object, tmp_path: Path
) -> None:
    """CI's subset of the field-support cases on SmolLM2-135M: one the model should answer with a
    cited quote, one whose retrieval finds nothing for a person to answer instead."""
    report = tmp_path / "support.json"
    cases_file = tmp_path / "cases.jsonl"
    chosen = {"support-01", "support-29"}
    lines = Path("examples/field_support/cases.jsonl").read_text(encoding="utf-8").splitlines()
    cases_file.write_text("\n".join(line for line in lines if json.loads(line)["id"] in chosen) + "\n")
    done = await eval_field_support(str(cases_file), dev_server, report, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (results,) = json.loads(report.read_text(encoding="utf-8"))["cases"].values()
    cases = {c["case"]: c for c in results}
    assert set(cases) == chosen and [c["outcome"]["error"] for c in cases.values()] == [None, None]
    assert cases["support-29"]["outcome"]["escalations"] == ["expert"]  # nothing to retrieve: a person answers
    first = cases["support-01"]
    assert first["outcome"]["end"] in ("done", "done_expert"), first["outcome"]
    if first["outcome"]["end"] == "done":  # the small model's choice agreed with the ranking: a cited quote
        assert first["scores"]["sources.document"] is True, first
