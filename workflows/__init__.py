"""How it runs: the durable graph workflow, its activities, the Temporal plugin and worker,
the permission gate, encrypted payloads and the embedded server.

A process that runs graphs connects with ``Client.connect(..., plugins=[ChamberlainPlugin(...)])``
(or :func:`connect` + :func:`create_worker`); a business's own workflow calls a graph with
:func:`run_graph`; a client starts one with :func:`start_run` / :func:`execute_run`.

Errors of this layer (a run's own failures are agents' ``RunFailed`` tree, carried as
Temporal failure types)::

    GateNotConfigured (ValueError)   no policy, audit log or shared key: nothing starts
    NoValidTicket (PermissionError)  a tool call reached its effect site without a valid ticket
    AuditLogError                    the audit log cannot be used as asked
     └── AuditLogNotFound            no log at that URL (verifying never creates one)
    PayloadKeyError (ValueError)     a malformed CHAMBERLAIN_PAYLOAD_KEYS entry
    PayloadDecodeError (ValueError)  a payload no configured key can decrypt
"""

from chamberlain.agents._steps import ApprovalAnswer
from chamberlain.workflows._activities import GraphActivities
from chamberlain.workflows._audit import AuditLog, AuditLogError, AuditLogNotFound, checkpoint_key
from chamberlain.workflows._codec import EncryptionCodec, PayloadDecodeError, PayloadKeyError
from chamberlain.workflows._converter import connect, data_converter
from chamberlain.workflows._devserver import DevServer, temporal_binary
from chamberlain.workflows._gate import (
    GRANT_SECRET_ENV,
    Gate,
    GatedExecutor,
    GateNotConfigured,
    NoValidTicket,
    grant_secret,
    persisted_secret,
)
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._local import run_gated_in_process
from chamberlain.workflows._plugin import ChamberlainPlugin, sandbox_runner
from chamberlain.workflows._policy import GateRequest, PolicyEngine, ResourceRef
from chamberlain.workflows._runs import decide, execute_run, progress, run_graph, start_run
from chamberlain.workflows._types import (
    Cursor,
    PendingApproval,
    Principal,
    RunProgress,
    RunRequest,
    RunResult,
    StepRecord,
)
from chamberlain.workflows._worker import TASK_QUEUE, create_worker

__all__ = [
    "GRANT_SECRET_ENV",
    "TASK_QUEUE",
    "ApprovalAnswer",
    "AuditLog",
    "AuditLogError",
    "AuditLogNotFound",
    "ChamberlainPlugin",
    "Cursor",
    "DevServer",
    "EncryptionCodec",
    "Gate",
    "GateNotConfigured",
    "GateRequest",
    "GatedExecutor",
    "GraphActivities",
    "GraphWorkflow",
    "NoValidTicket",
    "PayloadDecodeError",
    "PayloadKeyError",
    "PendingApproval",
    "PolicyEngine",
    "Principal",
    "ResourceRef",
    "RunProgress",
    "RunRequest",
    "RunResult",
    "StepRecord",
    "checkpoint_key",
    "connect",
    "create_worker",
    "data_converter",
    "decide",
    "execute_run",
    "grant_secret",
    "persisted_secret",
    "progress",
    "run_gated_in_process",
    "run_graph",
    "sandbox_runner",
    "start_run",
    "temporal_binary",
]
