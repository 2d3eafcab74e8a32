"""ChamberlainPlugin: one object configures the client and the worker — and refuses a setup
that would leak payloads or run with broken keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from chamberlain.agents import GraphSpec, ModelRegistry, ScriptedChatModel, Tier, parse_graph
from chamberlain.tools import ToolRegistry
from chamberlain.workflows import (
    ApprovalAnswer,
    AuditLog,
    ChamberlainPlugin,
    DevServer,
    EncryptionCodec,
    Gate,
    GraphWorkflow,
    PayloadKeyError,
    PolicyEngine,
    Principal,
    create_worker,
    decide,
    execute_run,
    start_run,
)
from chamberlain.workflows._codec import PAYLOAD_KEYS_ENV, new_key
from chamberlain.workflows._worker import MAX_CACHED_WORKFLOWS
from tests.conftest import run_id
from tests.support import toolbox
from tests.support.graphs import graph
from tests.support.workers import gate_for_tests, wait_for_approval

ANSWER = """
name: answer
state:
  message: {type: str}
  reply: {type: str}
  order_id: {type: str}
  amount: {type: float, default: 0}
start: answer
nodes:
  answer:
    type: model
    tier: edge
    prompt: "Answer this customer: {message}"
    output:
      reply: {type: str}
      order_id: {type: str, pattern: "^A[0-9]+$"}
    next: lookup
  lookup:
    type: tool
    tool: erp.order
    args: {order_id: order_id}
    output: {amount: result.total}
    next: done
  done:
    type: end
    output: [reply, order_id, amount]
"""

CUSTOMER = Principal(id="wang.xiaoming@example.cn", kind="user", roles=["customer"])


def answer_graph(name: str = "answer") -> GraphSpec:
    return parse_graph(ANSWER.replace("name: answer", f"name: {name}"), tools=toolbox.tools())


def greeting_models() -> ModelRegistry:
    """A scripted model that greets the customer by the name in the message (so the result
    carries it) and picks the order number it mentions."""

    def respond(messages: object, kwargs: dict[str, object]) -> str:
        text = str(messages[-1].content)  # type: ignore[index]
        name = text.split(":", 1)[1].split(",")[0].strip()
        order = next((w.strip(".,") for w in text.split() if w.startswith("A") and w[1:].strip(".,").isdigit()), "A1")
        return f'{{"reply": "您好 {name}, we are looking at {order}", "order_id": "{order}"}}'

    registry = ModelRegistry()
    registry.register("scripted-edge", ScriptedChatModel(respond=respond), Tier.EDGE)
    return registry


def gate_for(tools: ToolRegistry, folder: Path) -> Gate:
    return Gate(PolicyEngine.load(), AuditLog(f"sqlite:///{folder / 'audit.sqlite'}"), tools, secret=b"s" * 32)


def plugin(folder: Path, codec: EncryptionCodec | None = None) -> ChamberlainPlugin:
    tools = toolbox.tools()
    return ChamberlainPlugin(models=greeting_models(), tools=tools, gate=gate_for(tools, folder), codec=codec)


async def test_plugin_configures_client_and_worker(dev_server: DevServer, tmp_path: Path, task_queue: str) -> None:
    """Passed to Client.connect only: the client encrypts (payloads and headers), and a plain
    Worker on it runs graphs — workflow, activities, interceptor and sandbox all from the plugin."""
    client = await Client.connect(dev_server.address, plugins=[plugin(tmp_path)])
    config = client.config(active_config=True)
    assert config["data_converter"].payload_codec == EncryptionCodec.from_env()
    assert config["header_codec_behavior"] == HeaderCodecBehavior.CODEC
    rid = run_id()
    async with Worker(client, task_queue=task_queue):
        result = await execute_run(
            client,
            answer_graph(),
            {"message": "王小明, A1007 is broken"},
            run_id=rid,
            principal=CUSTOMER,
            task_queue=task_queue,
        )
    assert result.output == {"reply": "您好 王小明, we are looking at A1007", "order_id": "A1007", "amount": 120.5}
    replayer = Replayer(workflows=[], plugins=[plugin(tmp_path)])
    history = await client.get_workflow_handle(rid).fetch_history()
    assert (await replayer.replay_workflow(history)).replay_failure is None


async def test_a_malformed_key_stops_the_worker_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = {
        "k1": "entry 1: expected keyid:base64key",
        "k1:not base64!": "entry 1 ('k1'): the key is not base64",
        f"{new_key('k1')},k2:c2hvcnQ=": "payload key 'k2' has 5 bytes; AES-256 needs 32",
        f"{new_key('k1')},{new_key('k1')}": "entry 2: key ID 'k1' appears twice",
        " , ": "CHAMBERLAIN_PAYLOAD_KEYS is empty",
    }
    for value, message in cases.items():
        monkeypatch.setenv(PAYLOAD_KEYS_ENV, value)
        with pytest.raises(PayloadKeyError, match=message.replace("(", r"\(").replace(")", r"\)")):
            plugin(tmp_path)


async def test_a_worker_whose_client_would_write_plaintext_is_refused(dev_server: DevServer, tmp_path: Path) -> None:
    """Keys configured, but the client was built without them: the worker would put customer
    data in history in clear, so it is not created."""
    plain = await Client.connect(dev_server.address, data_converter=pydantic_data_converter)
    with pytest.raises(ValueError, match="does not use Chamberlain's converter with these payload keys"):
        Worker(plain, task_queue="never", plugins=[plugin(tmp_path)])
    tools = toolbox.tools()
    with pytest.raises(ValueError, match="does not use Chamberlain's converter with these payload keys"):
        create_worker(plain, models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path))
    other_keys = EncryptionCodec.parse(new_key("other"))
    with pytest.raises(ValueError, match="its own data converter"):
        await Client.connect(dev_server.address, data_converter=pydantic_data_converter, plugins=[plugin(tmp_path)])
    keyed = await Client.connect(dev_server.address, plugins=[plugin(tmp_path)])
    with pytest.raises(ValueError, match="does not use Chamberlain's converter"), pytest.warns(UserWarning):
        Worker(keyed, task_queue="never", workflows=[GraphWorkflow], plugins=[plugin(tmp_path, codec=other_keys)])


async def test_create_worker_refuses_a_client_with_the_plugin(dev_server: DevServer, tmp_path: Path) -> None:
    """Else the graph workflow and activities would be registered twice."""
    client = await Client.connect(dev_server.address, plugins=[plugin(tmp_path)])
    tools = toolbox.tools()
    with pytest.raises(ValueError, match="already carries ChamberlainPlugin"):
        create_worker(client, models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path))


async def test_runs_evicted_from_a_small_cache_replay_when_approved(dev_server: DevServer, task_queue: str) -> None:
    """The plugin bounds its workers' cache: with room for two runs, five parked runs are
    evicted in turn and replayed from history when approved — each completes, each refund once."""
    tools = toolbox.tools()
    small = ChamberlainPlugin(models=toolbox.models(), tools=tools, gate=gate_for_tests(tools), max_cached_workflows=2)
    client = await Client.connect(dev_server.address, plugins=[small])
    manager = Principal(id="maria", roles=["manager"])
    worker = Worker(client, task_queue=task_queue)
    assert worker.config(active_config=True)["max_cached_workflows"] == 2
    async with worker:
        handles = [
            await start_run(client, graph("approval"), {}, run_id=run_id(), principal=CUSTOMER, task_queue=task_queue)
            for _ in range(5)
        ]
        pending = [await wait_for_approval(handle) for handle in handles]
        for handle, request in zip(handles, pending, strict=True):
            await decide(handle, ApprovalAnswer(step_id=request.step_id, outcome="approve", approver=manager))
        results = await asyncio.gather(*(handle.result() for handle in handles))
    assert [r.status for r in results] == ["completed"] * 5
    assert sorted(step for _, step in toolbox.effects("refund")) == sorted(f"{h.id}/refund/1" for h in handles)


async def test_create_worker_bounds_its_cache(client: Client, tmp_path: Path, task_queue: str) -> None:
    tools = toolbox.tools()
    worker = create_worker(
        client, models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path), task_queue=task_queue
    )
    assert (
        worker.config(active_config=True)["max_cached_workflows"] == MAX_CACHED_WORKFLOWS < 1000
    )  # Temporal's default
    small = create_worker(
        client,
        models=greeting_models(),
        tools=tools,
        gate=gate_for(tools, tmp_path),
        task_queue=task_queue + "-small",
        max_cached_workflows=50,
    )
    assert small.config(active_config=True)["max_cached_workflows"] == 50
    with pytest.raises(ValueError, match="max_cached_workflows must be 0 or more"):
        ChamberlainPlugin(
            models=greeting_models(), tools=tools, gate=gate_for(tools, tmp_path), max_cached_workflows=-1
        )
