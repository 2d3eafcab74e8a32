"""The business's own activity: tell the customer (here an outbox table the portal reads).

Sending is idempotent per key — the workflow's ID and what is sent — so a retried activity
never tells the customer twice."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity


class Notice(BaseModel):
    key: str
    customer_id: str
    text: str


def outbox_path() -> Path:
    return Path(os.environ.get("CHAMBERLAIN_DATA", ".chamberlain")) / "b2b-outbox.sqlite"


def _outbox() -> sqlite3.Connection:
    path = outbox_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, customer_id TEXT, text TEXT)")
    return db


@activity.defn(name="b2b.notify_customer")
async def notify_customer(notice: Notice) -> None:
    with closing(_outbox()) as db, db:
        db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?)", (notice.key, notice.customer_id, notice.text))


def sent_to(customer_id: str) -> list[tuple[str, str]]:
    """(key, text) of every notice a customer got, for the starter and tests."""
    with closing(_outbox()) as db:
        rows = db.execute("SELECT key, text FROM outbox WHERE customer_id = ? ORDER BY rowid", (customer_id,))
        return rows.fetchall()
