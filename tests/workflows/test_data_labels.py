"""Labels follow the data: personal data from the CRM reaches an external model only masked,
through the fields it was copied into, and the console shows it only to viewers cleared for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from chamberlain.agents import GraphSpec, ModelRegistry, PrivateChatModel, ScriptedChatModel, Tier, run_in_process
from chamberlain.agents._exceptions import ModelOutputInvalid
from chamberlain.tools._business import business_tools
from chamberlain.tools._seed import REFERENCE_DAY, seed
from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.workflows import AuditLog, Gate, PolicyEngine, Principal, create_worker, progress, start_run
from chamberlain.workflows._local import run_gated_in_process
from tests.conftest import run_id
from tests.support.fake_model_server import FakeModelServer
from tests.support.workers import TEST_SECRET

SUPPORT = Principal(id="li", roles=["support"], department="support")


def greeting_graph() -> GraphSpec:
    """The CRM's customer record goes into the state; a private model copies the email into a
    field that declares nothing; an external model drafts a greeting from both."""
    return GraphSpec.model_validate(
        {
            "name": "greeting",
            "state": {"customer_id": {}, "customer": {"type": "dict"}, "contact": {}, "reply": {}},
            "start": "lookup",
            "nodes": {
                "lookup": {
                    "type": "tool",
                    "tool": "crm.customer.get",
                    "args": {"customer_id": "customer_id"},
                    "output": {"customer": "result"},
                    "next": "contact",
                },
                "contact": {
                    "type": "model",
                    "model": "private-model",
                    "prompt": "Email of {customer}?",
                    "output": {"contact": {"type": "str"}},
                    "next": "draft",
                },
                "draft": {
                    "type": "model",
                    "model": "external-model",
                    "write": "reply",
                    "next": "done",
                    "prompt": "Write a two-line greeting to {customer}; we will email {contact}.",
                },
                "done": {"type": "end"},
            },
        }
    )


@pytest.fixture
def crm(tmp_path: Path) -> EmbeddedCrm:
    erp = EmbeddedErp(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    crm = EmbeddedCrm(erp.engine)
    seed(erp, crm, customers=5, orders=5)
    return crm


@pytest.fixture
def external() -> Iterator[FakeModelServer]:
    server = FakeModelServer(default_content="Dear customer, thank you for writing.").start()
    yield server
    server.stop()


def models(external: FakeModelServer, email: str) -> ModelRegistry:
    registry = ModelRegistry()
    registry.register(
        "private-model", ScriptedChatModel(replies=[f'{{"contact": "{email}"}}']), Tier.PRIVATE, trust=["pii"]
    )
    client = PrivateChatModel(base_url=external.base_url, model="external-model", timeout=5)
    registry.register("external-model", client, Tier.EXTERNAL)
    return registry


async def test_crm_personal_data_reaches_an_external_model_only_masked(
    client: Client, task_queue: str, crm: EmbeddedCrm, external: FakeModelServer, tmp_path: Path
) -> None:
    customer = await crm.get_customer("C10001")
    personal = [customer.name, customer.email, customer.phone, customer.address]
    erp = EmbeddedErp(crm.engine)
    tools = business_tools(erp, crm, today=REFERENCE_DAY)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine.load(), audit, tools, TEST_SECRET)
    rid = run_id()
    async with create_worker(
        client, models=models(external, customer.email), tools=tools, task_queue=task_queue, gate=gate
    ):
        handle = await start_run(
            client, greeting_graph(), {"customer_id": "C10001"}, run_id=rid, task_queue=task_queue, principal=SUPPORT
        )
        result = await handle.result()
        steps = {s.node: s for s in (await progress(handle)).steps}
    assert result.status == "completed" and result.output["reply"] == "Dear customer, thank you for writing."
    sent = external.received_text()
    assert len(external.received) == 1
    assert [value for value in personal if value in sent] == []  # not one personal value left the house
    assert "PII_" in sent  # it was masked, not dropped: the model saw stable pseudonyms
    assert steps["lookup"].labels == {"customer": ["pii"]}
    assert steps["contact"].labels == {"contact": ["pii"]}  # derived from the customer record
    assert steps["draft"].routing == ["external-model: ok (pii masked)"]
    masked = [r for r in audit.records() if r.run_id == rid and r.action == "model.invoke" and r.decision == "mask"]
    assert [r.resource for r in masked] == ['Model::"external-model"']
    assert "no-pii-to-external-models" in masked[0].policies


async def test_in_process_the_same_gate_masks_personal_data_for_an_external_model(
    crm: EmbeddedCrm, external: FakeModelServer, tmp_path: Path
) -> None:
    customer = await crm.get_customer("C10001")
    tools = business_tools(EmbeddedErp(crm.engine), crm, today=REFERENCE_DAY)
    audit = AuditLog(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    gate = Gate(PolicyEngine.load(), audit, tools, TEST_SECRET)
    result = await run_gated_in_process(
        greeting_graph(),
        {"customer_id": "C10001"},
        gate=gate,
        models=models(external, customer.email),
        principal=SUPPORT,
    )
    assert result.output["reply"] == "Dear customer, thank you for writing."
    sent = external.received_text()
    assert [v for v in (customer.name, customer.email, customer.phone) if v in sent] == [] and "PII_" in sent
    masked = [r.resource for r in audit.records() if r.action == "model.invoke" and r.decision == "mask"]
    assert masked == ['Model::"external-model"']
    assert audit.verify() is None


async def test_without_a_gate_personal_data_is_never_sent_to_an_untrusted_model(
    crm: EmbeddedCrm, external: FakeModelServer
) -> None:
    customer = await crm.get_customer("C10001")
    tools = business_tools(EmbeddedErp(crm.engine), crm, today=REFERENCE_DAY)
    with pytest.raises(ModelOutputInvalid, match="external-model: skipped, may not receive data labelled pii"):
        await run_in_process(
            greeting_graph(), {"customer_id": "C10001"}, models=models(external, customer.email), tools=tools
        )
    assert external.received == []
