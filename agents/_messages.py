"""LangChain messages as a Pydantic type, so they keep their classes across Temporal.

A plain ``BaseMessage`` field would cross an activity boundary as a dict and come back
as one (``tool_calls`` of an ``AIMessage`` then read as missing). ``Message`` serializes
through LangChain's own ``message_to_dict``/``messages_from_dict``, which keep the type.
"""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema


def to_message(value: Any) -> BaseMessage:
    """A message from itself or its serialized form (``{"type": "ai", "data": {...}}``)."""
    if isinstance(value, BaseMessage):
        return value
    if isinstance(value, dict) and "type" in value and "data" in value:
        return messages_from_dict([value])[0]
    raise ValueError(f"not a LangChain message: {value!r:.80}")


def to_messages(values: list[Any] | None) -> list[BaseMessage]:
    return [to_message(v) for v in values or []]


Message = Annotated[
    BaseMessage,
    PlainValidator(to_message),
    PlainSerializer(message_to_dict, return_type=dict),
    WithJsonSchema({"type": "object", "properties": {"type": {"type": "string"}, "data": {"type": "object"}}}),
]
