"""The audit log's hash chain and head on SQLite and PostgreSQL: idempotent appends, and any
edit, deletion, reordering or truncation detected and named — with a signed checkpoint, even a
tail rewritten together with the head."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from chamberlain.agents._steps import StepContext, ToolCall
from chamberlain.workflows._audit import AuditEntry, AuditLog, AuditLogError, AuditLogNotFound, _record_hash
from chamberlain.workflows._gate import ActedStep, GateCheck, NoValidTicket
from tests.support import toolbox
from tests.support.workers import gate_for_tests

REFUND = {"order_id": "A1", "amount": 5.0}

ROOT = Path(__file__).parents[2]
KEY = b"checkpoint-key"


def entry(i: int, attempt: int = 1) -> AuditEntry:
    return AuditEntry(
        run_id="r",
        step_id=f"r/refund/{i}",
        attempt=attempt,
        kind="decision",
        principal="User::li",
        action="erp.refund.create",
        resource='Order::"A1"',
        args={"amount": i},
        decision="allow",
        policies=["support-refunds-up-to-200-cny"],
    )


def filled(url: str, n: int) -> AuditLog:
    log = AuditLog(url)
    for i in range(1, n + 1):
        log.append(entry(i))
    return log


def sql(log: AuditLog, *statements: str) -> None:
    with log.engine.begin() as db:
        for statement in statements:
            db.execute(text(statement))


def test_appends_chain_and_are_idempotent(database_url: str) -> None:
    log = AuditLog(database_url)
    first = log.append(entry(1))
    assert log.append(entry(1)) == first  # a retried activity
    log.append(entry(1, attempt=2))
    last = log.append(entry(2))
    records = list(log.records())
    assert [r.seq for r in records] == [1, 2, 3] and records[1].prev_hash == records[0].hash
    head = log.head()
    assert head is not None and (head.records, head.last_hash) == (3, last.hash)
    assert log.verify() is None


async def test_two_writers_keep_one_chain(database_url: str) -> None:
    first, second = AuditLog(database_url), AuditLog(database_url)  # two workers, two connection pools
    await asyncio.gather(*(asyncio.to_thread((first, second)[i % 2].append, entry(i)) for i in range(30)))
    assert first.verify() is None and len(list(second.records())) == 30
    head = second.head()
    assert head is not None and head.records == 30


def test_refund_records_carry_the_amount_under_the_hash(database_url: str) -> None:
    log = AuditLog(database_url)
    refund = log.append(entry(1).model_copy(update={"amount": 1299.5, "currency": "CNY"}))
    assert (refund.amount, refund.currency) == (1299.5, "CNY") and log.verify() is None
    sql(log, "UPDATE audit_log SET amount = 12.5 WHERE seq = 1")
    assert log.verify() == "record 1 was edited: its content does not match its hash"


def test_edits_deletions_and_reorderings_are_caught(database_url: str) -> None:
    log = filled(database_url, 5)
    sql(log, "UPDATE audit_log SET decision = 'deny' WHERE seq = 3")
    assert log.verify() == "record 3 was edited: its content does not match its hash"
    sql(log, "UPDATE audit_log SET decision = 'allow' WHERE seq = 3", "DELETE FROM audit_log WHERE seq = 4")
    assert log.verify() == "record 4 is missing (next is 5)"


def test_reordering_is_caught(database_url: str) -> None:
    log = filled(database_url, 3)
    swap = ("UPDATE audit_log SET seq = 100 WHERE seq = 1", "UPDATE audit_log SET seq = 1 WHERE seq = 2")
    sql(log, *swap, "UPDATE audit_log SET seq = 2 WHERE seq = 100")  # records 1 and 2, hashes included
    assert log.verify() == "record 1 does not follow record 0: the log was reordered or edited"


def test_a_cut_off_tail_is_caught_by_the_head(database_url: str) -> None:
    log = filled(database_url, 30)
    sql(log, "DELETE FROM audit_log WHERE seq = 30")
    assert log.verify() == "record 30 is missing: the head counts 30, the log ends at record 29"
    sql(log, "DELETE FROM audit_log WHERE seq > 10")
    assert log.verify() == "records 11 to 30 are missing: the head counts 30, the log ends at record 10"


def test_a_deleted_head_is_caught_and_stops_writers(database_url: str) -> None:
    log = filled(database_url, 3)
    sql(log, "DELETE FROM audit_head")
    assert log.verify() == "the head (audit_head row 1) is missing: the log's end can no longer be checked"
    with pytest.raises(AuditLogError, match="has lost its head"):
        log.append(entry(4))
    with pytest.raises(AuditLogError, match="has records but no head"):
        AuditLog(database_url)  # a writer starting up must not plant a fresh head


def test_records_added_around_the_head_are_caught(database_url: str) -> None:
    log = filled(database_url, 3)
    record_2 = next(r for r in log.records() if r.seq == 2)
    sql(log, f"UPDATE audit_head SET records = 2, last_hash = '{record_2.hash}'")  # record 3 still chains
    assert log.verify() == (
        "record 3 is not counted by the head (it counts 2): records were added around the head, or the head was rewound"
    )


def test_a_tail_rewritten_with_its_head_is_caught_by_the_checkpoint(database_url: str, tmp_path: Path) -> None:
    log = filled(database_url, 30)
    mark = tmp_path / "audit.checkpoint"
    assert log.checkpoint(mark, KEY).records == 30
    log.append(entry(31))  # appends after a checkpoint are fine
    assert log.verify(checkpoint=mark, key=KEY) is None
    record_10 = next(r for r in log.records() if r.seq == 10)
    rewind = f"UPDATE audit_head SET records = 10, last_hash = '{record_10.hash}'"
    sql(log, "DELETE FROM audit_log WHERE seq > 10", rewind)
    assert log.verify() is None  # chain and head agree: only the anchor outside the database knows
    problem = log.verify(checkpoint=mark, key=KEY)
    assert problem is not None and problem.startswith("records 11 to 30 are missing: the checkpoint of ")
    assert problem.endswith("counts 30, the log ends at record 10")


def test_a_record_forged_with_its_head_is_caught_by_the_checkpoint(database_url: str, tmp_path: Path) -> None:
    log = filled(database_url, 5)
    mark = tmp_path / "audit.checkpoint"
    log.checkpoint(mark, KEY)
    with Session(log.engine) as session:  # the attacker knows the hash and rewrites record 5 and the head
        record = next(r for r in log.records() if r.seq == 5)
        record.decision = "deny"
        record.hash = _record_hash(record)
        session.add(record)
        session.commit()
        sql(log, f"UPDATE audit_head SET last_hash = '{record.hash}'")
    assert log.verify() is None
    assert log.verify(checkpoint=mark, key=KEY) == (
        f"record 5 does not match the checkpoint of {json.loads(mark.read_text())['at'][:19].replace('T', ' ')} UTC: "
        "the log was rewritten up to there"
    )


def test_a_checkpoint_vouches_only_when_signed_with_the_key(tmp_path: Path) -> None:
    log = filled(f"sqlite:///{tmp_path / 'audit.sqlite'}", 3)
    mark = tmp_path / "audit.checkpoint"
    log.checkpoint(mark, KEY)
    assert log.verify(checkpoint=mark, key=b"another key") == (
        f"checkpoint {mark} was not signed with this key: it was edited, or the key is wrong"
    )
    forged = {**json.loads(mark.read_text()), "records": 2}
    mark.write_text(json.dumps(forged))
    assert "was not signed with this key" in (log.verify(checkpoint=mark, key=KEY) or "")
    assert log.verify(checkpoint=tmp_path / "gone", key=KEY).startswith(f"checkpoint {tmp_path / 'gone'} is missing")
    mark.write_text("{}")
    assert (log.verify(checkpoint=mark, key=KEY) or "").startswith(f"checkpoint {mark} is not a checkpoint")
    with pytest.raises(AuditLogError, match="CHAMBERLAIN_AUDIT_KEY"):
        log.verify(checkpoint=mark, key=b"")
    with pytest.raises(AuditLogError, match="CHAMBERLAIN_AUDIT_KEY"):
        log.checkpoint(mark, b"")


def test_opening_a_log_that_is_not_there_fails_and_creates_nothing(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(AuditLogNotFound, match="no audit log at"):
        AuditLog.open(database_url)
    missing = tmp_path / "nowhere" / "audit.sqlite"
    with pytest.raises(AuditLogNotFound, match="no such file"):
        AuditLog.open(f"sqlite:///{missing}")
    assert not missing.parent.exists()
    filled(database_url, 2)
    assert AuditLog.open(database_url).verify() is None


def test_a_log_from_before_the_head_is_refused_with_the_way_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    log = AuditLog(url)
    sql(log, "ALTER TABLE audit_log DROP COLUMN amount", "ALTER TABLE audit_head DROP COLUMN last_hash")
    with pytest.raises(AuditLogError, match=r"older Chamberlain \(audit_log lacks amount\).*start a new log"):
        AuditLog.open(url)


def test_cli_verify_and_export(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    log = filled(url, 3)
    cli = [sys.executable, "-c", "from chamberlain.server._cli import main; main()", "audit"]
    env = {**os.environ, "CHAMBERLAIN_AUDIT": url, "COLUMNS": "200"}
    ok = subprocess.run([*cli, "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "3 records, chain intact" in ok.stdout
    out = tmp_path / "audit.jsonl"
    exported = subprocess.run([*cli, "export", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0 and len(out.read_text().splitlines()) == 3
    sql(log, "UPDATE audit_log SET principal = 'User::mallory' WHERE seq = 2")
    broken = subprocess.run([*cli, "verify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "record 2 was edited" in broken.stdout + broken.stderr


def test_a_field_that_does_not_decode_is_named_not_a_traceback(tmp_path: Path) -> None:
    """SQLite keeps whatever text is written: a time with junk after it (which a lenient reader
    takes as its prefix, hash and all) or an amount that is no number is named, with its record."""
    log = filled(f"sqlite:///{tmp_path / 'audit.sqlite'}", 4)
    sql(log, "UPDATE audit_log SET at = at || ' tampered' WHERE seq = 3")
    problem = log.verify()
    assert problem is not None and problem.startswith("record 3 was edited: its at '") and "tampered" in problem
    sql(log, "UPDATE audit_log SET at = substr(at, 1, length(at) - 9) WHERE seq = 3")
    assert log.verify() is None  # the junk removed, the record is intact again
    sql(log, "UPDATE audit_log SET amount = 'lots' WHERE seq = 2")
    assert log.verify() == "record 2 was edited: its amount 'lots' does not decode (str is not a number)"


def test_cli_checkpoint_then_verify_against_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    log = filled(url, 5)
    cli = [sys.executable, "-c", "from chamberlain.server._cli import main; main()", "audit"]
    env = {**os.environ, "CHAMBERLAIN_AUDIT": url, "COLUMNS": "200", "CHAMBERLAIN_AUDIT_KEY": KEY.decode()}
    mark = tmp_path / "mark.json"

    def run(*args: str, **changes: str) -> subprocess.CompletedProcess[str]:
        command = [*cli, *args]
        return subprocess.run(command, cwd=ROOT, env={**env, **changes}, capture_output=True, text=True, timeout=60)

    written = run("checkpoint", str(mark))
    assert written.returncode == 0 and json.loads(mark.read_text())["records"] == 5, written.stderr
    no_key = run("verify", "--checkpoint", str(mark), CHAMBERLAIN_AUDIT_KEY="")
    message = (no_key.stdout + no_key.stderr).strip()
    assert no_key.returncode != 0 and "CHAMBERLAIN_AUDIT_KEY is not set" in message and "Traceback" not in message
    assert len(message.splitlines()) == 1
    assert run("verify", "--checkpoint", str(mark)).returncode == 0
    record_2 = next(r for r in log.records() if r.seq == 2)  # the tail rewritten with its head: only the mark knows
    sql(log, "DELETE FROM audit_log WHERE seq > 2", f"UPDATE audit_head SET records = 2, last_hash = '{record_2.hash}'")
    assert run("verify").returncode == 0
    caught = run("verify", "--checkpoint", str(mark))
    assert caught.returncode == 1 and "records 3 to 5 are missing: the checkpoint of" in caught.stdout + caught.stderr


async def test_a_step_whose_run_seals_is_recorded_behind_others_before_they_complete(tmp_path: Path) -> None:
    """A ticket issued ``write_ahead`` (the durable engine's runs, which seal their records)
    returns before the record commits, for a write as for a read; any other commits first."""
    for write_ahead in (False, True):
        log = AuditLog(f"sqlite:///{tmp_path / f'audit-{write_ahead}.sqlite'}")
        gate = gate_for_tests(toolbox.tools(), log)
        step = StepContext(run_id="r", node="lookup", visit=1)
        call = ToolCall(step=step, tool="erp.order", args={"order_id": "A1"})
        check = GateCheck(call=call, principal=None, grant=None, write_ahead=write_ahead)
        read = await gate.decide_and_act(check, attempt=1)
        assert read.reply is not None and read.reply.error is None and read.decision.ticket is not None
        refund = ToolCall(step=step.model_copy(update={"node": "pay"}), tool="erp.refund", args=REFUND)
        decided = await gate.check(GateCheck(call=refund, principal=None, grant=None, write_ahead=write_ahead))
        assert decided.ticket is not None and decided.ticket.write_ahead is write_ahead
        await gate.act(refund, decided.ticket, attempt=1)
        assert len(list(log.records())) == (0 if write_ahead else 2)
        await gate.drain()
        assert [(r.step_id, r.kind) for r in log.records()] == [("r/lookup/1", "effect"), ("r/pay/1", "effect")]


async def test_seal_rewrites_from_history_a_record_a_crash_lost(tmp_path: Path) -> None:
    """Write-ahead: the worker that acted dies before its record commits; the run's seal, on
    another worker, rewrites it from what history holds (call, ticket, acted) — once."""
    log_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    crashed = gate_for_tests(toolbox.tools(), AuditLog(log_url))
    crashed.commits.behind = 3600  # the queued record never commits: as if the process died
    call = ToolCall(step=StepContext(run_id="r", node="pay", visit=1), tool="erp.refund", args=REFUND)
    decided = await crashed.check(GateCheck(call=call, principal=None, grant=None, write_ahead=True))
    assert decided.ticket is not None
    reply = await crashed.act(call, decided.ticket, attempt=1)
    assert reply.error is None and list(AuditLog(log_url).records()) == []

    survivor = gate_for_tests(toolbox.tools(), AuditLog(log_url))
    step = ActedStep(call=call, ticket=decided.ticket, acted=True)
    assert await survivor.seal([step]) == 1
    assert await survivor.seal([step]) == 0  # sealed twice (a replayed seal): still one record
    records = list(survivor.audit.records())
    assert [(r.step_id, r.kind, r.action, r.amount) for r in records] == [
        ("r/pay/1", "effect", "erp.refund.create", 5.0)
    ]
    assert survivor.audit.verify() is None
    forged = step.model_copy(update={"call": call.model_copy(update={"args": {**REFUND, "amount": 500.0}})})
    with pytest.raises(NoValidTicket):  # a seal writes only what a signed ticket allowed
        await survivor.seal([forged])
