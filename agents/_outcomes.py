"""What a step did and how a run ended: the records both engines produce alike."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from chamberlain.agents._steps import ApprovalOutcome, TokenUsage

RunStatus = Literal["completed", "rejected"]


class StepOutcome(BaseModel):
    """What one node did: the state updates it made and where the run goes next
    (``None``: the run ends, at an end node or on a rejected approval)."""

    node: str
    updates: dict[str, Any]
    next: str | None
    model: str | None = None
    usage: TokenUsage | None = None
    cost: float = 0.0
    routing: list[str] = []
    approval: ApprovalOutcome | None = None
    labels: dict[str, list[str]] = Field({}, description="the classification labels of each updated field")
    sensitive: dict[str, list[str]] = Field({}, exclude=True, description="the labelled values the step brought in")


class RunOutcome(BaseModel):
    """How a run ended: ``end`` is the end node it reached (``None`` when an approval stopped it)."""

    status: RunStatus
    end: str | None
    output: dict[str, Any]
    steps: int


def run_status(decisions: Iterable[ApprovalOutcome | None]) -> RunStatus:
    """``rejected`` when the run's last approval was not an approval — whether the run stopped
    there or went on down its reject path to an end node; otherwise ``completed``."""
    last = None
    for decision in decisions:
        last = decision or last
    return "completed" if last in (None, "approve") else "rejected"
