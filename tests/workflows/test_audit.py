"""The audit log's hash chain on SQLite and PostgreSQL: idempotent appends, and any edit,
deletion or reordering detected and named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from chamberlain.workflows.audit import AuditEntry, AuditLog

ROOT = Path(__file__).parents[2]


def entry(i: int, attempt: int = 1) -> AuditEntry:
    return AuditEntry(run_id="r", step_id=f"r/refund/{i}", attempt=attempt, kind="decision", principal="User::li",
                      action="erp.refund.create", resource='Order::"A1"', args={"amount": i}, decision="allow",
                      policies=["support-refunds-up-to-200-cny"])  # fmt: skip


def test_appends_chain_and_are_idempotent(database_url: str) -> None:
    log = AuditLog(database_url)
    first = log.append(entry(1))
    assert log.append(entry(1)) == first  # a retried activity
    log.append(entry(1, attempt=2))
    log.append(entry(2))
    records = list(log.records())
    assert [r.seq for r in records] == [1, 2, 3] and records[1].prev_hash == records[0].hash
    assert log.verify() is None


async def test_concurrent_appends_keep_one_chain(database_url: str) -> None:
    log = AuditLog(database_url)
    await asyncio.gather(*(asyncio.to_thread(log.append, entry(i)) for i in range(20)))
    assert log.verify() is None and len(list(log.records())) == 20


def test_edits_deletions_and_reorderings_are_caught(database_url: str) -> None:
    log = AuditLog(database_url)
    for i in range(5):
        log.append(entry(i))
    with log.engine.begin() as db:
        db.execute(text("UPDATE audit_log SET decision = 'deny' WHERE seq = 3"))
    assert log.verify() == "record 3 was edited: its content does not match its hash"
    with log.engine.begin() as db:
        db.execute(text("UPDATE audit_log SET decision = 'allow' WHERE seq = 3"))
        db.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    assert log.verify() == "record 4 is missing (next is 5)"


def test_reordering_is_caught(database_url: str) -> None:
    log = AuditLog(database_url)
    for i in range(3):
        log.append(entry(i))
    with log.engine.begin() as db:  # swap the contents of records 1 and 2, hashes included
        db.execute(text("UPDATE audit_log SET seq = 100 WHERE seq = 1"))
        db.execute(text("UPDATE audit_log SET seq = 1 WHERE seq = 2"))
        db.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 100"))
    assert log.verify() == "record 1 does not follow record 0: the log was reordered or edited"


def test_cli_verify_and_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    log = AuditLog(url)
    for i in range(3):
        log.append(entry(i))
    cli = [sys.executable, "-c", "from server.cli import main; main()", "audit"]
    env = {**os.environ, "CHAMBERLAIN_AUDIT": url, "COLUMNS": "200"}
    ok = subprocess.run([*cli, "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "3 records, chain intact" in ok.stdout
    out = tmp_path / "audit.jsonl"
    exported = subprocess.run([*cli, "export", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0 and len(out.read_text().splitlines()) == 3
    with log.engine.begin() as db:
        db.execute(text("UPDATE audit_log SET principal = 'User::mallory' WHERE seq = 2"))
    broken = subprocess.run([*cli, "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "record 2 was edited" in broken.stdout + broken.stderr
