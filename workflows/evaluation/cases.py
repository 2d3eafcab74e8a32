"""Evaluation cases and how an outcome is scored against them.

A case file is JSON Lines, one case a line::

    {"id": "r-001", "lang": "zh", "event": {...webhook payload...},
     "expect": {"intent": "return", "order_id": "A1002", "escalate": false, "refund_total": 129.0,
                "must_not": ["erp.refund.create"]}}

``event`` is what the webhook source receives (validated and mapped to the graph's input by
the source, as in production); a case may give the graph's ``input`` (and ``principal``)
directly instead. ``approval`` says how a person answers if the run asks one: approve (the
default) or reject, with ``values`` for a handoff that asks for a reply.

Each key of ``expect`` is one scored field (:func:`score`):

- ``escalate``: a person was asked (an approval or handoff was requested);
- ``decision`` (or ``end``): the end node the run reached;
- ``effects``: tools or Cedar actions that must have been done (each must be audited as done);
- ``must_not``: tools or Cedar actions that must not have been done;
- ``refund_total``: the money paid out by irreversible tools, ±0.01;
- ``denials``: how many steps the gate denied;
- ``status``: completed, rejected or failed;
- any other key: the run's final state field of that name, or ``field.key`` for that key of
  each item of a list field (``sources.document``). ``null`` expects no value (absent, null,
  empty or ``"none"``); lists compare in any order; text ignores case.

Instead of a value, ``{"any_of": [...]}`` and ``{"none_of": [...]}`` (one or both): the field's
value — or, for a list, at least one of its items — is one of ``any_of``, and neither it nor
any item is one of ``none_of`` (a cited document may be one of several good ones; a forbidden
one must never appear). An ID with a ``#fragment`` counts as the one it is part of: the
passage ``manual#3`` is from the document ``manual``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chamberlain.workflows._types import Principal

TOLERANCE = 0.01
NOTHING: tuple[Any, ...] = (None, "", "none", [], {})


class CaseFileError(ValueError):
    """A case file with a mistake: names the file, line and field."""


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["approve", "reject"] = "approve"
    values: dict[str, Any] | None = None


class Case(BaseModel):
    """One input with what the run must (and must not) do."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100)
    lang: str | None = None
    event: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    principal: Principal | None = None
    expect: dict[str, Any] = {}
    approval: Approval = Approval()
    tags: list[str] = []
    note: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> Case:
        if (self.event is None) == (self.input is None):
            raise ValueError("give exactly one of 'event' (a webhook payload) or 'input' (the graph's input)")
        return self


class Outcome(BaseModel):
    """What a run did, as the expectations see it."""

    case: str
    status: str
    end: str | None = None
    state: dict[str, Any] = {}
    escalations: list[str] = Field([], description="the nodes where a person was asked")
    effects: list[str] = Field([], description="the actions done, from the audit log, in order")
    tools: list[str] = Field([], description="the tools whose effects were done, in order")
    denials: int = 0
    refund_total: float = 0.0
    latency: float = 0.0
    tokens: int = 0
    cost: float = 0.0
    error: str | None = None

    @property
    def escalate(self) -> bool:
        return bool(self.escalations)

    def field(self, name: str) -> Any:
        """The value an expectation key is compared with."""
        done = [*self.effects, *self.tools]
        derived = {
            "escalate": self.escalate,
            "decision": self.end,
            "end": self.end,
            "status": self.status,
            "effects": done,
            "must_not": done,
            "refund_total": self.refund_total,
            "denials": self.denials,
        }
        if name in derived:
            return derived[name]
        head, dot, key = name.partition(".")
        if not dot or name in self.state:
            return self.state.get(name)
        value = self.state.get(head)
        if isinstance(value, list):
            return [item.get(key) if isinstance(item, dict) else None for item in value]
        return value.get(key) if isinstance(value, dict) else None


def load_cases(path: Path, limit: int | None = None) -> list[Case]:
    """Read a case file; a bad line is named with its number and field. IDs must be unique."""
    if not path.exists():
        raise CaseFileError(f"{path}: no such case file — check the path")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            case = Case.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CaseFileError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(map(str, problem["loc"])) or "case"
            raise CaseFileError(f"{path}:{number}: {where}: {problem['msg']}") from exc
        if case.id in seen:
            raise CaseFileError(f"{path}:{number}: case ID {case.id!r} is used on line {seen[case.id]} too")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise CaseFileError(f"{path}: holds no cases — one JSON object per line")
    return cases[:limit] if limit else cases


def score(case: Case, outcome: Outcome) -> dict[str, bool]:
    """Each expected field → whether the outcome matches it."""
    return {name: matches(name, expected, outcome.field(name)) for name, expected in case.expect.items()}


def matches(name: str, expected: Any, actual: Any) -> bool:
    if name == "must_not":
        return not set(_names(expected)) & set(_names(actual))
    if name == "effects":
        return set(_names(expected)) <= set(_names(actual))
    if _is_membership(expected):
        return member(expected, actual)
    return same(expected, actual)


MEMBERSHIP = frozenset({"any_of", "none_of"})


def _is_membership(expected: Any) -> bool:
    return isinstance(expected, dict) and bool(expected) and expected.keys() <= MEMBERSHIP


def member(expected: dict[str, list[Any]], actual: Any) -> bool:
    """``any_of``: the value, or one of a list's items, is among them; ``none_of``: none is."""
    items = [v for v in (actual if isinstance(actual, list) else [actual]) if v not in NOTHING]

    def among(values: list[Any]) -> bool:
        return any(_part_of(item, value) for item in items for value in values)

    if "any_of" in expected and not among(list(expected["any_of"])):
        return False
    return not among(list(expected.get("none_of", [])))


def _part_of(item: Any, value: Any) -> bool:
    """``item`` is ``value``, or a part of it (``manual#3`` of ``manual``)."""
    if isinstance(item, str) and isinstance(value, str) and "#" in item and "#" not in value:
        item = item.split("#", 1)[0]
    return same(value, item)


def same(expected: Any, actual: Any) -> bool:
    """Equal as a person checking the case would read it."""
    if expected in NOTHING and not isinstance(expected, bool):
        return actual in NOTHING and not isinstance(actual, bool)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float | str):
        try:
            return abs(float(expected) - float(actual)) <= TOLERANCE
        except ValueError:
            return False
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.strip().casefold() == actual.strip().casefold()
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return False
        left = list(actual)
        for item in expected:  # any order: find a partner for each expected item
            partner = next((i for i, value in enumerate(left) if same(item, value)), None)
            if partner is None:
                return False
            left.pop(partner)
        return True
    return bool(expected == actual)


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []
