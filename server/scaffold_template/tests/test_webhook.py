"""The helpdesk's webhook through the HTTP server: a signed event starts the refund graph (202),
a second delivery of it joins the same run, a forged signature is refused."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from chamberlain.server import ServerSettings, SourceCatalog, create_app
from chamberlain.workflows import TASK_QUEUE, DevServer, RunResult

from myproject.worker import connect, worker

SOURCES = Path(__file__).parents[1] / "myproject" / "webhooks.yaml"
EVENT = {"event_id": "evt-1", "customer_id": "C10001", "order_id": "A1001", "message": "broken, money back"}


async def test_a_signed_event_starts_one_run(temporal: DevServer, monkeypatch: pytest.MonkeyPatch, data: Path) -> None:
    monkeypatch.setenv("MYPROJECT_HELPDESK_SECRET", "a-test-secret")
    source = SourceCatalog.load(SOURCES).sources[0]
    settings = ServerSettings(webhooks=SOURCES, temporal_address=temporal.address, data=data)
    body = json.dumps(EVENT).encode()
    client = await connect(temporal.address)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with worker(client, TASK_QUEUE), httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        forged = await http.post("/webhooks/helpdesk", content=body, headers=source.sign_request(body[:-1] + b" }"))
        first = await http.post("/webhooks/helpdesk", content=body, headers=source.sign_request(body))
        again = await http.post("/webhooks/helpdesk", content=body, headers=source.sign_request(body))
        assert forged.status_code == 401
        assert first.status_code == again.status_code == 202
        assert first.json()["run_id"] == again.json()["run_id"]
        result = await client.get_workflow_handle(first.json()["run_id"], result_type=RunResult).result()
    assert result.output["reply"] == "Refunded 80.0 CNY"
