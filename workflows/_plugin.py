"""One Temporal plugin that makes a client and a worker Chamberlain's.

:class:`ChamberlainPlugin` carries everything a process needs to run graphs: the converter
(Pydantic, payloads encrypted by the codec), the graph workflow, the model and tool
activities bound to this process's models and tools behind the permission gate, the grant
interceptor, and the sandbox settings. Pass it to ``Client.connect`` and every worker made
from that client runs graphs next to the business's own workflows and activities::

    plugin = ChamberlainPlugin(models=app.models(), tools=tools, gate=app.gate(tools))
    client = await Client.connect("127.0.0.1:7233", plugins=[plugin])
    async with Worker(client, task_queue="orders", workflows=[OrderWorkflow], activities=[reserve_stock]):
        ...

A process that only starts and follows runs (a starter, the HTTP server) needs just the
converter: :func:`~chamberlain.workflows._converter.connect`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import ClientConfig
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.plugin import SimplePlugin
from temporalio.worker import ReplayerConfig, WorkerConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from chamberlain.agents._models import ModelRegistry
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._activities import GraphActivities
from chamberlain.workflows._codec import EncryptionCodec
from chamberlain.workflows._converter import data_converter, header_behavior
from chamberlain.workflows._gate import Gate, TicketInterceptor
from chamberlain.workflows._graph_workflow import GraphWorkflow
from chamberlain.workflows._run_index import RunIndex, RunIndexInterceptor
from chamberlain.workflows._telemetry import TelemetryInterceptor, tracing_interceptors
from chamberlain.workflows._usage import UsageLedger

# Imported once, outside the sandbox, and shared by every run: pure, deterministic code the
# workflows use — and the graph workflow's own package. The sandbox otherwise re-imports a
# workflow's module and its package for every run it starts or replays: for the graph
# workflow that re-ran ``chamberlain.workflows`` and everything its ``__init__`` imports:
# tens of milliseconds of CPU and over 100 KB of memory per run (docs/benchmarks.md). The
# workflow keeps no module state; its determinism is held by the replay tests of recorded
# histories (``tests/workflows/test_replay.py``), not by the sandbox's import isolation.
PASSTHROUGH = (
    "chamberlain.agents",
    "chamberlain.tools",
    "chamberlain.workflows",
    "cedarpy",
    "cryptography",
    "opentelemetry",
    "prometheus_client",
    "sqlmodel",
    "sqlalchemy",
    "langchain_core",
    "langgraph",
    "langsmith",
    "pydantic",
    "pydantic_core",
    "yaml",
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox with Chamberlain's pure modules passed through (for a ``Replayer``)."""
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


def _with_passthrough(runner: WorkflowRunner | None) -> WorkflowRunner:
    if runner is None:
        return sandbox_runner()
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(runner, restrictions=runner.restrictions.with_passthrough_modules(*PASSTHROUGH))
    return runner


class ChamberlainPlugin(SimplePlugin):
    """Graphs on a client and its workers: pass to ``Client.connect(plugins=[...])`` (or to a
    ``Worker`` whose client already has the same converter, see :meth:`configure_worker`).

    ``gate`` is required: every tool and model step is checked against Cedar policy and
    audited. ``codec`` encrypts payloads; by default the keys in ``CHAMBERLAIN_PAYLOAD_KEYS``
    (a malformed value raises :class:`~chamberlain.workflows._codec.PayloadKeyError` here, so a
    misconfigured worker never starts), no encryption when that is unset. ``usage`` records
    model usage and enforces department budgets. ``run_index`` counts each run's steps, tokens
    and cost in the console's run index as they complete. ``max_cached_workflows``, if given,
    bounds the runs each of its workers keeps in memory (otherwise the ``Worker``'s own setting
    holds: Temporal's default keeps 1,000); an evicted run — one parked at an approval — is
    replayed from history when it wakes. See
    :data:`~chamberlain.workflows._worker.MAX_CACHED_WORKFLOWS` for what a cached run costs.
    """

    def __init__(
        self,
        *,
        models: ModelRegistry,
        tools: ToolRegistry,
        gate: Gate,
        codec: PayloadCodec | None = None,
        usage: UsageLedger | None = None,
        run_index: RunIndex | None = None,
        max_cached_workflows: int | None = None,
    ) -> None:
        if max_cached_workflows is not None and max_cached_workflows < 0:
            raise ValueError(f"max_cached_workflows must be 0 or more, not {max_cached_workflows}")
        self.codec = codec or EncryptionCodec.from_env()
        self.gate = gate
        self.max_cached_workflows = max_cached_workflows
        super().__init__(
            "chamberlain",
            data_converter=self._converter,
            workflows=[GraphWorkflow],
            activities=GraphActivities(models, tools, usage=usage, gate=gate).all(),
            interceptors=[
                TicketInterceptor(),
                *tracing_interceptors(),  # only when tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT)
                TelemetryInterceptor(),
                *([RunIndexInterceptor(run_index, codec=self.codec)] if run_index else []),
            ],
            workflow_runner=_with_passthrough,
            run_context=self._audit_drained,
        )

    @asynccontextmanager
    async def _audit_drained(self) -> AsyncIterator[None]:
        """A worker that stops commits the audit records it wrote behind (reads') before it ends."""
        try:
            yield
        finally:
            await self.gate.drain()

    def fits(self, converter: DataConverter | None) -> bool:
        """Whether ``converter`` reads and writes what this plugin's workers do."""
        return (
            converter is not None
            and issubclass(converter.payload_converter_class, PydanticPayloadConverter)
            and converter.payload_codec == self.codec
        )

    def _converter(self, existing: DataConverter | None) -> DataConverter:
        if self.fits(existing):
            assert existing is not None
            return existing
        if existing is not None and existing is not DataConverter.default:
            raise ValueError(
                "the client has its own data converter, which is not Chamberlain's: "
                "drop data_converter= from Client.connect and let ChamberlainPlugin set it"
            )
        return data_converter(self.codec)

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        config = super().configure_client(config)
        config["header_codec_behavior"] = header_behavior(config["data_converter"])
        return config

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        config = super().configure_replayer(config)
        config["header_codec_behavior"] = header_behavior(config["data_converter"])
        return config

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        """A worker uses its client's converter; refuse one that would write what the plugin's
        codec should have encrypted, or that cannot read typed graph payloads."""
        client = config.get("client")
        client_config = client.config(active_config=True) if client is not None else None
        if client_config is not None and not (
            self.fits(client_config["data_converter"])
            and client_config["header_codec_behavior"] == header_behavior(client_config["data_converter"])
        ):
            raise ValueError(
                "the worker's client does not use Chamberlain's converter"
                + (" with these payload keys" if self.codec else "")
                + ": pass ChamberlainPlugin to Client.connect(plugins=[...]) (or build the client "
                "with chamberlain.workflows.connect) instead of only to the Worker"
            )
        if self.max_cached_workflows is not None:
            config["max_cached_workflows"] = self.max_cached_workflows
        return super().configure_worker(config)
