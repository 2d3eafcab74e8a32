"""A LangChain chat model for any OpenAI-compatible private server, over httpx.

vLLM, SGLang, llama.cpp's server, Ollama, Xinference and LM Studio all serve the Chat
Completions API; this speaks it with nothing in between: async and sync, streaming, tool
calling, JSON-schema structured output, token usage. It never retries on its own — under
Temporal the activity's retry policy does — and it classifies every failure as
:class:`ModelUnavailable` (retry, maybe after ``Retry-After``) or
:class:`ModelRequestRejected` (do not).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from chamberlain.agents._exceptions import ModelRequestRejected, ModelUnavailable

StructuredOutput = Literal["json_schema", "json_object", "none"]


class PrivateChatModel(BaseChatModel):
    """Chat Completions over httpx. ``structured_output`` says how the server constrains JSON:
    ``json_schema`` (OpenAI, vLLM, SGLang, Ollama), ``json_object`` with a ``schema``
    (llama-cpp-python), or ``none`` (validate, and repair once, after the fact)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    max_tokens: int | None = 512
    temperature: float = 0.0
    structured_output: StructuredOutput = "json_schema"
    transport: httpx.AsyncBaseTransport | None = Field(default=None, exclude=True)
    sync_transport: httpx.BaseTransport | None = Field(default=None, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    # -- the request ------------------------------------------------------------------------

    def _url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _body(self, messages: list[BaseMessage], stop: list[str] | None, stream: bool, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": convert_to_openai_messages(messages),
            "temperature": self.temperature,
        }
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        if stop:
            body["stop"] = stop
        if kwargs.get("tools"):
            body["tools"] = kwargs["tools"]
            if kwargs.get("tool_choice"):
                body["tool_choice"] = kwargs["tool_choice"]
        if (response_format := kwargs.get("response_format")) and self.structured_output != "none":
            if self.structured_output == "json_object" and response_format.get("type") == "json_schema":
                response_format = {"type": "json_object", "schema": response_format["json_schema"]["schema"]}
            body["response_format"] = response_format
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    # -- non-streaming ----------------------------------------------------------------------

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            with _translated_errors(self.base_url):
                response = await client.post(
                    self._url(), json=self._body(messages, stop, False, **kwargs), headers=self._headers()
                )
                await response.aread()
        return _result(_checked_json(response))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with (
            httpx.Client(timeout=self.timeout, transport=self.sync_transport) as client,
            _translated_errors(self.base_url),
        ):
            response = client.post(
                self._url(), json=self._body(messages, stop, False, **kwargs), headers=self._headers()
            )
        return _result(_checked_json(response))

    # -- streaming --------------------------------------------------------------------------

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        body = self._body(messages, stop, True, **kwargs)
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            with _translated_errors(self.base_url):
                async with client.stream("POST", self._url(), json=body, headers=self._headers()) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _checked_json(response)
                    async for line in response.aiter_lines():
                        if chunk := _chunk(line):
                            if run_manager:
                                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                            yield chunk

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        body = self._body(messages, stop, True, **kwargs)
        with (
            httpx.Client(timeout=self.timeout, transport=self.sync_transport) as client,
            _translated_errors(self.base_url),
            client.stream("POST", self._url(), json=body, headers=self._headers()) as response,
        ):
            if response.status_code >= 400:
                response.read()
                _checked_json(response)
            for line in response.iter_lines():
                if chunk := _chunk(line):
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk


@contextmanager
def _translated_errors(base_url: str) -> Iterator[None]:
    """Turn httpx's transport failures into :class:`ModelUnavailable` at the edge."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ModelUnavailable(f"{base_url} timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ModelUnavailable(f"{base_url} unreachable or cut off: {type(exc).__name__}: {exc}") from exc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _checked_json(response: httpx.Response) -> dict[str, Any]:
    """The response body, or the classified error: 408/429/5xx retry, other 4xx do not."""
    status = response.status_code
    if status >= 400:
        detail = response.text[:300]
        message = f"model server answered {status}: {detail}"
        if status in (408, 429) or status >= 500:
            raise ModelUnavailable(message, retry_after=_retry_after(response))
        raise ModelRequestRejected(message)
    try:
        data = response.json()
        data["choices"][0]["message"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise ModelUnavailable(f"model server sent a malformed body: {response.text[:200]!r}") from exc
    return data


def _usage(raw: dict[str, Any] | None) -> UsageMetadata | None:
    if not raw:
        return None
    prompt, completion = raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0)
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)


def _result(data: dict[str, Any]) -> ChatResult:
    choice = data["choices"][0]
    raw = choice["message"]
    tool_calls, invalid = [], []
    for call in raw.get("tool_calls") or []:
        try:
            tool_calls.append(parse_tool_call(call, return_id=True))
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(call, str(exc)))
    message = AIMessage(
        content=raw.get("content") or "",
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(data.get("usage")),
        response_metadata={"model_name": data.get("model"), "finish_reason": choice.get("finish_reason")},
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _chunk(line: str) -> ChatGenerationChunk | None:
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ModelUnavailable(f"model server sent a malformed stream chunk: {payload[:120]!r}") from exc
    delta = data["choices"][0].get("delta", {}) if data.get("choices") else {}
    tool_chunks = [
        {
            "name": c.get("function", {}).get("name"),
            "args": c.get("function", {}).get("arguments"),
            "id": c.get("id"),
            "index": c.get("index"),
        }
        for c in delta.get("tool_calls") or []
    ]
    message = AIMessageChunk(
        content=delta.get("content") or "", tool_call_chunks=tool_chunks, usage_metadata=_usage(data.get("usage"))
    )
    return ChatGenerationChunk(message=message)
