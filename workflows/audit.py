"""The audit log: append-only, one record per decision and per effect, hash-chained.

Each record carries the SHA-256 of the previous record and its own, computed over its
canonical JSON, so editing, deleting or reordering any record breaks the chain at that
record. Records are written from activities, idempotently: a retried activity finds its
record (by step, kind and attempt) and does not write a second. Appends are serialized by
updating one head row first — a lock in SQLite and PostgreSQL alike — so the chain stays linear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, UniqueConstraint, text
from sqlmodel import Field, Session, SQLModel, col, select

from chamberlain.tools.database import open_engine

GENESIS = "0" * 64


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("step_id", "kind", "attempt", name="audit_once_per_step_attempt"),)

    seq: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    step_id: str
    attempt: int
    kind: str  # decision | effect | approval
    principal: str
    action: str
    resource: str
    args_digest: str
    decision: str
    policies: str  # comma-separated policy IDs
    at: datetime
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """One row whose lock serializes appends, in SQLite and PostgreSQL alike."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    appends: int = 0


class AuditEntry(BaseModel):
    run_id: str
    step_id: str
    attempt: int = 1
    kind: str
    principal: str
    action: str
    resource: str
    args: dict[str, Any] = {}
    decision: str
    policies: list[str] = []


def digest(value: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace): the same data, the same digest."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _record_hash(record: AuditRecord) -> str:
    fields = record.model_dump(exclude={"seq", "hash"})
    fields["at"] = record.at.replace(tzinfo=UTC).isoformat() if record.at.tzinfo is None else record.at.isoformat()
    return digest(fields)


class AuditLog:
    def __init__(self, url: str | Engine = "sqlite:///.chamberlain/audit.sqlite") -> None:
        self.engine = open_engine(url) if isinstance(url, str) else url
        SQLModel.metadata.create_all(self.engine, tables=[AuditRecord.__table__, AuditHead.__table__])  # type: ignore[attr-defined]
        with Session(self.engine) as session:
            if session.get(AuditHead, 1) is None:
                session.add(AuditHead())
                session.commit()

    def append(self, entry: AuditEntry) -> AuditRecord:
        with Session(self.engine) as session:
            session.execute(text("UPDATE audit_head SET appends = appends + 1 WHERE id = 1"))  # take the chain's lock
            existing = session.exec(
                select(AuditRecord).where(
                    AuditRecord.step_id == entry.step_id,
                    AuditRecord.kind == entry.kind,
                    AuditRecord.attempt == entry.attempt,
                )
            ).first()
            if existing:
                session.expunge(existing)
                session.rollback()
                return existing
            last = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1)).first()
            record = AuditRecord(
                **entry.model_dump(exclude={"args", "policies"}),
                args_digest=digest(entry.args),
                policies=",".join(entry.policies),
                at=datetime.now(UTC),
                prev_hash=last.hash if last else GENESIS,
                hash="",
            )
            record.hash = _record_hash(record)
            session.add(record)
            session.commit()
            session.refresh(record)
            return record

    def records(self) -> Iterator[AuditRecord]:
        with Session(self.engine) as session:
            yield from session.exec(select(AuditRecord).order_by(col(AuditRecord.seq)))

    def verify(self) -> str | None:
        """None if the chain is intact; otherwise which record breaks it and how."""
        previous_hash, previous_seq = GENESIS, 0
        for record in self.records():
            if record.seq != previous_seq + 1:
                return f"record {previous_seq + 1} is missing (next is {record.seq})"
            if record.prev_hash != previous_hash:
                return f"record {record.seq} does not follow record {previous_seq}: the log was reordered or edited"
            if _record_hash(record) != record.hash:
                return f"record {record.seq} was edited: its content does not match its hash"
            previous_hash, previous_seq = record.hash, record.seq or 0
        return None

    def export(self, path: Path) -> int:
        count = 0
        with path.open("w", encoding="utf-8") as out:
            for record in self.records():
                out.write(record.model_dump_json() + "\n")
                count += 1
        return count
