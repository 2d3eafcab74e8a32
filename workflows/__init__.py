"""How it runs: the durable graph workflow, its activities, the worker, the permission gate
and the embedded server."""

from workflows.activities import GraphActivities
from workflows.audit import AuditLog
from workflows.converter import connect
from workflows.devserver import DevServer, temporal_binary
from workflows.gate import Gate
from workflows.graph_workflow import GraphWorkflow
from workflows.policy import PolicyEngine
from workflows.runs import decide, progress, run_graph, start_run
from workflows.types import Cursor, Decision, PendingApproval, Principal, RunProgress, RunRequest, RunResult, StepRecord
from workflows.worker import TASK_QUEUE, create_worker, sandbox_runner

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
