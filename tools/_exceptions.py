"""Errors raised by tool adapters, translated at the adapter's edge.

ToolError
 ├── UnknownTool        no adapter has that name (the graph's author must fix it)
 ├── ToolInputInvalid   the arguments failed validation; names field and value, nothing written
 ├── ToolRejected       the backend refused the call for good (4xx): retrying cannot help
 └── ToolUnavailable    the backend failed or timed out (5xx, connection): retry later
"""

from __future__ import annotations


class ToolError(Exception):
    """Base of every error an adapter raises."""


class UnknownTool(ToolError):
    """No adapter is registered under the name."""


class ToolInputInvalid(ToolError):
    """The call's arguments do not match the adapter's input model."""


class ToolRejected(ToolError):
    """The backend refused the call; the same call will be refused again."""


class ToolUnavailable(ToolError):
    """The backend could not answer now; the same call may succeed later."""
