"""The adapter contract: what a tool is, what it touches, and how it is called.

An adapter is a typed async function plus the facts the rest of the system needs
without running it: its effect (the permission gate and static checks read it), its
Cedar action and the resource a call acts on, the classification labels of its output
fields, its timeout, and — for writes — the call that undoes it. Writes receive an
idempotency key in their :class:`ToolContext`. The :func:`tool` decorator derives the input and
output models from the function's annotations.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ValidationError

from chamberlain.tools._exceptions import ToolInputInvalid

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


class Effect(StrEnum):
    """What calling a tool does to the world."""

    READ = "read"
    WRITE = "write"
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class Resource:
    """What a call acts on, as the permission gate sees it: ``Order::"A1002"`` with ``amount``."""

    type: str
    id: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolContext:
    """Who is calling, for which step. ``idempotency_key`` is stable across retries and
    replays of the same step, so a backend can answer a repeated write with its first result."""

    step_id: str
    idempotency_key: str
    attempt: int = 1


@dataclass(frozen=True)
class ToolAdapter(Generic[In, Out]):
    """A registered tool. Build one with :func:`tool` rather than by hand."""

    name: str
    description: str
    input_model: type[In]
    output_model: type[Out]
    fn: Callable[[In, ToolContext], Awaitable[Out]]
    effect: Effect = Effect.READ
    action: str | None = None
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: timedelta = timedelta(seconds=30)
    compensation: str | None = None
    resource: Callable[[In], Resource | Awaitable[Resource]] | None = None

    @property
    def policy_action(self) -> str:
        """The Cedar action a call is decided as (``tool.<name>`` when undeclared)."""
        return self.action or f"tool.{self.name}"

    async def resource_of(self, args: Mapping[str, Any]) -> Resource:
        """The resource a call with ``args`` acts on (the tool itself when undeclared). A
        resolver may be async, to read what the policy needs from the system of record —
        the amount of a return, say — instead of trusting arguments a model produced."""
        if self.resource is None:
            return Resource("Tool", self.name)
        found = self.resource(self.parse_args(args))
        return await found if inspect.isawaitable(found) else found

    def parse_args(self, args: Mapping[str, Any]) -> In:
        """Validate arguments, naming each bad field and the value it got."""
        try:
            return self.input_model.model_validate(dict(args))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']} (got {e.get('input')!r:.60})"
                for e in exc.errors()
            )
            raise ToolInputInvalid(f"{self.name}: {problems}") from exc

    async def invoke(self, args: Mapping[str, Any], context: ToolContext) -> dict[str, Any]:
        """Validate ``args``, run the tool and return its output as JSON-ready data."""
        result = await self.fn(self.parse_args(args), context)
        return self.output_model.model_validate(result).model_dump(mode="json")


def tool(
    name: str,
    *,
    effect: Effect = Effect.READ,
    action: str | None = None,
    labels: Mapping[str, tuple[str, ...] | list[str]] | None = None,
    timeout: timedelta = timedelta(seconds=30),
    compensation: str | None = None,
    resource: Callable[[Any], Resource | Awaitable[Resource]] | None = None,
    description: str | None = None,
) -> Callable[[Callable[[Any, ToolContext], Awaitable[Any]]], ToolAdapter[Any, Any]]:
    """Turn ``async def fn(args: InModel, ctx: ToolContext) -> OutModel`` into an adapter."""

    def wrap(fn: Callable[[Any, ToolContext], Awaitable[Any]]) -> ToolAdapter[Any, Any]:
        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        input_model, output_model = hints.get(params[0]) if params else None, hints.get("return")
        for what, model in (("first parameter", input_model), ("return value", output_model)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"tool {name!r}: the {what} of {fn.__name__} must be annotated with a Pydantic model")
        return ToolAdapter(
            name=name,
            description=description or inspect.getdoc(fn) or name,
            input_model=input_model,  # type: ignore[arg-type]
            output_model=output_model,  # type: ignore[arg-type]
            fn=fn,
            effect=effect,
            action=action,
            labels={k: tuple(v) for k, v in (labels or {}).items()},
            timeout=timeout,
            compensation=compensation,
            resource=resource,
        )

    return wrap
