"""Tool calling on private models: one turn of an agent, whichever way the model can do it.

A model with native tool calling (vLLM, SGLang, Ollama, OpenAI-compatible ``tools``) gets the
tools' JSON schemas and ``tool_choice="auto"``; its final answer is a ``final_answer`` call
whose arguments are the node's output. A model without it (the embedded SmolLM2 on llama.cpp)
gets the same choice as JSON-schema-constrained output — ``{"tool": <name>, "arguments": {...}}``
with one ``anyOf`` branch per tool — so even a 135M model can only name a real tool. Either
way the arguments are validated against the tool's input model here, in the model's step, and
a wrong choice gets one repair turn before the cascade escalates to the next model.

Models without native tool calling also cannot read tool messages back, so for them the
conversation is written as plain turns (:func:`as_plain_turns`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from chamberlain.agents._steps import RequestedCall
from chamberlain.tools._adapter import ToolAdapter
from chamberlain.tools._exceptions import ToolInputInvalid

ToolCalling = Literal["native", "schema"]
"""How a model chooses tools: the server's ``tools`` parameter, or schema-constrained JSON."""

FINAL_ANSWER = "final_answer"
Tools = Mapping[str, ToolAdapter[Any, Any]]


def definitions(tools: Tools, names: list[str], output: type[BaseModel] | None) -> list[dict[str, Any]]:
    """The OpenAI ``tools`` of an agent's turn: its toolset, and ``final_answer`` when it has an output."""
    described = [(n, tools[n].description, tools[n].input_model.model_json_schema()) for n in names]
    if output is not None:
        described.append((FINAL_ANSWER, "Give the final answer when you are done.", output.model_json_schema()))
    return [
        {"type": "function", "function": {"name": n, "description": d or n, "parameters": p}} for n, d, p in described
    ]


def choice_format(tools: Tools, names: list[str], output: type[BaseModel] | None) -> dict[str, Any]:
    """The ``response_format`` that constrains a model to naming one tool and its arguments."""
    choices = [
        {
            "type": "object",
            "properties": {"tool": {"const": d["function"]["name"]}, "arguments": d["function"]["parameters"]},
            "required": ["tool", "arguments"],
        }
        for d in definitions(tools, names, output)
    ]
    if output is None:
        answer = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        choices.append({"type": "object", "properties": {"tool": {"const": FINAL_ANSWER}, "arguments": answer}})
    schema = _decodable({"anyOf": choices})
    return {"type": "json_schema", "json_schema": {"name": "tool_choice", "schema": schema, "strict": True}}


_CHECKED_AFTER = frozenset({"pattern", "maxLength", "minLength", "format"})
"""Constraints left to validation (and its repair turn): llama.cpp's grammar converter fails on
regex escapes such as ``\\d``, and long length bounds blow the grammar up."""


def _decodable(schema: Any) -> Any:
    """The schema without the constraints decoding cannot carry; the tool's input model checks them."""
    if isinstance(schema, dict):
        return {k: _decodable(v) for k, v in schema.items() if k not in _CHECKED_AFTER or not isinstance(v, str | int)}
    if isinstance(schema, list):
        return [_decodable(v) for v in schema]
    return schema


def instructions(names: list[str], native: bool) -> str:
    """What the model is told about choosing, added to the agent's instructions."""
    if native:
        return f"Use the tools ({', '.join(names)}) as needed, then call {FINAL_ANSWER}."
    return (
        f'Answer with JSON naming one tool and its arguments: {{"tool": ..., "arguments": {{...}}}}. '
        f"Tools: {', '.join(names)}. When you are done, use the tool {FINAL_ANSWER}."
    )


Choice = tuple[list[RequestedCall], dict[str, Any] | None, str | None]
"""The calls asked for, or the final answer's values, or why the turn is invalid."""


def read_choice(
    message: AIMessage,
    tools: Tools,
    names: list[str],
    output: type[BaseModel] | None,
    *,
    native: bool,
    turn: int,
    history: Sequence[BaseMessage] = (),
) -> Choice:
    """What the model chose this turn, its arguments validated against each tool's input model;
    a call the ``history`` already holds, with the same arguments, is invalid too."""
    asked_before = {(c["name"], _key(c["args"])) for m in history if isinstance(m, AIMessage) for c in m.tool_calls}
    if native:
        asked = [(c["name"], c["args"]) for c in message.tool_calls]
        if not asked:  # a plain answer: the final one
            return _final(output, message.text, plain=output is None)
    else:
        try:
            data = json.loads(message.text)
        except json.JSONDecodeError as exc:
            return [], None, f"not JSON ({exc.msg})"
        if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
            return [], None, 'expected {"tool": <name>, "arguments": {...}}'
        asked = [(data["tool"], data.get("arguments") or {})]
    calls: list[RequestedCall] = []
    for i, (name, args) in enumerate(asked, start=1):
        if name == FINAL_ANSWER:
            return _final(output, json.dumps(args), plain=output is None)
        if name not in names:
            return [], None, f"no tool named {name!r}: choose one of {', '.join([*names, FINAL_ANSWER])}"
        if (name, _key(args)) in asked_before:  # a small model going round in circles: not progress
            return [], None, f"{name} was already called with these arguments; use its result or call {FINAL_ANSWER}"
        try:
            tools[name].parse_args(args if isinstance(args, dict) else {})
        except ToolInputInvalid as exc:
            return [], None, str(exc)
        calls.append(RequestedCall(id=f"call_{turn}_{i}", tool=name, args=args))
    return calls, None, None


def _key(args: Any) -> str:
    return json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)


def _final(output: type[BaseModel] | None, text: str, *, plain: bool) -> Choice:
    if plain:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return [], {"answer": text}, None
        return [], {"answer": str(data.get("answer", text)) if isinstance(data, dict) else text}, None
    assert output is not None
    try:
        return [], output.model_validate_json(text).model_dump(mode="json"), None
    except ValueError as exc:
        return [], None, f"the final answer does not fit the output: {str(exc).splitlines()[0]}"


def as_called(message: AIMessage, calls: list[RequestedCall]) -> AIMessage:
    """The model's message as the conversation keeps it: with the calls it asked for, typed."""
    tool_calls = [{"id": c.id, "name": c.tool, "args": c.args, "type": "tool_call"} for c in calls]
    return AIMessage(content=message.content if not tool_calls else "", tool_calls=tool_calls)


def as_plain_turns(messages: list[BaseMessage]) -> list[BaseMessage]:
    """A conversation for a model without tool calling: calls as its JSON, results as user turns."""
    plain: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            for c in m.tool_calls:
                plain.append(AIMessage(json.dumps({"tool": c["name"], "arguments": c["args"]}, ensure_ascii=False)))
        elif isinstance(m, ToolMessage):
            plain.append(HumanMessage(f"Result of {m.name or 'the tool'}: {m.text}"))
        else:
            plain.append(m)
    return plain
