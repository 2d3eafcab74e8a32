"""A graph worker in one call: a ``Worker`` with :class:`ChamberlainPlugin` on it.

Scale out by running more of these against the same Temporal address and task queue. A
business that runs its own workflows beside the graphs passes the plugin to
``Client.connect`` and builds its ``Worker`` itself (see :mod:`chamberlain.workflows._plugin`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from chamberlain.agents._models import ModelRegistry
from chamberlain.tools._registry import ToolRegistry
from chamberlain.workflows._gate import Gate
from chamberlain.workflows._plugin import ChamberlainPlugin
from chamberlain.workflows._run_index import RunIndex
from chamberlain.workflows._usage import UsageLedger

TASK_QUEUE = "chamberlain"
MAX_CACHED_WORKFLOWS = 500
"""Runs a worker keeps in memory by default (Temporal's own default is 1,000). A run beyond it
— typically one parked at an approval — is evicted and replayed from its history when its next
event arrives: a cached graph run holds on the order of 100 KB of the worker's memory, a
replay costs milliseconds (docs/benchmarks.md, parked runs). Keep it above the runs a worker
steps at once (its workflow task slots, 100)."""


def create_worker(
    client: Client,
    *,
    models: ModelRegistry,
    tools: ToolRegistry,
    gate: Gate,
    task_queue: str = TASK_QUEUE,
    usage: UsageLedger | None = None,
    run_index: RunIndex | None = None,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    max_concurrent_activities: int = 50,
    sticky_queue_timeout: timedelta = timedelta(seconds=3),
    max_cached_workflows: int = MAX_CACHED_WORKFLOWS,
) -> Worker:
    """A worker for graph runs (and ``workflows``/``activities`` of the caller's own) on a
    client from :func:`~chamberlain.workflows._converter.connect`. ``gate`` checks every step
    against Cedar policy and audits it; ``usage`` records model usage and enforces department
    budgets; ``run_index`` counts steps, tokens and cost for the console. A short sticky
    timeout lets a crashed worker's runs move on quickly. ``max_cached_workflows`` bounds the
    runs held in memory (see :data:`MAX_CACHED_WORKFLOWS`): a worker with thousands of runs
    parked at approvals stays small, and replays a run from history when it wakes."""
    if any(isinstance(plugin, ChamberlainPlugin) for plugin in client.config()["plugins"]):
        raise ValueError(
            "this client already carries ChamberlainPlugin, which configures its workers: "
            "use temporalio.worker.Worker(client, task_queue=...) instead of create_worker"
        )
    codec = client.data_converter.payload_codec
    plugin = ChamberlainPlugin(models=models, tools=tools, gate=gate, codec=codec, usage=usage, run_index=run_index)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=list(activities),
        plugins=[plugin],
        max_concurrent_activities=max_concurrent_activities,
        sticky_queue_schedule_to_start_timeout=sticky_queue_timeout,
        max_cached_workflows=max_cached_workflows,
    )
