"""The audit log: append-only, one record per decision and per effect, hash-chained, with a
head that counts the records.

Each record carries the SHA-256 of the previous record and its own, computed over its
canonical JSON, so editing, deleting or reordering any record breaks the chain at that
record. The chain alone cannot see its own end cut off, so a head row holds the record
count and the last hash, updated in the same transaction as each append; an attacker who
rewrites the tail and the head together is caught by a checkpoint — the head signed with a
key (HMAC) into a file kept outside the database. Records are written from activities,
idempotently: a retried activity finds its record (by step, kind and decision attempt) and
does not write a second. Each append starts by updating the head — a lock in SQLite and
PostgreSQL alike — so the chain stays linear.

Group commit: :class:`GroupCommit` gathers the appends that arrive while a commit is under
way and writes them in the next transaction, one commit (one fsync) for the batch. Every
caller waits for the commit that holds its record, so nothing is acknowledged — and no
activity completes — before its record is durable: a crash loses no acknowledged record.
A record a crash may lose — a read's, which changed nothing — can be queued without waiting
(:meth:`GroupCommit.append_behind`); batches commit in arrival order, so it is durable by the
time any later record is acknowledged.

Errors: ``AuditLogError`` (the log cannot be used as asked) ← ``AuditLogNotFound`` (nothing
at that URL to verify or read). A broken chain is not an error: ``verify`` names the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import BindParameter, Engine, UniqueConstraint, bindparam, inspect, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, select

from chamberlain.tools._database import open_engine

GENESIS = "0" * 64
log = logging.getLogger(__name__)
KEY_VARIABLE = "CHAMBERLAIN_AUDIT_KEY"


class AuditLogError(Exception):
    """The audit log cannot be used as asked; the message says why and what to do."""


class AuditLogNotFound(AuditLogError):
    """There is no audit log at the URL given for reading or verifying (none is created)."""


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("step_id", "kind", "attempt", name="audit_once_per_step_attempt"),)

    seq: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": False})
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
    amount: float | None = None
    currency: str | None = None
    at: datetime
    prev_hash: str
    hash: str


class AuditHead(SQLModel, table=True):
    """The log's end: how many records it holds and the last one's hash. Appends update it
    first, which also serializes them."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    records: int = 0
    last_hash: str = GENESIS


class HeldTicket(SQLModel, table=True):
    """A write step's ticket, kept before its tool acts where the step is decided in the tool's
    own activity: a retry of that activity acts on this allowance instead of deciding again on
    a resource the first attempt's effect may have changed. Not part of the chain: the step's
    record is; the run's seal releases the ticket once that record is committed."""

    __tablename__ = "audit_held_ticket"
    step_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    ticket: str  # the signed ticket's JSON


# The statements on every append's path, built once (building and keying one costs more than
# running it on SQLite).
_TABLE = AuditRecord.__table__  # type: ignore[attr-defined]
_LOCK_HEAD = (
    update(AuditHead)
    .where(col(AuditHead.id) == 1)
    .values(records=col(AuditHead.records))
    .returning(col(AuditHead.records), col(AuditHead.last_hash))
)
_MOVE_HEAD = (
    update(AuditHead)
    .where(col(AuditHead.id) == 1)
    .values(records=bindparam("records"), last_hash=bindparam("last_hash"))
)
_STEPS: BindParameter[list[str]] = bindparam("steps", expanding=True)
_RECORDS_OF_STEPS = _TABLE.select().where(_TABLE.c.step_id.in_(_STEPS))
_KEYS_OF_STEPS = (
    _TABLE.select()
    .with_only_columns(_TABLE.c.step_id, _TABLE.c.kind, _TABLE.c.attempt)
    .where(_TABLE.c.step_id.in_(_STEPS))
)
_INSERT = _TABLE.insert()
_HELD_TABLE = HeldTicket.__table__  # type: ignore[attr-defined]
_HELD = _HELD_TABLE.select().with_only_columns(_HELD_TABLE.c.step_id, _HELD_TABLE.c.ticket)
_HELD_OF_STEPS = _HELD.where(_HELD_TABLE.c.step_id.in_(_STEPS))
_HOLD = _HELD_TABLE.insert()
_RELEASE = _HELD_TABLE.delete().where(_HELD_TABLE.c.step_id.in_(_STEPS))


class AuditEntry(BaseModel):
    """What a caller records; ``amount`` and ``currency`` are the money a step moves, if any."""

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
    amount: float | None = None
    currency: str | None = None


class Checkpoint(BaseModel):
    """The head at a moment, signed: kept outside the database, it shows a later rewrite of the
    tail even when the head was rewritten with it."""

    records: int
    last_hash: str
    at: datetime
    signature: str = ""

    def signed(self, key: bytes) -> Checkpoint:
        return self.model_copy(update={"signature": self._mac(key)})

    def is_signed_by(self, key: bytes) -> bool:
        return hmac.compare_digest(self.signature, self._mac(key))

    def _mac(self, key: bytes) -> str:
        return hmac.new(key, _canonical(self.model_dump(mode="json", exclude={"signature"})), "sha256").hexdigest()


def checkpoint_key() -> bytes:
    """The key checkpoints are signed with, from ``CHAMBERLAIN_AUDIT_KEY``; none means no checkpoint."""
    if not (configured := os.environ.get(KEY_VARIABLE)):
        raise AuditLogError(f"{KEY_VARIABLE} is not set: set it to the secret audit checkpoints are signed with")
    return configured.encode()


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(value: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace): the same data, the same digest."""
    return hashlib.sha256(_canonical(value)).hexdigest()


def _record_hash(record: AuditRecord) -> str:
    return _fields_hash(record.model_dump())


def _fields_hash(fields: dict[str, Any]) -> str:
    """The hash of a record's fields (all but ``seq`` and ``hash``), its time in ISO form."""
    at: datetime = fields["at"]
    hashed = {k: v for k, v in fields.items() if k not in ("seq", "hash")}
    hashed["at"] = at.replace(tzinfo=UTC).isoformat() if at.tzinfo is None else at.isoformat()
    return digest(hashed)


def _missing(first: int, last: int) -> str:
    return f"record {first} is missing" if first == last else f"records {first} to {last} are missing"


class AuditLog:
    """``AuditLog(url)`` opens the log a writer appends to, creating it if needed;
    ``AuditLog.open(url)`` opens an existing one to read or verify, and never creates one."""

    def __init__(self, url: str | Engine = "sqlite:///.chamberlain/audit.sqlite", *, create: bool = True) -> None:
        self.engine = open_engine(url) if isinstance(url, str) else url
        if create:
            SQLModel.metadata.create_all(self.engine, tables=[_TABLE, AuditHead.__table__, _HELD_TABLE])  # type: ignore[attr-defined]
        self._check_layout()
        if create:
            with Session(self.engine) as session:
                if session.get(AuditHead, 1) is None:
                    if session.exec(select(AuditRecord.seq).limit(1)).first() is not None:
                        raise AuditLogError(
                            f"{self._where()} has records but no head: it was tampered with; "
                            "run `chamberlain audit verify` and keep the evidence"
                        )
                    session.add(AuditHead())
                    session.commit()

    @classmethod
    def open(cls, url: str) -> AuditLog:
        """The audit log at ``url``; ``AuditLogNotFound`` if there is none (a typo'd path must
        not verify as an empty, intact log)."""
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1].split("?", 1)[0]
            if not path or path == ":memory:" or not Path(path).is_file():
                raise AuditLogNotFound(f"no audit log at {url}: no such file; pass the log's URL (--db)")
        return cls(url, create=False)

    def _where(self) -> str:
        return f"audit log at {self.engine.url.render_as_string(hide_password=True)}"

    def _check_layout(self) -> None:
        tables = inspect(self.engine)
        for table in (AuditRecord, AuditHead):
            name = table.__tablename__
            if not tables.has_table(name):
                raise AuditLogNotFound(f"no {self._where()}: it has no {name} table; pass the log's URL (--db)")
            missing = set(table.model_fields) - {c["name"] for c in tables.get_columns(name)}
            if missing:
                raise AuditLogError(
                    f"{self._where()} was made by an older Chamberlain ({name} lacks {', '.join(sorted(missing))}): "
                    "verify and export it with that version, then start a new log"
                )

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Add ``entry`` as the next record (or return the one a previous attempt wrote), in one transaction."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Add ``entries`` in order as the next records, in one transaction (one commit); an
        entry whose record exists already (same step, kind and attempt) gets that record back.
        Plain SQL statements rather than ORM sessions: an append is on every step's path."""
        with self.engine.begin() as connection:
            head = connection.execute(_LOCK_HEAD).one_or_none()  # take the chain's lock, learn where it ends
            if head is None:
                raise AuditLogError(f"{self._where()} has lost its head; run `chamberlain audit verify`")
            steps = sorted({entry.step_id for entry in entries})
            found = connection.execute(_RECORDS_OF_STEPS, {"steps": steps}).mappings().all()
            known = {(r["step_id"], r["kind"], r["attempt"]): dict(r) for r in found}
            seq, last_hash, rows, result = head.records, head.last_hash, [], []
            for entry in entries:
                key = (entry.step_id, entry.kind, entry.attempt)
                if key not in known:
                    seq += 1
                    row = entry.model_dump(exclude={"args", "policies"})
                    row |= {
                        "args_digest": digest(entry.args),
                        "policies": ",".join(entry.policies),
                        "at": datetime.now(UTC),
                        "prev_hash": last_hash,
                    }
                    row |= {"seq": seq, "hash": _fields_hash(row)}
                    last_hash = row["hash"]
                    rows.append(row)
                    known[key] = row
                result.append(known[key])
            if rows:
                connection.execute(_INSERT, rows)
                connection.execute(_MOVE_HEAD, {"records": seq, "last_hash": last_hash})
        return [AuditRecord(**row) for row in result]

    def missing(self, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
        """The entries not committed yet: an effect without its record; a decision where the
        step (same attempt) has neither its decision nor an effect recorded — an effect tells
        more than the decision that allowed it, and is never contradicted by one."""
        if not entries:
            return []
        with self.engine.connect() as connection:
            steps = sorted({entry.step_id for entry in entries})
            found = {tuple(row) for row in connection.execute(_KEYS_OF_STEPS, {"steps": steps})}

        def recorded(entry: AuditEntry) -> bool:
            kinds = ("effect",) if entry.kind == "effect" else (entry.kind, "effect")
            return any((entry.step_id, kind, entry.attempt) in found for kind in kinds)

        return [entry for entry in entries if not recorded(entry)]

    def hold(self, run_id: str, step_id: str, ticket: str) -> str:
        """Keep ``ticket`` (JSON) for ``step_id``, committed before the step's tool acts; the
        ticket held for the step — this one, or the one an earlier attempt held first."""
        try:
            with self.engine.begin() as connection:
                connection.execute(_HOLD, {"step_id": step_id, "run_id": run_id, "ticket": ticket})
            return ticket
        except IntegrityError:  # an earlier attempt held one: that is the step's allowance
            return self.held([step_id])[step_id]

    def held(self, step_ids: Sequence[str]) -> dict[str, str]:
        """The tickets held for ``step_ids``, by step (a step decided elsewhere has none)."""
        if not step_ids:
            return {}
        with self.engine.connect() as connection:
            return {row.step_id: row.ticket for row in connection.execute(_HELD_OF_STEPS, {"steps": sorted(step_ids)})}

    def release(self, step_ids: Sequence[str]) -> None:
        """Drop the tickets held for ``step_ids``: their run has their results and their records."""
        if step_ids:
            with self.engine.begin() as connection:
                connection.execute(_RELEASE, {"steps": sorted(step_ids)})

    def records(self) -> Iterator[AuditRecord]:
        with Session(self.engine) as session:
            yield from session.exec(select(AuditRecord).order_by(col(AuditRecord.seq)))

    def head(self) -> AuditHead | None:
        """The head as stored now: the record count and the last record's hash."""
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(AuditHead, 1)

    def checkpoint(self, path: Path, key: bytes) -> Checkpoint:
        """Write the head, signed with ``key``, to ``path`` (atomically), to anchor the log outside the database."""
        if not key:
            raise AuditLogError(f"an audit checkpoint needs a key: set {KEY_VARIABLE}")
        head = self.head()
        if head is None:
            raise AuditLogError(f"{self._where()} has lost its head; run `chamberlain audit verify`")
        mark = Checkpoint(records=head.records, last_hash=head.last_hash, at=datetime.now(UTC)).signed(key)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(mark.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return mark

    def verify(self, checkpoint: Path | None = None, key: bytes | None = None) -> str | None:
        """None if the chain is intact, ends where its head says, and (given a ``checkpoint``
        file and its ``key``) still holds the checkpoint's records; otherwise which record
        breaks it and how."""
        anchor = _load_checkpoint(checkpoint, key) if checkpoint is not None else None
        if isinstance(anchor, str):
            return anchor
        head = self.head()  # read before the records: appends that land during the walk come after it
        if head is None:
            return "the head (audit_head row 1) is missing: the log's end can no longer be checked"
        ends = [("the head", head.records, head.last_hash)]
        if anchor:
            ends.append((f"the checkpoint of {anchor.at:%Y-%m-%d %H:%M:%S} UTC", anchor.records, anchor.last_hash))
        hashes_at = dict.fromkeys(records for _, records, _ in ends if records)
        previous_hash, count = GENESIS, 0
        for record in self._stored():
            if isinstance(record, str):
                return record
            if record.seq != count + 1:
                return f"record {count + 1} is missing (next is {record.seq})"
            if record.prev_hash != previous_hash:
                return f"record {record.seq} does not follow record {count}: the log was reordered or edited"
            if _record_hash(record) != record.hash:
                return f"record {record.seq} was edited: its content does not match its hash"
            previous_hash, count = record.hash, count + 1
            if count in hashes_at:
                hashes_at[count] = record.hash
        for where, records, last_hash in ends:
            if records > count:
                return f"{_missing(count + 1, records)}: {where} counts {records}, the log ends at record {count}"
            if records and hashes_at[records] != last_hash:
                return f"record {records} does not match {where}: the log was rewritten up to there"
        now = self.head()
        if now is None:
            return "the head (audit_head row 1) is missing: the log's end can no longer be checked"
        if count > now.records:
            return (
                f"record {now.records + 1} is not counted by the head (it counts {now.records}): "
                "records were added around the head, or the head was rewound"
            )
        return None

    def _stored(self) -> Iterator[AuditRecord | str]:
        """The records as the database holds them, each field decoded strictly (a time with
        junk after it is not read as its prefix); a record that cannot be is named instead."""
        with self.engine.connect() as connection:
            for row in connection.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings():
                yield _decoded(dict(row))

    def export(self, path: Path) -> int:
        count = 0
        with path.open("w", encoding="utf-8") as out:
            for record in self.records():
                out.write(record.model_dump_json() + "\n")
                count += 1
        return count


class GroupCommit:
    """Appends to one :class:`AuditLog` from concurrent tasks, a batch per commit: while one
    commit runs, the entries that arrive wait and go together in the next. ``await
    append(entry)`` returns only once the transaction holding the record has committed."""

    def __init__(self, log: AuditLog, *, behind: float = 0.05) -> None:
        self.log = log
        self.behind = behind  # seconds a record written behind may wait for company in its commit
        self._pending: Batch = []
        self._writer: asyncio.Task[None] | None = None
        self._timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
        self.batches = 0  # commits made: fewer than records when appends overlapped

    async def append(self, entry: AuditEntry) -> AuditRecord:
        done: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, done))
        self._start()
        return await done

    def append_behind(self, entry: AuditEntry) -> None:
        """Queue ``entry`` and return at once (write-behind), for a record a crash may lose: a
        read's, which changed nothing. It commits within ``behind`` seconds, with what else
        arrived meanwhile (fewer commits, less CPU), or sooner with the next :meth:`append`.
        Batches commit in the order their entries arrived, so once any later append is
        acknowledged this record is durable too (unless its own commit failed, which is logged)."""
        self._pending.append((entry, None))
        loop = asyncio.get_running_loop()
        if self._running(loop) or (self._timer is not None and self._timer[0] is loop):
            return  # the writer under way, or the one set to start, takes it
        self._timer = (loop, loop.call_later(self.behind, self._start))

    async def drain(self) -> None:
        """Return once every entry queued so far is committed (or has failed)."""
        if self._pending:
            self._start()
        writer = self._writer
        if writer is not None and self._running(asyncio.get_running_loop()):
            await asyncio.wait([writer])

    def _running(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self._writer is not None and not self._writer.done() and self._writer.get_loop() is loop

    def _start(self) -> None:
        """A writer for what is pending, unless one is under way on this loop (it takes it)."""
        if self._timer is not None:
            self._timer[1].cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        if not self._running(loop):
            batch: Batch = []
            self._writer = loop.create_task(self._write(batch))
            self._writer.add_done_callback(lambda writer: self._stopped(writer, batch))

    async def _write(self, batch: Batch) -> None:
        while self._pending:
            batch[:], self._pending = self._pending, []
            try:
                records = await asyncio.to_thread(self.log.append_many, [entry for entry, _ in batch])
            except (AuditLogError, OSError, SQLAlchemyError) as exc:  # every caller of the batch sees it
                _settle(batch, exc)
                continue
            self.batches += 1
            for (_, done), record in zip(batch, records, strict=True):
                if done is not None and not done.done():
                    done.set_result(record)

    def _stopped(self, writer: asyncio.Task[None], batch: Batch) -> None:
        """A writer cancelled or broken (even before it ran) leaves no caller waiting for a
        commit that never comes; a caller told so retries, and finds its record if it was written."""
        if not writer.cancelled() and writer.exception() is None:
            return
        orphans = list(batch)
        if self._writer is writer:
            orphans, self._pending = orphans + self._pending, []
        _settle(orphans, AuditLogError("the audit writer stopped before this record was committed; retry the step"))


Batch = list[tuple[AuditEntry, "asyncio.Future[AuditRecord] | None"]]
"""Entries waiting for a commit, each with its caller's future (None: written behind, nobody waits)."""


def _settle(batch: Batch, exc: BaseException) -> None:
    for entry, done in batch:
        if done is None:
            log.error("audit record of step %s (written behind) was not committed: %s", entry.step_id, exc)
        elif not done.done():
            done.set_exception(exc)


def _load_checkpoint(path: Path, key: bytes | None) -> Checkpoint | str:
    """The checkpoint in ``path`` if ``key`` signed it; otherwise why it cannot vouch for the log."""
    if not key:
        raise AuditLogError(f"verifying against a checkpoint needs the key it was signed with: set {KEY_VARIABLE}")
    try:
        mark = Checkpoint.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return f"checkpoint {path} is missing (write one with `chamberlain audit checkpoint {path}`)"
    except ValidationError as exc:
        return f"checkpoint {path} is not a checkpoint: {exc.errors()[0]['msg']}"
    if not mark.is_signed_by(key):
        return f"checkpoint {path} was not signed with this key: it was edited, or the key is wrong"
    return mark


def _decoded(row: dict[str, Any]) -> AuditRecord | str:
    """A stored row as a record, or which record holds a field that does not decode, and how."""
    decoders = {"seq": _whole, "attempt": _whole, "amount": _amount, "at": _stored_time}  # text is taken as it is
    fields = dict(row)
    for name, decode in decoders.items():
        try:
            fields[name] = decode(row.get(name))
        except (TypeError, ValueError) as exc:
            return f"record {row.get('seq')!r} was edited: its {name} {row.get(name)!r} does not decode ({exc})"
    return AuditRecord(**fields)


def _whole(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{type(value).__name__} is not a whole number")
    return value


def _amount(value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(f"{type(value).__name__} is not a number")
    return value


def _stored_time(value: Any) -> datetime:
    """A stored time: the database's own (PostgreSQL) or SQLite's text, read whole."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} is not a time")
    return datetime.fromisoformat(value)
