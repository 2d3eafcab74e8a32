"""Errors raised by the agents layer, split by who must act.

AgentError
 ├── GraphSpecError       the graph's author must fix the spec (file, line, suggestion)
 ├── ExpressionError      a condition or mapping is not in the safe language, or failed
 ├── StepLimitExceeded    a run walked more nodes than the graph's max_steps
 └── ModelOutputInvalid   a model's answer did not match the node's output schema
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class AgentError(Exception):
    """Base of every error the agents layer raises."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a graph spec, located as precisely as the source allows."""

    message: str
    path: tuple[str | int, ...] = ()
    file: str | None = None
    line: int | None = None
    suggestion: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file or "<graph>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        elif self.path:
            where = f"{where} ({'.'.join(map(str, self.path))})"
        text = f"{where}: {self.message}"
        return f"{text} — {self.suggestion}" if self.suggestion else text


class GraphSpecError(AgentError):
    """The graph spec is invalid; ``issues`` lists every problem found, not just the first."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class GraphWarning(UserWarning):
    """Something in a graph that will work, but maybe not as its author expects."""

    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class ExpressionError(AgentError):
    """An expression uses syntax outside the safe language, or failed while evaluating."""


class StepLimitExceeded(AgentError):
    """The run reached ``max_steps`` without reaching an end node."""


class StepFailed(AgentError):
    """A step failed for good; ``kind`` names the cause (e.g. ``ToolRejected``)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class ModelOutputInvalid(AgentError):
    """The model's output failed validation against the node's declared output."""


class ModelCallError(AgentError):
    """The model server did not produce an answer."""

    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelUnavailable(ModelCallError):
    """A failure that may pass: retry, honouring ``retry_after`` seconds when the server gave it."""

    retryable = True


class ModelRequestRejected(ModelCallError):
    """The server refused the request itself; retrying the same request cannot help."""
