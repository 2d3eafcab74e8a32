"""How it runs: the durable graph workflow, its activities, the worker, the permission gate
and the embedded server."""

from chamberlain.workflows.activities import GraphActivities
from chamberlain.workflows.audit import AuditLog
from chamberlain.workflows.converter import connect
from chamberlain.workflows.devserver import DevServer, temporal_binary
from chamberlain.workflows.gate import Gate
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.policy import PolicyEngine
from chamberlain.workflows.runs import decide, progress, run_graph, start_run
from chamberlain.workflows.types import (
    Cursor,
    Decision,
    PendingApproval,
    Principal,
    RunProgress,
    RunRequest,
    RunResult,
    StepRecord,
)
from chamberlain.workflows.worker import TASK_QUEUE, create_worker, sandbox_runner

__all__ = [
    "TASK_QUEUE",
    "AuditLog",
    "Cursor",
    "Decision",
    "DevServer",
    "Gate",
    "GraphActivities",
    "GraphWorkflow",
    "PendingApproval",
    "PolicyEngine",
    "Principal",
    "RunProgress",
    "RunRequest",
    "RunResult",
    "StepRecord",
    "connect",
    "create_worker",
    "decide",
    "progress",
    "run_graph",
    "sandbox_runner",
    "start_run",
    "temporal_binary",
]
