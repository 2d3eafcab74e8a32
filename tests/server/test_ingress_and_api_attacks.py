"""The webhook ingress and the HTTP API attacked from outside and by a low-privilege insider,
over real HTTP on loopback and the real Temporal dev server.

What ``test_webhooks.py``, ``test_approvals_*.py``, ``test_console_access.py`` and the API fuzz
already cover is not repeated: here are races between deliveries of one event with different
content, signature corner cases, secrets that are set but empty or gone, payload fields that try
to become the run's principal, every route of the app swept as an anonymous caller, a viewer and
another tenant's staff, and error answers read for what they must not echo."""

from __future__ import annotations

import asyncio
import codecs
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from fastapi import FastAPI
from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.server._ingress import run_id_for
from chamberlain.server._runs import _request_of
from chamberlain.server._signatures import sign
from chamberlain.server._sources import SourceCatalog, SourceError
from chamberlain.server.console import hash_password
from chamberlain.workflows import AuditLog, DevServer, Principal, start_run
from chamberlain.workflows._types import RunRequest
from tests.conftest import run_id
from tests.server.test_console_access import csrf_of, signed_in
from tests.support.graphs import graph
from tests.support.servers import ThreadedServer
from tests.support.workers import graph_worker, wait_for_approval

ROOT = Path(__file__).parents[2]
LOOP = ROOT / "tests" / "graphs" / "loop.yaml"
HUB_SECRET = b"attack-hub-secret-0123456789abcdef"
STRIPE_SECRET = b"attack-stripe-secret-0123456789ab"
STANDARD_SECRET = b"attack-standard-secret-0123456789"
PII = "王伟 138-0013-8000"  # a customer's name and phone: never echoed in an error answer
PASSWORD = "attack pässwort 口令"
Headers = Sequence[tuple[str, str | bytes]]


class Ticket(BaseModel):
    """A payload whose customer may be any JSON value (the source, not the model, must insist on text)."""

    id: str
    limit: int = 1
    customer: Any = None


# ---------------------------------------------------------------------------------------------
# the server: four webhook sources, and users of two tenants, no tenant, and every console role


USERS: dict[str, dict[str, Any]] = {
    "acme_viewer": {"roles": ["viewer"], "tenant": "acme", "console_role": "viewer"},
    "acme_ops": {"roles": ["ops", "operator"], "tenant": "acme", "console_role": "operator"},
    "acme_mgr": {"roles": ["manager"], "tenant": "acme", "console_role": "approver"},
    "globex_mgr": {"roles": ["manager"], "tenant": "globex", "console_role": "approver"},
    "boss": {"roles": ["manager"], "console_role": "approver"},  # no tenant
    "auditor": {"roles": ["viewer"], "console_role": "viewer"},  # no tenant
}


def write_users(path: Path) -> Path:
    secret = hash_password(PASSWORD)
    users = [
        {"id": name, **fields, "token_sha256": token_digest(f"tok-{name}"), "password_argon2": secret}
        for name, fields in USERS.items()
    ]
    path.write_text(yaml.safe_dump({"users": users}, allow_unicode=True), encoding="utf-8")
    return path


def write_sources(folder: Path, task_queue: str, extra: str = "") -> Path:
    path = folder / "webhooks.yaml"
    common = f"graph: {LOOP}\n    task_queue: {task_queue}"
    path.write_text(
        f"""
sources:
  - name: hub
    secrets: [env:ATTACK_HUB_SECRET]
    signature: {{scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: hex, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    principal: {{id: hub, roles: [helpdesk], customer_field: customer}}
    input: {{limit: payload.limit}}
    {common}
  - name: shop
    secrets: [env:ATTACK_STRIPE_SECRET]
    signature: {{scheme: stripe, tolerance: 300s}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    principal: {{id: shop, customer_field: customer}}
    input: {{limit: payload.limit}}
    {common}
  - name: std
    secrets: [env:ATTACK_STANDARD_SECRET]
    signature: {{scheme: standard-webhooks}}
    payload: tests.support.payloads:Counted
    principal: {{id: std, customer_field: customer}}
    input: {{limit: payload.limit}}
    {common}
  - name: ticket
    secrets: [env:ATTACK_HUB_SECRET]
    signature: {{header: X-Hub-Signature-256, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.server.test_ingress_and_api_attacks:Ticket
    principal: {{id: ticket, customer_field: customer}}
    input: {{limit: payload.limit}}
    {common}
{extra}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTACK_HUB_SECRET", HUB_SECRET.decode())
    monkeypatch.setenv("ATTACK_STRIPE_SECRET", STRIPE_SECRET.decode())
    monkeypatch.setenv("ATTACK_STANDARD_SECRET", STANDARD_SECRET.decode())


@contextmanager
def serving(dev_server: DevServer, folder: Path, task_queue: str, ledger: Path, extra: str = "") -> Iterator[str]:
    """The whole app (webhooks, APIs, console, codec) on loopback; its audit log is the test workers'."""
    settings = ServerSettings(
        temporal_address=dev_server.address,
        webhooks=write_sources(folder, task_queue, extra),
        users=write_users(folder / "users.yaml"),
        data=folder / "data",
        audit=f"sqlite:///{ledger.with_suffix('.audit.sqlite')}",
        public_url="http://console.test",
    )
    server = ThreadedServer(create_app(settings)).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def api(secrets_env: None, dev_server: DevServer, tmp_path: Path, task_queue: str, ledger: Path) -> Iterator[str]:
    with serving(dev_server, tmp_path, task_queue, ledger) as url:
        yield url


# ---------------------------------------------------------------------------------------------
# helpers


def new_event() -> str:
    return f"evt-{uuid.uuid4().hex}"


def body(event: str, limit: int = 1, customer: object = PII, **extra: object) -> bytes:
    return json.dumps({"id": event, "limit": limit, "customer": customer, **extra}, ensure_ascii=False).encode()


def hub_signature(payload: bytes, secret: bytes = HUB_SECRET) -> str:
    return sign(secret, payload, scheme="hmac-sha256", prefix="sha256=")


def hub_headers(payload: bytes, secret: bytes = HUB_SECRET) -> list[tuple[str, str | bytes]]:
    return [("Content-Type", "application/json"), ("X-Hub-Signature-256", hub_signature(payload, secret))]


async def deliver(url: str, source: str, payload: bytes, headers: Headers) -> httpx.Response:
    """POST as bytes on the wire; a header may repeat (a list of pairs, not a dict)."""
    wire = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers]
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{url}/webhooks/{source}", content=payload, headers=wire)


async def started_request(client: Client, workflow_id: str) -> RunRequest | None:
    """The request a run started with, or ``None`` if no run has that ID."""
    try:
        return await _request_of(client, workflow_id)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def end(client: Client, *workflow_ids: str) -> None:
    """Terminate what a test started on a queue no worker polls (the dev server is shared)."""
    for workflow_id in workflow_ids:
        with suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("test over")


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{user}"}


# ---------------------------------------------------------------------------------------------
# 1. races: one event, two contents, at once


async def test_one_event_delivered_at_once_with_two_contents_starts_one_run_and_refuses_the_other(
    client: Client, api: str
) -> None:
    """Four copies each of two bodies under one event ID, all at once: whichever content starts
    the run, every copy of it is joined (202) and every copy of the other refused (409) — never
    a 5xx, never a second run, never the loser's content in the run."""
    event = new_event()
    contents = {"first": body(event, customer="客户-A"), "second": body(event, customer="客户-B")}
    order = ["first", "second"] * 4
    answers = await asyncio.gather(*(deliver(api, "hub", contents[k], hub_headers(contents[k])) for k in order))
    by_content: dict[str, set[int]] = {}
    for which, answer in zip(order, answers, strict=True):
        by_content.setdefault(which, set()).add(answer.status_code)
    assert sorted(by_content.values(), key=sorted) == [{202}, {409}], [a.text for a in answers]
    winner = next(which for which, codes in by_content.items() if codes == {202})
    request = await started_request(client, run_id_for("hub", event))
    await end(client, run_id_for("hub", event))
    assert request is not None and request.principal is not None
    assert request.principal.customer == {"first": "客户-A", "second": "客户-B"}[winner]
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{run_id_for('hub', event)}'")]
    assert len(runs) == 1


# ---------------------------------------------------------------------------------------------
# 2. signature corner cases


def _case(name: str, event: str) -> tuple[str, bytes, list[tuple[str, str | bytes]], int | None]:
    """(source, body, headers, expected status) for one attack; ``None``: either answer is sound,
    as long as 202 and a started run go together."""
    payload = body(event)
    now = int(time.time())
    json_type: list[tuple[str, str | bytes]] = [("Content-Type", "application/json")]
    good = hub_signature(payload)
    bad = "sha256=" + "0" * 64

    def stripe(t: object, v1: str) -> list[tuple[str, str | bytes]]:
        return [*json_type, ("Stripe-Signature", f"t={t},v1={v1}")]

    def standard(timestamp: str, event_id: str = event) -> list[tuple[str, str | bytes]]:
        signature = sign(STANDARD_SECRET, payload, scheme="standard-webhooks", event_id=event_id, timestamp=now)
        return [
            *json_type,
            ("webhook-id", event_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ]

    stripe_v1 = sign(STRIPE_SECRET, payload, scheme="stripe", timestamp=now).split("v1=")[1]
    match name:
        case "hex in capitals":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", "sha256=" + good[7:].upper())], None
        case "newline added after signing":
            return "hub", payload + b"\n", hub_headers(payload), 401
        case "signed with a newline, sent without":
            return "hub", payload, hub_headers(payload + b"\n"), 401
        case "the JSON re-serialised after signing":
            spaced = json.dumps(json.loads(payload), ensure_ascii=False, indent=1).encode()
            return "hub", spaced, hub_headers(payload), 401
        case "header twice, the bad one first":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", bad), ("X-Hub-Signature-256", good)], None
        case "header twice, the good one first":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", good), ("X-Hub-Signature-256", bad)], None
        case "header twice, both bad":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", bad), ("X-Hub-Signature-256", bad)], 401
        case "two signatures in one header":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", f"{bad},{good}")], 401
        case "no prefix":
            return "hub", payload, [*json_type, ("X-Hub-Signature-256", good[7:])], 401
        case "another source's secret":
            return "hub", payload, hub_headers(payload, STRIPE_SECRET), 401
        case "an empty secret":
            return "hub", payload, hub_headers(payload, b""), 401
        case "a byte-order mark, signed":
            bom = codecs.BOM_UTF8 + payload
            return "hub", bom, hub_headers(bom), 400
        case "UTF-16, signed":
            utf16 = payload.decode().encode("utf-16")
            return "hub", utf16, hub_headers(utf16), 400
        case "stripe: a timestamp an hour ahead":
            ahead = now + 3600
            return (
                "shop",
                payload,
                stripe(ahead, sign(STRIPE_SECRET, payload, scheme="stripe", timestamp=ahead)[-64:]),
                401,
            )
        case "stripe: a timestamp that is no number":
            return "shop", payload, stripe("soon", stripe_v1), 401
        case "stripe: a 13-digit timestamp":
            return "shop", payload, stripe("1" * 13, stripe_v1), 401
        case "stripe: a signature of another timestamp":
            return "shop", payload, stripe(now - 1, stripe_v1), 401
        case "stripe: a stale t first, the fresh one second":
            header = f"t={now - 3600},t={now},v1={stripe_v1}"
            return "shop", payload, [*json_type, ("Stripe-Signature", header)], 401
        case "stripe: v0 only":
            return "shop", payload, [*json_type, ("Stripe-Signature", f"t={now},v0={stripe_v1}")], 401
        case "standard: a timestamp an hour ahead":
            ahead = str(now + 3600)
            signature = sign(STANDARD_SECRET, payload, scheme="standard-webhooks", event_id=event, timestamp=now + 3600)
            return (
                "std",
                payload,
                [*json_type, ("webhook-id", event), ("webhook-timestamp", ahead), ("webhook-signature", signature)],
                401,
            )
        case "standard: a timestamp that is no number":
            return "std", payload, standard("now"), 401
        case "standard: a negative timestamp":
            return "std", payload, standard(f"-{now}"), 401
        case "standard: an empty webhook-id":
            return "std", payload, [(k, "" if k == "webhook-id" else v) for k, v in standard(str(now))], 401
    raise AssertionError(name)


SIGNATURE_CASES = [
    "hex in capitals",
    "newline added after signing",
    "signed with a newline, sent without",
    "the JSON re-serialised after signing",
    "header twice, the bad one first",
    "header twice, the good one first",
    "header twice, both bad",
    "two signatures in one header",
    "no prefix",
    "another source's secret",
    "an empty secret",
    "a byte-order mark, signed",
    "UTF-16, signed",
    "stripe: a timestamp an hour ahead",
    "stripe: a timestamp that is no number",
    "stripe: a 13-digit timestamp",
    "stripe: a signature of another timestamp",
    "stripe: a stale t first, the fresh one second",
    "stripe: v0 only",
    "standard: a timestamp an hour ahead",
    "standard: a timestamp that is no number",
    "standard: a negative timestamp",
    "standard: an empty webhook-id",
]


@pytest.mark.parametrize("case", SIGNATURE_CASES)
async def test_signature_corner_cases_start_nothing_unless_the_bytes_were_signed(
    client: Client, api: str, case: str
) -> None:
    """Every answer is a 4xx or a 202 with its run; the signature covers exactly the bytes sent,
    and a timestamp outside the window — either side — or not a plain number is refused."""
    event = new_event()
    source, payload, headers, expected = _case(case, event)
    answer = await deliver(api, source, payload, headers)
    request = await started_request(client, run_id_for(source, event))
    await end(client, run_id_for(source, event))
    assert answer.status_code < 500, answer.text
    assert (answer.status_code == 202) == (request is not None), answer.text
    if expected is not None:
        assert answer.status_code == expected, answer.text
    if answer.status_code == 401:
        sent = [v.decode() if isinstance(v, bytes) else v for _, v in headers]
        assert not any(v and v in answer.text for v in sent if len(v) > 20)  # no signature echoed


async def test_duplicate_keys_are_read_once_for_the_event_id_and_the_customer(client: Client, api: str) -> None:
    """The signature covers both values of a duplicated key; the event ID, the run ID and the
    principal must all come from the same reading of the body — not the ID from one and the
    customer from the other."""
    first, last = new_event(), new_event()
    text = f'{{"id": "{first}", "limit": 1, "customer": "alice", "customer": "mallory", "id": "{last}"}}'
    payload = text.encode()
    answer = await deliver(api, "hub", payload, hub_headers(payload))
    runs = {e: await started_request(client, run_id_for("hub", e)) for e in (first, last)}
    await end(client, *(run_id_for("hub", e) for e in (first, last)))
    if answer.status_code != 202:  # refusing duplicate keys outright is sound too
        assert 400 <= answer.status_code < 500 and runs == {first: None, last: None}
        return
    event = answer.json()["event_id"]
    assert answer.json()["run_id"] == run_id_for("hub", event) and event in (first, last)
    [request] = [r for r in runs.values() if r is not None]
    assert request.principal is not None
    assert (event, request.principal.customer) in ((first, "alice"), (last, "mallory"))


# ---------------------------------------------------------------------------------------------
# secrets that are set but empty, or gone


def _blank_source(task_queue: str, secrets: str) -> str:
    return f"""  - name: blank
    secrets: [{secrets}]
    signature: {{header: X-Hub-Signature-256, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    principal: {{id: blank, customer_field: customer}}
    input: {{limit: payload.limit}}
    graph: {LOOP}
    task_queue: {task_queue}
"""


@pytest.mark.parametrize("kind", ["empty file", "a newline only", "empty optional next secret"])
async def test_a_secret_file_that_is_empty_never_lets_an_unkeyed_signature_in(
    client: Client,
    secrets_env: None,
    dev_server: DevServer,
    tmp_path: Path,
    task_queue: str,
    ledger: Path,
    kind: str,
) -> None:
    """A secrets file mounted empty (a rotation's placeholder, a failed provisioning) must fail
    closed: refused when the sources load, or no signature with the empty key verifies."""
    blank = tmp_path / "blank.secret"
    blank.write_text("\n" if kind == "a newline only" else "", encoding="utf-8")
    secrets = f'"file:{blank}?", env:ATTACK_HUB_SECRET' if kind.startswith("empty optional") else f"file:{blank}"
    try:
        server = serving(dev_server, tmp_path, task_queue, ledger, _blank_source(task_queue, secrets))
        url = server.__enter__()
    except SourceError:
        return  # refused at load: the operator hears of it before any request
    event = new_event()
    payload = body(event)
    try:
        answer = await deliver(url, "blank", payload, hub_headers(payload, b""))
    finally:
        server.__exit__(None, None, None)
    request = await started_request(client, run_id_for("blank", event))
    await end(client, run_id_for("blank", event))
    assert (answer.status_code, request) == (401, None), answer.text


def test_an_env_secret_set_to_the_empty_string_is_refused_at_load(
    secrets_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTACK_HUB_SECRET", "")
    with pytest.raises(SourceError) as refused:
        SourceCatalog.load(write_sources(tmp_path, "q"))
    assert "secret env:ATTACK_HUB_SECRET is not set" in str(refused.value)


async def test_a_secret_gone_after_the_server_started_fails_closed(
    client: Client, api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret is read per request; unset since (a rotation gone wrong), a delivery signed with
    the old secret starts nothing and is not accepted — and the answer names no secret."""
    monkeypatch.delenv("ATTACK_HUB_SECRET")
    event = new_event()
    payload = body(event)
    answer = await deliver(api, "hub", payload, hub_headers(payload))
    request = await started_request(client, run_id_for("hub", event))
    await end(client, run_id_for("hub", event))
    assert answer.status_code == 503 and request is None  # the sender tries again later: nothing is lost
    assert HUB_SECRET.decode() not in answer.text and PII not in answer.text


# ---------------------------------------------------------------------------------------------
# replay of a captured delivery


@pytest.mark.xfail(
    strict=True,
    reason="hmac-sha256 deliveries carry no timestamp and the only dedupe is Temporal's history: "
    "once retention deletes the run, a captured delivery replayed byte for byte starts the event again",
)
async def test_a_captured_delivery_replayed_after_its_run_is_gone_does_not_run_the_event_again(
    client: Client, api: str
) -> None:
    event = new_event()
    captured, headers = body(event), hub_headers(body(event))
    workflow_id = run_id_for("hub", event)
    assert (await deliver(api, "hub", captured, headers)).status_code == 202
    await end(client, workflow_id)
    execution = WorkflowExecution(workflow_id=workflow_id)
    await client.workflow_service.delete_workflow_execution(  # what the namespace's retention does
        DeleteWorkflowExecutionRequest(namespace=client.namespace, workflow_execution=execution)
    )
    for _ in range(240):  # the dev server deletes in the background, ~35 s later
        if await started_request(client, workflow_id) is None:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("the run was never deleted")
    replayed = await deliver(api, "hub", captured, headers)
    again = await started_request(client, workflow_id)
    await end(client, workflow_id)
    assert replayed.status_code < 500
    assert again is None, f"the replay ({replayed.status_code}) started {workflow_id} a second time"


# ---------------------------------------------------------------------------------------------
# 3. payload fields that try to become the principal


async def test_payload_fields_named_like_a_principal_never_become_the_runs_principal(client: Client, api: str) -> None:
    """The run acts for the source's configured service and the customer field — whatever else
    the signed body claims (roles, tenant, clearance, a principal or an approver of its own)."""
    event = new_event()
    claims = {
        "roles": ["admin", "manager"],
        "tenant": "acme",
        "department": "finance",
        "clearance": ["pii", "finance"],
        "kind": "user",
        "principal": {"id": "admin", "roles": ["admin"], "tenant": "acme"},
        "approver": {"id": "boss", "roles": ["manager"]},
        "requested_by": "someone-else",
        "input": {"limit": 5},
    }
    payload = body(event, customer="C00042", **claims)
    answer = await deliver(api, "hub", payload, hub_headers(payload))
    request = await started_request(client, run_id_for("hub", event))
    await end(client, run_id_for("hub", event))
    assert answer.status_code == 202, answer.text
    assert request is not None and request.input == {"limit": 1}
    assert request.principal == Principal(id="hub", kind="service", roles=["helpdesk"], customer="C00042")


@pytest.mark.parametrize(
    "customer",
    [{"id": "admin", "roles": ["admin"]}, ["C1", "C2"], True, None, " \t ", ""],
    ids=["an object", "a list", "true", "null", "blank", "empty"],
)
async def test_a_customer_that_is_not_text_starts_nothing(client: Client, api: str, customer: object) -> None:
    """The ``ticket`` source's model takes any JSON as the customer: the source refuses what is
    not a plain value rather than acting for a stringified object or for nobody."""
    event = new_event()
    payload = body(event, customer=customer)
    answer = await deliver(api, "ticket", payload, hub_headers(payload))
    request = await started_request(client, run_id_for("ticket", event))
    await end(client, run_id_for("ticket", event))
    assert (answer.status_code, request) == (422, None), answer.text
    assert "admin" not in answer.text


# ---------------------------------------------------------------------------------------------
# 5. error answers never echo secrets, signatures or the body's personal data


async def test_refusals_echo_no_secret_signature_or_personal_data(client: Client, api: str) -> None:
    event = new_event()
    good = body(event)
    assert (await deliver(api, "hub", good, hub_headers(good))).status_code == 202
    other = body(event, customer=PII + " (another)")
    now = int(time.time())
    stale = sign(STRIPE_SECRET, good, scheme="stripe", timestamp=now - 3600)
    refusals = {
        "bad signature": await deliver(api, "hub", body(new_event()), hub_headers(good)),
        "409 other content": await deliver(api, "hub", other, hub_headers(other)),
        "422 a field holding PII": await deliver(
            api,
            "hub",
            bad := body(new_event(), limit=PII),
            hub_headers(bad),  # type: ignore[arg-type]
        ),
        "422 a customer object holding PII": await deliver(
            api, "ticket", obj := body(new_event(), customer={"name": PII}), hub_headers(obj)
        ),
        "stale stripe": await deliver(
            api, "shop", good, [("Content-Type", "application/json"), ("Stripe-Signature", stale)]
        ),
        "415": await deliver(api, "hub", good, [("Content-Type", "text/plain"), *hub_headers(good)[1:]]),
    }
    await end(client, run_id_for("hub", event))
    codes = {name: r.status_code for name, r in refusals.items()}
    assert codes == {
        "bad signature": 401,
        "409 other content": 409,
        "422 a field holding PII": 422,
        "422 a customer object holding PII": 422,
        "stale stripe": 401,
        "415": 415,
    }
    forbidden = [PII, "王伟", "138-0013-8000", HUB_SECRET.decode(), STRIPE_SECRET.decode(), hub_signature(good)[7:]]
    forbidden += [stale.split("v1=")[1], sign(STRIPE_SECRET, good, scheme="stripe", timestamp=now - 3600)[-64:]]
    leaks = {name: [f for f in forbidden if f in r.text] for name, r in refusals.items()}
    assert leaks == {name: [] for name in refusals}


async def test_an_input_mapping_that_fails_does_not_echo_the_payload_value(
    client: Client, secrets_env: None, dev_server: DevServer, tmp_path: Path, task_queue: str, ledger: Path
) -> None:
    """Validation errors quote field names only, "values may be personal data" (_ingress.py); an
    input expression that fails on a value (``int(payload.customer)``) must keep to the same rule."""
    mapped = f"""  - name: mapped
    secrets: [env:ATTACK_HUB_SECRET]
    signature: {{header: X-Hub-Signature-256, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.server.test_ingress_and_api_attacks:Ticket
    principal: {{id: mapped}}
    input: {{limit: "int(payload.customer)"}}
    graph: {LOOP}
    task_queue: {task_queue}
"""
    event = new_event()
    payload = body(event)
    with serving(dev_server, tmp_path, task_queue, ledger, mapped) as url:
        answer = await deliver(url, "mapped", payload, hub_headers(payload))
    assert await started_request(client, run_id_for("mapped", event)) is None
    assert answer.status_code == 422, answer.text
    assert "138-0013-8000" not in answer.text and "王伟" not in answer.text, answer.text


# ---------------------------------------------------------------------------------------------
# 4. every route, as an anonymous caller, a viewer and another tenant's staff

PUBLIC = {("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect")}
PUBLIC |= {("GET", "/redoc"), ("GET", "/console/signin"), ("OPTIONS", "/codec/decode"), ("MOUNT", "/console/static")}
ANONYMOUS: dict[tuple[str, str], int] = {
    ("GET", "/healthz"): 200,
    ("GET", "/openapi.json"): 200,
    ("GET", "/docs"): 200,
    ("GET", "/docs/oauth2-redirect"): 200,
    ("GET", "/redoc"): 200,
    ("POST", "/webhooks/{source}"): 401,  # unsigned
    ("GET", "/api/webhooks/stats"): 401,
    ("GET", "/api/approvals"): 401,
    ("POST", "/api/approvals/{run_id}"): 401,
    ("GET", "/runs"): 401,
    ("GET", "/runs/{run_id}"): 401,
    ("GET", "/metrics"): 401,
    ("POST", "/codec/decode"): 401,
    ("OPTIONS", "/codec/decode"): 204,
    ("GET", "/console"): 303,  # to /console/runs, which sends to sign-in
    ("GET", "/console/signin"): 200,
    ("POST", "/console/signin"): 403,  # no CSRF token
    ("POST", "/console/signout"): 403,
    ("GET", "/console/runs"): 303,
    ("GET", "/console/dashboard"): 303,
    ("GET", "/console/runs/{run_id}"): 303,
    ("GET", "/console/runs/{run_id}/events"): 303,
    ("POST", "/console/runs/{run_id}/cancel"): 403,
    ("POST", "/console/runs/{run_id}/retry"): 403,
    ("POST", "/console/runs/{run_id}/rerun"): 403,
    ("POST", "/console/runs/bulk"): 403,
    ("GET", "/console/approvals"): 303,
    ("POST", "/console/approvals"): 403,
    ("MOUNT", "/console/static"): 200,  # the vendored htmx: public on purpose
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, through included routers; a mount is ``MOUNT``."""
    found: set[tuple[str, str]] = set()

    def walk(routes: Sequence[Any], prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None):
                found.update((m, prefix + route.path) for m in route.methods if m != "HEAD")
            else:
                found.add(("MOUNT", prefix + route.path))

    walk(app.routes, "")
    return found


def test_every_route_of_the_app_is_classified(secrets_env: None, dev_server: DevServer, tmp_path: Path) -> None:
    """A route added without a decision on who may call it fails here, before it ships."""
    settings = ServerSettings(
        temporal_address=dev_server.address,
        webhooks=write_sources(tmp_path, "q"),
        users=write_users(tmp_path / "users.yaml"),
        data=tmp_path / "data",
    )
    assert app_routes(create_app(settings)) == set(ANONYMOUS)


async def anonymous_call(http: httpx.AsyncClient, method: str, template: str, run: str, step: str) -> httpx.Response:
    path = template.replace("{run_id}", quote(run, safe="")).replace("{source}", "hub")
    form = {"item": f"{run}|{step}", "outcome": "approve", "action": "cancel", "changes": "{}", "user": "boss"}
    match method, template:
        case "MOUNT", _:
            return await http.get(f"{path}/vendor/htmx.min.js")
        case "POST", "/webhooks/{source}":
            return await http.post(path, content=body(new_event()), headers={"Content-Type": "application/json"})
        case "POST", "/api/approvals/{run_id}":
            return await http.post(path, json={"step_id": step, "outcome": "approve"})
        case "POST", "/codec/decode":
            return await http.post(path, json={"payloads": []})
        case "POST", _:
            return await http.post(path, data={**form, "password": PASSWORD})
    return await http.request(method, path)


async def console_as(url: str, user: str) -> tuple[httpx.AsyncClient, str]:
    """A signed-in console session and its CSRF token."""
    http, answer = await signed_in(url, user, PASSWORD)
    assert answer.status_code == 303, answer.text
    return http, csrf_of((await http.get("/console/runs")).text)


def operations(ledger: Path) -> list[tuple[str, str]]:
    log = AuditLog.open(f"sqlite:///{ledger.with_suffix('.audit.sqlite')}")
    return [(r.principal, r.run_id) for r in log.records() if r.kind == "operation"]


async def test_no_route_discloses_or_changes_another_tenants_run(
    client: Client, api: str, task_queue: str, ledger: Path
) -> None:
    """A globex run parked at an approval, then every route called anonymously, as an acme
    viewer, an acme operator and an acme manager (bearer token and console): 401/303/403 or a
    404 that reads exactly like a run that does not exist; the run is still parked, undecided,
    uncancelled, and the audit log holds no operation on it."""
    gina = Principal(id="gina", roles=["clerk"], tenant="globex")
    secret_words = ["gina", "globex", "clerk", "Refund"]
    async with graph_worker(client, task_queue), httpx.AsyncClient(base_url=api, timeout=30) as http:
        handle = await start_run(client, graph("approval"), {}, run_id=run_id(), principal=gina, task_queue=task_queue)
        run, step = handle.id, (await wait_for_approval(handle)).step_id
        ghost = run_id()  # no such run: what a 404 must look like
        try:
            # positive controls: the run is in the visibility store and the run index
            for _ in range(100):
                mine = (await http.get("/api/approvals", headers=bearer("globex_mgr"))).json()
                if any(item["run_id"] == run for item in mine):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the globex manager never saw the approval")
            auditor, _ = await console_as(api, "auditor")
            for _ in range(100):
                if run in (await auditor.get("/console/runs", params={"status": "running"})).text:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the run index never listed the run")
            await auditor.aclose()

            # anonymous
            for (method, template), expected in sorted(ANONYMOUS.items()):
                answer = await anonymous_call(http, method, template, run, step)
                assert answer.status_code == expected, (method, template, answer.status_code, answer.text[:300])
                if (method, template) not in PUBLIC:
                    assert not [w for w in secret_words if w in answer.text], (method, template, answer.text[:300])

            # bearer tokens of acme
            for user in ("acme_viewer", "acme_ops", "acme_mgr"):
                shown, absent = (
                    await http.get(f"/runs/{run}", headers=bearer(user)),
                    await http.get(f"/runs/{ghost}", headers=bearer(user)),
                )
                assert shown.status_code == 404 == absent.status_code
                assert shown.json()["detail"].replace(run, "ID") == absent.json()["detail"].replace(ghost, "ID")
                decided = await http.post(
                    f"/api/approvals/{run}", json={"step_id": step, "outcome": "approve"}, headers=bearer(user)
                )
                assert decided.status_code == 404, decided.text
                listed = await http.get("/runs", headers=bearer(user))
                inbox = await http.get("/api/approvals", headers=bearer(user))
                assert listed.status_code == 200 == inbox.status_code
                assert run not in listed.text + inbox.text
                for text in (shown.text, decided.text, listed.text, inbox.text):
                    assert not [w for w in secret_words if w in text], text
            for route in ("/api/webhooks/stats", "/metrics"):  # counts are for operators only
                assert (await http.get(route, headers=bearer("acme_viewer"))).status_code == 403
            codec = await http.post("/codec/decode", json={"payloads": []}, headers=bearer("acme_viewer"))
            assert codec.status_code == 403

            # the console, as an acme viewer and an acme operator
            viewer, viewer_csrf = await console_as(api, "acme_viewer")
            ops, ops_csrf = await console_as(api, "acme_ops")
            try:
                for path in (f"/console/runs/{run}", f"/console/runs/{run}/events"):
                    page = await viewer.get(path)
                    ghost_page = await viewer.get(path.replace(run, ghost))
                    assert page.status_code == 404 == ghost_page.status_code
                    assert page.text.replace(run, "ID") == ghost_page.text.replace(ghost, "ID")
                refused = await viewer.post(f"/console/runs/{run}/cancel", data={"csrf": viewer_csrf})
                assert refused.status_code == 403 and "may not operate" in refused.text
                for action in ("cancel", "retry", "rerun"):
                    answer = await ops.post(f"/console/runs/{run}/{action}", data={"csrf": ops_csrf, "changes": "{}"})
                    assert answer.status_code == 404, (action, answer.text[:300])
                    assert not [w for w in secret_words if w in answer.text]
                bulk = await ops.post("/console/runs/bulk", data={"csrf": ops_csrf, "action": "cancel"})
                assert bulk.status_code == 200 and run not in bulk.text
                for path in ("/console/runs?status=running", "/console/dashboard", "/console/approvals"):
                    page = await ops.get(path)
                    assert page.status_code == 200 and run not in page.text, path
            finally:
                await viewer.aclose()
                await ops.aclose()

            # nothing happened to the run
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
            assert (await wait_for_approval(handle)).step_id == step
            assert [op for op in operations(ledger) if op[1] == run] == []
        finally:
            await end(client, handle.id)


async def test_a_tenant_approver_who_may_not_see_a_run_neither_lists_nor_decides_its_approval(
    client: Client, api: str, task_queue: str
) -> None:
    """A webhook source without ``tenant`` starts runs with a tenantless principal. The runs API
    treats such a run as none of acme's business; the approvals API should agree."""
    service = Principal(id="hub", kind="service", roles=["helpdesk"], customer="C00042")
    async with graph_worker(client, task_queue), httpx.AsyncClient(base_url=api, timeout=30) as http:
        handle = await start_run(
            client, graph("approval"), {}, run_id=run_id(), principal=service, task_queue=task_queue
        )
        step = (await wait_for_approval(handle)).step_id
        try:
            for _ in range(100):  # listed to a manager without a tenant: the visibility store has it
                if any(
                    i["run_id"] == handle.id for i in (await http.get("/api/approvals", headers=bearer("boss"))).json()
                ):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("never listed")
            assert (await http.get(f"/runs/{handle.id}", headers=bearer("acme_mgr"))).status_code == 404
            inbox = (await http.get("/api/approvals", headers=bearer("acme_mgr"))).json()
            assert [i for i in inbox if i["run_id"] == handle.id] == []
            decided = await http.post(
                f"/api/approvals/{handle.id}", json={"step_id": step, "outcome": "reject"}, headers=bearer("acme_mgr")
            )
            assert decided.status_code == 404, decided.text
        finally:
            await end(client, handle.id)


async def test_a_workflow_that_is_no_graph_run_reads_like_no_run_at_all(client: Client, api: str) -> None:
    """Another workflow on the same namespace: the runs API says of it what it says of an ID that
    does not exist, so probing IDs tells nothing of what else runs there."""
    other = await client.start_workflow("someone.elses", id=run_id(), task_queue="nobody-polls-this")
    ghost = run_id()
    try:
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            shown = await http.get(f"/runs/{other.id}", headers=bearer("boss"))
            absent = await http.get(f"/runs/{ghost}", headers=bearer("boss"))
        assert shown.status_code == 404 == absent.status_code
        assert shown.json()["detail"].replace(other.id, "ID") == absent.json()["detail"].replace(ghost, "ID")
    finally:
        await other.terminate()
