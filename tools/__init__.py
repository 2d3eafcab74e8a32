"""What the agent acts with: the adapter contract and the registry graphs resolve tools in."""

from chamberlain.tools.adapter import Effect, Resource, ToolAdapter, ToolContext, tool
from chamberlain.tools.exceptions import ToolError, ToolInputInvalid, ToolRejected, ToolUnavailable, UnknownTool
from chamberlain.tools.registry import ToolRegistry

__all__ = [
    "Effect",
    "Resource",
    "ToolAdapter",
    "ToolContext",
    "ToolError",
    "ToolInputInvalid",
    "ToolRegistry",
    "ToolRejected",
    "ToolUnavailable",
    "UnknownTool",
    "tool",
]
