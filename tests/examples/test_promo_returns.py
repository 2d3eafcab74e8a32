"""The promo-season returns scenario end to end on the embedded model, Temporal and the
seeded embedded ERP: an automatic return, an approved one, a declined one."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import Session, select

from chamberlain.agents import EmbeddedModelServer
from chamberlain.examples.promo_returns import app, starter
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Refund
from chamberlain.workflows import DevServer


async def test_three_returns_end_to_end(
    dev_server: DevServer, embedded_model: EmbeddedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_server.address)
    monkeypatch.setattr(app, "DATA", tmp_path)
    monkeypatch.setenv("PROMO_ERP", f"sqlite:///{tmp_path / 'shop.sqlite'}")
    console = Console(record=True, width=140)
    automatic, approved, declined = await starter.main(console)

    # On the embedded model a return completes, or — where the classifier is unsure of the intent —
    # goes to the support queue, which the starter answers; never both.
    assert automatic["end"] in ("done", "answered") and approved["end"] in ("done", "answered")
    if automatic["end"] == "done":
        assert automatic["rma"] == "RMA000001" and automatic["refund_id"] == "RF000001"
        label = Path(str(automatic["label"]))
        assert label.read_bytes().startswith(b"%PDF") and label.stat().st_size > 1000
    if approved["end"] == "done":
        assert float(approved["refund_amount"]) > 200  # type: ignore[arg-type]
        assert "manager Refund" in console.export_text()
    assert declined["end"] in ("declined", "answered")
    if declined["end"] == "declined":
        assert "7-day return window ended" in declined["reasons"][0]  # type: ignore[index]

    erp = EmbeddedErp(app.database_url())
    with Session(erp.engine) as session:
        refunds = session.exec(select(Refund)).all()
    paid = [o["order_id"] for o in (automatic, approved) if o["end"] == "done"]
    assert sorted(r.order_id for r in refunds) == sorted(paid)  # a refund only where the return completed
