"""The OpenAI-compatible client against a real HTTP server on loopback that misbehaves on cue."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from chamberlain.agents import ModelRequestRejected, ModelUnavailable, PrivateChatModel
from tests.support.fake_model_server import Behaviour, FakeModelServer


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    server = FakeModelServer(default_content="Hello there friend").start()
    yield server
    server.stop()


def model(fake: FakeModelServer, **options: object) -> PrivateChatModel:
    return PrivateChatModel(**{"base_url": fake.base_url, "model": "small", "timeout": 2.0, **options})


async def test_async_and_sync_completions_report_usage(fake: FakeModelServer) -> None:
    reply = await model(fake).ainvoke([HumanMessage("hi")])
    assert isinstance(reply, AIMessage) and reply.text == "Hello there friend"
    assert reply.usage_metadata and reply.usage_metadata["output_tokens"] > 0
    assert model(fake).invoke("hi").text == "Hello there friend"
    assert fake.received[0]["model"] == "small" and fake.received[0]["messages"] == [{"role": "user", "content": "hi"}]


async def test_streaming_yields_chunks_and_usage(fake: FakeModelServer) -> None:
    chunks = [chunk async for chunk in model(fake).astream("hi")]
    assert "".join(c.text for c in chunks).strip() == "Hello there friend"
    assert any(c.usage_metadata for c in chunks) and fake.received[0]["stream"] is True
    assert "".join(c.text for c in model(fake).stream("hi")).strip() == "Hello there friend"


async def test_api_key_comes_from_the_environment(fake: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALL_MODEL_KEY", "s3cret")
    await model(fake, api_key_env="SMALL_MODEL_KEY").ainvoke("hi")
    assert fake.authorizations == ["Bearer s3cret"]


@pytest.mark.parametrize(
    ("mode", "sent"),
    [
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}),
        ("json_object", {"type": "json_object", "schema": {"type": "object"}}),
        ("none", None),
    ],
)
async def test_structured_output_dialects(fake: FakeModelServer, mode: str, sent: object) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}}
    await model(fake, structured_output=mode).ainvoke("hi", response_format=response_format)
    assert fake.received[0].get("response_format") == sent


class Refund(BaseModel):
    """Refund an order."""

    order_id: str


async def test_tool_calls_are_parsed_and_invalid_ones_kept_apart(fake: FakeModelServer) -> None:
    fake.then("invalid_tool_call")
    reply = await model(fake).bind_tools([Refund]).ainvoke("refund A1")
    assert fake.received[0]["tools"][0]["function"]["name"] == "Refund"
    assert isinstance(reply, AIMessage) and reply.tool_calls == []
    assert reply.invalid_tool_calls[0]["name"] == "erp.refund" and reply.invalid_tool_calls[0]["args"] == "{oops"


@pytest.mark.parametrize(
    ("behaviour", "error", "message", "retry_after"),
    [
        (Behaviour("429", retry_after=2), ModelUnavailable, "answered 429", 2.0),
        (Behaviour("500"), ModelUnavailable, "answered 500", None),
        (Behaviour("hang"), ModelUnavailable, "timed out", None),
        (Behaviour("truncated"), ModelUnavailable, "cut off", None),
        (Behaviour("nonjson"), ModelUnavailable, "malformed body", None),
        (Behaviour("400"), ModelRequestRejected, "answered 400", None),
        (Behaviour("401"), ModelRequestRejected, "answered 401", None),
        (Behaviour("404"), ModelRequestRejected, "answered 404", None),
        (Behaviour("422"), ModelRequestRejected, "answered 422", None),
    ],
)
async def test_failures_are_classified(
    fake: FakeModelServer, behaviour: Behaviour, error: type[Exception], message: str, retry_after: float | None
) -> None:
    fake.then(behaviour)
    with pytest.raises(error, match=message) as caught:
        await model(fake, timeout=0.5).ainvoke("hi")
    assert getattr(caught.value, "retry_after", None) == retry_after


async def test_an_unreachable_server_is_retryable() -> None:
    down = PrivateChatModel(base_url="http://127.0.0.1:9/v1", model="x", timeout=1)
    with pytest.raises(ModelUnavailable, match="unreachable"):
        await down.ainvoke("hi")
