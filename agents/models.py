"""Models by name and tier, and the one way a model step is executed.

``call_model`` is what both the in-process runner and the Temporal model activity run:
it picks the model, asks for JSON-schema output when the node declares one, and
validates the answer against that schema — a failure is recorded as
:class:`ModelOutputInvalid`, never passed on as if it were data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from pydantic import BaseModel, Field, ValidationError, create_model

from agents.exceptions import ModelOutputInvalid
from agents.spec import FieldType, OutputField, Tier
from agents.steps import ModelCall, ModelReply, TokenUsage

_PYTHON_TYPES: dict[FieldType, Any] = {
    FieldType.STR: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.LIST: list[Any],
    FieldType.DICT: dict[str, Any],
    FieldType.ANY: Any,
}


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    tier: Tier
    model: BaseChatModel


class ModelRegistry:
    """The models a worker may call; a node names a model or a tier (first registered wins)."""

    def __init__(self, models: list[RegisteredModel] | None = None) -> None:
        self._models: dict[str, RegisteredModel] = {}
        for m in models or []:
            self.register(m.name, m.model, m.tier)

    def register(self, name: str, model: BaseChatModel, tier: Tier = Tier.EDGE) -> None:
        self._models[name] = RegisteredModel(name, tier, model)

    def resolve(self, *, model: str | None = None, tier: Tier | None = None) -> RegisteredModel:
        if model is not None:
            if model not in self._models:
                raise LookupError(f"no model named {model!r} (known: {', '.join(self._models) or 'none'})")
            return self._models[model]
        for registered in self._models.values():
            if tier is None or registered.tier is tier:
                return registered
        raise LookupError(f"no model of tier {tier} is registered")


def output_model(fields: dict[str, OutputField]) -> type[BaseModel]:
    """The Pydantic model of a node's structured output; its JSON schema constrains decoding."""
    definitions: dict[str, Any] = {}
    for name, spec in fields.items():
        annotation = Literal[tuple(spec.enum)] if spec.enum else _PYTHON_TYPES[spec.type]
        definitions[name] = (
            annotation,
            Field(description=spec.description or None, max_length=spec.max_length, pattern=spec.pattern),
        )
    return create_model("StepOutput", **definitions)


async def call_model(registry: ModelRegistry, call: ModelCall) -> ModelReply:
    """Run one model step: choose the model, call it, validate structured output."""
    chosen = registry.resolve(model=call.model, tier=call.tier)
    schema = output_model(call.output) if call.output else None
    kwargs: dict[str, Any] = {}
    if schema is not None:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "step_output", "schema": schema.model_json_schema(), "strict": True},
        }
    message = await chosen.model.ainvoke(call.messages, **kwargs)
    if not isinstance(message, AIMessage):
        raise ModelOutputInvalid(f"model {chosen.name} returned {type(message).__name__}, not an AIMessage")
    structured = None
    if schema is not None:
        try:
            structured = schema.model_validate(json.loads(message.text)).model_dump(mode="json")
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelOutputInvalid(f"model {chosen.name} answered {message.text!r:.200}: {exc}") from exc
    usage = message.usage_metadata
    return ModelReply(
        message=message,
        structured=structured,
        model=chosen.name,
        usage=TokenUsage(input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"])
        if usage
        else TokenUsage(),
    )
