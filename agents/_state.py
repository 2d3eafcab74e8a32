"""A run's state: the spec's typed fields, coerced on input and merged by field kind.

Message fields append (their values are message dicts, so they cross Temporal's boundary
typed); every other field is replaced by its update.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from langchain_core.messages import HumanMessage, message_to_dict
from pydantic import TypeAdapter, ValidationError

from chamberlain.agents._exceptions import InputInvalid
from chamberlain.agents._messages import to_message
from chamberlain.agents._spec import FieldType, GraphSpec

State = dict[str, Any]

_FIELD_TYPES: dict[FieldType, TypeAdapter[Any]] = {
    FieldType.STR: TypeAdapter(str | None),
    FieldType.INT: TypeAdapter(int | None),
    FieldType.FLOAT: TypeAdapter(float | None),
    FieldType.BOOL: TypeAdapter(bool | None),
    FieldType.LIST: TypeAdapter(list[Any] | None),
    FieldType.DICT: TypeAdapter(dict[str, Any] | None),
    FieldType.ANY: TypeAdapter(Any),
}


def is_message_field(spec: GraphSpec, name: str) -> bool:
    return spec.state[name].type is FieldType.MESSAGES


def initial_state(spec: GraphSpec, values: dict[str, Any]) -> State:
    """Defaults overlaid with ``values``, coerced to the declared types; an unknown field or
    a value of the wrong type is an error naming the field."""
    unknown = sorted(set(values) - set(spec.state))
    if unknown:
        raise InputInvalid(f"input field(s) {', '.join(unknown)} not in the state of graph '{spec.name}'")
    state: State = {}
    for name, declared in spec.state.items():
        value = values.get(name, copy.deepcopy(declared.default))
        if is_message_field(spec, name):
            state[name] = [_message_dict(m) for m in value or []]
            continue
        try:
            state[name] = _FIELD_TYPES[declared.type].validate_python(value)
        except ValidationError as exc:
            raise InputInvalid(f"state field '{name}' of graph '{spec.name}': {exc.errors()[0]['msg']}") from exc
    return state


def merge(spec: GraphSpec, state: State, updates: dict[str, Any]) -> State:
    """Apply updates: message fields append, every other field is replaced."""
    merged = dict(state)
    for name, value in updates.items():
        merged[name] = [*(state.get(name) or []), *value] if is_message_field(spec, name) else value
    return merged


def prompt_values(state: State) -> dict[str, str]:
    """The state as a prompt template's values: strings as they are, anything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for k, v in state.items()}


def _message_dict(value: Any) -> dict[str, Any]:
    return message_to_dict(HumanMessage(value) if isinstance(value, str) else to_message(value))
