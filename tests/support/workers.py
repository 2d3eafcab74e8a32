"""Workers for tests, over the shared test tools, every one behind a real permission gate:
a permissive test policy (so a graph test is about its graph; tests of the shipped policies
build their own gate), an audit log beside the test's ledger, and a fixed grant key shared
by every worker process of a test (as a deployment's are)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from chamberlain.agents import ModelRegistry
from chamberlain.tools import ToolRegistry
from chamberlain.workflows import (
    AuditLog,
    Gate,
    GraphWorkflow,
    PendingApproval,
    PolicyEngine,
    RunResult,
    create_worker,
    progress,
)
from tests.support import toolbox

TEST_SECRET = b"chamberlain-tests-" + b"0123456789abcdef" * 3
TEST_POLICY = Path(__file__).with_name("policies") / "test.cedar"


def audit_log() -> AuditLog:
    """The test's audit log: ``$CHAMBERLAIN_TEST_AUDIT`` if set (a PostgreSQL URL for the
    scale-out test), else next to its side-effect ledger, so worker processes share it."""
    url = os.environ.get("CHAMBERLAIN_TEST_AUDIT") or f"sqlite:///{toolbox.ledger_path().with_suffix('.audit.sqlite')}"
    return AuditLog(url)


def gate_for_tests(tools: ToolRegistry, audit: AuditLog | None = None) -> Gate:
    return Gate(PolicyEngine([TEST_POLICY.read_text(encoding="utf-8")]), audit or audit_log(), tools, TEST_SECRET)


def graph_worker(client: Client, task_queue: str, models: ModelRegistry | None = None) -> Worker:
    tools = toolbox.tools()
    return create_worker(
        client, models=models or toolbox.models(), tools=tools, gate=gate_for_tests(tools), task_queue=task_queue
    )


async def wait_for_approval(handle: WorkflowHandle[GraphWorkflow, RunResult]) -> PendingApproval:
    """The run's pending approval, once it has one (polled through the progress query)."""
    for _ in range(200):
        if found := (await progress(handle)).pending_approval:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no approval became pending")
