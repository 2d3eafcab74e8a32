"""Signed webhooks against a real HTTP server on loopback and a real Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.client import Client
from temporalio.service import RPCError

from chamberlain.server.http import ServerSettings, create_app
from chamberlain.server.ingress import run_id_for
from chamberlain.server.signatures import sign
from chamberlain.workflows import DevServer, GraphWorkflow
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker

GRAPH = Path(__file__).parents[1] / "graphs" / "loop.yaml"
SECRET, NEXT_SECRET = b"hub-secret-1", b"hub-secret-2"
STRIPE_SECRET = b"whsec-stripe"
TASK_QUEUE = "webhook-tests"


def write_sources(folder: Path) -> Path:
    path = folder / "webhooks.yaml"
    path.write_text(
        f"""
sources:
  - name: hub
    secrets: [env:T_HUB_SECRET, "env:T_HUB_NEXT?"]
    signature: {{scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: hex, prefix: "sha256="}}
    event_id: {{header: X-Event-Id}}
    payload: tests.support.payloads:Counted
    graph: {GRAPH}
    input: {{limit: payload.limit}}
    principal: {{id: "'customer:' + payload.customer"}}
    max_body: 2048
    task_queue: {TASK_QUEUE}
  - name: shop
    secrets: [env:T_STRIPE_SECRET]
    signature: {{scheme: stripe, header: Stripe-Signature, tolerance: 300s}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    graph: {GRAPH}
    input: {{limit: payload.limit}}
    task_queue: {TASK_QUEUE}
"""
    )
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HUB_SECRET", SECRET.decode())
    monkeypatch.setenv("T_HUB_NEXT", NEXT_SECRET.decode())
    monkeypatch.setenv("T_STRIPE_SECRET", STRIPE_SECRET.decode())


@pytest.fixture
def http(env: None, dev_server: DevServer, tmp_path: Path) -> Iterator[tuple[str, object]]:
    settings_ = ServerSettings(
        temporal_address=dev_server.address, webhooks=write_sources(tmp_path), public_url="http://console"
    )
    app = create_app(settings_)
    server = ThreadedServer(app).start()
    yield server.url, app.state.ingress
    server.stop()


@pytest.fixture
async def worker(client: Client) -> AsyncIterator[None]:
    async with graph_worker(client, TASK_QUEUE):
        yield


def hub_headers(body: bytes, event_id: str, secret: bytes = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Event-Id": event_id,
        "X-Hub-Signature-256": sign(secret, body, scheme="hmac-sha256", prefix="sha256="),
    }


async def post(url: str, body: bytes, headers: dict[str, str], source: str = "hub") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http_client:
        return await http_client.post(f"{url}/webhooks/{source}", content=body, headers=headers)


async def started(client: Client, run_id: str) -> bool:
    try:
        await client.get_workflow_handle(run_id).describe()
        return True
    except RPCError:
        return False


def body(limit: int = 2, customer: str = "王伟 138-0013-8000") -> bytes:
    return json.dumps({"limit": limit, "customer": customer}, ensure_ascii=False).encode()


async def test_a_valid_webhook_starts_one_run_and_answers_202(
    client: Client, http: tuple[str, object], worker: None
) -> None:
    url, _ = http
    event = f"evt-{uuid.uuid4().hex}"
    response = await post(url, body(), hub_headers(body(), event))
    assert response.status_code == 202
    run_id = run_id_for("hub", event)
    assert response.json() == {
        "run_id": run_id,
        "url": f"http://console/runs/{run_id}",
        "source": "hub",
        "event_id": event,
    }
    result = await client.get_workflow_handle_for(GraphWorkflow.run, run_id).result()
    assert result.output["n"] == 2 and result.principal and result.principal.id == "customer:王伟 138-0013-8000"


async def test_both_secrets_are_accepted_during_rotation(http: tuple[str, object], worker: None) -> None:
    url, _ = http
    for secret in (SECRET, NEXT_SECRET):
        response = await post(url, body(), hub_headers(body(), f"evt-{uuid.uuid4().hex}", secret))
        assert response.status_code == 202


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        ("bad signature", 401, "bad signature"),
        ("no signature", 401, "missing signature"),
        ("wrong secret", 401, "bad signature"),
        ("oversize", 413, "body over 2048 bytes"),
        ("text/plain", 415, "content type must be application/json"),
        ("malformed", 422, "malformed JSON at line 1 column 2: Expecting property name enclosed in double quotes"),
        ("schema", 422, [{"field": "limit", "error": "Input should be less than or equal to 5"}]),
        ("no event id", 422, "no event ID (expected in X-Event-Id)"),
    ],
)
async def test_rejected_requests_start_nothing(
    client: Client, http: tuple[str, object], case: str, status: int, detail: object, caplog: pytest.LogCaptureFixture
) -> None:
    url, ingress = http
    event = f"evt-{uuid.uuid4().hex}"
    payload = {"malformed": b"{oops", "schema": body(limit=9), "oversize": body(customer="x" * 3000)}.get(case, body())
    headers = hub_headers(payload, event)
    match case:
        case "bad signature":
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        case "no signature":
            del headers["X-Hub-Signature-256"]
        case "wrong secret":
            headers = hub_headers(payload, event, b"guess")
        case "text/plain":
            headers["Content-Type"] = "text/plain"
        case "no event id":
            del headers["X-Event-Id"]
    with caplog.at_level(logging.WARNING, logger="chamberlain.webhooks"):
        response = await post(url, payload, headers)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert not await started(client, run_id_for("hub", event))
    assert ingress.rejected[("hub", status)] == 1  # type: ignore[attr-defined]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"rejected with {status}" in logged
    assert SECRET.decode() not in logged and "138-0013-8000" not in logged and "王伟" not in logged


async def test_stripe_style_signatures_and_stale_timestamps(
    client: Client, http: tuple[str, object], worker: None
) -> None:
    url, _ = http
    event = f"evt-{uuid.uuid4().hex}"
    payload = json.dumps({"id": event, "limit": 1, "customer": "c"}).encode()
    fresh = {"Content-Type": "application/json", "Stripe-Signature": sign(STRIPE_SECRET, payload, scheme="stripe")}
    assert (await post(url, payload, fresh, "shop")).status_code == 202
    stale_event = f"evt-{uuid.uuid4().hex}"
    stale_payload = json.dumps({"id": stale_event, "limit": 1, "customer": "c"}).encode()
    old = sign(STRIPE_SECRET, stale_payload, scheme="stripe", timestamp=int(time.time()) - 3600)
    response = await post(url, stale_payload, {"Content-Type": "application/json", "Stripe-Signature": old}, "shop")
    detail = response.json()["detail"]
    assert (
        response.status_code == 401 and detail.startswith("stale timestamp: 36") and detail.endswith("tolerance 300s")
    )
    assert not await started(client, run_id_for("shop", stale_event))


async def test_twenty_concurrent_deliveries_of_one_event_start_one_run(
    client: Client, http: tuple[str, object], worker: None
) -> None:
    url, _ = http
    event = f"evt-{uuid.uuid4().hex}"
    responses = await asyncio.gather(*(post(url, body(), hub_headers(body(), event)) for _ in range(20)))
    assert {r.status_code for r in responses} == {202}
    assert {r.json()["run_id"] for r in responses} == {run_id_for("hub", event)}
    await client.get_workflow_handle(run_id_for("hub", event)).result()
    again = await post(url, body(), hub_headers(body(), event))  # redelivered after the run finished
    assert again.status_code == 202 and again.json()["run_id"] == run_id_for("hub", event)
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{run_id_for("hub", event)}"')]
    assert len(runs) == 1


async def test_temporal_down_answers_503_and_the_redelivery_succeeds(env: None, tmp_path: Path) -> None:
    server = DevServer(tmp_path / "temporal.db")
    client = await server.start()
    app = create_app(ServerSettings(temporal_address=server.address, webhooks=write_sources(tmp_path)))
    http_server = ThreadedServer(app).start()
    event = f"evt-{uuid.uuid4().hex}"
    try:
        server.kill()
        down = await post(http_server.url, body(), hub_headers(body(), event))
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        await server.start()
        up = await post(http_server.url, body(), hub_headers(body(), event))
        assert up.status_code == 202
        assert await started(client, run_id_for("hub", event))
    finally:
        http_server.stop()
        server.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(max_size=3000),
    headers=st.dictionaries(
        st.sampled_from(["Content-Type", "X-Hub-Signature-256", "X-Event-Id", "Content-Encoding", "X-Other"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.strip),  # valid HTTP
    ),
)
def test_arbitrary_requests_never_fail_the_server_nor_start_runs(
    http: tuple[str, object], payload: bytes, headers: dict[str, str]
) -> None:
    url, ingress = http
    response = httpx.post(f"{url}/webhooks/hub", content=payload, headers=headers, timeout=30)
    assert response.status_code in (400, 401, 413, 415, 422)
    assert ingress.accepted["hub"] == 0  # type: ignore[attr-defined]
