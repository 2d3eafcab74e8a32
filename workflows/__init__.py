"""How it runs: the durable graph workflow, its activities, the Temporal plugin and worker,
the permission gate, encrypted payloads and the embedded server.

A process that runs graphs connects with ``Client.connect(..., plugins=[ChamberlainPlugin(...)])``
(or :func:`connect` + :func:`create_worker`); a business's own workflow calls a graph with
:func:`run_graph`; a client starts one with :func:`start_run` / :func:`execute_run`."""

from chamberlain.workflows.activities import GraphActivities
from chamberlain.workflows.audit import AuditLog
from chamberlain.workflows.codec import EncryptionCodec, PayloadDecodeError, PayloadKeyError
from chamberlain.workflows.converter import connect, data_converter
from chamberlain.workflows.devserver import DevServer, temporal_binary
from chamberlain.workflows.gate import Gate, GatedExecutor
from chamberlain.workflows.graph_workflow import GraphWorkflow
from chamberlain.workflows.local import run_gated_in_process
from chamberlain.workflows.plugin import ChamberlainPlugin, sandbox_runner
from chamberlain.workflows.policy import PolicyEngine
from chamberlain.workflows.runs import decide, execute_run, progress, run_graph, start_run
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
from chamberlain.workflows.worker import TASK_QUEUE, create_worker

__all__ = [
    "TASK_QUEUE",
    "AuditLog",
    "ChamberlainPlugin",
    "Cursor",
    "Decision",
    "DevServer",
    "EncryptionCodec",
    "Gate",
    "GatedExecutor",
    "GraphActivities",
    "GraphWorkflow",
    "PayloadDecodeError",
    "PayloadKeyError",
    "PendingApproval",
    "PolicyEngine",
    "Principal",
    "RunProgress",
    "RunRequest",
    "RunResult",
    "StepRecord",
    "connect",
    "create_worker",
    "data_converter",
    "decide",
    "execute_run",
    "progress",
    "run_gated_in_process",
    "run_graph",
    "sandbox_runner",
    "start_run",
    "temporal_binary",
]
