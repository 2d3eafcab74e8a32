"""Telemetry for operators' own tools: one trace follows a signed webhook into the workflow,
its model activity and the model call (GenAI attributes), and ``GET /metrics`` counts runs
by status, step latency, decisions, tokens and a forged delivery refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from pydantic import BaseModel
from temporalio.client import Client

from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server._signatures import sign
from chamberlain.workflows import DevServer, create_worker
from chamberlain.workflows._telemetry import configure_tracing
from tests.support import toolbox
from tests.support.graphs import chat_models
from tests.support.servers import ThreadedServer
from tests.support.workers import gate_for_tests

SECRET = "telemetry-secret"
GRAPH = """
name: traced
state:
  note: {type: str}
  answer: {type: str}
start: reply
nodes:
  reply: {type: model, model: chat, prompt: "Answer the customer: {note}", write: answer, next: done}
  done: {type: end}
"""


class Note(BaseModel):
    id: str
    note: str


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    configure_tracing(provider)
    yield exporter
    configure_tracing(None)


def sources(folder: Path, task_queue: str) -> Path:
    (folder / "traced.yaml").write_text(GRAPH, encoding="utf-8")
    path = folder / "webhooks.yaml"
    path.write_text(f"""
sources:
  - name: traced
    secrets: [env:T_TRACE_SECRET]
    signature: {{scheme: hmac-sha256, header: X-Signature, encoding: hex}}
    event_id: {{json: id}}
    payload: tests.server.test_console_telemetry:Note
    graph: {folder / "traced.yaml"}
    input: {{note: payload.note}}
    task_queue: {task_queue}
""")
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_one_trace_from_webhook_to_model_call_and_metrics_count_it(
    spans: InMemorySpanExporter,
    dev_server: DevServer,
    client: Client,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T_TRACE_SECRET", SECRET)
    webhooks = sources(tmp_path, task_queue)
    audit = f"sqlite:///{toolbox.ledger_path().with_suffix('.audit.sqlite')}"  # where test workers' gates write
    data = tmp_path / "data"
    users = tmp_path / "users.yaml"
    users.write_text(
        yaml.safe_dump(
            {
                "users": [
                    {"id": "prometheus", "roles": ["operator"], "token_sha256": token_digest("scrape-token")},
                    {"id": "victor", "roles": ["viewer"], "token_sha256": token_digest("viewer-token")},
                ]
            }
        ),
        encoding="utf-8",
    )
    settings = ServerSettings(
        temporal_address=dev_server.address, webhooks=webhooks, data=data, audit=audit, users=users
    )
    server = ThreadedServer(create_app(settings)).start()
    tools = toolbox.tools()
    models, _ = chat_models()
    before = {
        "steps": sample("chamberlain_step_seconds_count", activity="chamberlain.model_step", outcome="completed"),
        "tokens": sample("chamberlain_model_tokens_total", model="chat", direction="input"),
        "forged": sample("chamberlain_webhook_rejections_total", source="traced", status="401"),
    }
    try:
        async with create_worker(client, models=models, tools=tools, gate=gate_for_tests(tools), task_queue=task_queue):
            event = {"id": f"evt-{uuid.uuid4().hex}", "note": "我的订单 A1 在哪?"}
            body = json.dumps(event, ensure_ascii=False).encode()
            signature = sign(SECRET.encode(), body, scheme="hmac-sha256")
            headers = {"Content-Type": "application/json", "X-Signature": signature}
            async with httpx.AsyncClient(base_url=server.url) as http:
                accepted = await http.post("/webhooks/traced", content=body, headers=headers)
                assert accepted.status_code == 202, accepted.text
                await client.get_workflow_handle(accepted.json()["run_id"]).result()
                forged = await http.post("/webhooks/traced", content=body, headers={**headers, "X-Signature": "00"})
                assert forged.status_code == 401
                anonymous = await http.get("/metrics")
                viewer = await http.get("/metrics", headers=bearer("viewer-token"))
                metrics = (await http.get("/metrics", headers=bearer("scrape-token"))).text
    finally:
        server.stop()

    finished = spans.get_finished_spans()
    deliveries = [s for s in finished if s.name == "webhook traced"]
    assert sorted(str((s.attributes or {})["http.response.status_code"]) for s in deliveries) == ["202", "401"]
    [webhook] = [s for s in deliveries if (s.attributes or {})["http.response.status_code"] == 202]
    trace_id = webhook.context.trace_id
    start = one(finished, "StartWorkflow:chamberlain.graph")
    run = one(finished, "RunWorkflow:chamberlain.graph")
    activity = one(finished, "RunActivity:chamberlain.model_step")
    model = one(finished, "chat chat")
    assert {s.context.trace_id for s in (start, run, activity, model)} == {trace_id}  # one trace, end to end
    assert start.parent is not None and start.parent.span_id == webhook.context.span_id
    assert model.parent is not None and model.parent.span_id == activity.context.span_id
    assert model.attributes is not None
    assert model.attributes["gen_ai.operation.name"] == "chat" and model.attributes["gen_ai.response.model"] == "chat"
    assert int(str(model.attributes["gen_ai.usage.input_tokens"])) > 0
    assert "我的订单" not in json.dumps([dict(s.attributes or {}) for s in finished], ensure_ascii=False)  # no payloads

    assert sample("chamberlain_step_seconds_count", activity="chamberlain.model_step", outcome="completed") == (
        before["steps"] + 1
    )
    assert 'chamberlain_decisions_total{outcome="allow"} 1.0' in metrics  # the model call's, from the audit log
    assert sample("chamberlain_model_tokens_total", model="chat", direction="input") > before["tokens"]
    assert sample("chamberlain_webhook_rejections_total", source="traced", status="401") == before["forged"] + 1
    assert 'chamberlain_runs{status="completed"}' in metrics and "chamberlain_approvals_waiting" in metrics
    assert (anonymous.status_code, anonymous.headers["www-authenticate"]) == (401, "Bearer")  # Prometheus knows it
    assert viewer.status_code == 403 and "operator or admin" in viewer.json()["detail"]
    assert "chamberlain_" not in anonymous.text + viewer.text


def one(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans among {sorted({s.name for s in spans})}"
    return found[0]
