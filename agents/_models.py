"""Models by name and tier, their trust and cost, and the one way a model step runs.

``call_model`` is what both the in-process runner and the Temporal model activity run. It
asks the permission gate (if any) whether the chosen model may see the data — which may
mask labelled values first — and refuses to send data to a model whose trust does not
cover the labels left (the reply says it skipped, nothing leaves); it asks for JSON-schema
output when the node declares one, validates the answer, repairs it once by showing the
model its error, and prices the call. A failure to produce valid output is returned as
data, so the caller can escalate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from chamberlain.agents import _tool_calling as tool_calling
from chamberlain.agents._exceptions import ModelNotFound, ModelOutputInvalid
from chamberlain.agents._labels import Masking, unmask
from chamberlain.agents._private_model import PrivateChatModel, StructuredOutput
from chamberlain.agents._spec import FieldType, OutputField, Tier
from chamberlain.agents._steps import ModelCall, ModelReply, TokenUsage
from chamberlain.agents._tool_calling import ToolCalling, Tools

_PYTHON_TYPES: dict[FieldType, Any] = {
    FieldType.STR: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.LIST: list[Any],
    FieldType.DICT: dict[str, Any],
    FieldType.ANY: Any,
}


class ModelConfig(BaseModel):
    """One model in ``models.yaml``: where it runs, what it may see, what it costs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    tier: Tier
    endpoint: str = Field(description="base URL of the OpenAI-compatible API, e.g. http://10.0.0.5:8000/v1")
    model: str | None = Field(None, description="the model name the server expects (default: name)")
    structured_output: StructuredOutput = "json_schema"
    tool_calling: ToolCalling | None = Field(
        None, description="native (the server's `tools`) or schema (constrained JSON); default: schema if embedded"
    )
    trust: list[str] = Field([], description="data labels this model may receive")
    context_window: int = 4096
    cost_per_1k_input: float = 0.0
    cost_per_1k_output: float = 0.0
    concurrency: int = Field(4, ge=1)
    timeout: float = 60.0
    max_tokens: int = 512
    api_key_env: str | None = None
    embedded: bool = Field(False, description="`chamberlain dev` serves it with the embedded llama.cpp server")


class ModelCatalog(BaseModel):
    models: list[ModelConfig]

    @classmethod
    def load(cls, path: str | Path) -> ModelCatalog:
        return cls.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


@dataclass
class RegisteredModel:
    name: str
    tier: Tier
    model: BaseChatModel
    trust: frozenset[str] = frozenset()
    cost_per_1k_input: float = 0.0
    cost_per_1k_output: float = 0.0
    context_window: int = 4096
    concurrency: int = 4
    tool_calling: ToolCalling = "native"
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def cost(self, usage: TokenUsage) -> float:
        return (usage.input_tokens * self.cost_per_1k_input + usage.output_tokens * self.cost_per_1k_output) / 1000

    def slots(self) -> asyncio.Semaphore:
        """Bounds calls in flight from this worker (created lazily, inside the running loop)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots


class ModelRegistry:
    """The models a worker may call; a node names a model or a tier (first registered wins)."""

    def __init__(self, models: Iterable[RegisteredModel] = ()) -> None:
        self._models: dict[str, RegisteredModel] = {m.name: m for m in models}

    @classmethod
    def from_catalog(cls, catalog: ModelCatalog, *, embedded_url: str | None = None) -> ModelRegistry:
        """Clients for every model in ``catalog``; ``embedded_url`` overrides the endpoint of
        the embedded model (its server picks a free port in tests and demos)."""
        registry = cls()
        for c in catalog.models:
            client = PrivateChatModel(
                base_url=embedded_url if c.embedded and embedded_url else c.endpoint,
                model=c.model or c.name,
                api_key_env=c.api_key_env,
                timeout=c.timeout,
                max_tokens=c.max_tokens,
                structured_output=c.structured_output,
            )
            registry.register(
                c.name,
                client,
                c.tier,
                trust=c.trust,
                cost_per_1k_input=c.cost_per_1k_input,
                cost_per_1k_output=c.cost_per_1k_output,
                context_window=c.context_window,
                concurrency=c.concurrency,
                tool_calling=c.tool_calling or ("schema" if c.embedded else "native"),
            )
        return registry

    def register(
        self, name: str, model: BaseChatModel, tier: Tier = Tier.EDGE, *, trust: Iterable[str] = (), **limits: Any
    ) -> RegisteredModel:
        self._models[name] = RegisteredModel(name, tier, model, frozenset(trust), **limits)
        return self._models[name]

    def __iter__(self) -> Iterator[RegisteredModel]:
        return iter(self._models.values())

    def resolve(self, *, model: str | None = None, tier: Tier | None = None) -> RegisteredModel:
        if model is not None:
            if model not in self._models:
                raise ModelNotFound(f"no model named {model!r} (known: {', '.join(self._models) or 'none'})")
            return self._models[model]
        for registered in self._models.values():
            if tier is None or registered.tier is tier:
                return registered
        raise ModelNotFound(f"no model of tier {tier} is registered")


def output_model(fields: dict[str, OutputField]) -> type[BaseModel]:
    """The Pydantic model of a node's structured output; its JSON schema constrains decoding
    (``enum``, ``maxLength`` and ``pattern`` included). Built once per distinct set of fields:
    every model step of every run asks for it, and building one costs a millisecond."""
    key = tuple(
        (name, spec.type, tuple(spec.enum or ()), spec.description, spec.max_length, spec.pattern)
        for name, spec in fields.items()
    )
    return _output_model(key)


@lru_cache(maxsize=1024)
def _output_model(
    fields: tuple[tuple[str, FieldType, tuple[str, ...], str, int | None, str | None], ...],
) -> type[BaseModel]:
    definitions: dict[str, Any] = {}
    for name, type_, enum, description, max_length, pattern in fields:
        annotation = Literal[enum] if enum else _PYTHON_TYPES[type_]
        definitions[name] = (annotation, Field(description=description or None, max_length=max_length, pattern=pattern))
    return create_model("StepOutput", **definitions)


@lru_cache(maxsize=1024)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A cached output model's JSON schema, built once rather than at every model call (shared:
    read it, never change it)."""
    return model.model_json_schema()


def parse_output(schema: type[BaseModel], text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The validated output, or why it is not valid."""
    try:
        return schema.model_validate(json.loads(text)).model_dump(mode="json"), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    except ValidationError as exc:
        return None, "; ".join(f"{'.'.join(map(str, e['loc'])) or 'output'}: {e['msg']}" for e in exc.errors())


Permit = Callable[[RegisteredModel, ModelCall], Awaitable[str | Masking | None]]
"""The permission gate's answer for a model and a call: a reason to refuse, what to mask, or None."""


async def call_model(
    registry: ModelRegistry, call: ModelCall, permit: Permit | None = None, tools: Tools | None = None
) -> ModelReply:
    """Run one model call of a step: ``permit`` (refuse or mask), trust check, call, validate,
    repair once, put pseudonyms back, price. An agent's turn (``call.tools``) chooses among
    ``tools``, the worker's adapters, which describe and validate the calls."""
    chosen = registry.resolve(model=call.model, tier=call.tier)
    verdict = await permit(chosen, call) if permit is not None else None
    if isinstance(verdict, str):
        return ModelReply(model=chosen.name, skipped=verdict)
    messages: list[BaseMessage] = list(call.messages)
    labels, masked = set(call.labels), list[str]()
    restore: dict[str, str] = {}
    if isinstance(verdict, Masking):
        masked = sorted(labels & set(verdict.styles))
        messages, restore = verdict.apply(messages, call.sensitive)
        labels -= set(masked)
    untrusted = sorted(labels - chosen.trust)
    if untrusted:
        return ModelReply(model=chosen.name, skipped=f"may not receive data labelled {', '.join(untrusted)}")
    if call.tools:
        if tools is None:
            raise TypeError("an agent's turn needs the worker's tools to describe and validate its calls")
        reply = await _agent_turn(chosen, call, messages, tools)
        if restore:
            reply.message = reply.message and reply.message.model_copy(
                update={"content": unmask(reply.message.content, restore)}
            )
            reply.structured = unmask(reply.structured, restore)
            reply.tool_calls = [c.model_copy(update={"args": unmask(c.args, restore)}) for c in reply.tool_calls]
        reply.masked = masked
        return reply
    schema = output_model(call.output) if call.output else None
    kwargs: dict[str, Any] = {}
    if schema is not None:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "step_output", "schema": _json_schema(schema), "strict": True},
        }
    usage = TokenUsage()
    async with chosen.slots():
        message = await _ask(chosen, messages, kwargs, usage)
        structured, error, repaired = None, None, False
        if schema is not None:
            structured, error = parse_output(schema, message.text)
            if error is not None:  # one repair: show the model its own answer and what was wrong
                repaired = True
                messages += [
                    message,
                    HumanMessage(f"That answer is invalid: {error}. Reply with only the corrected JSON."),
                ]
                message = await _ask(chosen, messages, kwargs, usage)
                structured, error = parse_output(schema, message.text)
    if restore:
        message, structured = (
            message.model_copy(update={"content": unmask(message.content, restore)}),
            unmask(structured, restore),
        )
    return ModelReply(
        message=message,
        structured=structured,
        model=chosen.name,
        usage=usage,
        cost=chosen.cost(usage),
        error=error,
        repaired=repaired,
        masked=masked,
    )


async def _agent_turn(
    chosen: RegisteredModel, call: ModelCall, messages: list[BaseMessage], tools: Tools
) -> ModelReply:
    """One turn of an agent: the model names tools and arguments (natively or as constrained
    JSON), validated against the tools' input models; one repair turn when they are invalid."""
    native = chosen.tool_calling == "native"
    output = output_model(call.output) if call.output else None
    kwargs: dict[str, Any] = (
        {"tools": tool_calling.definitions(tools, call.tools, output), "tool_choice": "auto"}
        if native
        else {"response_format": tool_calling.choice_format(tools, call.tools, output)}
    )
    if not native:
        messages = tool_calling.as_plain_turns(messages)
    usage, repaired = TokenUsage(), False
    async with chosen.slots():
        message = await _ask(chosen, messages, kwargs, usage)
        turn = call.step.within[-1] if call.step.within else 1
        history = list(call.messages)
        calls, final, error = tool_calling.read_choice(
            message, tools, call.tools, output, native=native, turn=turn, history=history
        )
        if error is not None:  # one repair: the model sees its choice and what was wrong with it
            repaired = True
            shown = AIMessage(message.text or json.dumps([c["args"] for c in message.tool_calls]))
            messages = [*messages, shown, HumanMessage(f"That choice is invalid: {error}. Choose again.")]
            message = await _ask(chosen, messages, kwargs, usage)
            calls, final, error = tool_calling.read_choice(
                message, tools, call.tools, output, native=native, turn=turn, history=history
            )
    return ModelReply(
        message=tool_calling.as_called(message, calls),
        structured=final,
        model=chosen.name,
        usage=usage,
        cost=chosen.cost(usage),
        error=error,
        repaired=repaired,
        tool_calls=calls,
    )


async def _ask(
    chosen: RegisteredModel, messages: list[BaseMessage], kwargs: dict[str, Any], usage: TokenUsage
) -> AIMessage:
    message = await chosen.model.ainvoke(messages, **kwargs)
    if not isinstance(message, AIMessage):
        raise ModelOutputInvalid(f"model {chosen.name} returned {type(message).__name__}, not an AIMessage")
    if message.usage_metadata:
        usage.input_tokens += message.usage_metadata["input_tokens"]
        usage.output_tokens += message.usage_metadata["output_tokens"]
    return message
