"""A worker: the graph workflow plus the activities bound to this process's models and tools.

Scale out by running more of these against the same Temporal address and task queue.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from chamberlain.agents.models import ModelRegistry
from chamberlain.tools.registry import ToolRegistry
from chamberlain.workflows.activities import GraphActivities
from chamberlain.workflows.gate import Gate, GrantInterceptor
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.usage import UsageLedger

TASK_QUEUE = "chamberlain"

# Pure, deterministic code the workflow uses; imported once outside the sandbox.
_PASSTHROUGH = (
    "chamberlain.agents", "chamberlain.tools", "chamberlain.workflows.gate", "chamberlain.workflows.policy",
    "chamberlain.workflows.audit", "chamberlain.workflows.usage", "cedarpy",
    "sqlmodel", "sqlalchemy", "langchain_core", "langgraph", "langsmith", "pydantic", "pydantic_core", "yaml",
)  # fmt: skip


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*_PASSTHROUGH))


def create_worker(
    client: Client,
    *,
    models: ModelRegistry,
    tools: ToolRegistry,
    task_queue: str = TASK_QUEUE,
    usage: UsageLedger | None = None,
    gate: Gate | None = None,
    max_concurrent_activities: int = 50,
    sticky_queue_timeout: timedelta = timedelta(seconds=3),
) -> Worker:
    """A worker for graph runs. ``gate`` checks every step against Cedar policy and audits it;
    ``usage`` records model usage and enforces department budgets.
    A short sticky timeout lets a crashed worker's runs move on quickly."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[GraphWorkflow],
        activities=GraphActivities(models, tools, usage, gate).all(),
        interceptors=[GrantInterceptor(gate.secret if gate else None)],
        workflow_runner=sandbox_runner(),
        max_concurrent_activities=max_concurrent_activities,
        sticky_queue_schedule_to_start_timeout=sticky_queue_timeout,
    )
