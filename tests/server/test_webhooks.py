"""Signed webhooks against a real HTTP server on loopback and a real Temporal dev server."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError

from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server._ingress import MAX_RUN_ID_LENGTH, Ingress, run_id_for
from chamberlain.server._signatures import sign
from chamberlain.server._sources import SourceCatalog, SourceError
from chamberlain.workflows import DevServer, GraphWorkflow, connect
from chamberlain.workflows._devserver import free_port
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker

ROOT = Path(__file__).parents[2]
GRAPH = ROOT / "tests" / "graphs" / "loop.yaml"
SECRET, NEXT_SECRET = b"hub-secret-1", b"hub-secret-2"
STRIPE_SECRET = b"whsec-stripe"
STANDARD_SECRET = b"whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!")


class Complaint(BaseModel):
    """A payload whose customer may be absent: the source, not the model, insists on it."""

    id: str
    limit: int = 1
    customer: str | None = None


def write_sources(folder: Path, task_queue: str) -> Path:
    path = folder / "webhooks.yaml"
    common = f"graph: {GRAPH}\n    input: {{limit: payload.limit}}\n    task_queue: {task_queue}"
    path.write_text(
        f"""
sources:
  - name: hub
    secrets: [env:T_HUB_SECRET, "env:T_HUB_NEXT?"]
    signature: {{scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: hex, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    principal: {{id: hub, roles: [helpdesk], customer_field: customer}}
    max_body: 65536
    {common}
  - name: shop
    secrets: [env:T_STRIPE_SECRET]
    signature: {{scheme: stripe, header: Stripe-Signature, tolerance: 300s}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    {common}
  - name: std
    secrets: [env:T_STANDARD_SECRET]
    signature: {{scheme: standard-webhooks}}
    payload: tests.support.payloads:Counted
    {common}
  - name: desk
    secrets: [env:T_HUB_SECRET]
    signature: {{header: X-Hub-Signature-256, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.server.test_webhooks:Complaint
    principal: {{id: desk, customer_field: customer}}
    {common}
"""
    )
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_HUB_SECRET", SECRET.decode())
    monkeypatch.setenv("T_HUB_NEXT", NEXT_SECRET.decode())
    monkeypatch.setenv("T_STRIPE_SECRET", STRIPE_SECRET.decode())
    monkeypatch.setenv("T_STANDARD_SECRET", STANDARD_SECRET.decode())


@pytest.fixture
def http(env: None, dev_server: DevServer, tmp_path: Path, task_queue: str) -> Iterator[tuple[str, Ingress]]:
    settings_ = ServerSettings(
        temporal_address=dev_server.address, webhooks=write_sources(tmp_path, task_queue), public_url="http://console"
    )
    app = create_app(settings_)
    server = ThreadedServer(app).start()
    yield server.url, app.state.ingress
    server.stop()


@pytest.fixture
async def worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    async with graph_worker(client, task_queue):
        yield


def hub_headers(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(secret, body, scheme="hmac-sha256", prefix="sha256="),
    }


def standard_headers(body: bytes, event_id: str, timestamp: int | None = None) -> dict[str, str | bytes]:
    t = int(time.time()) if timestamp is None else timestamp
    signature = sign(STANDARD_SECRET, body, scheme="standard-webhooks", event_id=event_id, timestamp=t)
    return {
        "Content-Type": "application/json",
        "webhook-id": event_id.encode(),  # HTTP carries the UTF-8 bytes
        "webhook-timestamp": str(t),
        "webhook-signature": signature,
    }


async def post(url: str, body: bytes, headers: Mapping[str, str | bytes], source: str = "hub") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http_client:
        return await http_client.post(f"{url}/webhooks/{source}", content=body, headers=wire(headers))


def wire(headers: Mapping[str, str | bytes]) -> dict[bytes, bytes]:
    """Headers as bytes: a str value must be ASCII, and the tests send UTF-8 and Latin-1 too."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in headers.items()}


async def started(client: Client, run_id: str) -> bool:
    try:
        await client.get_workflow_handle(run_id).describe()
        return True
    except RPCError:
        return False


def new_event() -> str:
    return f"evt-{uuid.uuid4().hex}"


def body(event: str, limit: int = 2, customer: str | None = "王伟 138-0013-8000", **extra: object) -> bytes:
    fields = {"id": event, "limit": limit, "customer": customer, **extra}
    return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False).encode()


async def test_a_valid_webhook_starts_one_run_for_the_customer_and_answers_202(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    event = new_event()
    response = await post(url, body(event), hub_headers(body(event)))
    assert response.status_code == 202
    run_id = run_id_for("hub", event)
    assert response.json() == {
        "run_id": run_id,
        "url": f"http://console/runs/{run_id}",
        "source": "hub",
        "event_id": event,
    }
    result = await client.get_workflow_handle_for(GraphWorkflow.run, run_id).result()
    assert result.output["n"] == 2 and result.principal is not None
    assert (result.principal.id, result.principal.kind, result.principal.roles, result.principal.customer) == (
        "hub",
        "service",
        ["helpdesk"],
        "王伟 138-0013-8000",
    )


async def test_both_secrets_are_accepted_during_rotation(http: tuple[str, Ingress], worker: None) -> None:
    url, _ = http
    for secret in (SECRET, NEXT_SECRET):
        event = new_event()
        response = await post(url, body(event), hub_headers(body(event), secret))
        assert response.status_code == 202


def test_run_ids_are_injective_and_never_truncated() -> None:
    events = ["ev/X", "ev_X", "ev%2FX", "订单1", "退款1", "a" * 300 + "1", "a" * 300 + "2", "a-b", "a:b", "b"]
    pairs = [("hub", event) for event in events] + [("hub-a", "b"), ("hub:a", "b")]
    ids = [run_id_for(source, event) for source, event in pairs]
    assert len(set(ids)) == len(pairs)
    assert all(event[-1] in run_id or "%" in run_id for (_, event), run_id in zip(pairs, ids, strict=True))


async def test_events_whose_ids_used_to_collide_each_get_their_own_run(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    prefix = uuid.uuid4().hex
    long_a, long_b = f"{prefix}-{'x' * 300}-a", f"{prefix}-{'x' * 300}-b"
    events = [f"{prefix}ev/X", f"{prefix}ev_X", f"{prefix}订单1", f"{prefix}退款1", long_a, long_b]
    responses = []
    for i, event in enumerate(events):
        payload = body(event, customer=f"customer-{i}")
        responses.append(await post(url, payload, hub_headers(payload)))
    assert [r.status_code for r in responses] == [202] * len(events)
    run_ids = [r.json()["run_id"] for r in responses]
    assert len(set(run_ids)) == len(events) and [r.json()["event_id"] for r in responses] == events
    for i, run_id in enumerate(run_ids):  # every event ran with its own payload: none was lost
        result = await client.get_workflow_handle_for(GraphWorkflow.run, run_id).result()
        assert result.principal is not None and result.principal.customer == f"customer-{i}"


async def test_a_captured_body_replayed_under_new_event_headers_joins_its_one_run(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    event = new_event()
    captured, signature = body(event), hub_headers(body(event))
    answers = [await post(url, captured, {**signature, "X-Event-Id": new_event()}) for _ in range(4)]
    assert {a.status_code for a in answers} == {202}
    assert {a.json()["run_id"] for a in answers} == {run_id_for("hub", event)}
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{run_id_for('hub', event)}'")]
    assert len(runs) == 1


async def test_standard_webhooks_sign_the_event_id_so_a_new_id_does_not_verify(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    event, forged = f"{uuid.uuid4().hex}-订单", new_event()
    payload = body("ignored: the signed header is the ID")
    headers = standard_headers(payload, event)
    accepted = await post(url, payload, headers, "std")
    assert accepted.status_code == 202 and accepted.json()["event_id"] == event
    assert accepted.json()["run_id"] == run_id_for("std", event)
    replayed = await post(url, payload, {**headers, "webhook-id": forged}, "std")
    assert (replayed.status_code, replayed.json()["detail"]) == (401, "bad signature")
    stale = standard_headers(payload, new_event(), timestamp=int(time.time()) - 3600)
    assert (await post(url, payload, stale, "std")).json()["detail"].startswith("stale timestamp: 36")
    assert not await started(client, run_id_for("std", forged))


async def test_an_event_id_too_long_for_a_run_id_is_a_400_naming_where_it_came_from(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    room = MAX_RUN_ID_LENGTH - len(run_id_for("std", ""))
    fits, too_long = uuid.uuid4().hex + "f" * (room - 32), uuid.uuid4().hex + "f" * (room - 31)
    payload = body("x")
    answer = await post(url, payload, standard_headers(payload, fits), "std")
    assert answer.status_code == 202 and len(answer.json()["run_id"]) == MAX_RUN_ID_LENGTH
    refused = await post(url, payload, standard_headers(payload, too_long), "std")
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith(f"event ID in header webhook-id is too long: {MAX_RUN_ID_LENGTH + 1}")
    chinese = "订" * 200  # 9 characters each once encoded
    long_body = body(chinese)
    refused = await post(url, long_body, hub_headers(long_body))
    assert refused.status_code == 400 and refused.json()["detail"].startswith("event ID in body field id is too long")
    assert not await started(client, run_id_for("std", too_long))


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        ("bad signature", 401, "bad signature"),
        ("no signature", 401, "missing signature"),
        ("wrong secret", 401, "bad signature"),
        ("oversize", 413, "body over 65536 bytes"),
        ("text/plain", 415, "content type must be application/json"),
        ("malformed", 400, "malformed JSON at line 1 column 2: Expecting property name enclosed in double quotes"),
        ("invalid UTF-8", 400, "body is not UTF-8: invalid byte 0xff at offset 8"),
        ("5000 digits", 400, "a number of 5000 characters; at most 40"),
        ("20000 deep", 400, "JSON nested deeper than 32 levels"),
        ("40 deep", 400, "JSON nested 41 levels deep; at most 32"),
        ("lone surrogate", 400, "a string holds a lone UTF-16 surrogate escape (such as \\ud800)"),
        ("schema", 422, [{"field": "limit", "error": "Input should be less than or equal to 5"}]),
        ("no event id", 422, "no event ID (expected in body field id, a string or an integer)"),
        ("event id an object", 422, "no event ID (expected in body field id, a string or an integer)"),
    ],
)
async def test_rejected_requests_start_nothing(
    client: Client,
    http: tuple[str, Ingress],
    case: str,
    status: int,
    detail: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, ingress = http
    event = new_event()
    payload = {
        "malformed": b"{oops",
        "invalid UTF-8": b'{"id": "\xff\xfe"}',
        "5000 digits": b'{"id": "%s", "limit": %s}' % (event.encode(), b"1" * 5000),
        "20000 deep": b"[" * 20000 + b"]" * 20000,
        "40 deep": b'{"id": "%s", "x": %s}' % (event.encode(), b"[" * 40 + b"]" * 40),
        "lone surrogate": b'{"id": "%s", "customer": "\\ud800"}' % event.encode(),
        "schema": body(event, limit=9),
        "oversize": body(event, customer="x" * 70000),
        "no event id": body(""),
        "event id an object": json.dumps({"id": {"a": event}, "limit": 1, "customer": "c"}).encode(),
    }.get(case, body(event))
    headers = hub_headers(payload)
    match case:
        case "bad signature":
            headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        case "no signature":
            del headers["X-Hub-Signature-256"]
        case "wrong secret":
            headers = hub_headers(payload, b"guess")
        case "text/plain":
            headers["Content-Type"] = "text/plain"
    with caplog.at_level(logging.WARNING, logger="chamberlain.webhooks"):
        response = await post(url, payload, headers)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert not await started(client, run_id_for("hub", event))
    assert ingress.rejected[("hub", status)] == 1 and not ingress.accepted
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"rejected with {status}" in logged
    assert SECRET.decode() not in logged and "138-0013-8000" not in logged and "王伟" not in logged


@pytest.mark.parametrize("customer", [None, "", "   "])
async def test_a_payload_without_the_customer_it_acts_for_is_refused(
    client: Client, http: tuple[str, Ingress], customer: str | None
) -> None:
    url, ingress = http
    event = new_event()
    payload = body(event, customer=customer)
    response = await post(url, payload, hub_headers(payload), "desk")
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "payload field customer names the customer this event acts for; it is missing or empty"
    )
    assert not await started(client, run_id_for("desk", event)) and not ingress.accepted


async def test_stripe_style_signatures_and_stale_timestamps(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    event = new_event()
    payload = body(event, limit=1)
    fresh = {"Content-Type": "application/json", "Stripe-Signature": sign(STRIPE_SECRET, payload, scheme="stripe")}
    assert (await post(url, payload, fresh, "shop")).status_code == 202
    stale_event = new_event()
    stale_payload = body(stale_event, limit=1)
    old = sign(STRIPE_SECRET, stale_payload, scheme="stripe", timestamp=int(time.time()) - 3600)
    response = await post(url, stale_payload, {"Content-Type": "application/json", "Stripe-Signature": old}, "shop")
    detail = response.json()["detail"]
    assert (
        response.status_code == 401 and detail.startswith("stale timestamp: 36") and detail.endswith("tolerance 300s")
    )
    assert not await started(client, run_id_for("shop", stale_event))


async def test_twenty_concurrent_deliveries_of_one_event_start_one_run(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    url, _ = http
    event = new_event()
    responses = await asyncio.gather(*(post(url, body(event), hub_headers(body(event))) for _ in range(20)))
    assert {r.status_code for r in responses} == {202}
    assert {r.json()["run_id"] for r in responses} == {run_id_for("hub", event)}
    await client.get_workflow_handle(run_id_for("hub", event)).result()
    again = await post(url, body(event), hub_headers(body(event)))  # redelivered after the run finished
    assert again.status_code == 202 and again.json()["run_id"] == run_id_for("hub", event)
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{run_id_for('hub', event)}'")]
    assert len(runs) == 1


async def test_a_delivery_of_an_event_with_other_content_is_refused_not_joined(
    client: Client, http: tuple[str, Ingress], worker: None
) -> None:
    """Joined silently, the second content would never run and its sender would believe it had."""
    url, _ = http
    event = new_event()
    first = body(event, limit=2)
    assert (await post(url, first, hub_headers(first))).status_code == 202
    for other in (body(event, limit=3), body(event, customer="李娜 139-0000-0000")):  # other input; other customer
        refused = await post(url, other, hub_headers(other))
        assert refused.status_code == 409, refused.text
        assert "other content" in refused.json()["detail"] and "new event ID" in refused.json()["detail"]
    reordered = json.dumps(dict(reversed(json.loads(first).items())), ensure_ascii=False).encode()
    for again in (first, reordered):  # a redelivery, byte for byte or re-serialised: joined
        answer = await post(url, again, hub_headers(again))
        assert answer.status_code == 202 and answer.json()["run_id"] == run_id_for("hub", event)
    result = await client.get_workflow_handle_for(GraphWorkflow.run, run_id_for("hub", event)).result()
    assert result.output["n"] == 2 and result.principal is not None
    assert result.principal.customer == "王伟 138-0013-8000"  # the first content ran, and only it
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{run_id_for('hub', event)}'")]
    assert len(runs) == 1


async def test_temporal_down_answers_503_and_the_redelivery_succeeds(env: None, tmp_path: Path) -> None:
    server = DevServer(tmp_path / "temporal.db")
    client = await server.start()
    app = create_app(ServerSettings(temporal_address=server.address, webhooks=write_sources(tmp_path, "down")))
    http_server = ThreadedServer(app).start()
    event = new_event()
    try:
        server.kill()
        down = await post(http_server.url, body(event), hub_headers(body(event)))
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        await server.start()
        up = await post(http_server.url, body(event), hub_headers(body(event)))
        assert up.status_code == 202
        assert await started(client, run_id_for("hub", event))
    finally:
        http_server.stop()
        server.stop()


GARBAGE_HEADERS = [
    "Content-Type",
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Event-Id",
    "Content-Encoding",
    "X-Other",
]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["id", "limit", "customer"]), inner),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=3000),
    _json.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(0, 30000)),
    st.builds(lambda digits: b'{"id": "e", "limit": %s}' % (b"9" * digits), st.integers(1, 6000)),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=_bodies,
    sign_it=st.booleans(),
    source=st.sampled_from(["hub", "shop", "std", "desk", "nope"]),
    headers=st.dictionaries(
        st.sampled_from(GARBAGE_HEADERS),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80)
        .map(str.strip)
        .map(lambda text: text.encode("latin-1")),  # any bytes HTTP allows
    ),
)
def test_garbage_never_fails_the_server_and_a_rejected_request_starts_nothing(
    http: tuple[str, Ingress],
    dev_server: DevServer,
    task_queue: str,
    payload: bytes,
    sign_it: bool,
    source: str,
    headers: dict[str, str | bytes],
) -> None:
    url, ingress = http
    if sign_it:  # past the signature, so the parser and the payload model meet the garbage too
        secret = {"shop": STRIPE_SECRET, "std": STANDARD_SECRET}.get(source, SECRET)
        headers = {
            "Content-Type": "application/json",
            **headers,
            "X-Hub-Signature-256": sign(secret, payload, scheme="hmac-sha256", prefix="sha256="),
            "Stripe-Signature": sign(secret, payload, scheme="stripe"),
        }
        if isinstance(event := headers.get("webhook-id"), bytes):
            headers |= standard_headers(payload, event.decode("utf-8", "replace"))
    before = sum(ingress.accepted.values())
    response = httpx.post(f"{url}/webhooks/{source}", content=payload, headers=wire(headers), timeout=30)
    assert response.status_code < 500
    if response.status_code != 202:
        assert sum(ingress.accepted.values()) == before
    accepted = sum(ingress.accepted.values())
    assert asyncio.run(_runs_on(dev_server.address, task_queue, at_least=accepted)) == accepted


async def _runs_on(address: str, task_queue: str, at_least: int) -> int:
    """How many runs were started on ``task_queue`` (waiting for the visibility store to show ``at_least``)."""
    client = await connect(address)
    for _ in range(100):
        count = (await client.count_workflows(f"TaskQueue = '{task_queue}'")).count
        if count >= at_least:
            return count
        await asyncio.sleep(0.1)
    return count


def test_a_payload_model_that_cannot_be_imported_is_reported_at_load_with_file_and_line(
    env: None, tmp_path: Path
) -> None:
    path = write_sources(tmp_path, "q")
    broken = path.read_text().replace("tests.support.payloads:Counted", "chamberlain.examples.nowhere.webhook:Event", 1)
    path.write_text(broken)
    with pytest.raises(SourceError) as error:
        SourceCatalog.load(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "examples.nowhere" in text)
    assert str(error.value).startswith(
        f"{path}:{line}: source hub: payload model chamberlain.examples.nowhere.webhook:Event cannot be loaded: "
        "ModuleNotFoundError: No module named 'chamberlain.examples.nowhere'"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("{json: id}", "{header: X-Event-Id}"), "event_id header X-Event-Id is not covered by the hmac-sha256"),
        (("    event_id: {json: id}\n", ""), "event_id is required under hmac-sha256: take it from the signed body"),
        (("customer_field: customer", "customer_field: buyer"), "customer_field 'buyer' is not a field of"),
        (("env:T_HUB_SECRET,", "env:T_UNSET_SECRET,"), "secret env:T_UNSET_SECRET is not set"),
    ],
)
def test_sources_that_would_fail_later_are_refused_at_load(
    env: None, tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    path = write_sources(tmp_path, "q")
    path.write_text(path.read_text().replace(*change, 1))
    with pytest.raises(SourceError) as error:
        SourceCatalog.load(path)
    assert problem in str(error.value) and str(error.value).startswith(f"{path}:")


async def test_serve_from_any_directory_accepts_the_promo_helpdesk_webhook(
    client: Client, dev_server: DevServer, tmp_path: Path
) -> None:
    secret, port = "promo-secret", free_port()
    env = {
        **os.environ,
        "PROMO_HELPDESK_SECRET": secret,
        "CHAMBERLAIN_TEMPORAL_ADDRESS": dev_server.address,
        "CHAMBERLAIN_WEBHOOKS": str(ROOT / "examples/promo_returns/webhooks.yaml"),
        "PYTHONPATH": "",
    }
    command = [str(Path(sys.executable).parent / "chamberlain"), "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    event = new_event()
    fields = {"event_id": event, "ticket": "T-1", "customer_id": "C00042", "message": "退货: 双十一买的耳机"}
    payload = json.dumps(fields, ensure_ascii=False).encode()
    signature = sign(secret.encode(), payload, scheme="hmac-sha256", prefix="sha256=")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
            for _ in range(300):
                try:
                    if (await web.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert server.poll() is None, server.stdout.read() if server.stdout else ""
                    await asyncio.sleep(0.1)
            answers = [await web.post("/webhooks/helpdesk", content=payload, headers=headers) for _ in range(2)]
        assert [a.status_code for a in answers] == [202, 202], answers[0].text
        assert {a.json()["run_id"] for a in answers} == {run_id_for("helpdesk", event)}
        handle = client.get_workflow_handle(run_id_for("helpdesk", event))
        assert (await handle.describe()).workflow_type == "chamberlain.graph"
        await handle.terminate()
    finally:
        server.terminate()
        server.wait(10)


async def test_webhook_statistics_need_a_signed_in_operator_or_admin(
    env: None, dev_server: DevServer, tmp_path: Path, task_queue: str
) -> None:
    import yaml

    from chamberlain.server._auth import token_digest

    users = [
        {"id": "olga", "roles": ["ops"], "console_role": "operator", "token_sha256": token_digest("tok-olga")},
        {"id": "ada", "roles": ["admin"], "token_sha256": token_digest("tok-ada")},
        {"id": "victor", "roles": ["viewer"], "console_role": "viewer", "token_sha256": token_digest("tok-victor")},
    ]
    (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": users}))
    sources = write_sources(tmp_path, task_queue)
    settings_ = ServerSettings(
        temporal_address=dev_server.address,
        webhooks=sources,
        users=tmp_path / "users.yaml",
        public_url="http://console",
    )
    server = ThreadedServer(create_app(settings_)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post("/webhooks/hub", content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"})  # rejected
            tokens = {who: {"Authorization": f"Bearer tok-{who}"} for who in ("victor", "olga", "ada")} | {"": {}}
            seen = {who: await http.get("/api/webhooks/stats", headers=headers) for who, headers in tokens.items()}
    finally:
        server.stop()
    assert {who: r.status_code for who, r in seen.items()} == {"": 401, "victor": 403, "olga": 200, "ada": 200}
    assert "hub" not in seen[""].text + seen["victor"].text
    assert seen["olga"].json()["rejected"][0]["source"] == "hub"
