"""What crosses the workflow boundary: single typed objects, validated by Pydantic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from chamberlain.agents._labels import DataLabels
from chamberlain.agents._plan import RunOutcome, StepOutcome
from chamberlain.agents._spec import GraphSpec
from chamberlain.agents._steps import Principal, TokenUsage


class Cursor(BaseModel):
    """Where a run is, carried across continue-as-new."""

    node: str
    state: dict[str, Any]
    visits: dict[str, int] = {}
    steps: int = 0
    segment: int = 1
    usage: TokenUsage = TokenUsage()
    cost: float = 0.0
    budget_waived: bool = False
    labels: DataLabels = DataLabels()


class RunRequest(BaseModel):
    """Start a graph run. The spec travels in the request, so history records the exact
    graph a run used and a changed YAML file never alters a run already under way."""

    graph: GraphSpec
    input: dict[str, Any] = {}
    principal: Principal | None = None
    steps_per_segment: int = Field(500, ge=1, description="steps before continue-as-new")
    publish_approvals: bool = Field(
        True, description="mark pending approvals in the ChamberlainApproval search attribute"
    )
    read_ahead: bool = Field(True, description="take reads in a row in one local activity (workflows.read_ahead)")
    resume: Cursor | None = None
    ceiling: list[str] | None = Field(
        None, description="a child run's parent grant: its gate denies any action outside it"
    )
    labels: DataLabels | None = Field(None, description="what a child run's parent knew of its data's labels")


class RunResult(RunOutcome):
    segments: int = 1
    usage: TokenUsage = TokenUsage()
    cost: float = 0.0
    principal: Principal | None = None


class StepRecord(StepOutcome):
    """A finished step as the console shows it."""

    step_id: str
    started_at: datetime
    ended_at: datetime


class PendingApproval(BaseModel):
    step_id: str
    node: str
    ask: str
    approvers: list[str]
    requested_by: str | None
    deadline: datetime | None = None
    escalated: bool = False
    reminders: list[str] = []
    sensitive: dict[str, list[str]] = Field({}, description="the labelled values in `ask`, by label, for masking")


class RunProgress(BaseModel):
    node: str | None
    steps: list[StepRecord]
    pending_approval: PendingApproval | None
