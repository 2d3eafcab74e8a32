"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever arrives — any
path parameter, body, header or token, authenticated or not — the server answers without a
5xx, and nothing unsigned starts a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from chamberlain.server._auth import token_digest
from chamberlain.server._http import ServerSettings, create_app
from chamberlain.workflows import DevServer
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.chaos
ROOT = Path(__file__).parents[2]
TOKEN = "fuzz-manager-token"
QUEUE = "fuzz-webhooks"  # runs a webhook starts go here: none may
SOURCES = f"""
sources:
  - name: hub
    secrets: [env:FUZZ_HUB_SECRET]
    signature: {{scheme: hmac-sha256, header: X-Hub-Signature-256, encoding: hex, prefix: "sha256="}}
    event_id: {{json: id}}
    payload: tests.support.payloads:Counted
    principal: {{id: hub, roles: [helpdesk], customer_field: customer}}
    graph: {ROOT / "tests" / "graphs" / "loop.yaml"}
    input: {{limit: payload.limit}}
    task_queue: {QUEUE}
"""


@pytest.fixture(scope="module")
def api(dev_server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    users = folder / "users.yaml"
    manager = {"id": "mia", "roles": ["manager"], "token_sha256": token_digest(TOKEN)}
    users.write_text(yaml.safe_dump({"users": [manager]}))
    sources = folder / "webhooks.yaml"
    sources.write_text(SOURCES)
    mp = pytest.MonkeyPatch()
    mp.setenv("FUZZ_HUB_SECRET", "fuzz-secret-" + "x" * 20)
    settings_ = ServerSettings(temporal_address=dev_server.address, users=users, webhooks=sources, data=folder / "data")
    server = ThreadedServer(create_app(settings_)).start()
    yield server.url
    server.stop()
    mp.undo()


def test_no_request_makes_the_api_fail(api: str) -> None:
    """Every operation of the schema, each with generated cases, anonymous and as a manager.
    (schemathesis's pytest plugin does not run under pytest 9 yet: its strategies, driven here.)"""
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 4  # the webhooks, runs and approvals are all in the schema
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: schemathesis.Case) -> None:
            for headers in (None, {"Authorization": f"Bearer {TOKEN}"}):
                response = case.call(base_url=api, headers=headers, timeout=30)
                if response.status_code >= 500:
                    where = f"{case.method} {case.formatted_path}"
                    failures.append(f"{where} -> {response.status_code}: {response.text[:200]}")

        no_server_error()
    assert failures == []


async def test_nothing_the_fuzzer_sent_started_a_run(client: object, api: str) -> None:
    from temporalio.client import Client

    assert isinstance(client, Client)
    started = [w.id async for w in client.list_workflows(f'TaskQueue="{QUEUE}"')]
    assert started == []
