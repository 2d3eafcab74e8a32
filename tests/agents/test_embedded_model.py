"""The real embedded model (SmolLM2-135M on llama.cpp) answers through the same client."""

from __future__ import annotations

import json

from langchain_core.messages import HumanMessage, SystemMessage

from chamberlain.agents import (
    EMBEDDED_MODEL,
    EmbeddedModelServer,
    ModelCall,
    OutputField,
    PrivateChatModel,
    StepContext,
    Tier,
)
from chamberlain.agents._models import ModelRegistry, call_model, output_model


def registry(server: EmbeddedModelServer) -> ModelRegistry:
    models = ModelRegistry()
    client = PrivateChatModel(
        base_url=server.base_url, model=EMBEDDED_MODEL, structured_output="json_object", max_tokens=64
    )
    models.register(EMBEDDED_MODEL, client, Tier.EDGE, trust=["pii"])
    return models


async def test_a_real_completion_is_schema_valid(embedded_model: EmbeddedModelServer) -> None:
    output = {
        "intent": OutputField(enum=["refund", "status", "other"]),
        "order_id": OutputField(pattern="^A[0-9]{4}$"),
        "summary": OutputField(max_length=40),
    }
    call = ModelCall(
        step=StepContext(run_id="r", node="n", visit=1),
        messages=[
            SystemMessage("Read the customer message. Answer in JSON."),
            HumanMessage("Refund my order A1002 please"),
        ],
        output=output,
        labels=["pii"],
    )
    reply = await call_model(registry(embedded_model), call)
    assert reply.error is None and reply.structured is not None
    assert output_model(output).model_validate(reply.structured)  # enum, pattern and maxLength all hold
    assert reply.structured["order_id"] == "A1002"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0


async def test_plain_text_and_streaming(embedded_model: EmbeddedModelServer) -> None:
    model = PrivateChatModel(base_url=embedded_model.base_url, model=EMBEDDED_MODEL, max_tokens=16)
    reply = await model.ainvoke("Say hello.")
    assert reply.text.strip() and reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    chunks = [chunk.text async for chunk in model.astream("Say hello.")]
    assert len(chunks) > 1 and "".join(chunks).strip()
    assert json.loads(json.dumps(reply.response_metadata))["finish_reason"] in ("stop", "length")
