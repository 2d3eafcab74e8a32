"""Errors raised by the agents layer, split by who must act.

AgentError
 ├── GraphSpecError             config: the graph's author must fix the spec (file, line, suggestion)
 ├── ExpressionError            a condition or mapping is not in the safe language, or failed
 ├── InputInvalid               a run's input: a field the graph lacks, or a value of the wrong type
 ├── ModelCallError             the model server gave no answer (translated at the client's edge)
 │    ├── ModelUnavailable      it may pass: retry, after ``retry_after``
 │    └── ModelRequestRejected  the server refused the request itself
 └── RunFailed                  a run stopped for good; ``kind`` is its failure type in Temporal
      ├── StepLimitExceeded     it walked more nodes than the graph's ``max_steps``
      ├── BudgetExceeded        its model use passed the graph's budget (and nobody waived it)
      └── StepFailed            one step failed for good; ``kind`` names the cause, e.g. a tool's
           │                    refusal (``ToolRejected``, ``ToolInputInvalid``, ``UnknownTool``)
           ├── PermissionDenied    the gate said no: policy, grant, or an approver's "no" to it
           ├── ModelOutputInvalid  no model (nor person) gave output matching the node's schema
           └── ModelNotFound       the step names a model or tier no one registered

A ``kind`` is the class name, so the durable engine fails a run with
``ApplicationError(type=exc.kind)`` and :meth:`RunFailed.of_kind` turns that type back into
the class. A rejected approval is no error: the run ends with status ``rejected``.
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


class InputInvalid(AgentError, ValueError):
    """A run's input names a field the graph's state lacks, or gives one a value of another type."""


class RunFailed(AgentError):
    """A run stopped for good. ``kind``: the failure's type name (the class name, unless a
    :class:`StepFailed` names its cause)."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__

    @staticmethod
    def of_kind(kind: str, message: str) -> RunFailed:
        """The failure of type ``kind`` (e.g. an ``ApplicationError.type``); a kind without a
        class of its own is a :class:`StepFailed` that keeps it."""
        known = {cls.__name__: cls for cls in _subclasses(RunFailed)}
        return known[kind](message) if kind in known else StepFailed(message, kind)


class StepLimitExceeded(RunFailed):
    """The run reached ``max_steps`` without reaching an end node."""


class BudgetExceeded(RunFailed):
    """The run's model use passed the graph's budget, and no approver let it go on."""


class StepFailed(RunFailed):
    """A step failed for good; ``kind`` names the cause (e.g. ``ToolRejected``)."""


class PermissionDenied(StepFailed):
    """The permission gate refused the step (policy, grant, or an approver's "no" to it)."""


class ModelOutputInvalid(StepFailed):
    """The model's output failed validation against the node's declared output."""


class ModelNotFound(StepFailed, LookupError):
    """No model of that name or tier is registered (a ``LookupError`` too)."""


def _subclasses(cls: type[RunFailed]) -> list[type[RunFailed]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


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
