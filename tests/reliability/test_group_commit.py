"""Group commit of audit records: concurrent appends share commits, and none is acknowledged
before its commit — nor lost, nor left waiting, when a commit fails."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from chamberlain.workflows._audit import AuditEntry, AuditLog, AuditLogError, GroupCommit


def entry(i: int, attempt: int = 1) -> AuditEntry:
    return AuditEntry(
        run_id="r",
        step_id=f"r/step-{i}/1",
        attempt=attempt,
        kind="effect",
        principal="User::李雷",
        action="erp.refund.create",
        resource='Order::"A1"',
        decision="allow",
        amount=10.0,
    )


async def test_concurrent_appends_share_commits_and_chain(database_url: str) -> None:
    log = AuditLog(database_url)
    commits = GroupCommit(log)
    records = await asyncio.gather(*(commits.append(entry(i)) for i in range(40)))
    assert [r.seq for r in records] == list(range(1, 41))  # in the order they were asked for
    assert commits.batches < 40  # appends that arrived during a commit went together in the next
    again = await asyncio.gather(*(commits.append(entry(i)) for i in range(0, 40, 2)))  # retried steps
    assert [r.seq for r in again] == list(range(1, 41, 2)) and len(list(log.records())) == 40
    assert log.verify() is None and (head := log.head()) is not None and head.records == 40


async def test_a_failed_commit_fails_every_caller_of_its_batch_and_the_next_succeeds(database_url: str) -> None:
    log = AuditLog(database_url)
    commits = GroupCommit(log)
    await commits.append(entry(0))
    with log.engine.begin() as connection:  # the head is gone: the log cannot be appended to
        connection.execute(text("DELETE FROM audit_head"))
    results = await asyncio.gather(*(commits.append(entry(i)) for i in range(1, 6)), return_exceptions=True)
    assert all(isinstance(r, AuditLogError) and "lost its head" in str(r) for r in results)
    assert [r.seq for r in log.records()] == [1]  # nothing half-written
    with log.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO audit_head (id, records, last_hash) VALUES (1, 1, :h)"),
            {"h": next(iter(log.records())).hash},
        )
    assert (await commits.append(entry(1))).seq == 2 and log.verify() is None


async def test_a_cancelled_writer_leaves_no_caller_waiting(database_url: str) -> None:
    """A caller told "not committed" may find its record written after all: its retry gets it back."""
    log = AuditLog(database_url)
    commits = GroupCommit(log)
    pending = [asyncio.ensure_future(commits.append(entry(i))) for i in range(3)]
    await asyncio.sleep(0)
    assert commits._writer is not None
    commits._writer.cancel()
    answers = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)  # none left hanging
    assert all(isinstance(a, AuditLogError) for a in answers)
    retried = [await commits.append(entry(i)) for i in range(3)]
    assert sorted(r.seq for r in retried) == [1, 2, 3] and log.verify() is None


def read(i: int) -> AuditEntry:
    return entry(i).model_copy(update={"action": "erp.order.read", "amount": None})


async def test_a_record_written_behind_commits_before_any_later_acknowledged_record(database_url: str) -> None:
    """A read's record is queued without waiting; a write acknowledged after it is committed
    after it, so an acknowledged write implies the reads before it are durable too."""
    log = AuditLog(database_url)
    commits = GroupCommit(log)
    for i in range(5):
        commits.append_behind(read(i))
    assert list(log.records()) == []  # nothing waited for: the reads' steps went on
    write = await commits.append(entry(5))
    stored = list(log.records())
    assert [r.step_id for r in stored] == [f"r/step-{i}/1" for i in range(6)] and write.seq == 6
    commits.append_behind(read(6))
    await commits.drain()  # a worker stopping commits what it wrote behind
    assert len(list(log.records())) == 7 and log.verify() is None
    batches = commits.batches
    commits.append_behind(read(7))
    commits.append_behind(read(8))
    for _ in range(200):  # nobody appends or drains: the two commit on their own, together
        if len(list(log.records())) == 9:
            break
        await asyncio.sleep(0.05)
    await commits.drain()  # the commit is seen before its writer counts it
    assert len(list(log.records())) == 9 and commits.batches == batches + 1 and log.verify() is None


async def test_a_failed_commit_behind_is_logged_and_the_next_append_succeeds(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog(database_url)
    commits = GroupCommit(log)
    await commits.append(entry(0))
    with log.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_head"))
    commits.append_behind(read(1))
    await commits.drain()
    assert "(written behind) was not committed" in caplog.text and "lost its head" in caplog.text
    assert [r.seq for r in log.records()] == [1]
