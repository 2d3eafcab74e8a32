"""The quickstart scenario end to end, as `make demo` runs it, on the session's dev server."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from chamberlain.agents import EmbeddedModelServer
from chamberlain.examples.quickstart import starter
from chamberlain.workflows import DevServer


async def test_quickstart_runs_end_to_end_on_the_embedded_model(
    dev_server: DevServer, embedded_model: EmbeddedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    monkeypatch.setenv("QUICKSTART_DB", str(tmp_path / "shop.sqlite"))
    monkeypatch.setenv("CHAMBERLAIN_DATA", str(tmp_path))
    console = Console(record=True, width=120)
    outputs = await starter.main(console)
    assert [o["reply"] for o in outputs] == [
        "Order A1001 is delivered",
        "Refunded 120.5 CNY",
        "Refunded 1299.0 CNY",
    ]
    assert [o["order_id"] for o in outputs] == ["A1001", "A1002", "A1003"]  # extracted by SmolLM2
    text = console.export_text()
    assert "waiting for approval Refund 1299.0 CNY on order A1003?" in text and "maria (manager) approved" in text
    # 3 model calls and 6 tool decisions (the 1299 refund twice: needs approval, then allowed on the
    # manager's approval), that approval, and 5 effects (3 order reads, 2 refunds)
    assert "audit log: decisions: 4, approvals: 1, effects: 5 — chain intact" in text
