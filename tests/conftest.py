"""Shared fixtures: one real Temporal dev server and one time-skipping server per session;
each test gets a fresh task queue and its own side-effect ledger."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from chamberlain.agents import EmbeddedModelServer, GraphSpec, load_graph
from chamberlain.workflows import DevServer, connect, temporal_binary
from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV, new_key
from chamberlain.workflows._converter import ConverterPlugin
from tests.support import toolbox

GRAPHS = Path(__file__).parent / "graphs"


@pytest.fixture(scope="session", autouse=True)
def payload_keys() -> Iterator[str]:
    """Every test runs with encrypted payloads, as deployments do: one fresh key for the session
    in ``CHAMBERLAIN_PAYLOAD_KEYS``, where clients, workers and subprocesses all read it."""
    keys = new_key("test1")
    previous = os.environ.get(PAYLOAD_KEYS_ENV)
    os.environ[PAYLOAD_KEYS_ENV] = keys
    yield keys
    if previous is None:
        os.environ.pop(PAYLOAD_KEYS_ENV, None)
    else:
        os.environ[PAYLOAD_KEYS_ENV] = previous


@pytest.fixture(scope="session")
async def dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    folder = tmp_path_factory.mktemp("temporal")
    server = DevServer(folder / "temporal.db", log_file=folder / "temporal.log")
    await server.start()
    yield server
    await cancel_leftover_tasks()
    server.stop()


async def cancel_leftover_tasks(timeout: float = 30.0) -> None:
    """Cancel what tests left running on the session's loop (a worker, a result future) while
    the server they talk to is still up: cancelled after it stops, a worker's shutdown waits on
    a server that is gone and the loop never closes (seen once at the end of the whole suite)."""
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        _, pending = await asyncio.wait(leftovers, timeout=timeout)
        for task in pending:
            print(f"a task outlived its cancellation: {task!r}", file=sys.stderr)


@pytest.fixture(scope="session")
async def client(dev_server: DevServer) -> Client:
    """A client with the session's payload keys; workers made from it encrypt with them too."""
    return await connect(dev_server.address)


@pytest.fixture(scope="session")
async def time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binary("temporal-test-server")),
        plugins=[ConverterPlugin()],
    )
    request = AddSearchAttributesRequest(
        namespace="default", search_attributes={"ChamberlainApproval": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD}
    )
    await env.client.operator_service.add_search_attributes(request)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedModelServer]:
    """The real embedded model (SmolLM2-135M on llama.cpp), once per session; apps that read
    ``CHAMBERLAIN_EMBEDDED_URL`` (the quickstart, subprocesses) find it there."""
    server = EmbeddedModelServer(log_file=tmp_path_factory.mktemp("model") / "llama.log").start()
    previous = os.environ.get("CHAMBERLAIN_EMBEDDED_URL")
    os.environ["CHAMBERLAIN_EMBEDDED_URL"] = server.base_url
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("CHAMBERLAIN_EMBEDDED_URL", None)
    else:
        os.environ["CHAMBERLAIN_EMBEDDED_URL"] = previous


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv("CHAMBERLAIN_TEST_LEDGER", str(path))
    yield path


@pytest.fixture
def five_steps() -> GraphSpec:
    return load_graph(GRAPHS / "five_steps.yaml", tools=toolbox.tools())


def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


POSTGRES_URL = os.environ.get("CHAMBERLAIN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on a SQLite file and on the PostgreSQL server of these machines
    (in a schema of its own, dropped afterwards, so tests never see each other's rows)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()
