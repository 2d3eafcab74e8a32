"""Encrypted payloads: history holds no customer data, old keys still read after rotation,
tampering is caught, and the UI's decode endpoint answers signed-in operators only."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client

from chamberlain.server._auth import User, UserDirectory, token_digest
from chamberlain.server._codec import codec_router
from chamberlain.server._http import BackgroundServer
from chamberlain.workflows import EncryptionCodec, PayloadDecodeError, create_worker, execute_run
from chamberlain.workflows._codec import ENCODING, KEY_ID, key_file, new_key
from tests.conftest import run_id
from tests.support import toolbox
from tests.workflows.test_plugin import CUSTOMER, answer_graph, gate_for, greeting_models

NAME, EMAIL = "王小明", "wang.xiaoming@example.cn"
MESSAGE = f"{NAME}, A1042 arrived broken, write to {EMAIL}"


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_history_holds_no_customer_data(client: Client, tmp_path: Path, task_queue: str) -> None:
    tools = toolbox.tools()
    rid = run_id()
    async with create_worker(
        client, models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path), task_queue=task_queue
    ):
        result = await execute_run(
            client, answer_graph(), {"message": MESSAGE}, run_id=rid, principal=CUSTOMER, task_queue=task_queue
        )
    assert result.output["reply"] == f"您好 {NAME}, we are looking at A1042"  # decoded through the client's codec
    history = await client.get_workflow_handle(rid).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    secrets = [NAME, EMAIL, "A1042 arrived broken", CUSTOMER.id, "您好"]
    for secret in secrets:
        for form in (secret.encode(), json.dumps(secret).encode()):  # UTF-8 and JSON-escaped
            assert form not in raw, secret
    # The control: the same bytes, decrypted, hold the message — the search above can find it.
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    opened = await client.data_converter.payload_codec.decode(started)  # type: ignore[union-attr]
    assert NAME.encode() in opened[0].data and EMAIL.encode() in opened[0].data
    assert started[0].metadata["encoding"] == ENCODING


async def test_an_old_key_still_decrypts_after_rotation() -> None:
    old_entry, new_entry = new_key("2025"), new_key("2026")
    before = EncryptionCodec.parse(old_entry)
    after = EncryptionCodec.parse(f"{new_entry},{old_entry}")
    sealed_then = await before.encode([plain(MESSAGE)])
    sealed_now = await after.encode([plain(MESSAGE)])
    assert sealed_then[0].metadata[KEY_ID] == b"2025" and sealed_now[0].metadata[KEY_ID] == b"2026"
    assert [p.data for p in await after.decode(sealed_then + sealed_now)] == [json.dumps(MESSAGE).encode()] * 2
    assert MESSAGE.encode() not in sealed_now[0].SerializeToString()
    with pytest.raises(PayloadDecodeError, match="key '2026', which is not configured: add it"):
        await before.decode(sealed_now)  # a worker not yet given the new key says which one it needs


async def test_tampered_relabelled_or_plain_payloads_are_refused() -> None:
    codec = EncryptionCodec.parse(f"{new_key('a')},{new_key('b')}")
    sealed = codec.seal(plain("refund 10 EUR"))
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"b"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(PayloadDecodeError, match="failed authentication"):
            codec.open(bad)
    with pytest.raises(PayloadDecodeError, match="not encrypted"):
        codec.open(plain("a signal sent from the Temporal UI"))
    assert codec.open(plain("an old run"), plaintext_ok=True) == plain("an old run")


def test_the_dev_key_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "payload-keys"
    first = key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert key_file(path) == first  # a restart reads the same key: old runs stay readable
    path.chmod(0o644)
    with pytest.raises(ValueError, match="readable by other users: chmod 600"):
        key_file(path)


@pytest.fixture
def codec_server() -> Iterator[tuple[str, EncryptionCodec]]:
    codec = EncryptionCodec.parse(new_key("k1"))
    app = FastAPI()
    app.state.users = UserDirectory(
        users=[
            User(id="olga", roles=["operator"], token_sha256=token_digest("olga-token")),
            User(id="carl", roles=["customer"], token_sha256=token_digest("carl-token")),
        ]
    )
    app.include_router(codec_router(codec, ui_origins=["http://127.0.0.1:8233"]))
    server = BackgroundServer(app).start()
    yield server.url, codec
    server.stop()


async def test_the_decode_endpoint_serves_operators_only(codec_server: tuple[str, EncryptionCodec]) -> None:
    url, codec = codec_server
    body = MessageToDict(Payloads(payloads=[codec.seal(plain(MESSAGE)), plain("from before encryption")]))
    async with httpx.AsyncClient(base_url=url) as http:
        anonymous = await http.post("/codec/decode", json=body)
        forged = await http.post("/codec/decode", json=body, headers={"Authorization": "Bearer olga-token-x"})
        customer = await http.post("/codec/decode", json=body, headers={"Authorization": "Bearer carl-token"})
        operator = await http.post(
            "/codec/decode",
            json=body,
            headers={"Authorization": "Bearer olga-token", "Origin": "http://127.0.0.1:8233"},
        )
        preflight = await http.options("/codec/decode", headers={"Origin": "http://127.0.0.1:8233"})
        elsewhere = await http.options("/codec/decode", headers={"Origin": "http://evil.example"})
    assert (anonymous.status_code, forged.status_code, customer.status_code) == (401, 401, 403)
    assert MESSAGE not in anonymous.text + customer.text
    assert operator.status_code == 200
    decoded = [json.loads(base64.b64decode(p["data"])) for p in operator.json()["payloads"]]
    assert decoded == [MESSAGE, "from before encryption"]
    assert operator.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    assert preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_malformed_bodies_and_payloads_answer_400_with_the_reason(
    codec_server: tuple[str, EncryptionCodec],
) -> None:
    url, codec = codec_server
    sealed = codec.seal(plain(MESSAGE))
    short = Payload(metadata=dict(sealed.metadata), data=sealed.data[:3])  # a nonce cut short
    no_key = Payload(metadata={**sealed.metadata, KEY_ID: b"\xff\xfe"}, data=sealed.data)
    as_operator = {"Authorization": "Bearer olga-token"}
    answers = {}
    async with httpx.AsyncClient(base_url=url) as http:
        bodies: dict[str, object] = {
            "number": 5,
            "string": "str",
            "list": [],
            "payloads not a list": {"payloads": "x"},
            "short nonce": MessageToDict(Payloads(payloads=[short])),
            "key ID not UTF-8": MessageToDict(Payloads(payloads=[no_key])),
        }
        for name, body in bodies.items():
            response = await http.post("/codec/decode", json=body, headers=as_operator)
            answers[name] = (response.status_code, response.json()["detail"])
        broken = await http.post("/codec/decode", content=b"{not json", headers=as_operator)
    assert {name: status for name, (status, _) in answers.items()} == dict.fromkeys(answers, 400)
    assert answers["number"][1] == 'body: expected {"payloads": [...]} in Temporal\'s JSON form, not a JSON int'
    assert "holds 3 bytes, fewer than a nonce and tag" in answers["short nonce"][1]
    assert "which is not configured" in answers["key ID not UTF-8"][1]
    assert broken.status_code == 400 and "body: expected" in broken.json()["detail"]
