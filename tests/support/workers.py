"""Workers for tests, over the shared test tools."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from agents import ModelRegistry
from tests.support import toolbox
from workflows import create_worker


def graph_worker(client: Client, task_queue: str, models: ModelRegistry | None = None) -> Worker:
    return create_worker(client, models=models or toolbox.models(), tools=toolbox.tools(), task_queue=task_queue)
